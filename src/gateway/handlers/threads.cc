// LangGraph agent API: threads, their state and history (/threads).
#include "gateway/handlers/agent_context.h"
#include "gateway/routes.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

Response ok_json(const json& j) { return Response::json(200, dump(j)); }
std::string tid(const RequestContext& ctx) { return std::string(ctx.param("thread_id")); }

Task create_thread(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json t, co_await p->threads.create(audit_context(ctx), body));
  co_return ok_json(t);
}
Task get_thread(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json t, co_await p->threads.get(audit_context(ctx), tid(ctx)));
  co_return ok_json(t);
}
Task patch_thread(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json t, co_await p->threads.update(audit_context(ctx), tid(ctx), body));
  if (ctx.request.header("prefer").find("return=minimal") != std::string_view::npos) co_return no_content();
  co_return ok_json(t);
}
Task delete_thread(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_RETURN_IF_ERROR(co_await p->threads.remove(audit_context(ctx), tid(ctx)));
  co_return no_content();
}
Task search_threads(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json items, co_await p->threads.search(audit_context(ctx), body));
  AP_CO_ASSIGN_OR_RETURN(int64_t total, co_await p->threads.count(audit_context(ctx), body));
  co_return paginated(items, total, body);
}
Task count_threads(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(int64_t n, co_await p->threads.count(audit_context(ctx), body));
  co_return ok_json(n);
}
Task copy_thread(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json t, co_await p->threads.copy(audit_context(ctx), tid(ctx)));
  co_return ok_json(t);
}
Task prune_threads(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json r, co_await p->threads.prune(audit_context(ctx), body));
  co_return ok_json(r);
}
// ?subgraphs=true|false (also 1|0); absent: false.
Result<bool> subgraphs_param(RequestContext& ctx) {
  auto sub = ctx.request.query_param("subgraphs");
  if (!sub) return false;
  if (*sub == "true" || *sub == "1") return true;
  if (*sub == "false" || *sub == "0") return false;
  return Error::invalid_argument("'subgraphs' must be true or false");
}
// ?select=values.messages&select=next (repeated); absent: null (every field).
json select_param(RequestContext& ctx) {
  auto all = ctx.request.query_params("select");
  if (all.empty()) return nullptr;
  json out = json::array();
  for (auto& f : all) out.push_back(std::move(f));
  return out;
}
Task get_state(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(bool subgraphs, subgraphs_param(ctx));
  json select = select_param(ctx);
  AP_CO_ASSIGN_OR_RETURN(json st, co_await p->threads.state(audit_context(ctx), tid(ctx), "", "", subgraphs, select));
  co_return ok_json(st);
}
Task get_state_at(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(bool subgraphs, subgraphs_param(ctx));
  json select = select_param(ctx);
  AP_CO_ASSIGN_OR_RETURN(json st, co_await p->threads.state(audit_context(ctx), tid(ctx), std::string(ctx.param("checkpoint_id")),
                                                            "", subgraphs, select));
  co_return ok_json(st);
}
// POST /threads/{id}/state/checkpoint: {checkpoint: {checkpoint_id, checkpoint_ns}, subgraphs}.
Task post_state_checkpoint(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  json cp = body.value("checkpoint", json::object());
  if (cp.is_null()) cp = json::object();
  if (!cp.is_object()) co_return Error::invalid_argument("'checkpoint' must be an object");
  std::string fields[2];  // checkpoint_id, checkpoint_ns
  const char* names[2] = {"checkpoint_id", "checkpoint_ns"};
  for (int i = 0; i < 2; ++i) {
    json v = cp.value(names[i], json());
    if (!v.is_null() && !v.is_string())
      co_return Error::invalid_argument(std::string("'checkpoint.") + names[i] + "' must be a string");
    if (v.is_string()) fields[i] = v.get<std::string>();
  }
  json sub = body.value("subgraphs", json());
  if (!sub.is_null() && !sub.is_boolean()) co_return Error::invalid_argument("'subgraphs' must be true or false");
  json select = body.value("select", json());
  AP_CO_ASSIGN_OR_RETURN(json st, co_await p->threads.state(audit_context(ctx), tid(ctx), fields[0], fields[1],
                                                            sub.is_boolean() && sub.get<bool>(), select));
  co_return ok_json(st);
}
Task patch_state(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_RETURN_IF_ERROR(co_await p->threads.patch_state(audit_context(ctx), tid(ctx), body));
  co_return no_content();
}
Task post_state(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json r, co_await p->threads.update_state(audit_context(ctx), tid(ctx), body));
  co_return ok_json(r);
}
Task post_history(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json h, co_await p->threads.history(audit_context(ctx), tid(ctx), body));
  co_return ok_json(h);
}
Task get_history(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  json body = json::object();
  if (auto l = ctx.request.query_param("limit")) {
    try {
      body["limit"] = std::stoi(*l);
    } catch (const std::exception&) {
      co_return Error::invalid_argument("'limit' must be an integer");
    }
  }
  if (auto b = ctx.request.query_param("before")) body["before"] = *b;
  AP_CO_ASSIGN_OR_RETURN(json h, co_await p->threads.history(audit_context(ctx), tid(ctx), body));
  co_return ok_json(h);
}

}  // namespace

void add_thread_routes(Router& r) {
  const uint32_t s = auth::kScopeAgents;
  r.add({"POST", "/threads", AuthMode::kTenant, s, create_thread});
  r.add({"POST", "/threads/search", AuthMode::kTenant, s, search_threads});
  r.add({"POST", "/threads/count", AuthMode::kTenant, s, count_threads});
  r.add({"POST", "/threads/prune", AuthMode::kTenant, s, prune_threads});
  r.add({"GET", "/threads/{thread_id}", AuthMode::kTenant, s, get_thread});
  r.add({"PATCH", "/threads/{thread_id}", AuthMode::kTenant, s, patch_thread});
  r.add({"DELETE", "/threads/{thread_id}", AuthMode::kTenant, s, delete_thread});
  r.add({"POST", "/threads/{thread_id}/copy", AuthMode::kTenant, s, copy_thread});
  r.add({"GET", "/threads/{thread_id}/state", AuthMode::kTenant, s, get_state});
  r.add({"POST", "/threads/{thread_id}/state", AuthMode::kTenant, s, post_state});
  r.add({"PATCH", "/threads/{thread_id}/state", AuthMode::kTenant, s, patch_state});
  r.add({"POST", "/threads/{thread_id}/state/checkpoint", AuthMode::kTenant, s, post_state_checkpoint});
  r.add({"GET", "/threads/{thread_id}/state/{checkpoint_id}", AuthMode::kTenant, s, get_state_at});
  r.add({"POST", "/threads/{thread_id}/history", AuthMode::kTenant, s, post_history});
  r.add({"GET", "/threads/{thread_id}/history", AuthMode::kTenant, s, get_history});
}

}  // namespace ap::gateway
