#include "vault/credentials.h"

#include <algorithm>
#include <regex>

#include "common/text.h"
#include "store/sync_conn.h"
#include "store/tx.h"

namespace ap::vault {
namespace {

constexpr size_t kMaxValue = 64 * 1024;
constexpr size_t kMaxMetadata = 16 * 1024;
constexpr const char* kColumns =
    "name, version, kind, metadata, created_by, to_json(created_at)#>>'{}', key_version, allowed_hosts";
constexpr size_t kMaxAllowedHosts = 32;

std::vector<std::string> hosts_from(std::string_view text) {
  std::vector<std::string> out;
  Json j = Json::parse(text, nullptr, false);
  if (j.is_array())
    for (const auto& h : j)
      if (h.is_string()) out.push_back(h.get<std::string>());
  return out;
}

CredentialInfo info_from(const store::Rows& r, int i) {
  CredentialInfo c;
  c.name = r.get(i, 0);
  c.version = std::stoi(std::string(r.get(i, 1)));
  c.kind = r.get(i, 2);
  c.metadata = Json::parse(r.get(i, 3), nullptr, false);
  c.created_by = r.get(i, 4);
  c.created_at = r.get(i, 5);
  c.key_version = std::stoi(std::string(r.get(i, 6)));
  c.allowed_hosts = hosts_from(r.get(i, 7));
  return c;
}

uint64_t unix_now(Clock& clock) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count());
}

}  // namespace

Json CredentialInfo::to_json() const {
  return Json{{"name", name},
              {"version", version},
              {"kind", kind},
              {"metadata", metadata},
              {"allowed_hosts", allowed_hosts},
              {"created_by", created_by},
              {"created_at", created_at}};
}

CredentialStore::CredentialStore(const Keyring& keys, audit::AuditLog& audit, std::chrono::seconds cache_ttl,
                                 Clock& clock)
    : keys_(keys), audit_(audit), ttl_(cache_ttl), clock_(clock) {}

Status CredentialStore::validate_name(const std::string& name) {
  static const std::regex re("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  if (!std::regex_match(name, re))
    return Error::invalid_argument("credential name must be 1-128 of A-Z a-z 0-9 . _ - (starting with a letter or digit)");
  return ok_status();
}

bool CredentialStore::host_allowed(const std::vector<std::string>& allowed, std::string_view host) {
  for (const auto& a : allowed) {
    if (a.starts_with("*.")) {
      const std::string_view suffix = std::string_view(a).substr(1);  // ".example.com"
      if (host.size() > suffix.size() && host.ends_with(suffix)) return true;
    } else if (host == a) {
      return true;
    }
  }
  return false;
}

Status CredentialStore::check_destination(const audit::Context& ctx, const std::string& name,
                                          const std::vector<std::string>& allowed, const Destination& to,
                                          const std::string& purpose) {
  if (to.host.empty()) return ok_status();
  std::string why;
  if (allowed.empty()) {
    if (!to.tool) return ok_status();
    why = "credential '" + name + "' lists no allowed_hosts, so tools may not send it; add '" + to.host +
          "' to its allowed_hosts (PUT /v1/credentials/" + name + ")";
  } else if (!host_allowed(allowed, to.host)) {
    why = "credential '" + name + "' may not be sent to '" + to.host + "': it is not in the credential's allowed_hosts";
  } else {
    return ok_status();
  }
  audit_.record(ctx, audit::Event{"credential.refused", audit::Level::kReplay,
                                  Json{{"name", name}, {"host", to.host}, {"tool", to.tool}, {"purpose", purpose}}});
  return Error::permission_denied(why);
}

void CredentialStore::record_window(store::Pool& pool, Cached& entry) {
  UseWindow& w = entry.window;
  if (w.count > 0) {
    Json payload{{"name", entry.name},
                 {"version", entry.version},
                 {"count", w.count},
                 {"window_start", format_rfc3339(w.start)},
                 {"window_end", format_rfc3339(clock_.now())},
                 {"request_ids", w.request_ids},
                 {"request_ids_truncated", w.more_requests}};
    audit_.record(audit::Context{entry.tenant, "system", "", &pool},
                  audit::Event{"credential.use_count", audit::Level::kReplay, std::move(payload)});
  }
  w = UseWindow{0, clock_.now(), {}, false};
}

void CredentialStore::forget(audit::Context ctx, std::string name) {
  std::lock_guard lock(mu_);
  if (auto it = cache_.find(ctx.tenant.to_string() + '|' + name); it != cache_.end()) {
    record_window(*ctx.pool, it->second);
    cache_.erase(it);
  }
}

void CredentialStore::flush_uses(store::Pool& pool, std::chrono::seconds max_age) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  for (auto it = cache_.begin(); it != cache_.end();) {
    Cached& c = it->second;
    if (c.window.count > 0 && now - c.window.start >= max_age) record_window(pool, c);
    // Expired entries whose counts are written go now rather than at their next use.
    if (c.window.count == 0 && clock_.steady_now() >= c.expires)
      it = cache_.erase(it);
    else
      ++it;
  }
}

void CredentialStore::forget_tenant(store::Pool& pool, const TenantId& tenant) {
  std::lock_guard lock(mu_);
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (it->second.tenant == tenant) {
      record_window(pool, it->second);
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
}

Task<CredentialInfo> CredentialStore::put(audit::Context ctx, PutCredential c) {
  AP_CO_RETURN_IF_ERROR(validate_name(c.name));
  if (c.kind != "provider_key" && c.kind != "http_header" && c.kind != "secret")
    co_return Error::invalid_argument("kind must be provider_key, http_header or secret");
  if (c.value.empty() || c.value.reveal().size() > kMaxValue)
    co_return Error::invalid_argument("value must be a non-empty string of at most 64 KiB");
  if (!c.metadata.is_object()) co_return Error::invalid_argument("metadata must be an object");
  std::string metadata = c.metadata.dump();
  if (metadata.size() > kMaxMetadata) co_return Error::invalid_argument("metadata must be at most 16 KiB of JSON");
  if (c.allowed_hosts.size() > kMaxAllowedHosts) co_return Error::invalid_argument("allowed_hosts: at most 32 hosts");
  static const std::regex host_re(R"((\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|[0-9a-f:]*:[0-9a-f:.]*)");
  for (auto& h : c.allowed_hosts) {
    ascii_lower_in_place(h);
    if (h.size() > 253 || !std::regex_match(h, host_re))
      co_return Error::invalid_argument("allowed_hosts: '" + h +
                                        "' is not a host name, a '*.example.com' wildcard or an IP address (no scheme, port or path)");
  }
  const std::string allowed_hosts = Json(c.allowed_hosts).dump();
  const int version = keys_.current();
  AP_CO_ASSIGN_OR_RETURN(auto key, keys_.tenant_key(ctx.tenant, version));
  std::string token = key.encrypt(c.value.reveal(), unix_now(clock_));
  static const std::string sql = std::string(
      "INSERT INTO credentials (tenant_id, name, version, kind, key_version, token, metadata, created_by, allowed_hosts) "
      "SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6::jsonb, $7, $8::jsonb FROM credentials "
      "WHERE tenant_id = $1 AND name = $2 RETURNING ") + kColumns;
  Result<store::Rows> r = Error::internal("not run");
  for (int attempt = 0; attempt < 3; ++attempt) {  // two writers of one name: the loser retries
    r = co_await store::tenant_query(*ctx.pool, ctx.tenant, sql,
                                     store::params(ctx.tenant.to_string(), c.name, c.kind, std::to_string(version),
                                                   token, metadata, ctx.actor, allowed_hosts));
    if (r || r.error().code != Code::kAlreadyExists) break;
  }
  if (!r) co_return r.error();
  forget(ctx, c.name);
  CredentialInfo info = info_from(*r, 0);
  audit::Event e{"credential.put", audit::Level::kReplay,
                 Json{{"name", info.name}, {"version", info.version}, {"kind", info.kind}, {"allowed_hosts", info.allowed_hosts}}};
  audit_.record(ctx, std::move(e));
  co_return info;
}

Task<std::vector<CredentialInfo>> CredentialStore::list(audit::Context ctx) {
  static const std::string sql = std::string("SELECT DISTINCT ON (name) ") + kColumns +
                                 " FROM credentials WHERE tenant_id = $1 ORDER BY name, version DESC";
  AP_CO_ASSIGN_OR_RETURN(auto r, co_await store::tenant_query(*ctx.pool, ctx.tenant, sql,
                                                              store::params(ctx.tenant.to_string())));
  std::vector<CredentialInfo> out;
  for (int i = 0; i < r.size(); ++i) out.push_back(info_from(r, i));
  co_return out;
}

Task<CredentialInfo> CredentialStore::get(audit::Context ctx, std::string name) {
  if (!validate_name(name)) co_return Error::not_found("credential not found");
  static const std::string sql = std::string("SELECT ") + kColumns +
                                 " FROM credentials WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC LIMIT 1";
  AP_CO_ASSIGN_OR_RETURN(auto r, co_await store::tenant_query(*ctx.pool, ctx.tenant, sql,
                                                              store::params(ctx.tenant.to_string(), name)));
  if (r.empty()) co_return Error::not_found("credential not found");
  co_return info_from(r, 0);
}

Task<void> CredentialStore::remove(audit::Context ctx, std::string name) {
  if (!validate_name(name)) co_return Error::not_found("credential not found");
  AP_CO_ASSIGN_OR_RETURN(auto r, co_await store::tenant_query(
                                     *ctx.pool, ctx.tenant, "DELETE FROM credentials WHERE tenant_id = $1 AND name = $2",
                                     store::params(ctx.tenant.to_string(), name)));
  if (r.affected() == 0) co_return Error::not_found("credential not found");
  forget(ctx, name);
  audit_.record(ctx, audit::Event{"credential.delete", audit::Level::kReplay, Json{{"name", name}}});
  co_return ok_status();
}

Task<SecretString> CredentialStore::use(audit::Context ctx, std::string name, std::string purpose, Destination to) {
  const std::string key = ctx.tenant.to_string() + '|' + name;
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      Cached& c = it->second;
      if (clock_.steady_now() < c.expires) {
        AP_CO_RETURN_IF_ERROR(check_destination(ctx, name, c.allowed_hosts, to, purpose));
        if (c.window.count++ == 0) c.window.start = clock_.now();
        if (!ctx.request_id.empty() && (c.window.request_ids.empty() || c.window.request_ids.back() != ctx.request_id)) {
          if (c.window.request_ids.size() < kMaxRequestIds)
            c.window.request_ids.push_back(ctx.request_id);
          else
            c.window.more_requests = true;
        }
        co_return c.value;
      }
      record_window(*ctx.pool, c);
      cache_.erase(it);
    }
  }
  if (!validate_name(name)) co_return Error::not_found("credential not found");
  AP_CO_ASSIGN_OR_RETURN(auto r, co_await store::tenant_query(
                                     *ctx.pool, ctx.tenant,
                                     "SELECT version, key_version, token, allowed_hosts FROM credentials WHERE tenant_id = $1 "
                                     "AND name = $2 ORDER BY version DESC LIMIT 1",
                                     store::params(ctx.tenant.to_string(), name)));
  if (r.empty()) co_return Error::not_found("credential not found");
  int version = std::stoi(std::string(r.get(0, 0)));
  int key_version = std::stoi(std::string(r.get(0, 1)));
  std::vector<std::string> allowed = hosts_from(r.get(0, 3));
  AP_CO_RETURN_IF_ERROR(check_destination(ctx, name, allowed, to, purpose));
  // The audit event is committed before anything is decrypted; if it cannot be, nothing is.
  Json payload{{"name", name}, {"version", version}, {"purpose", purpose}};
  audit::Event event{"credential.use", audit::Level::kReplay, std::move(payload)};  // (g++ 12: no braces in co_await)
  AP_CO_RETURN_IF_ERROR(co_await audit_.append(ctx, std::move(event)));
  AP_CO_ASSIGN_OR_RETURN(auto fernet, keys_.tenant_key(ctx.tenant, key_version));
  AP_CO_ASSIGN_OR_RETURN(auto value, fernet.decrypt(r.get(0, 2), unix_now(clock_)));
  if (ttl_.count() > 0) {
    std::lock_guard lock(mu_);
    cache_[key] = Cached{ctx.tenant, name, value, version, std::move(allowed), clock_.steady_now() + ttl_, UseWindow{}};
  }
  co_return value;
}

Result<int64_t> count_under_version(store::SyncConn& db, int version) {
  AP_ASSIGN_OR_RETURN(auto tenants, db.exec("SELECT id FROM agentplane.admin_list_tenants(NULL, 1000000)"));
  int64_t n = 0;
  for (int i = 0; i < tenants.size(); ++i) {
    AP_RETURN_IF_ERROR(db.exec_script("BEGIN"));
    auto set = db.exec("SELECT set_config('app.tenant_id', $1, true)", {std::string(tenants.get(i, 0))});
    auto r = db.exec("SELECT count(*) FROM agentplane.credentials WHERE key_version = $1", {std::to_string(version)});
    (void)db.exec_script("COMMIT");
    if (!set) return set.error();
    if (!r) return r.error();
    n += std::stoll(std::string(r->get(0, 0)));
  }
  return n;
}

Result<RewrapReport> rewrap_all(store::SyncConn& db, const Keyring& keys, const std::string& only) {
  std::vector<std::string> tenants;
  if (!only.empty()) {
    tenants.push_back(only);
  } else {
    AP_ASSIGN_OR_RETURN(auto rows, db.exec("SELECT id FROM agentplane.admin_list_tenants(NULL, 1000000)"));
    for (int i = 0; i < rows.size(); ++i) tenants.emplace_back(rows.get(i, 0));
  }
  RewrapReport report;
  const int current = keys.current();
  for (const auto& t : tenants) {
    auto tenant = TenantId::parse(t);
    if (!tenant) return Error::invalid_argument("not a tenant id: " + t);
    AP_RETURN_IF_ERROR(db.exec_script("BEGIN"));
    auto run = [&]() -> Result<int64_t> {
      AP_RETURN_IF_ERROR(db.exec("SELECT set_config('app.tenant_id', $1, true)", {tenant->to_string()}));
      AP_ASSIGN_OR_RETURN(auto rows, db.exec("SELECT name, version, key_version, token FROM agentplane.credentials "
                                             "WHERE key_version <> $1 FOR UPDATE",
                                             {std::to_string(current)}));
      AP_ASSIGN_OR_RETURN(auto to, keys.tenant_key(*tenant, current));
      int64_t n = 0;
      for (int k = 0; k < rows.size(); ++k) {
        std::string name(rows.get(k, 0)), version(rows.get(k, 1));
        auto from = keys.tenant_key(*tenant, std::stoi(std::string(rows.get(k, 2))));
        auto token = from ? from->rotate_to(to, rows.get(k, 3)) : Result<std::string>(from.error());
        if (!token) {
          report.unreadable.push_back(t + "/" + name + "@" + version);
          continue;
        }
        AP_RETURN_IF_ERROR(db.exec("UPDATE agentplane.credentials SET token = $1, key_version = $2 "
                                   "WHERE tenant_id = $3 AND name = $4 AND version = $5",
                                   {*token, std::to_string(current), t, name, version}));
        ++n;
      }
      return n;
    };
    auto n = run();
    if (!n) {
      (void)db.exec_script("ROLLBACK");
      return n.error();
    }
    AP_RETURN_IF_ERROR(db.exec_script("COMMIT"));
    report.rewrapped += *n;
  }
  return report;
}

}  // namespace ap::vault
