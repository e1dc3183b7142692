// Tenants and API keys: the platform's own records, created and read through the database under
// row-level security. Thread-safe: stateless functions; each call runs on its pool's executor.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "auth/principal.h"
#include "common/secret.h"
#include "store/pool.h"

namespace ap::auth {

class Authenticator;

struct TenantRecord {
  TenantId id;
  std::string name;
  std::string created_at;  // RFC 3339
  std::optional<std::string> deleted_at;          // set once deleted
  std::optional<std::string> audit_retain_until;  // its audit chain is kept until then
  bool deleted() const { return deleted_at.has_value(); }
};

struct PurgeReport {
  int64_t swept_rows = 0;   // rows that reached deleted tenants after their deletion
  int purged_tenants = 0;   // tenants whose retention had passed: chain and row removed
  int64_t purged_events = 0;
};

struct KeyRecord {
  KeyId id;
  TenantId tenant;
  std::string prefix;  // visible part, e.g. "ap_Ab3dEf9h"
  std::string name;
  uint32_t scopes = 0;
  std::string created_by;  // "admin" or the creating key's id
  std::string created_at;
  std::optional<std::string> last_used_at;  // coarse: written in batches
  std::optional<std::string> revoked_at;
};

struct NewKey {
  KeyRecord record;
  SecretString key;  // Secret: shown once to the creator, never stored
};

struct Page {
  std::optional<Uuid> after;  // keyset: ids greater than this
  int limit = 100;            // 1..1000
};

// Platform admin only (the caller checks). InvalidArgument for a bad name.
store::Task<TenantRecord> create_tenant(store::Pool& pool, std::string name);
store::Task<std::vector<TenantRecord>> list_tenants(store::Pool& pool, const Page& page);
// Reads the tenant's row under its own tenant context. NotFound if absent.
store::Task<TenantRecord> get_tenant(store::Pool& pool, const TenantId& id);

// Deleting a tenant (docs/database.md): marks it deleted, which stops its keys and tokens at
// once (NotFound if absent; a second call keeps the first times) ...
store::Task<TenantRecord> mark_tenant_deleted(store::Pool& pool, const TenantId& id,
                                              std::chrono::system_clock::time_point retain_until);
// ... then deletes its rows from every tenant table but the audit chain (FailedPrecondition
// unless marked deleted); returns the number of rows deleted.
store::Task<int64_t> delete_tenant_data(store::Pool& pool, const TenantId& id);
// The periodic sweep: deletes data that reached deleted tenants late and removes the chains and
// rows of tenants whose retention has passed. One caller at a time across replicas.
store::Task<PurgeReport> purge_tenants(store::Pool& pool);

// Creates a key for `tenant`. PermissionDenied if `creator` is a key that lacks one of
// `scopes`; NotFound if the tenant does not exist.
store::Task<NewKey> create_key(store::Pool& pool, const Principal& creator,
                               const TenantId& tenant, std::string name, uint32_t scopes);
store::Task<std::vector<KeyRecord>> list_keys(store::Pool& pool, const TenantId& tenant,
                                              const Page& page);
// NotFound if the key is not the tenant's (another tenant's key is NotFound too).
store::Task<KeyRecord> get_key(store::Pool& pool, const TenantId& tenant, const KeyId& key);
// Revokes the key (idempotent) and drops it from this replica's cache; other replicas hear of
// it through NOTIFY. NotFound as for get_key.
store::Task<KeyRecord> revoke_key(store::Pool& pool, Authenticator& authn, const TenantId& tenant,
                                  const KeyId& key);

}  // namespace ap::auth
