// LangGraph agent API: graphs (/v1/graphs) and assistants (/assistants).
#include "gateway/handlers/agent_context.h"
#include "gateway/routes.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

Response ok_json(const json& j, int status = 200) { return Response::json(status, dump(j)); }
bool flag(const Request& req, const char* name) {
  auto v = req.query_param(name);
  return v && (*v == "true" || *v == "1");
}

Task put_graph(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, object_body(ctx.request));
  bool created = false;
  AP_CO_ASSIGN_OR_RETURN(json g, co_await p->graphs.put(audit_context(ctx), std::string(ctx.param("graph_id")), body, &created));
  co_return ok_json(g, created ? 201 : 200);
}
Task get_graph(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json g, co_await p->graphs.get(audit_context(ctx), std::string(ctx.param("graph_id"))));
  co_return ok_json(g);
}
Task list_graphs(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json g, co_await p->graphs.list(audit_context(ctx)));
  co_return ok_json(g);
}
Task delete_graph(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_RETURN_IF_ERROR(co_await p->graphs.remove(audit_context(ctx), std::string(ctx.param("graph_id"))));
  co_return no_content();
}

Task create_assistant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json a, co_await p->assistants.create(audit_context(ctx), body));
  co_return ok_json(a);
}
Task get_assistant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json a, co_await p->assistants.get(audit_context(ctx), std::string(ctx.param("assistant_id"))));
  co_return ok_json(a);
}
Task patch_assistant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json a, co_await p->assistants.update(audit_context(ctx), std::string(ctx.param("assistant_id")), body));
  co_return ok_json(a);
}
// ?delete_threads=true also deletes the threads the assistant ran on.
Task delete_assistant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto scope = audit_context(ctx);
  AP_CO_ASSIGN_OR_RETURN(json a, co_await p->assistants.get(scope, std::string(ctx.param("assistant_id"))));
  AP_CO_RETURN_IF_ERROR(co_await p->assistants.remove(scope, a["assistant_id"].get<std::string>()));
  if (flag(ctx.request, "delete_threads")) {
    json filter = {{"metadata", {{"assistant_id", a["assistant_id"]}}}, {"limit", 1000}};
    for (;;) {
      AP_CO_ASSIGN_OR_RETURN(json threads, co_await p->threads.search(scope, filter));
      for (const auto& t : threads) AP_CO_RETURN_IF_ERROR(co_await p->threads.remove(scope, t["thread_id"].get<std::string>()));
      if (threads.size() < 1000) break;
    }
  }
  co_return no_content();
}
Task search_assistants(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json items, co_await p->assistants.search(audit_context(ctx), body));
  AP_CO_ASSIGN_OR_RETURN(int64_t total, co_await p->assistants.count(audit_context(ctx), body));
  co_return paginated(items, total, body);
}
Task count_assistants(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(int64_t n, co_await p->assistants.count(audit_context(ctx), body));
  co_return ok_json(n);
}
Task assistant_versions(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json v, co_await p->assistants.versions(audit_context(ctx), std::string(ctx.param("assistant_id")), body));
  co_return ok_json(v);
}
Task assistant_latest(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json a, co_await p->assistants.set_latest(audit_context(ctx), std::string(ctx.param("assistant_id")), body));
  co_return ok_json(a);
}
Task assistant_graph(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json g, co_await p->assistants.graph_view(audit_context(ctx), std::string(ctx.param("assistant_id")),
                                                                   flag(ctx.request, "xray")));
  co_return ok_json(g);
}
Task assistant_schemas(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json g, co_await p->assistants.schemas(audit_context(ctx), std::string(ctx.param("assistant_id"))));
  co_return ok_json(g);
}
Task assistant_subgraphs(RequestContext& ctx, std::string ns) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json g, co_await p->assistants.subgraphs(audit_context(ctx), std::string(ctx.param("assistant_id")), ns,
                                                                  flag(ctx.request, "recurse")));
  co_return ok_json(g);
}
Task subgraphs_all(RequestContext& ctx) { co_return co_await assistant_subgraphs(ctx, ""); }
Task subgraphs_ns(RequestContext& ctx) { co_return co_await assistant_subgraphs(ctx, std::string(ctx.param("namespace"))); }

}  // namespace

void add_assistant_routes(Router& r) {
  const uint32_t s = auth::kScopeAgents;
  r.add({"PUT", "/v1/graphs/{graph_id}", AuthMode::kTenant, s, put_graph});
  r.add({"GET", "/v1/graphs/{graph_id}", AuthMode::kTenant, s, get_graph});
  r.add({"GET", "/v1/graphs", AuthMode::kTenant, s, list_graphs});
  r.add({"DELETE", "/v1/graphs/{graph_id}", AuthMode::kTenant, s, delete_graph});
  r.add({"POST", "/assistants", AuthMode::kTenant, s, create_assistant});
  r.add({"POST", "/assistants/search", AuthMode::kTenant, s, search_assistants});
  r.add({"POST", "/assistants/count", AuthMode::kTenant, s, count_assistants});
  r.add({"GET", "/assistants/{assistant_id}", AuthMode::kTenant, s, get_assistant});
  r.add({"PATCH", "/assistants/{assistant_id}", AuthMode::kTenant, s, patch_assistant});
  r.add({"DELETE", "/assistants/{assistant_id}", AuthMode::kTenant, s, delete_assistant});
  r.add({"POST", "/assistants/{assistant_id}/versions", AuthMode::kTenant, s, assistant_versions});
  r.add({"POST", "/assistants/{assistant_id}/latest", AuthMode::kTenant, s, assistant_latest});
  r.add({"GET", "/assistants/{assistant_id}/graph", AuthMode::kTenant, s, assistant_graph});
  r.add({"GET", "/assistants/{assistant_id}/schemas", AuthMode::kTenant, s, assistant_schemas});
  r.add({"GET", "/assistants/{assistant_id}/subgraphs", AuthMode::kTenant, s, subgraphs_all});
  r.add({"GET", "/assistants/{assistant_id}/subgraphs/{namespace}", AuthMode::kTenant, s, subgraphs_ns});
}

}  // namespace ap::gateway
