#include "auth/records.h"

#include "auth/api_key.h"
#include "auth/authenticator.h"
#include "store/tx.h"

namespace ap::auth {
namespace {

constexpr std::string_view kKeyColumns =
    "id, tenant_id, prefix, name, scopes, created_by, to_json(created_at)#>>'{}', "
    "to_json(last_used_at)#>>'{}', to_json(revoked_at)#>>'{}'";

std::string to_text_array(uint32_t scopes) {
  std::string out = "{";
  for (const auto& n : scope_names(scopes)) {
    if (out.size() > 1) out += ',';
    out += n;
  }
  return out + "}";
}

std::optional<std::string> opt(const store::Rows& r, int row, int col) {
  if (r.is_null(row, col)) return std::nullopt;
  return std::string(r.get(row, col));
}

KeyRecord key_from_row(const store::Rows& r, int i) {
  KeyRecord k;
  k.id = *KeyId::parse(r.get(i, 0));
  k.tenant = *TenantId::parse(r.get(i, 1));
  k.prefix = r.get(i, 2);
  k.name = r.get(i, 3);
  auto scopes = parse_scopes(store::parse_text_array(r.get(i, 4)));
  k.scopes = scopes ? *scopes : 0;
  k.created_by = r.get(i, 5);
  k.created_at = r.get(i, 6);
  k.last_used_at = opt(r, i, 7);
  k.revoked_at = opt(r, i, 8);
  return k;
}

TenantRecord tenant_from_row(const store::Rows& r, int i) {
  return {*TenantId::parse(r.get(i, 0)), std::string(r.get(i, 1)), std::string(r.get(i, 2)), opt(r, i, 3),
          opt(r, i, 4)};
}

Status check_name(const std::string& name) {
  if (name.empty() || name.size() > 200)
    return Error::invalid_argument("name must be 1 to 200 characters");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return Error::invalid_argument("name has control characters");
  return ok_status();
}

std::string sql_with_columns(std::string_view head, std::string_view tail) {
  std::string s(head);
  s += kKeyColumns;
  s += tail;
  return s;
}

constexpr std::string_view kCreateTenant =
    "SELECT id, name, to_json(created_at)#>>'{}', NULL, NULL FROM admin_create_tenant($1, $2)";
constexpr std::string_view kListTenants =
    "SELECT id, name, to_json(created_at)#>>'{}', to_json(deleted_at)#>>'{}', "
    "to_json(audit_retain_until)#>>'{}' FROM admin_list_tenants($1, $2)";
constexpr std::string_view kGetTenant =
    "SELECT id, name, to_json(created_at)#>>'{}', to_json(deleted_at)#>>'{}', "
    "to_json(audit_retain_until)#>>'{}' FROM tenants WHERE id = $1";

}  // namespace

store::Task<TenantRecord> create_tenant(store::Pool& pool, std::string name) {
  AP_CO_RETURN_IF_ERROR(check_name(name));
  auto id = TenantId(Uuid::v7(Clock::system().unix_ms()));
  AP_CO_ASSIGN_OR_RETURN(
      auto rows, co_await store::platform_query(
                     pool, kCreateTenant, store::params(id.to_string(), name)));
  co_return tenant_from_row(rows, 0);
}

store::Task<std::vector<TenantRecord>> list_tenants(store::Pool& pool, const Page& page) {
  store::Param after;
  if (page.after) after = page.after->to_string();
  AP_CO_ASSIGN_OR_RETURN(
      auto rows, co_await store::platform_query(
                     pool, kListTenants, store::params(after, std::to_string(page.limit))));
  std::vector<TenantRecord> out;
  for (int i = 0; i < rows.size(); ++i) out.push_back(tenant_from_row(rows, i));
  co_return out;
}

store::Task<TenantRecord> get_tenant(store::Pool& pool, const TenantId& id) {
  // Isolation: read under the tenant's own context: the policy shows only its own row.
  AP_CO_ASSIGN_OR_RETURN(
      auto rows, co_await store::tenant_query(
                     pool, id, kGetTenant, store::params(id.to_string())));
  if (rows.empty()) co_return Error::not_found("tenant not found");
  co_return tenant_from_row(rows, 0);
}

store::Task<TenantRecord> mark_tenant_deleted(store::Pool& pool, const TenantId& id,
                                              std::chrono::system_clock::time_point retain_until) {
  AP_CO_ASSIGN_OR_RETURN(
      auto rows, co_await store::platform_query(pool, "SELECT 1 FROM admin_mark_tenant_deleted($1, $2)",
                                                store::params(id.to_string(), format_rfc3339(retain_until))));
  if (rows.empty()) co_return Error::not_found("tenant not found");
  co_return co_await get_tenant(pool, id);
}

store::Task<int64_t> delete_tenant_data(store::Pool& pool, const TenantId& id) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::platform_query(pool, "SELECT tenant_delete_data($1)",
                                                                   store::params(id.to_string())));
  co_return std::stoll(std::string(rows.get(0, 0)));
}

store::Task<PurgeReport> purge_tenants(store::Pool& pool) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::platform_query(pool, "SELECT * FROM admin_purge_tenants()"));
  co_return PurgeReport{std::stoll(std::string(rows.get(0, 0))), std::stoi(std::string(rows.get(0, 1))),
                        std::stoll(std::string(rows.get(0, 2)))};
}

store::Task<NewKey> create_key(store::Pool& pool, const Principal& creator,
                               const TenantId& tenant, std::string name, uint32_t scopes) {
  AP_CO_RETURN_IF_ERROR(check_name(name));
  if (scopes == 0) co_return Error::invalid_argument("a key needs at least one scope");
  if (!creator.is_admin() && (scopes & ~creator.scopes))
    co_return Error::permission_denied("a key can only create keys with a subset of its scopes");
  NewKey out;
  out.key = generate_api_key();
  auto hash = key_hash(out.key.reveal());
  auto id = KeyId(Uuid::v7(Clock::system().unix_ms()));
  static const std::string kInsert = sql_with_columns(
      "INSERT INTO api_keys (tenant_id, id, hash, prefix, name, scopes, created_by) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
      "");
  auto rows = co_await store::tenant_query(
      pool, tenant, kInsert, store::params(tenant.to_string(), id.to_string(), "\\x" + hex_encode(hash.data(), hash.size()),
       visible_prefix(out.key.reveal()), name, to_text_array(scopes), creator.actor()));
  if (!rows) {
    if (rows.error().code == Code::kFailedPrecondition) co_return Error::not_found("tenant not found");
    co_return rows.error();
  }
  out.record = key_from_row(*rows, 0);
  co_return out;
}

store::Task<std::vector<KeyRecord>> list_keys(store::Pool& pool, const TenantId& tenant,
                                              const Page& page) {
  static const std::string kList = sql_with_columns(
      "SELECT ", " FROM api_keys WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) "
                 "ORDER BY id LIMIT $3");
  store::Param after;
  if (page.after) after = page.after->to_string();
  AP_CO_ASSIGN_OR_RETURN(auto rows,
                         co_await store::tenant_query(pool, tenant, kList, store::params(tenant.to_string(), after,
                                                       std::to_string(page.limit))));
  std::vector<KeyRecord> out;
  for (int i = 0; i < rows.size(); ++i) out.push_back(key_from_row(rows, i));
  co_return out;
}

store::Task<KeyRecord> get_key(store::Pool& pool, const TenantId& tenant, const KeyId& key) {
  static const std::string kGet =
      sql_with_columns("SELECT ", " FROM api_keys WHERE tenant_id = $1 AND id = $2");
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        pool, tenant, kGet, store::params(tenant.to_string(), key.to_string())));
  if (rows.empty()) co_return Error::not_found("key not found");
  co_return key_from_row(rows, 0);
}

store::Task<KeyRecord> revoke_key(store::Pool& pool, Authenticator& authn, const TenantId& tenant,
                                  const KeyId& key) {
  // coalesce keeps the first revocation time: revoking twice changes nothing.
  static const std::string kRevoke = sql_with_columns(
      "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
      "WHERE tenant_id = $1 AND id = $2 RETURNING ",
      "");
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        pool, tenant, kRevoke, store::params(tenant.to_string(), key.to_string())));
  if (rows.empty()) co_return Error::not_found("key not found");
  authn.invalidate(key);
  co_return key_from_row(rows, 0);
}

}  // namespace ap::auth
