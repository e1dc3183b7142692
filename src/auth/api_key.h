// The shape of credentials. Tenant API keys are `ap_` + 43 base62 characters (256 bits);
// the admin token is `apadm_` + 43 base62 characters; a bearer token with two dots is a JWT.
// Keys are stored only as SHA-256 (high entropy: a slow KDF would cost every request and add
// nothing). Thread-safe: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/crypto.h"
#include "common/secret.h"

namespace ap::auth {

inline constexpr std::string_view kKeyPrefix = "ap_";
inline constexpr std::string_view kAdminPrefix = "apadm_";
inline constexpr size_t kKeyRandomChars = 43;
inline constexpr size_t kVisiblePrefixChars = 11;  // "ap_" + 8: shown in listings

enum class CredentialKind { kNone, kTenantKey, kAdminToken, kJwt, kUnknown };

// Tells credentials apart by shape only (no look-up).
CredentialKind classify(std::string_view credential);

SecretString generate_api_key();
SecretString generate_admin_token();

// The visible, non-secret part of a key ("ap_Ab3dEf9h"), stored and shown in listings.
std::string visible_prefix(std::string_view key);

// SHA-256 of the key: what the database stores and looks up.
inline Sha256Digest key_hash(std::string_view key) { return sha256(key); }

}  // namespace ap::auth
