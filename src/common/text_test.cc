#include "common/text.h"

#include <gtest/gtest.h>

namespace ap {
namespace {

TEST(Text, AsciiLowerChangesOnlyAsciiCapitals) {
  EXPECT_EQ(ascii_lower("Content-Type"), "content-type");
  EXPECT_EQ(ascii_lower("X-API-KEY_09@[`{"), "x-api-key_09@[`{");  // the neighbours of A-Z stay
  EXPECT_EQ(ascii_lower("ÄÖÜ Straße"), "ÄÖÜ straße");             // UTF-8 bytes are left alone
  std::string s = "Example.COM";
  ascii_lower_in_place(s);
  EXPECT_EQ(s, "example.com");
  static_assert(ascii_lower('Z') == 'z' && ascii_lower('@') == '@' && ascii_lower('[') == '[');
}

}  // namespace
}  // namespace ap
