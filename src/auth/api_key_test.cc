#include "auth/api_key.h"

#include <gtest/gtest.h>

#include "auth/principal.h"

namespace ap::auth {
namespace {

TEST(ApiKey, GeneratedKeysHaveTheirShape) {
  auto key = generate_api_key();
  EXPECT_EQ(classify(key.reveal()), CredentialKind::kTenantKey);
  EXPECT_EQ(key.reveal().size(), 3u + kKeyRandomChars);
  EXPECT_EQ(visible_prefix(key.reveal()), key.reveal().substr(0, 11));
  auto admin = generate_admin_token();
  EXPECT_EQ(classify(admin.reveal()), CredentialKind::kAdminToken);
}

TEST(ApiKey, ClassifiesByShapeOnly) {
  EXPECT_EQ(classify(""), CredentialKind::kNone);
  EXPECT_EQ(classify("ap_short"), CredentialKind::kUnknown);
  EXPECT_EQ(classify("apadm_" + std::string(43, '!')), CredentialKind::kUnknown);
  EXPECT_EQ(classify("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"), CredentialKind::kJwt);
  EXPECT_EQ(classify("sk-openai-key"), CredentialKind::kUnknown);
}

TEST(Scopes, ParseAndName) {
  auto s = parse_scopes({"keys", "read"});
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, kScopeKeys | kScopeRead);
  EXPECT_EQ(scope_names(*s), (std::vector<std::string>{"keys", "read"}));
  auto bad = parse_scopes({"root"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
}

TEST(Principal, AdminHasEveryScope) {
  Principal admin{Principal::Kind::kAdmin, {}, {}, 0};
  EXPECT_TRUE(admin.has(kScopeCredentials));
  Principal key{Principal::Kind::kTenantKey, {}, {}, kScopeRead};
  EXPECT_TRUE(key.has(kScopeRead));
  EXPECT_FALSE(key.has(kScopeKeys));
}

}  // namespace
}  // namespace ap::auth
