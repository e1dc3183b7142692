#include "common/crypto.h"

#include <gtest/gtest.h>

#include <sstream>

#include "common/secret.h"

namespace ap {
namespace {

TEST(Crypto, Sha256KnownVector) {
  auto d = sha256("abc");
  EXPECT_EQ(hex_encode(d.data(), d.size()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, HexAndBase64RoundTrip) {
  std::string raw("\x00\x01\xfe\xffhello", 8);
  EXPECT_EQ(*hex_decode(hex_encode(raw)), raw);
  EXPECT_FALSE(hex_decode("abc"));
  EXPECT_FALSE(hex_decode("zz"));
  for (size_t n = 0; n < 7; ++n) {
    auto s = raw.substr(0, n);
    EXPECT_EQ(*base64_decode(base64_encode(s)), s) << n;
  }
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(base64_decode("a"));
}

TEST(Crypto, RandomTokenIsBase62OfRequestedLength) {
  auto t = random_token_base62(43);
  EXPECT_EQ(t.size(), 43u);
  for (char c : t) EXPECT_TRUE(isalnum(static_cast<unsigned char>(c)));
  EXPECT_NE(t, random_token_base62(43));
}

TEST(Crypto, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
}

TEST(SecretString, NeverPrintsItsValue) {
  SecretString s("ap_supersecret");
  std::ostringstream os;
  os << s;
  EXPECT_EQ(os.str(), "[redacted]");
  EXPECT_EQ(s.reveal(), "ap_supersecret");
  SecretString moved(std::move(s));
  EXPECT_TRUE(s.empty());  // NOLINT: moved-from is wiped on purpose
}

}  // namespace
}  // namespace ap
