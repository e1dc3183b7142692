// LangGraph agent API: crons (/runs/crons, /threads/{id}/runs/crons): create, update (PATCH),
// delete, search, count. control/crons.h fires them.
#include "gateway/handlers/agent_context.h"
#include "gateway/routes.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

Task create(RequestContext& ctx, std::string thread) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  auto scope = audit_context(ctx);
  AP_CO_ASSIGN_OR_RETURN(json cron, co_await p->crons.create(scope, std::move(thread), std::move(body)));
  ctx.services.audit->record(scope, audit::Event{"cron.created", audit::Level::kDecision,
                                                 json{{"cron_id", cron["cron_id"]}, {"schedule", cron["schedule"]},
                                                      {"assistant_id", cron["assistant_id"]}, {"thread_id", cron["thread_id"]}}});
  co_return Response::json(200, dump(cron));
}
Task create_stateless(RequestContext& ctx) { co_return co_await create(ctx, ""); }
Task create_for_thread(RequestContext& ctx) { co_return co_await create(ctx, std::string(ctx.param("thread_id"))); }

Task update(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  auto scope = audit_context(ctx);
  AP_CO_ASSIGN_OR_RETURN(json cron, co_await p->crons.update(scope, std::string(ctx.param("cron_id")), body));
  ctx.services.audit->record(scope, audit::Event{"cron.updated", audit::Level::kDecision,
                                                 json{{"cron_id", cron["cron_id"]}, {"schedule", cron["schedule"]},
                                                      {"enabled", cron["enabled"]}}});
  co_return Response::json(200, dump(cron));
}

Task remove(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto scope = audit_context(ctx);
  AP_CO_RETURN_IF_ERROR(co_await p->crons.remove(scope, std::string(ctx.param("cron_id"))));
  ctx.services.audit->record(scope, audit::Event{"cron.deleted", audit::Level::kDecision,
                                                 json{{"cron_id", std::string(ctx.param("cron_id"))}}});
  co_return no_content();
}

Task search(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json items, co_await p->crons.search(audit_context(ctx), body));
  AP_CO_ASSIGN_OR_RETURN(int64_t total, co_await p->crons.count(audit_context(ctx), body));
  co_return paginated(items, total, body);
}

Task count(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(int64_t n, co_await p->crons.count(audit_context(ctx), body));
  co_return Response::json(200, dump(json(n)));
}

}  // namespace

void add_cron_routes(Router& r) {
  const uint32_t s = auth::kScopeAgents;
  r.add({"POST", "/runs/crons", AuthMode::kTenant, s, create_stateless});
  r.add({"POST", "/threads/{thread_id}/runs/crons", AuthMode::kTenant, s, create_for_thread});
  r.add({"POST", "/runs/crons/search", AuthMode::kTenant, s, search});
  r.add({"POST", "/runs/crons/count", AuthMode::kTenant, s, count});
  r.add({"PATCH", "/runs/crons/{cron_id}", AuthMode::kTenant, s, update});
  r.add({"DELETE", "/runs/crons/{cron_id}", AuthMode::kTenant, s, remove});
}

}  // namespace ap::gateway
