#include "gateway/http.h"

#include <gtest/gtest.h>

namespace ap::gateway {
namespace {

TEST(Request, PathQueryAndHeaders) {
  Request r{"GET", "/v1/keys?limit=5&after=a%20b&flag", {{"x-api-key", "k"}}, ""};
  EXPECT_EQ(r.path(), "/v1/keys");
  EXPECT_EQ(r.query_param("limit"), "5");
  EXPECT_EQ(r.query_param("after"), "a b");
  EXPECT_EQ(r.query_param("flag"), "");
  EXPECT_FALSE(r.query_param("missing"));
  EXPECT_EQ(r.header("x-api-key"), "k");
  EXPECT_EQ(percent_decode("%zz%4"), "%zz%4");
}

}  // namespace
}  // namespace ap::gateway
