#include "auth/oidc.h"

#include <nlohmann/json.hpp>

#include "net/blocking_client.h"
#include "telemetry/log.h"

namespace ap::auth {
namespace {

constexpr std::chrono::seconds kMinRefresh{10};

// "http://host:port/a/b" -> {"http://host:port", "/a/b"}.
std::pair<std::string, std::string> split_url(const std::string& url) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return {url, "/"};
  return {url.substr(0, slash), url.substr(slash)};
}

Result<std::string> get(const std::string& url) {
  auto [base, path] = split_url(url);
  auto r = net::http_request(base, "GET", path, {}, "", std::chrono::seconds(5));
  if (!r) return Error::unavailable("cannot fetch " + url + ": " + r.error().message);
  if (r->status != 200) return Error::unavailable("fetching " + url + " gave HTTP " + std::to_string(r->status));
  return r->body;
}

}  // namespace

OidcVerifier::OidcVerifier(std::vector<OidcIssuerConfig> issuers) {
  for (auto& c : issuers) {
    Issuer i;
    i.policy.issuer = c.issuer;
    i.policy.audiences = c.audiences;
    i.policy.algorithms = c.algorithms;
    i.config = std::move(c);
    issuers_.push_back(std::move(i));
  }
}

Status OidcVerifier::refresh(Issuer& is) {
  is.fetched = std::chrono::steady_clock::now();
  std::string base = is.config.issuer;
  while (!base.empty() && base.back() == '/') base.pop_back();
  AP_ASSIGN_OR_RETURN(auto discovery, get(base + "/.well-known/openid-configuration"));
  auto doc = nlohmann::json::parse(discovery, nullptr, false);
  if (!doc.is_object() || !doc.contains("jwks_uri") || !doc["jwks_uri"].is_string())
    return Error::unavailable("the issuer's discovery document has no jwks_uri");
  AP_ASSIGN_OR_RETURN(auto text, get(doc["jwks_uri"].get<std::string>()));
  AP_ASSIGN_OR_RETURN(auto keys, Jwks::parse(text));
  is.keys = std::make_shared<const Jwks>(std::move(keys));
  return ok_status();
}

Result<OidcIdentity> OidcVerifier::verify(std::string_view token, std::chrono::system_clock::time_point now) {
  auto peek = peek_jwt(token);
  if (!peek) return Error::unauthenticated("invalid token: malformed");
  std::shared_ptr<const Jwks> keys;
  const Issuer* issuer = nullptr;
  {
    std::lock_guard lock(mu_);
    for (auto& is : issuers_) {
      if (is.config.issuer != peek->iss) continue;
      issuer = &is;
      bool stale = std::chrono::steady_clock::now() - is.fetched >= kMinRefresh;
      if ((!is.keys || !is.keys->find(peek->kid)) && stale) {
        if (auto st = refresh(is); !st && !is.keys) {
          telemetry::log_warn("oidc_keys_unavailable", {{"issuer", is.config.issuer}, {"error", st.error().message}});
          return Error::unauthenticated("invalid token: the issuer's keys are unavailable");
        }
      }
      keys = is.keys;
    }
  }
  if (!issuer) return Error::unauthenticated("invalid token: unknown issuer");
  if (!keys) return Error::unauthenticated("invalid token: the issuer's keys are unavailable");
  AP_ASSIGN_OR_RETURN(auto claims, verify_jwt(token, issuer->policy, *keys, now));
  auto t = claims.find(issuer->config.tenant_claim);
  if (t == claims.end()) return Error::unauthenticated("invalid token: no tenant claim");
  AP_ASSIGN_OR_RETURN(auto tenant, tenant_from_claim(*t));
  return OidcIdentity{tenant, claims.value("sub", ""), issuer->config.issuer};
}

Result<TenantId> tenant_from_claim(const nlohmann::json& value) {
  std::string text;
  if (value.is_string()) {
    text = value.get<std::string>();
  } else if (value.is_array() || value.is_object()) {
    if (value.empty()) return Error::unauthenticated("invalid token: no tenant claim");
    if (value.size() > 1) return Error::unauthenticated("invalid token: the tenant claim names several tenants");
    if (value.is_array() && value.front().is_string()) {
      text = value.front().get<std::string>();
    } else if (value.is_object()) {
      const auto& org = value.begin().value();
      auto id = org.is_object() ? org.find("id") : org.end();
      text = id != org.end() && id->is_string() ? id->get<std::string>() : value.begin().key();
    }
  }
  if (text.empty()) return Error::unauthenticated("invalid token: no tenant claim");
  auto tenant = TenantId::parse(text);
  if (!tenant) return Error::unauthenticated("invalid token: unknown tenant");
  return *tenant;
}

}  // namespace ap::auth
