#include "app/serve.h"

#include <signal.h>

#include <algorithm>
#include <iostream>

#include "audit/audit_log.h"
#include "audit/chain.h"
#include "auth/authenticator.h"
#include "control/plane.h"
#include "control/run_relay.h"
#include "exec/sandbox/sandbox.h"
#include "exec/worker/worker.h"
#include "graph/nodes/kinds.h"
#include "graph/postgres/postgres_saver.h"
#include "graph/spec.h"
#include "llm/models.h"
#include "ratelimit/limits.h"
#include "gateway/routes.h"
#include "store/sync_conn.h"
#include "telemetry/log.h"
#include "vault/credentials.h"
#include "vault/keyring.h"

namespace ap::app {

Result<std::optional<vault::Keyring>> load_keyring(const ServeConfig& c) {
  if (!c.master_key_file.empty()) {
    AP_ASSIGN_OR_RETURN(auto k, vault::Keyring::load_file(c.master_key_file));
    return std::optional<vault::Keyring>(std::move(k));
  }
  if (!c.master_key.empty()) {
    AP_ASSIGN_OR_RETURN(auto k, vault::Keyring::from_base64(c.master_key.reveal()));
    return std::optional<vault::Keyring>(std::move(k));
  }
  return std::optional<vault::Keyring>();
}

Result<std::unique_ptr<Wiring>> Wiring::make(const ServeConfig& c) {
  std::unique_ptr<Wiring> w(new Wiring());
  AP_ASSIGN_OR_RETURN(auto keys, load_keyring(c));
  w->audit = std::make_unique<audit::AuditLog>();
  if (keys) {
    w->keys = std::make_unique<vault::Keyring>(std::move(*keys));
    w->credentials = std::make_unique<vault::CredentialStore>(*w->keys, *w->audit, c.credential_cache);
    for (int v : w->keys->versions()) {
      AP_ASSIGN_OR_RETURN(auto seed, w->keys->audit_seed(v));
      AP_ASSIGN_OR_RETURN(auto signer, audit::Signer::from_seed(v, seed));
      w->signers.push_back(std::move(signer));
    }
  }
  auth::AuthenticatorOptions ao;
  if (!c.admin_token.empty()) {
    // Secret: only the token's hash is kept.
    auto h = sha256(c.admin_token.reveal());
    ao.admin_token_hash.assign(reinterpret_cast<const char*>(h.data()), h.size());
  }
  ao.listen_conninfo = c.database_url;
  ao.touch_interval = c.touch_interval;
  if (!c.oidc.empty()) ao.oidc = std::make_shared<auth::OidcVerifier>(c.oidc);
  w->authn = std::make_unique<auth::Authenticator>(Clock::system(), std::move(ao));
  w->audit_retention_days = c.audit_retention_days;
  // The agent API: graphs compile against the built-in and agent node kinds; checkpoints in PostgreSQL.
  w->kinds = std::make_unique<graph::NodeKinds>(graph::nodes::all_kinds());
  w->checkpoints = graph::PostgresCheckpoints::open(c.database_url);
  auto cps = w->checkpoints;
  control::SaverFor savers = [cps](const TenantId& t) { return cps->for_tenant(t); };
  w->agents = std::make_unique<control::Plane>(*w->kinds, savers, 4);
  w->models = std::make_unique<llm::ModelServices>();
  AP_ASSIGN_OR_RETURN(w->models->egress, net::Egress::parse(c.egress_allow, c.egress_public));
  if (!c.price_table.empty()) {
    AP_ASSIGN_OR_RETURN(auto table, llm::PriceTable::load_file(c.price_table));
    w->models->prices = w->models->prices.merged(table);
  }
  w->usage = std::make_unique<llm::UsageRecorder>(llm::UsageRecorder::Options{c.database_url});
  w->models->usage = w->usage.get();
  {
    ratelimit::Limits::Options lo;
    lo.fail_open = c.ratelimit_fail_open;
    lo.upstream_key_requests_per_min = c.upstream_key_rpm;
    if (!c.default_limits.empty()) {
      AP_ASSIGN_OR_RETURN(lo.defaults, ratelimit::TenantLimits::parse(c.default_limits));
    }
    std::unique_ptr<ratelimit::Backend> backend;
    if (c.ratelimit_backend == "redis") {
      if (c.redis_url.empty()) return Error::invalid_argument("--ratelimit-backend redis needs --redis-url");
      AP_ASSIGN_OR_RETURN(auto ro, ratelimit::parse_redis_url(c.redis_url));
      backend = ratelimit::make_redis_backend(ro);
      if (ro.leases) backend = ratelimit::make_leasing_backend(std::move(backend));
    } else if (c.ratelimit_backend == "local") {
      backend = ratelimit::make_local_backend();
    } else {
      return Error::invalid_argument("--ratelimit-backend must be local or redis");
    }
    w->limits = std::make_unique<ratelimit::Limits>(std::move(backend), lo);
    w->models->limits = w->limits.get();
  }
  if (c.role == "api" || c.role == "all") w->relay = std::make_unique<control::RunRelay>(w->agents->hub, c.database_url);
  if (c.role == "worker" || c.role == "all") {
    exec::WorkerOptions wo;
    wo.conninfo = c.database_url;
    wo.concurrency = c.worker_concurrency;
    wo.lease = std::chrono::milliseconds(c.worker_lease_ms);
    wo.renew_every = std::chrono::milliseconds(std::max(100, c.worker_lease_ms / 5));
    wo.max_attempts = c.worker_max_attempts;
    wo.thread_nice = c.worker_nice;
    wo.webhooks.attempts = c.webhook_attempts;
    wo.webhooks.retry_delay = std::chrono::milliseconds(c.webhook_retry_ms);
    if (c.sandbox_backend != "none") {
      sandbox::Options so;
      so.warm_pool = c.sandbox_warm_pool;
      auto sb = sandbox::make_sandbox(c.sandbox_backend, so);
      if (sb) {
        w->sandbox = std::move(*sb);
      } else {  // the server still serves; code nodes say why they cannot run
        telemetry::log_warn("sandbox_unavailable", {{"backend", c.sandbox_backend}, {"error", sb.error().message}});
      }
    }
    wo.models = {w->models.get(), w->credentials.get(), w->sandbox.get(), w->audit.get()};
    wo.default_concurrent_runs = w->limits->options().defaults.concurrent_runs;
    w->worker = std::make_unique<exec::Worker>(wo, w->agents->graphs, w->agents->hub, savers, w->audit.get());
  }
  return w;
}

gateway::Services Wiring::services() const {
  return {audit.get(), credentials.get(), signers.empty() ? nullptr : &signers, audit_retention_days, agents.get(),
          models.get()};
}

Wiring::~Wiring() {
  if (agents) agents->runs.set_local_worker(nullptr);
  if (worker) worker->stop();
  if (relay) relay->stop();
  if (limits) limits->release();  // leases and settles back to the shared limits
  usage.reset();  // writes the usage records still queued
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int wait_for_stop_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

namespace {

// Blocks. Fails early with a clear message when the database is unreachable, and refuses a role
// that would make row-level security moot.
Status check_database(const std::string& url) {
  AP_ASSIGN_OR_RETURN(auto db, store::SyncConn::connect(url));
  AP_ASSIGN_OR_RETURN(
      auto rows,
      db->exec("SELECT rolsuper OR rolbypassrls OR rolcreaterole OR "
               "pg_has_role(oid, 'agentplane_owner', 'MEMBER') OR "
               "pg_has_role(oid, 'agentplane_system', 'MEMBER') "
               "FROM pg_roles WHERE rolname = current_user"));
  // Isolation: the database is the last line only if the server's role is subject to RLS.
  if (rows.empty() || rows.get(0, 0) == "t")
    return Error::failed_precondition(
        "the server must connect as a role without SUPERUSER, BYPASSRLS or CREATEROLE that is "
        "not a member of the owner or system role (agentplane_app), or row-level security would "
        "not isolate tenants");
  auto schema = db->exec("SELECT max(version) FROM agentplane.schema_migrations");
  if (!schema || schema->is_null(0, 0))
    return Error::failed_precondition("the database has no agentplane schema: run `agentplane migrate`");
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<gateway::Server>> start_server(const ServeConfig& config,
                                                      std::unique_ptr<Wiring>& wiring) {
  AP_RETURN_IF_ERROR(check_database(config.database_url));
  AP_ASSIGN_OR_RETURN(wiring, Wiring::make(config));
  auto options = config.server;
  options.pool.conninfo = config.database_url;
  gateway::ServerInfo info{AP_VERSION, {"tenants", "api_keys", "row_level_security", "metrics", "audit"}};
  if (!options.tls_cert.empty()) info.features.push_back("tls");
  if (wiring->credentials) info.features.push_back("credentials");
  auto server = std::make_unique<gateway::Server>(options, gateway::build_router(), *wiring->authn,
                                                  std::move(info), wiring->services());
  AP_RETURN_IF_ERROR(server->start());
  if (wiring->relay) wiring->relay->start();
  if (wiring->worker) {
    AP_RETURN_IF_ERROR(wiring->worker->start());
    // --role all: new runs may start on this worker at once, without a queue round.
    if (wiring->agents) wiring->agents->runs.set_local_worker(wiring->worker->local());
  }
  return server;
}

int serve(const ServeConfig& config) {
  std::unique_ptr<Wiring> wiring;
  auto server = start_server(config, wiring);
  if (!server) {
    std::cerr << "agentplane: " << server.error().message << "\n";
    return 1;
  }
  telemetry::log_info("server_started", {{"port", static_cast<int>((*server)->port())}});
  std::cerr << "agentplane: serving on port " << (*server)->port() << "\n";
  int sig = wait_for_stop_signal();
  telemetry::log_info("server_stopping", {{"signal", sig}});
  (*server)->stop();
  return 0;
}

}  // namespace ap::app
