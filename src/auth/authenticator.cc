#include "auth/authenticator.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>

#include "auth/api_key.h"
#include "store/tx.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::auth {
namespace asio = boost::asio;

struct Authenticator::Loops {
  std::atomic<bool> stopping{false};
  std::optional<boost::asio::any_io_executor> ex;
  std::unique_ptr<store::Conn> listen_conn;
  std::unique_ptr<asio::steady_timer> touch_timer;
  std::unique_ptr<asio::steady_timer> backoff_timer;
  store::Pool* pool = nullptr;
};

namespace {

telemetry::Counter& auth_counter(std::string_view result) {
  static auto& family = telemetry::metrics().counter("agentplane_auth_total", "Authentication attempts by result.", {"result"});
  static auto& ok_cached = family.with({"ok_cached"});  // nearly every request's: resolved once
  return result == "ok_cached" ? ok_cached : family.with({std::string(result)});
}

constexpr std::string_view kFindKey =
    "SELECT tenant_id, key_id, scopes, revoked FROM find_api_key($1)";
constexpr std::string_view kTouchKeys = "SELECT touch_api_keys($1::uuid[], $2)";
constexpr std::string_view kListen = "LISTEN agentplane_key_revoked";

std::vector<std::pair<std::string, std::string>> listen_options() {
  return {{"keepalives", "1"},       {"keepalives_idle", "2"}, {"keepalives_interval", "1"},
          {"keepalives_count", "2"}, {"tcp_user_timeout", "4000"}, {"connect_timeout", "3"}};
}

}  // namespace

size_t Authenticator::DigestHash::operator()(const Sha256Digest& d) const noexcept {
  size_t h;
  std::memcpy(&h, d.data(), sizeof h);
  return h;
}

Authenticator::Authenticator(Clock& clock, AuthenticatorOptions options)
    : clock_(clock), options_(std::move(options)), loops_(std::make_shared<Loops>()) {}

Authenticator::~Authenticator() { stop(); }

store::Task<Principal> Authenticator::authenticate(store::Pool& pool,
                                                   std::string_view credential) {
  switch (classify(credential)) {
    case CredentialKind::kNone:
      auth_counter("missing").inc();
      co_return Error::unauthenticated("missing API key: send x-api-key or Authorization: Bearer");
    case CredentialKind::kAdminToken: {
      auto h = sha256(credential);
      // Secret: compare hashes in constant time; the token itself is never kept.
      if (options_.admin_token_hash.empty() ||
          !constant_time_equal({reinterpret_cast<const char*>(h.data()), h.size()},
                               options_.admin_token_hash)) {
        auth_counter("invalid").inc();
        co_return Error::unauthenticated("invalid admin token");
      }
      auth_counter("admin").inc();
      co_return Principal{Principal::Kind::kAdmin, {}, {}, kAllScopes};
    }
    case CredentialKind::kJwt: {
      if (!options_.oidc) {
        auth_counter("invalid").inc();
        co_return Error::unauthenticated("JWT sign-in is not configured on this server");
      }
      auto id = options_.oidc->verify(credential, clock_.now());
      if (!id) {
        auth_counter("invalid").inc();
        co_return id.error();
      }
      // The tenant must exist and not be deleted: its own row is visible to it under row-level security.
      TenantId tenant = id->tenant;
      auto rows = co_await store::tenant_query(pool, tenant, "SELECT 1 FROM tenants WHERE id = $1 AND deleted_at IS NULL",
                                               store::params(tenant.to_string()));
      if (!rows) co_return rows.error();
      if (rows->empty()) {
        auth_counter("invalid").inc();
        co_return Error::unauthenticated("invalid token: unknown tenant");
      }
      auth_counter("ok_jwt").inc();
      Principal p;
      p.kind = Principal::Kind::kTenantUser;
      p.tenant = tenant;
      p.scopes = kAllScopes;
      p.user = id->issuer + "#" + id->subject;
      co_return p;
    }
    case CredentialKind::kUnknown:
      auth_counter("invalid").inc();
      co_return Error::unauthenticated("malformed API key");
    case CredentialKind::kTenantKey:
      break;
  }
  Sha256Digest hash = key_hash(credential);
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(hash); it != cache_.end()) {
      if (it->second.expires > clock_.steady_now()) {
        Principal p = it->second.principal;
        touched_.insert(p.key);
        auth_counter("ok_cached").inc();
        co_return p;
      }
      by_key_.erase(it->second.principal.key);
      cache_.erase(it);
    }
    generation = generation_;
  }
  std::string hash_hex = "\\x" + hex_encode(hash.data(), hash.size());
  AP_CO_ASSIGN_OR_RETURN(
      auto rows, co_await store::platform_query(
                     pool, kFindKey, store::params(hash_hex)));
  if (rows.empty()) {
    auth_counter("invalid").inc();
    co_return Error::unauthenticated("invalid API key");
  }
  if (rows.get(0, 3) == "t") {
    auth_counter("revoked").inc();
    co_return Error::unauthenticated("API key has been revoked");
  }
  Principal p;
  p.kind = Principal::Kind::kTenantKey;
  p.tenant = *TenantId::parse(rows.get(0, 0));
  p.key = *KeyId::parse(rows.get(0, 1));
  auto scopes = parse_scopes(store::parse_text_array(rows.get(0, 2)));
  p.scopes = scopes ? *scopes : 0;
  {
    std::lock_guard lock(mu_);
    touched_.insert(p.key);
    // Isolation: an invalidation that raced this look-up wins; the result is not cached. Nor is
    // anything cached while revocations from other replicas could go unheard.
    bool can_cache = options_.listen_conninfo.empty() || listening_.load();
    if (generation == generation_ && can_cache) {
      cache_[hash] = Entry{p, clock_.steady_now() + options_.cache_ttl};
      by_key_[p.key] = hash;
    }
  }
  auth_counter("ok").inc();
  co_return p;
}

void Authenticator::invalidate(const KeyId& key) {
  std::lock_guard lock(mu_);
  ++generation_;
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    cache_.erase(it->second);
    by_key_.erase(it);
  }
}

void Authenticator::invalidate_all() {
  std::lock_guard lock(mu_);
  ++generation_;
  cache_.clear();
  by_key_.clear();
}

void Authenticator::invalidate_tenant(const TenantId& tenant) {
  std::lock_guard lock(mu_);
  ++generation_;
  for (auto it = by_key_.begin(); it != by_key_.end();) {
    auto entry = cache_.find(it->second);
    if (entry != cache_.end() && entry->second.principal.tenant == tenant) {
      cache_.erase(entry);
      it = by_key_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t Authenticator::cache_size() const {
  std::lock_guard lock(mu_);
  return cache_.size();
}

void Authenticator::start(asio::any_io_executor ex, store::Pool& pool) {
  loops_->pool = &pool;
  loops_->ex = ex;
  if (!options_.listen_conninfo.empty()) {
    asio::co_spawn(ex, listen_loop(ex), asio::detached);
  }
  asio::co_spawn(ex, touch_loop(pool), asio::detached);
}

void Authenticator::stop() {
  auto loops = loops_;
  if (!loops || loops->stopping.exchange(true)) return;
  // The loops' objects belong to their executor's thread: cancel them there.
  auto cancel = [loops] {
    if (loops->listen_conn) loops->listen_conn->cancel();
    if (loops->touch_timer) loops->touch_timer->cancel();
    if (loops->backoff_timer) loops->backoff_timer->cancel();
  };
  if (loops->ex) {
    asio::post(*loops->ex, cancel);
  } else {
    cancel();
  }
}

void Authenticator::detach() {
  stop();
  auto loops = loops_;
  listening_ = false;
  // Timers and the listen connection belong to the stopped executor: destroy them while it
  // still exists. Suspended loops keep their own reference to this (now inert) state.
  loops->listen_conn.reset();
  loops->touch_timer.reset();
  loops->backoff_timer.reset();
  loops_ = std::make_shared<Loops>();
}

store::Task<void> Authenticator::listen_loop(asio::any_io_executor ex) {
  auto loops = loops_;
  loops->backoff_timer = std::make_unique<asio::steady_timer>(ex);
  while (!loops->stopping) {
    // Keepalives notice a silently dropped connection within seconds (then nothing is cached
    // until the listener is back); the connect itself is bounded too.
    auto conn = co_await store::Conn::connect(ex, options_.listen_conninfo, listen_options());
    if (conn) {
      store::Statement listen{kListen, {}};
      if (auto r = co_await (*conn)->pipeline({&listen, 1}); r) {
        loops->listen_conn = std::move(*conn);
        // Notifications sent while we were not listening are lost: start from an empty cache.
        invalidate_all();
        listening_ = true;
        auto st = co_await loops->listen_conn->listen_loop(
            [this](std::string_view, std::string_view payload) {
              if (auto id = KeyId::parse(payload)) invalidate(*id);
            });
        listening_ = false;
        invalidate_all();
        loops->listen_conn.reset();
        if (loops->stopping) break;
        telemetry::log_warn("key_listener_lost", {{"error", st.error().message}});
      }
    } else {
      telemetry::log_warn("key_listener_connect_failed", {{"error", conn.error().message}});
    }
    // While not listening, cached keys could outlive a revocation elsewhere: drop them.
    invalidate_all();
    loops->backoff_timer->expires_after(std::chrono::seconds(1));
    co_await loops->backoff_timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return ok_status();
}

store::Task<void> Authenticator::flush_touched(store::Pool& pool) {
  std::unordered_set<KeyId, UuidHash> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(touched_);
  }
  if (batch.empty()) co_return ok_status();
  std::string ids = "{";
  for (const auto& k : batch) {
    if (ids.size() > 1) ids += ',';
    ids += k.to_string();
  }
  ids += '}';
  auto r = co_await store::platform_query(pool, kTouchKeys, store::params(ids, format_rfc3339(clock_.now())));
  if (!r) telemetry::log_warn("key_touch_failed", {{"error", r.error().message}});
  co_return ok_status();
}

store::Task<void> Authenticator::touch_loop(store::Pool& pool) {
  auto loops = loops_;
  loops->touch_timer = std::make_unique<asio::steady_timer>(pool.executor());
  while (!loops->stopping) {
    loops->touch_timer->expires_after(options_.touch_interval);
    co_await loops->touch_timer->async_wait(asio::as_tuple(asio::use_awaitable));
    (void)co_await flush_touched(pool);
  }
  co_return ok_status();
}

}  // namespace ap::auth
