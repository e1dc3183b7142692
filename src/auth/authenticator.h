// Resolves the credential of a request to a Principal. Tenant keys are looked up by hash through
// the `find_api_key` SECURITY DEFINER function and cached; a revoked key is dropped from this
// replica's cache at once and from every other replica's within a second (PostgreSQL
// LISTEN/NOTIFY on `agentplane_key_revoked`; the cache is flushed whenever the listener
// reconnects, since notifications may have been missed). Last-used times are collected in
// memory and written in batches. Thread-safe: one Authenticator serves every shard.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "auth/oidc.h"
#include "auth/principal.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "store/pool.h"

namespace ap::auth {

struct AuthenticatorOptions {
  // Secret: SHA-256 of the admin token; empty disables the admin API.
  std::string admin_token_hash;
  std::chrono::seconds cache_ttl{60};
  std::chrono::seconds touch_interval{30};
  std::string listen_conninfo;  // connection for LISTEN; empty: no cross-replica invalidation
  std::shared_ptr<OidcVerifier> oidc;  // null: JWTs are refused
};

class Authenticator {
 public:
  Authenticator(Clock& clock, AuthenticatorOptions options);
  ~Authenticator();

  // `credential` is the raw value of x-api-key or of the Bearer token. Unauthenticated for a
  // missing, malformed, unknown or revoked credential (messages never echo the credential);
  // Unavailable when the database cannot be asked.
  store::Task<Principal> authenticate(store::Pool& pool, std::string_view credential);

  // Drops a key from this replica's cache (after revoking it here; also on notifications).
  void invalidate(const KeyId& key);
  void invalidate_all();
  // Drops every cached key of a tenant (after deleting it here; other replicas hear each key).
  void invalidate_tenant(const TenantId& tenant);

  // Starts the LISTEN loop and the last-used flusher on `ex`. `pool` must live on `ex`.
  void start(boost::asio::any_io_executor ex, store::Pool& pool);
  // Stops both and writes pending last-used times (best effort).
  void stop();
  // Drops everything bound to the executor given to start(). Call after that executor stopped
  // running and before it is destroyed; start() may then be called again.
  void detach();

  size_t cache_size() const;

 private:
  struct Entry {
    Principal principal;
    std::chrono::steady_clock::time_point expires;
  };
  struct DigestHash {
    size_t operator()(const Sha256Digest& d) const noexcept;
  };
  store::Task<void> listen_loop(boost::asio::any_io_executor ex);
  store::Task<void> touch_loop(store::Pool& pool);
  store::Task<void> flush_touched(store::Pool& pool);
  void mark_used(const KeyId& key);

  Clock& clock_;
  AuthenticatorOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<Sha256Digest, Entry, DigestHash> cache_;
  std::unordered_map<KeyId, Sha256Digest, UuidHash> by_key_;
  std::unordered_set<KeyId, UuidHash> touched_;
  uint64_t generation_ = 0;  // bumped by every invalidation: a look-up racing one is not cached
  // Isolation: while the revocation listener is not confirmed listening, nothing is cached, so a
  // revocation on another replica cannot be missed.
  std::atomic<bool> listening_{false};

  struct Loops;
  std::shared_ptr<Loops> loops_;
};

}  // namespace ap::auth
