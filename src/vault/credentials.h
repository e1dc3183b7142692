// Tenant credentials: write-only secrets (provider keys, HTTP headers, other secrets) stored as
// Fernet tokens under the tenant's key. Nothing returns a value except use(), which the server
// calls when a model or tool call needs it: use() writes a "credential.use" audit event first
// and decrypts only once that write is committed (fail closed). Decrypted values are cached for
// `cache_ttl`; uses served from the cache are counted per window and written to the audit log
// in batches as "credential.use_count" events (when the window's entry expires or is dropped,
// and by flush_uses(), which the server calls every few seconds).
// Runs on a shard's executor (coroutines on its store::Pool); thread-safe. Coroutines take
// their arguments by value: a caller may pass temporaries and await later.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "audit/audit_log.h"
#include "common/clock.h"
#include "common/secret.h"
#include "vault/keyring.h"

namespace ap::store {
class SyncConn;
}

namespace ap::vault {

template <class T>
using Task = boost::asio::awaitable<Result<T>>;
using Json = nlohmann::json;

struct CredentialInfo {  // what the API shows: never the value
  std::string name;
  int version = 0;
  std::string kind;
  Json metadata = Json::object();
  std::vector<std::string> allowed_hosts;
  std::string created_by;
  std::string created_at;
  int key_version = 0;
  Json to_json() const;
};

struct PutCredential {
  std::string name;   // [A-Za-z0-9][A-Za-z0-9._-]{0,127}
  SecretString value;  // 1 byte .. 64 KiB
  std::string kind;   // provider_key | http_header | secret
  Json metadata = Json::object();  // an object, at most 16 KiB as JSON
  // Where the value may be sent: host names and "*.example.com" wildcards (sub-domains only),
  // at most 32. Empty: only by model routes (see Destination).
  std::vector<std::string> allowed_hosts;
};

// Where use() is about to send a value. A credential that lists allowed_hosts goes to those
// hosts only. One that lists none may be used by model routes (whose base URL is set with the
// credentials scope) but not by tools: a tool's URL comes from an agent's spec or config, which
// the agents scope edits, and that scope alone must not be able to send a tenant's secret to a
// host of its choosing.
struct Destination {
  std::string host;   // lower-case; empty: not sent anywhere by us (no check)
  bool tool = false;  // an HTTP tool of an agent (else a model route)
};

class CredentialStore {
 public:
  CredentialStore(const Keyring& keys, audit::AuditLog& audit,
                  std::chrono::seconds cache_ttl = std::chrono::seconds(60), Clock& clock = Clock::system());

  // A new version of the credential (the first is version 1). InvalidArgument names the field.
  Task<CredentialInfo> put(audit::Context ctx, PutCredential c);
  Task<std::vector<CredentialInfo>> list(audit::Context ctx);
  Task<CredentialInfo> get(audit::Context ctx, std::string name);  // latest version
  Task<void> remove(audit::Context ctx, std::string name);  // every version
  // The latest value, for the server's own use (never for an API response), about to be sent to
  // `to`: PermissionDenied (audited as "credential.refused", nothing decrypted) when the
  // credential may not go there.
  Task<SecretString> use(audit::Context ctx, std::string name, std::string purpose, Destination to = {});

  // Writes the counts of use windows that are at least `max_age` old (0: all) to the audit log.
  // Call on the executor of `pool` (records are queued on that shard's audit batcher).
  void flush_uses(store::Pool& pool, std::chrono::seconds max_age);
  // Drops a tenant's cached values, writing their counts first (the tenant is being deleted).
  // On the executor of `pool`, as flush_uses.
  void forget_tenant(store::Pool& pool, const TenantId& tenant);

  static Status validate_name(const std::string& name);
  // Whether `host` (lower-case) is one of `allowed` (exact names and "*.suffix" wildcards).
  static bool host_allowed(const std::vector<std::string>& allowed, std::string_view host);

 private:
  // Uses served from the cache since the window opened: counted, with the first request ids.
  struct UseWindow {
    uint64_t count = 0;
    std::chrono::system_clock::time_point start;
    std::vector<std::string> request_ids;
    bool more_requests = false;
  };
  struct Cached {
    TenantId tenant;
    std::string name;
    SecretString value;
    int version = 0;
    std::vector<std::string> allowed_hosts;
    std::chrono::steady_clock::time_point expires;
    UseWindow window;
  };
  static constexpr size_t kMaxRequestIds = 20;
  void forget(audit::Context ctx, std::string name);
  // Queues the window's count on `pool`'s audit batcher (nothing if empty) and resets it.
  void record_window(store::Pool& pool, Cached& entry);
  // OK, or PermissionDenied (and a "credential.refused" audit record) when `to` is not allowed.
  Status check_destination(const audit::Context& ctx, const std::string& name,
                           const std::vector<std::string>& allowed, const Destination& to, const std::string& purpose);

  const Keyring& keys_;
  audit::AuditLog& audit_;
  const std::chrono::seconds ttl_;
  Clock& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Cached> cache_;  // tenant|name
};

// Re-encrypts every credential not under the current master key (keeping each token's
// timestamp, as MultiFernet.rotate does), tenant by tenant (or only `tenant`), each tenant in
// its own transaction. A token that does not decrypt is left as it is and reported.
// Blocking (the CLI's `vault rewrap`).
struct RewrapReport {
  int64_t rewrapped = 0;
  std::vector<std::string> unreadable;  // "tenant/name@version"
};
Result<RewrapReport> rewrap_all(store::SyncConn& db, const Keyring& keys, const std::string& tenant = "");
// How many credentials still use master-key `version` (all tenants). Blocking.
Result<int64_t> count_under_version(store::SyncConn& db, int version);

}  // namespace ap::vault
