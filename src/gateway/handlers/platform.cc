// Platform API: tenants (admin), keys (admin for any tenant; a tenant for its own).
// Each handler: parse -> authorize (done by the route's mode and scope) -> one call -> render.
#include "audit/seal.h"
#include "auth/authenticator.h"
#include "auth/records.h"
#include "gateway/handlers/json_body.h"
#include "gateway/routes.h"
#include "vault/credentials.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;

json tenant_json(const auth::TenantRecord& t) {
  json j = {{"tenant_id", t.id.to_string()}, {"name", t.name}, {"created_at", t.created_at},
            {"status", t.deleted() ? "deleted" : "active"}};
  if (t.deleted()) {
    j["deleted_at"] = *t.deleted_at;
    j["audit_retain_until"] = *t.audit_retain_until;
  }
  return j;
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
  json j = tenant_json(t);
  if (t.deleted()) {
    AP_CO_ASSIGN_OR_RETURN(auto seal, co_await audit::find_seal(ctx.pool, id));
    j["audit_seal"] = seal ? json::parse(seal->to_json()) : json(nullptr);
  }
  co_return Response::json(200, dump(j));
}

// Deletes a tenant (docs/database.md, "Deleting a tenant"): its keys and tokens stop at once,
// a final "tenant.deleted" entry closes its audit chain, the chain is sealed by a signed
// checkpoint and kept for ?retain_days=N (default: the server's retention), and every other
// row of the tenant is deleted. Idempotent: repeating it finishes an interrupted deletion.
Task delete_tenant(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto id, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  int64_t days = ctx.services.audit_retention_days;
  if (auto d = ctx.request.query_param("retain_days")) {
    try {
      size_t used = 0;
      days = std::stoll(*d, &used);
      if (used != d->size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      days = -1;
    }
    if (days < 0 || days > 36500) co_return Error::invalid_argument("retain_days must be an integer 0..36500");
  }
  if (!ctx.services.audit || !ctx.services.signers || ctx.services.signers->empty())
    co_return Error::unavailable("deleting a tenant seals its audit chain: start the server with a master key");
  AP_CO_RETURN_IF_ERROR(co_await auth::get_tenant(ctx.pool, id));
  auto retain_until = Clock::system().now() + std::chrono::hours(24) * days;
  AP_CO_ASSIGN_OR_RETURN(auto t, co_await auth::mark_tenant_deleted(ctx.pool, id, retain_until));
  ctx.authn.invalidate_tenant(id);
  if (ctx.services.credentials) ctx.services.credentials->forget_tenant(ctx.pool, id);
  AP_CO_ASSIGN_OR_RETURN(auto seal, co_await audit::find_seal(ctx.pool, id));
  if (!seal) {
    audit::Context actx{id, ctx.principal.actor(), ctx.request_id, &ctx.pool};
    audit::Event last{"tenant.deleted", audit::Level::kDecision,
                      json{{"name", t.name}, {"audit_retain_until", *t.audit_retain_until}}};
    AP_CO_RETURN_IF_ERROR(co_await ctx.services.audit->append(actx, std::move(last)));
    AP_CO_ASSIGN_OR_RETURN(auto sealed, co_await audit::seal_chain(ctx.pool, id, ctx.services.signers->back()));
    seal = std::move(sealed);
  }
  AP_CO_ASSIGN_OR_RETURN(int64_t rows, co_await auth::delete_tenant_data(ctx.pool, id));
  json j = tenant_json(t);
  j["deleted_rows"] = rows;
  j["audit_seal"] = json::parse(seal->to_json());
  co_return Response::json(200, dump(j));
}

Task admin_create_key(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto id, path_id<TenantId>(ctx.param("tenant_id"), "tenant"));
  AP_CO_ASSIGN_OR_RETURN(auto t, co_await auth::get_tenant(ctx.pool, id));
  if (t.deleted()) co_return Error::failed_precondition("the tenant is deleted");
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
  r.add({"DELETE", "/v1/tenants/{tenant_id}", AuthMode::kAdmin, 0, delete_tenant});
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
