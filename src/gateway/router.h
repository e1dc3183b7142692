// Routes: method + path template ("/v1/keys/{key_id}") -> handler, with the route's auth mode
// and scope. Matching is by segments; a path that matches a template under another method is a
// 405. Built once at start-up, then read-only: thread-safe for lookups.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "auth/principal.h"
#include "common/result.h"
#include "gateway/http.h"

namespace ap::auth {
class Authenticator;
}
namespace ap::store {
class Pool;
}
namespace ap::audit {
class AuditLog;
class Signer;
}
namespace ap::control {
struct Plane;
}
namespace ap::vault {
class CredentialStore;
}
namespace ap::llm {
struct ModelServices;
}
namespace ap::net {
class HttpClient;
}
namespace ap::llm {
using UpstreamClient = net::HttpClient;
}
namespace ap::telemetry {
class Histogram;
}

namespace ap::gateway {

enum class AuthMode { kNone, kAdmin, kTenant };

struct ServerInfo {
  std::string version;
  std::vector<std::string> features;
};

// Services shared by every shard (owned by the app's wiring; null when not configured).
struct Services {
  audit::AuditLog* audit = nullptr;
  vault::CredentialStore* credentials = nullptr;
  const std::vector<audit::Signer>* signers = nullptr;  // audit checkpoint keys, newest last
  int audit_retention_days = 365;  // a deleted tenant's audit chain is kept this long
  control::Plane* agents = nullptr;  // the LangGraph agent API (null: not served)
  llm::ModelServices* models = nullptr;  // the model gateway (null: not served)
};

class CostMeter;

// What a handler gets: the request, its path parameters, the caller, and the shard's services.
struct RequestContext {
  const Request& request;
  std::vector<std::pair<std::string_view, std::string_view>> params;
  auth::Principal principal;
  std::string request_id;
  store::Pool& pool;
  auth::Authenticator& authn;
  const ServerInfo& info;
  const Services& services;
  llm::UpstreamClient* http = nullptr;  // the shard's outbound client (model gateway)
  CostMeter* costs = nullptr;           // the shard's cost events (model gateway)

  // The path parameter `name` ("key_id"), or empty.
  std::string_view param(std::string_view name) const;
  const TenantId& tenant() const { return principal.tenant; }
};

using Handler = std::function<boost::asio::awaitable<Result<Response>>(RequestContext&)>;

struct Route {
  std::string method;
  std::string pattern;  // also the metrics and access-log label
  AuthMode auth = AuthMode::kTenant;
  uint32_t scope = 0;  // required scope for kTenant routes (0: any key)
  Handler handler;
  bool health = false;  // /ok, /metrics: not access-logged by default
  // The handler checks the API request limit itself, with its own limits in one limiter round
  // trip (model calls), instead of the server checking it first.
  bool admits_itself = false;
};

struct Match {
  const Route* route = nullptr;
  std::vector<std::pair<std::string_view, std::string_view>> params;
  bool method_mismatch = false;  // the path exists under another method (405)
  std::string allow;             // methods allowed for the path
};

class Router {
 public:
  void add(Route route);
  Match match(std::string_view method, std::string_view path) const;
  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

 private:
  struct Compiled {
    const Route* route;
    std::vector<std::string> segments;  // "{x}" marks a parameter
  };
  std::vector<std::unique_ptr<Route>> routes_;
  std::vector<Compiled> compiled_;
};

}  // namespace ap::gateway
