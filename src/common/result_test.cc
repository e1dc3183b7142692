#include "common/result.h"

#include <gtest/gtest.h>

namespace ap {
namespace {

Result<int> half(int x) {
  if (x % 2) return Error::invalid_argument("odd");
  return x / 2;
}

Result<int> quarter(int x) {
  AP_ASSIGN_OR_RETURN(int h, half(x));
  AP_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

Status check(int x) {
  AP_RETURN_IF_ERROR(half(x));
  return ok_status();
}

TEST(Result, PropagatesErrors) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_EQ(r.error().to_string(), "invalid_argument: odd");
  EXPECT_TRUE(check(2));
  EXPECT_FALSE(check(3));
}

}  // namespace
}  // namespace ap
