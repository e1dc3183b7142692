// Running the server: wiring of every component (the only place that picks implementations).
// Blocks until SIGINT or SIGTERM, then shuts down gracefully.
#pragma once

#include <chrono>
#include <string>

#include "common/result.h"
#include "common/secret.h"
#include "gateway/server.h"

namespace ap::auth {
class Authenticator;
}

namespace ap::app {

struct ServeConfig {
  gateway::ServerOptions server;
  std::string database_url;  // the app role's connection
  SecretString admin_token;  // empty: admin API disabled
  std::chrono::seconds touch_interval{30};  // how often key last-used times are written
};

// Everything the server uses, owned in one place and destroyed after the server stops.
class Wiring {
 public:
  explicit Wiring(const struct ServeConfig& config);
  ~Wiring();
  std::unique_ptr<auth::Authenticator> authn;
};

// Blocks SIGINT/SIGTERM in the calling thread (and so in every thread it starts). Call first
// thing in main, before any thread exists.
void block_stop_signals();

// Starts the server and returns it running (for dev, which prints its banner in between).
Result<std::unique_ptr<gateway::Server>> start_server(const ServeConfig& config,
                                                      std::unique_ptr<Wiring>& wiring);
// Waits for SIGINT/SIGTERM. Returns the signal number.
int wait_for_stop_signal();

// `agentplane serve`: start, wait for a stop signal, stop. Returns the exit code.
int serve(const ServeConfig& config);

}  // namespace ap::app
