// Platform API: tenants (admin), keys (admin for any tenant; a tenant for its own).
// Each handler: parse -> authorize (done by the route's mode and scope) -> one call -> render.
#include "auth/authenticator.h"
#include "auth/records.h"
#include "gateway/handlers/json_body.h"
#include "gateway/routes.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

json tenant_json(const auth::TenantRecord& t) {
  return {{"tenant_id", t.id.to_string()}, {"name", t.name}, {"created_at", t.created_at}};
}

json key_json(const auth::KeyRecord& k) {
  json j = {{"key_id", k.id.to_string()},       {"tenant_id", k.tenant.to_string()},
            {"prefix", k.prefix},               {"name", k.name},
            {"scopes", auth::scope_names(k.scopes)}, {"created_by", k.created_by},
            {"created_at", k.created_at},       {"last_used_at", nullptr},
            {"revoked_at", nullptr}};
  if (k.last_used_at) j["last_used_at"] = *k.last_used_at;
  if (k.revoked_at) j["revoked_at"] = *k.revoked_at;
  return j;
}

template <class T, class F>
json list_json(const std::vector<T>& items, F&& render, int limit) {
  json arr = json::array();
  for (const auto& i : items) arr.push_back(render(i));
  json j = {{"items", arr}, {"next_after", nullptr}};
  if (static_cast<int>(items.size()) == limit) j["next_after"] = items.back().id.to_string();
  return j;
}

// {name, scopes?}: scopes default to the creator's own (all, for the admin).
Task create_key_for(RequestContext& ctx, const TenantId& tenant) {
  AP_CO_ASSIGN_OR_RETURN(json body, object_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(std::string name, required_string(body, "name"));
  AP_CO_ASSIGN_OR_RETURN(auto scope_list, optional_string_list(body, "scopes"));
  uint32_t scopes = ctx.principal.is_admin() ? auth::kAllScopes : ctx.principal.scopes;
  if (scope_list) {
    AP_CO_ASSIGN_OR_RETURN(scopes, auth::parse_scopes(*scope_list));
  }
  AP_CO_ASSIGN_OR_RETURN(auto created, co_await auth::create_key(ctx.pool, ctx.principal, tenant,
                                                                 std::move(name), scopes));
  json j = key_json(created.record);
  // Secret: the key is returned once, here, and stored only as its hash.
  j["key"] = std::string(created.key.reveal());
  co_return Response::json(201, dump(j));
}

Task post_tenant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(json body, object_body(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(std::string name, required_string(body, "name"));
  AP_CO_ASSIGN_OR_RETURN(auto t, co_await auth::create_tenant(ctx.pool, std::move(name)));
  co_return Response::json(201, dump(tenant_json(t)));
}

Task list_tenants(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto page, page_params(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(auto items,
                         co_await auth::list_tenants(ctx.pool, {page.after, page.limit}));
  co_return Response::json(200, dump(list_json(items, tenant_json, page.limit)));
}

Task get_tenant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto id, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_ASSIGN_OR_RETURN(auto t, co_await auth::get_tenant(ctx.pool, id));
  co_return Response::json(200, dump(tenant_json(t)));
}

Task admin_create_key(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto id, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  co_return co_await create_key_for(ctx, id);
}

Task admin_list_keys(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto id, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_ASSIGN_OR_RETURN(auto page, page_params(ctx.request));
  AP_CO_RETURN_IF_ERROR(co_await auth::get_tenant(ctx.pool, id));
  AP_CO_ASSIGN_OR_RETURN(auto items,
                         co_await auth::list_keys(ctx.pool, id, {page.after, page.limit}));
  co_return Response::json(200, dump(list_json(items, key_json, page.limit)));
}

Task admin_revoke_key(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto tenant, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_ASSIGN_OR_RETURN(auto key, path_id<KeyId>(ctx.param("key_id"), "key"));
  AP_CO_ASSIGN_OR_RETURN(auto k, co_await auth::revoke_key(ctx.pool, ctx.authn, tenant, key));
  co_return Response::json(200, dump(key_json(k)));
}

Task create_own_key(RequestContext& ctx) { co_return co_await create_key_for(ctx, ctx.tenant()); }

Task list_own_keys(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto page, page_params(ctx.request));
  AP_CO_ASSIGN_OR_RETURN(auto items, co_await auth::list_keys(ctx.pool, ctx.tenant(),
                                                              {page.after, page.limit}));
  co_return Response::json(200, dump(list_json(items, key_json, page.limit)));
}

Task get_own_key(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto key, path_id<KeyId>(ctx.param("key_id"), "key"));
  AP_CO_ASSIGN_OR_RETURN(auto k, co_await auth::get_key(ctx.pool, ctx.tenant(), key));
  co_return Response::json(200, dump(key_json(k)));
}

Task revoke_own_key(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto key, path_id<KeyId>(ctx.param("key_id"), "key"));
  AP_CO_ASSIGN_OR_RETURN(auto k, co_await auth::revoke_key(ctx.pool, ctx.authn, ctx.tenant(), key));
  co_return Response::json(200, dump(key_json(k)));
}

}  // namespace

void add_platform_routes(Router& r) {
  using auth::kScopeKeys;
  r.add({"POST", "/v1/tenants", AuthMode::kAdmin, 0, post_tenant});
  r.add({"GET", "/v1/tenants", AuthMode::kAdmin, 0, list_tenants});
  r.add({"GET", "/v1/tenants/{tenant_id}", AuthMode::kAdmin, 0, get_tenant});
  r.add({"POST", "/v1/tenants/{tenant_id}/keys", AuthMode::kAdmin, 0, admin_create_key});
  r.add({"GET", "/v1/tenants/{tenant_id}/keys", AuthMode::kAdmin, 0, admin_list_keys});
  r.add({"DELETE", "/v1/tenants/{tenant_id}/keys/{key_id}", AuthMode::kAdmin, 0,
         admin_revoke_key});
  r.add({"POST", "/v1/keys", AuthMode::kTenant, kScopeKeys, create_own_key});
  r.add({"GET", "/v1/keys", AuthMode::kTenant, kScopeKeys, list_own_keys});
  r.add({"GET", "/v1/keys/{key_id}", AuthMode::kTenant, kScopeKeys, get_own_key});
  r.add({"DELETE", "/v1/keys/{key_id}", AuthMode::kTenant, kScopeKeys, revoke_own_key});
}

}  // namespace ap::gateway
