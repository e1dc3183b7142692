// Verifying JWT access tokens from an OpenID provider (RFC 7519/7515/7517): a key set (JWKS),
// each issuer's policy, and verification with OpenSSL. Only the algorithms an issuer allows
// (RS256, ES256; never "none", never an HMAC algorithm for these asymmetric issuers); the key
// comes only from the issuer's configured key set by `kid` (header `jku`, `x5u`, `jwk` and `x5c`
// are ignored); iss, aud, exp and nbf are checked with a bounded leeway.
// Thread-safe: values are immutable once parsed.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

struct evp_pkey_st;

namespace ap::auth {

// An issuer's public keys (the provider's jwks_uri document).
class Jwks {
 public:
  struct Key {
    std::string kid, kty, alg;  // alg may be empty (then any allowed algorithm of its type)
    std::shared_ptr<evp_pkey_st> pkey;
  };
  // Keeps the RSA and EC P-256 signing keys it can use; InvalidArgument if it is not a key set.
  static Result<Jwks> parse(std::string_view json);
  const Key* find(std::string_view kid) const;
  size_t size() const { return keys_.size(); }

 private:
  std::vector<Key> keys_;
};

struct IssuerPolicy {
  std::string issuer;                  // must equal `iss`
  std::vector<std::string> audiences;  // `aud` must contain one of them
  std::vector<std::string> algorithms{"RS256", "ES256"};
  std::chrono::seconds leeway{60};     // for exp and nbf; at most 60 s
};

// The token's payload once its signature and claims check out; Unauthenticated with the reason
// otherwise (the reason is for logs and the audit log, never the key material).
Result<nlohmann::json> verify_jwt(std::string_view token, const IssuerPolicy& policy, const Jwks& keys,
                                  std::chrono::system_clock::time_point now);

// The unverified header fields a caller needs before verifying: `kid` (to refresh a key set
// that lacks it) and `iss` of the payload (to pick the issuer). nullopt when malformed.
struct UnverifiedJwt {
  std::string kid, alg, iss;
};
std::optional<UnverifiedJwt> peek_jwt(std::string_view token);

}  // namespace ap::auth
