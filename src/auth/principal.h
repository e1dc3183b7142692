// Who is calling: the platform admin, or a tenant's API key with its scopes.
// Thread-safe: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/result.h"

namespace ap::auth {

// What a tenant key may do. A key can only create keys with a subset of its own scopes.
enum Scope : uint32_t {
  kScopeKeys = 1u << 0,         // manage the tenant's keys
  kScopeAgents = 1u << 1,       // agent API (assistants, threads, runs, store)
  kScopeModels = 1u << 2,       // model gateway
  kScopeCredentials = 1u << 3,  // credential vault
  kScopeRead = 1u << 4,         // usage and audit
};
inline constexpr uint32_t kAllScopes = kScopeKeys | kScopeAgents | kScopeModels |
                                       kScopeCredentials | kScopeRead;

// Parses scope names ("keys", "agents", ...). InvalidArgument naming an unknown one.
Result<uint32_t> parse_scopes(const std::vector<std::string>& names);
std::vector<std::string> scope_names(uint32_t scopes);
std::string_view scope_name(Scope s);

struct Principal {
  enum class Kind { kAdmin, kTenantKey, kTenantUser };
  Kind kind = Kind::kTenantKey;
  TenantId tenant;  // nil for the admin
  KeyId key;        // nil for the admin and for users
  uint32_t scopes = 0;
  std::string user;  // kTenantUser: "<issuer>#<sub>" of the verified token

  bool is_admin() const { return kind == Kind::kAdmin; }
  bool has(Scope s) const { return is_admin() || (scopes & s) == static_cast<uint32_t>(s); }
  // The actor named in logs and audit events: "admin", "key:<id>" or "user:<issuer>#<sub>".
  std::string actor() const {
    if (is_admin()) return "admin";
    if (kind == Kind::kTenantUser) return "user:" + user;
    return "key:" + key.to_string();
  }
};

}  // namespace ap::auth
