// Limits: the operator sets a tenant's (PUT/GET /v1/tenants/{tenant_id}/limits, admin token); the
// tenant reads its own with current usage (GET /v1/limits).
#include "gateway/handlers/json_body.h"
#include "gateway/routes.h"
#include "llm/models.h"
#include "ratelimit/limits.h"
#include "store/tx.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

Result<ratelimit::Limits*> limits_of(const RequestContext& ctx) {
  if (!ctx.services.models || !ctx.services.models->limits)
    return Error::unavailable("limits are not configured on this server");
  return ctx.services.models->limits;
}

Task put_limits(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* limits, limits_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto tenant, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_ASSIGN_OR_RETURN(json body, object_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(auto parsed, ratelimit::TenantLimits::parse(body.dump()));
  auto st = co_await limits->set(ctx.pool, tenant, parsed);
  if (!st) {
    // The tenant row is missing: the foreign key names it.
    if (st.error().message.find("foreign key") != std::string::npos) co_return Error::not_found("tenant not found");
    co_return st.error();
  }
  co_return Response::json(200, parsed.to_json());
}

Task get_limits(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* limits, limits_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto tenant, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_ASSIGN_OR_RETURN(auto stored, co_await limits->get_json(ctx.pool, tenant));
  json out = {{"tenant_id", tenant.to_string()}, {"limits", json::parse(stored)},
              {"defaults", json::parse(limits->options().defaults.to_json())}};
  co_return Response::json(200, dump(out));
}

Task own_limits(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* limits, limits_of(ctx));
  AP_CO_ASSIGN_OR_RETURN(auto body, co_await limits->status_json(ctx.pool, ctx.tenant()));
  // Concurrent runs are counted by the run queue, not the limiter: the runs running now.
  json out = json::parse(body);
  if (out["limits"].contains("concurrent_runs")) {
    AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                          ctx.pool, ctx.tenant(),
                                          "SELECT count(*) FROM running_runs WHERE tenant_id = $1",
                                          store::params(ctx.tenant().to_string())));
    const int64_t limit = out["limits"]["concurrent_runs"], running = std::stoll(std::string(rows.get(0, 0)));
    out["usage"]["concurrent_runs"] = {{"limit", limit}, {"used", running}, {"remaining", std::max<int64_t>(limit - running, 0)}};
  }
  co_return Response::json(200, dump(out));
}

}  // namespace

void add_limit_routes(Router& r) {
  r.add({"PUT", "/v1/tenants/{tenant_id}/limits", AuthMode::kAdmin, 0, put_limits});
  r.add({"GET", "/v1/tenants/{tenant_id}/limits", AuthMode::kAdmin, 0, get_limits});
  r.add({"GET", "/v1/limits", AuthMode::kTenant, 0, own_limits});
}

}  // namespace ap::gateway
