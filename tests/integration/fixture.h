// Test fixtures: a real PostgreSQL started for the test binary (initdb into a temp folder, as the
// postgres user when root), migrated; and an in-process server on 127.0.0.1:0 against it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/serve.h"
#include "net/blocking_client.h"
#include "store/local_postgres.h"

namespace ap::testing {

using nlohmann::json;

// The test binary's PostgreSQL (started on first use, stopped at exit).
class Database {
 public:
  static Database& get();
  std::string superuser_url() const;  // the bootstrap superuser on the test database
  std::string app_url() const;        // agentplane_app
  std::string socket_dir() const { return socket_dir_; }
  const std::string& temp_dir() const { return temp_; }

 private:
  Database();
  std::string temp_, socket_dir_;
  std::unique_ptr<store::LocalPostgres> pg_;
};

// A running server with a known admin token.
class TestServer {
 public:
  // `role`: all (API and worker), api or worker (`serve --role`).
  explicit TestServer(int threads = 2, std::chrono::seconds touch_interval = std::chrono::seconds(30),
                      std::vector<auth::OidcIssuerConfig> oidc = {}, std::string role = "all",
                      std::string redis_url = "",  // set: limits on that Redis (else in-process)
                      int worker_lease_ms = 0);     // set: the worker's lease (renewed every fifth)
  ~TestServer();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  const std::string& admin_token() const { return admin_; }
  const std::string& master_key() const { return master_key_; }  // base64, version 1
  app::Wiring& wiring() { return *wiring_; }
  gateway::Server& server() { return *server_; }

  // Calls the API with `credential` as a Bearer token (or none when empty).
  net::HttpResponse call(const std::string& method, const std::string& target,
                         const std::string& credential = "", const std::string& body = "",
                         std::vector<std::pair<std::string, std::string>> headers = {});
  json call_json(const std::string& method, const std::string& target,
                 const std::string& credential, const std::string& body = "",
                 int expect_status = 200);

  struct Tenant {
    std::string id, key, key_id;
  };
  // A new tenant with one all-scopes key.
  Tenant make_tenant(const std::string& name);

 private:
  std::string admin_, master_key_;
  std::unique_ptr<app::Wiring> wiring_;
  std::unique_ptr<gateway::Server> server_;
};

// A redis-server of the test's own on a free loopback port (no persistence), killed at destruction.
class RedisServer {
 public:
  RedisServer();
  ~RedisServer();
  bool up() const { return pid_ > 0; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_;
};

// Evidence for the suite's final secret-leak check (tools/check_leaks.sh, CTest `secret_leaks`):
// when AP_EVIDENCE_DIR is set, server logs, error response bodies, /metrics and the CLI's
// stderr are written there, and every secret a test creates is registered. No-ops otherwise.
void register_secret(const std::string& secret);
void add_evidence(const std::string& kind, const std::string& text);

// The agentplane binary (AP_BINARY) run with `args`, extra environment `env` ("K=V"; the
// caller's AGENTPLANE_* variables and HOME are dropped) and `stdin_text` on standard input.
struct Run {
  int code = -1;
  std::string out, err;
};
Run agentplane(std::vector<std::string> args, std::vector<std::string> env = {}, const std::string& stdin_text = "");
// Starts the agentplane binary with `args` in the background, its stdout in `log` and stderr in
// `log`.err; returns its pid (-1 if it could not start). The caller reaps it.
pid_t spawn_agentplane(std::vector<std::string> args, const std::string& log);
// `node` from PATH with `args` and extra environment, as agentplane() runs the binary.
Run node(std::vector<std::string> args, std::vector<std::string> env = {});
std::string slurp(const std::string& path);

// Polls `pred` until true or `timeout`; returns its last value. No sleeps to wait for state.
template <class F>
bool eventually(F&& pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace ap::testing
