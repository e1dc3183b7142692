#include "common/ids.h"

#include <gtest/gtest.h>

namespace ap {
namespace {

TEST(Uuid, RoundTripsCanonicalText) {
  auto u = Uuid::parse("0191F2A4-7C3B-7D2E-9A10-0123456789AB");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->to_string(), "0191f2a4-7c3b-7d2e-9a10-0123456789ab");
}

TEST(Uuid, RejectsMalformedText) {
  for (const char* bad : {"", "not-a-uuid", "0191f2a4-7c3b-7d2e-9a10-0123456789a",
                          "0191f2a4x7c3b-7d2e-9a10-0123456789ab",
                          "0191f2a4-7c3b-7d2e-9a10-0123456789ag", "../../etc/passwd"}) {
    EXPECT_FALSE(Uuid::parse(bad)) << bad;
  }
}

TEST(Uuid, V7IsTimeOrderedAndVersioned) {
  auto a = Uuid::v7(1000), b = Uuid::v7(1001);
  EXPECT_LT(a, b);
  EXPECT_EQ(a.to_string()[14], '7');
  EXPECT_EQ(Uuid::random_v4().to_string()[14], '4');
  EXPECT_NE(Uuid::random_v4(), Uuid::random_v4());
}

TEST(Id, TypedIdsParse) {
  auto t = TenantId::parse("00000000-0000-0000-0000-000000000001");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->is_nil());
  EXPECT_TRUE(TenantId().is_nil());
}

TEST(Uuid, V5MatchesPython) {
  // uuid.uuid5(uuid.NAMESPACE_DNS, "python.org") == 886313e1-3b8a-5372-9b90-0c9aee199e5d
  auto ns = *Uuid::parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8");
  EXPECT_EQ(Uuid::v5(ns, "python.org").to_string(), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
}

}  // namespace
}  // namespace ap
