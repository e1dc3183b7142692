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

TEST(HttpDate, ImfFixdate) {
  EXPECT_EQ(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(http_date(1796625519), "Mon, 07 Dec 2026 06:38:39 GMT");
  EXPECT_EQ(http_date_now().size(), 29u);
}

}  // namespace
}  // namespace ap::gateway
