// OIDC sign-in: JWT access tokens from configured OpenID providers. Each issuer's key set is
// discovered (`<issuer>/.well-known/openid-configuration` -> `jwks_uri`) on first use and fetched
// again when a token names a key it lacks (at most every 10 s per issuer). The tenant comes from
// a configured claim of the verified token (our tenant id). Thread-safe.
// Limitation: key sets are fetched with the blocking plain-HTTP client of `net` on the calling
// thread (HTTPS issuers need the TLS client of issue 7).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "common/ids.h"

namespace ap::auth {

struct OidcIssuerConfig {
  std::string issuer;                  // http://host:port[/path], exactly as tokens' `iss`
  std::vector<std::string> audiences;  // a token's `aud` must contain one
  std::vector<std::string> algorithms{"RS256", "ES256"};
  std::string tenant_claim = "tenant_id";
};

struct OidcIdentity {
  TenantId tenant;
  std::string subject;  // `sub`
  std::string issuer;
};

// Our tenant id from the value of the configured tenant claim: a string (the tenant id); or
// Keycloak's `organization` claim naming exactly one organization, either as a one-element list
// (the alias is the tenant id) or as an object `{alias: {"id": ...}}` (with Keycloak's "add
// organization id" option; the id is the tenant id). Unauthenticated when absent, ambiguous
// (several organizations) or not a tenant id.
Result<TenantId> tenant_from_claim(const nlohmann::json& value);

class OidcVerifier {
 public:
  explicit OidcVerifier(std::vector<OidcIssuerConfig> issuers);
  // Unauthenticated with the reason for anything but a valid token of a configured issuer that
  // names a tenant (the tenant's existence is the caller's to check).
  Result<OidcIdentity> verify(std::string_view token, std::chrono::system_clock::time_point now);

 private:
  struct Issuer {
    OidcIssuerConfig config;
    IssuerPolicy policy;
    std::shared_ptr<const Jwks> keys;
    std::chrono::steady_clock::time_point fetched{};
  };
  Status refresh(Issuer& issuer);  // holds mu_
  std::mutex mu_;
  std::vector<Issuer> issuers_;
};

}  // namespace ap::auth
