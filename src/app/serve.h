// Running the server: wiring of every component (the only place that picks implementations).
// Blocks until SIGINT or SIGTERM, then shuts down gracefully.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "auth/oidc.h"
#include "common/result.h"
#include "common/secret.h"
#include "gateway/server.h"

namespace ap::auth {
class Authenticator;
}
namespace ap::audit {
class AuditLog;
class Signer;
}
namespace ap::graph {
class NodeKinds;
class PostgresCheckpoints;
}
namespace ap::control {
struct Plane;
class RunRelay;
}
namespace ap::exec {
class Worker;
}
namespace ap::vault {
class Keyring;
class CredentialStore;
}

namespace ap::llm {
struct ModelServices;
class UsageRecorder;
}
namespace ap::ratelimit {
class Limits;
}

namespace ap::sandbox {
class Sandbox;
}

namespace ap::app {

struct ServeConfig {
  gateway::ServerOptions server;
  std::string database_url;  // the app role's connection
  SecretString admin_token;  // empty: admin API disabled
  std::chrono::seconds touch_interval{30};  // how often key last-used times are written
  // Master key: a key file (versions; `vault rotate` adds one) or AGENTPLANE_MASTER_KEY (base64
  // of 32 bytes). Neither: the vault and signed audit checkpoints are off (the audit log is on).
  std::string master_key_file;
  SecretString master_key;
  std::chrono::seconds credential_cache{60};  // how long a decrypted credential stays in memory
  int audit_retention_days = 365;              // a deleted tenant's sealed audit chain is kept
  std::vector<auth::OidcIssuerConfig> oidc;    // OpenID providers whose JWT access tokens sign in
  std::string role = "all";                    // api | worker | all
  int worker_concurrency = 0;                  // runs at once per worker; 0: 4 per core, at least 16
  int worker_lease_ms = 15000;                 // a dead worker's runs are resumed after this
  int worker_max_attempts = 3;                 // then a run whose workers keep dying fails
  int worker_nice = -5;                        // the worker thread's nice, relative (WorkerOptions)
  int webhook_attempts = 5;                    // POSTs of a run's webhook before it is given up
  int webhook_retry_ms = 10000;                // the wait after the first failed one (then x3 each)
  // Model gateway and limits (docs/models.md, docs/limits.md).
  std::vector<std::string> egress_allow;       // hosts / networks outbound calls may reach besides public ones
  bool egress_public = true;                   // false: only egress_allow
  std::string price_table;                     // a LiteLLM-format file replacing/extending the shipped prices
  std::string ratelimit_backend = "local";     // local | redis
  std::string redis_url;                       // redis://host:port (backend redis)
  bool ratelimit_fail_open = true;             // Redis down: allow (true) or refuse
  std::optional<int64_t> upstream_key_rpm;     // per upstream provider credential
  std::string default_limits;                  // JSON TenantLimits for tenants without their own
  std::string sandbox_backend = "native";      // code nodes and the code tool: native | gvisor | none
  int sandbox_warm_pool = 0;                   // started sandboxes kept per tenant and limits
};

// Everything the server uses, owned in one place and destroyed after the server stops.
class Wiring {
 public:
  // InvalidArgument / NotFound when the master key is configured but cannot be loaded.
  static Result<std::unique_ptr<Wiring>> make(const ServeConfig& config);
  ~Wiring();
  std::unique_ptr<auth::Authenticator> authn;
  std::unique_ptr<audit::AuditLog> audit;
  std::unique_ptr<vault::Keyring> keys;
  std::unique_ptr<vault::CredentialStore> credentials;
  std::vector<audit::Signer> signers;
  std::unique_ptr<graph::NodeKinds> kinds;
  std::shared_ptr<graph::PostgresCheckpoints> checkpoints;
  std::unique_ptr<control::Plane> agents;
  std::unique_ptr<control::RunRelay> relay;  // role api or all: events of runs on other replicas
  std::unique_ptr<exec::Worker> worker;      // role worker or all
  std::unique_ptr<llm::UsageRecorder> usage;
  std::unique_ptr<ratelimit::Limits> limits;
  std::unique_ptr<llm::ModelServices> models;
  std::unique_ptr<sandbox::Sandbox> sandbox;  // null: code cannot run on this server's worker
  gateway::Services services() const;
  int audit_retention_days = 365;

 private:
  Wiring() = default;
};

// The key ring `config` names (file first, then the variable), or nullopt when none is set.
Result<std::optional<vault::Keyring>> load_keyring(const ServeConfig& config);

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
