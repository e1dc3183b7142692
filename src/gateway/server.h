// The HTTP server: Beast on Asio coroutines, TLS optional. One acceptor hands connections
// round-robin to N shards; each shard is one thread with its own io_context and its own
// PostgreSQL pool, so a request never crosses threads. Caps (headers, body), read timeouts,
// keep-alive, x-request-id, access log and metrics live here; routes live in the Router.
// Thread-safe: start/stop/wait from one controlling thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "gateway/router.h"
#include "store/pool.h"

namespace ap::auth {
class Authenticator;
}

namespace ap::gateway {

struct ServerOptions {
  std::string listen = "127.0.0.1:8123";
  std::string metrics_listen;  // empty: /metrics is served on the main listener
  int threads = 0;             // 0: one per core
  size_t header_limit = 16 * 1024;
  size_t body_limit = 8 * 1024 * 1024;
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds body_timeout{30};
  std::chrono::seconds idle_timeout{75};
  std::chrono::seconds shutdown_grace{10};
  std::string tls_cert;  // PEM files; both set: HTTPS
  std::string tls_key;
  store::PoolOptions pool;  // per shard
  std::chrono::seconds purge_interval{3600};  // deleted-tenant sweep (gateway/maintenance.h); 0: off
  int usage_retention_days = 0;  // usage records older than this are deleted (rollups stay); 0: kept
};

class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router, auth::Authenticator& authn,
         ServerInfo info, Services services = {});
  ~Server();

  // Binds the listeners and starts the shard threads. InvalidArgument for a malformed address
  // or unreadable TLS files; Unavailable when the address is in use.
  Status start();
  uint16_t port() const;
  uint16_t metrics_port() const;  // 0 without --metrics-listen

  // Stops accepting, lets in-flight requests finish within the grace period, closes idle
  // connections, then stops the threads. Blocks. Idempotent.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Parses "host:port" or "[v6]:port" (host may be "localhost"). InvalidArgument if malformed.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
Result<HostPort> parse_listen_address(std::string_view text);

}  // namespace ap::gateway
