// LangGraph agent API: the store (/store/items, /store/items/search, /store/namespaces).
#include "gateway/handlers/agent_context.h"
#include "gateway/routes.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

Task put_item(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_RETURN_IF_ERROR(co_await p->store.put(audit_context(ctx), body));
  co_return no_content();
}
Task get_item(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto ns = ctx.request.query_param("namespace");
  auto key = ctx.request.query_param("key");
  if (!ns || !key) co_return Error::invalid_argument("'namespace' and 'key' are required");
  auto refresh = ctx.request.query_param("refresh_ttl");
  AP_CO_ASSIGN_OR_RETURN(json item, co_await p->store.get(audit_context(ctx), *ns, *key, refresh && *refresh == "true"));
  co_return Response::json(200, dump(item));
}
Task delete_item(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_RETURN_IF_ERROR(co_await p->store.remove(audit_context(ctx), body));
  co_return no_content();
}
Task search_items(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json r, co_await p->store.search(audit_context(ctx), body));
  co_return Response::json(200, dump(r));
}
Task list_namespaces(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(json r, co_await p->store.namespaces(audit_context(ctx), body));
  co_return Response::json(200, dump(r));
}

}  // namespace

void add_store_routes(Router& r) {
  const uint32_t s = auth::kScopeAgents;
  r.add({"PUT", "/store/items", AuthMode::kTenant, s, put_item});
  r.add({"GET", "/store/items", AuthMode::kTenant, s, get_item});
  r.add({"DELETE", "/store/items", AuthMode::kTenant, s, delete_item});
  r.add({"POST", "/store/items/search", AuthMode::kTenant, s, search_items});
  r.add({"POST", "/store/namespaces", AuthMode::kTenant, s, list_namespaces});
}

}  // namespace ap::gateway
