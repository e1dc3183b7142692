#include "auth/principal.h"

namespace ap::auth {
namespace {
constexpr Scope kScopes[] = {kScopeKeys, kScopeAgents, kScopeModels, kScopeCredentials,
                             kScopeRead};
}

std::string_view scope_name(Scope s) {
  switch (s) {
    case kScopeKeys: return "keys";
    case kScopeAgents: return "agents";
    case kScopeModels: return "models";
    case kScopeCredentials: return "credentials";
    case kScopeRead: return "read";
  }
  return "";
}

Result<uint32_t> parse_scopes(const std::vector<std::string>& names) {
  uint32_t out = 0;
  for (const auto& n : names) {
    bool found = false;
    for (Scope s : kScopes) {
      if (n == scope_name(s)) {
        out |= s;
        found = true;
      }
    }
    if (!found)
      return Error::invalid_argument("unknown scope '" + n.substr(0, 40) +
                                     "' (known: keys, agents, models, credentials, read)");
  }
  return out;
}

std::vector<std::string> scope_names(uint32_t scopes) {
  std::vector<std::string> out;
  for (Scope s : kScopes)
    if (scopes & s) out.emplace_back(scope_name(s));
  return out;
}

}  // namespace ap::auth
