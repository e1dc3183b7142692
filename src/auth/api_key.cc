#include "auth/api_key.h"

#include <algorithm>
#include <cctype>

namespace ap::auth {
namespace {
bool is_base62(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum((unsigned char)c); });
}
}  // namespace

CredentialKind classify(std::string_view c) {
  if (c.empty()) return CredentialKind::kNone;
  if (c.starts_with(kAdminPrefix)) {
    auto rest = c.substr(kAdminPrefix.size());
    return rest.size() == kKeyRandomChars && is_base62(rest) ? CredentialKind::kAdminToken
                                                             : CredentialKind::kUnknown;
  }
  if (c.starts_with(kKeyPrefix)) {
    auto rest = c.substr(kKeyPrefix.size());
    return rest.size() == kKeyRandomChars && is_base62(rest) ? CredentialKind::kTenantKey
                                                             : CredentialKind::kUnknown;
  }
  if (std::count(c.begin(), c.end(), '.') == 2) return CredentialKind::kJwt;
  return CredentialKind::kUnknown;
}

SecretString generate_api_key() {
  return SecretString(std::string(kKeyPrefix) + random_token_base62(kKeyRandomChars));
}

SecretString generate_admin_token() {
  return SecretString(std::string(kAdminPrefix) + random_token_base62(kKeyRandomChars));
}

std::string visible_prefix(std::string_view key) {
  return std::string(key.substr(0, std::min(key.size(), kVisiblePrefixChars)));
}

}  // namespace ap::auth
