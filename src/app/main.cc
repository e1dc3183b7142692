// agentplane: one binary with subcommands (dev, serve, migrate, and operator commands).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "app/cli/client.h"
#include "app/cli/ops.h"
#include "app/cli/sandbox.h"
#include "app/dev.h"
#include "app/serve.h"
#include "store/migrate.h"
#include "telemetry/log.h"

namespace {

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}


}  // namespace

int main(int argc, char** argv) {
  using namespace ap;
  app::block_stop_signals();
  CLI::App cli{"agentplane: a multi-tenant platform for running AI agents"};
  cli.require_subcommand(1);
  cli.set_version_flag("--version", std::string(AP_VERSION));

  // dev
  app::DevConfig dev;
  auto* dev_cmd = cli.add_subcommand("dev", "Run with a private PostgreSQL in a data folder (no set-up)");
  dev_cmd->add_option("--data-dir", dev.data_dir, "Data folder (default: ~/.agentplane)");
  dev_cmd->add_option("--listen", dev.listen, "HTTP address")->capture_default_str();
  dev_cmd->add_option("--threads", dev.threads, "Server threads (default: one per core)");
  dev_cmd->add_option("--pool-size", dev.pool_size, "PostgreSQL connections per thread");
  dev_cmd->add_option("--egress-allow", dev.egress_allow,
                      "Hosts or networks model calls may reach besides public ones (e.g. 127.0.0.1 for a local model server)")
      ->delimiter(',');
  dev_cmd->add_option("--redis-url", dev.redis_url, "Keep limits in this Redis (redis://host:port[/db]) instead of in-process");
  dev_cmd->add_option("--worker-concurrency", dev.worker_concurrency, "Runs at once (0: the worker's default)")
      ->check(CLI::NonNegativeNumber);
  dev_cmd->add_option("--log-level", dev.log_level, "debug, info, warn or error")->capture_default_str();
  dev_cmd->add_option("--log-file", dev.log_file, "Log file ('-' for stderr; default: <data-dir>/agentplane.log)");

  // serve
  app::ServeConfig serve;
  std::string serve_db = env_or("AGENTPLANE_DATABASE_URL", "");
  std::string log_level = "info", log_file;
  bool log_health = false;
  auto* serve_cmd = cli.add_subcommand("serve", "Serve against an existing PostgreSQL (production)");
  serve_cmd->add_option("--database-url", serve_db,
                        "libpq URL of the app role (env AGENTPLANE_DATABASE_URL)");
  serve_cmd->add_option("--listen", serve.server.listen, "HTTP address")->capture_default_str();
  serve_cmd->add_option("--metrics-listen", serve.server.metrics_listen,
                        "Serve /metrics on this address instead of the main listener");
  serve_cmd->add_option("--tls-cert", serve.server.tls_cert, "PEM certificate chain (enables HTTPS)");
  serve_cmd->add_option("--tls-key", serve.server.tls_key, "PEM private key");
  serve_cmd->add_option("--threads", serve.server.threads, "Server threads (default: one per core)");
  serve_cmd->add_option("--pool-size", serve.server.pool.max_size, "PostgreSQL connections per thread")
      ->capture_default_str();
  serve_cmd->add_option("--body-limit", serve.server.body_limit, "Request body cap in bytes")
      ->capture_default_str();
  serve_cmd->add_option("--header-limit", serve.server.header_limit, "Request header cap in bytes")
      ->capture_default_str();
  serve_cmd->add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  serve_cmd->add_option("--log-file", log_file, "Log file (default: stderr)");
  serve_cmd->add_flag("--log-health", log_health, "Access-log /ok and /metrics too");
  std::vector<std::string> oidc_issuers, oidc_audiences, oidc_algorithms{"RS256", "ES256"};
  std::string oidc_tenant_claim = "tenant_id";
  serve_cmd->add_option("--oidc-issuer", oidc_issuers, "OpenID provider whose JWT access tokens sign in (repeatable)");
  serve_cmd->add_option("--oidc-audience", oidc_audiences, "Accepted token audience (repeatable; for every issuer)");
  serve_cmd->add_option("--oidc-algorithms", oidc_algorithms, "Allowed signature algorithms")
      ->delimiter(',')->capture_default_str();
  serve_cmd->add_option("--oidc-tenant-claim", oidc_tenant_claim, "Claim that holds the tenant id (or Keycloak's `organization`, naming one organization)")
      ->capture_default_str();
  std::string serve_key_file = env_or("AGENTPLANE_MASTER_KEY_FILE", "");
  serve_cmd->add_option("--audit-retention-days", serve.audit_retention_days,
                        "How long a deleted tenant's sealed audit chain is kept")
      ->check(CLI::Range(0, 36500))->capture_default_str();
  int64_t purge_seconds = serve.server.purge_interval.count();
  serve_cmd->add_option("--purge-interval", purge_seconds,
                        "Seconds between sweeps of deleted tenants (0: never, e.g. when a cron runs `tenant purge`)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  serve_cmd->add_option("--usage-retention-days", serve.server.usage_retention_days,
                        "Delete usage records older than this many days, every hour (the hourly rollups that "
                        "GET /v1/usage reports stay; 0: keep them all)")
      ->check(CLI::Range(0, 36500))->capture_default_str();
  serve_cmd->add_option("--role", serve.role, "api (HTTP only), worker (runs only) or all")
      ->check(CLI::IsMember({"api", "worker", "all"}))->capture_default_str();
  serve_cmd->add_option("--worker-concurrency", serve.worker_concurrency, "Runs at once per worker (0: 4 per core, at least 16)")
      ->check(CLI::NonNegativeNumber);
  serve_cmd->add_option("--worker-lease-ms", serve.worker_lease_ms,
                        "A run's lease (renewed every fifth of it): how long a dead worker's runs wait before "
                        "another worker resumes them")
      ->check(CLI::Range(500, 600000))->capture_default_str();
  serve_cmd->add_option("--worker-max-attempts", serve.worker_max_attempts,
                        "Attempts of a run whose workers keep dying before it fails (RunAttemptsExceeded)")
      ->check(CLI::Range(1, 1000))->capture_default_str();
  serve_cmd->add_option("--worker-nice", serve.worker_nice,
                        "Nice value of the worker's thread, which starts the runs, relative to the process's "
                        "(below 0 needs CAP_SYS_NICE; refused: unchanged, logged; 0: leave it)")
      ->check(CLI::Range(-20, 19))->capture_default_str();
  serve_cmd->add_option("--webhook-attempts", serve.webhook_attempts,
                        "POSTs of a run's webhook (on 429, 5xx, timeouts, unreachable hosts) before it is given up")
      ->check(CLI::Range(1, 100))->capture_default_str();
  serve_cmd->add_option("--webhook-retry-ms", serve.webhook_retry_ms,
                        "Wait after a run's webhook's first failed POST; each later wait is 3x the one before")
      ->check(CLI::Range(10, 3600000))->capture_default_str();
  serve_cmd->add_option("--egress-allow", serve.egress_allow,
                        "Hosts (api.example.com, *.example.com) or networks (10.0.0.0/8, 127.0.0.1) that outbound "
                        "model and tool calls may reach besides public addresses; private, loopback and link-local "
                        "ones are refused unless listed")
      ->delimiter(',');
  serve_cmd->add_flag("!--no-egress-public", serve.egress_public, "Allow only the --egress-allow list, no public address");
  serve_cmd->add_option("--price-table", serve.price_table,
                        "A model price file in LiteLLM's format that replaces and extends the shipped prices");
  serve_cmd->add_option("--ratelimit-backend", serve.ratelimit_backend, "local (one replica) or redis (any number)")
      ->check(CLI::IsMember({"local", "redis"}))->capture_default_str();
  serve_cmd->add_option("--redis-url", serve.redis_url, "redis://[:password@]host[:port][/db] (env AGENTPLANE_REDIS_URL)")
      ->envname("AGENTPLANE_REDIS_URL");
  serve_cmd->add_flag("!--ratelimit-fail-closed", serve.ratelimit_fail_open,
                      "Refuse requests while Redis is unreachable (default: allow them, logged and counted)");
  serve_cmd->add_option("--upstream-key-rpm", serve.upstream_key_rpm,
                        "Requests per minute on each upstream provider credential, across the deployment");
  serve_cmd->add_option("--default-limits", serve.default_limits,
                        "Limits (JSON, as PUT /v1/tenants/{id}/limits) for tenants the operator has not set");
  serve_cmd->add_option("--sandbox", serve.sandbox_backend, "Where code nodes run: native, gvisor or none")
      ->check(CLI::IsMember({"native", "gvisor", "none"}))->capture_default_str();
  serve_cmd->add_option("--sandbox-warm-pool", serve.sandbox_warm_pool,
                        "Started sandboxes kept per tenant and limits for fast starts (0: none; see docs/sandbox.md)")
      ->check(CLI::Range(0, 64))->capture_default_str();
  serve_cmd->add_option("--master-key-file", serve_key_file,
                        "Master key file (env AGENTPLANE_MASTER_KEY_FILE; or AGENTPLANE_MASTER_KEY = "
                        "base64 of 32 bytes). Without one the credential vault is off");

  // migrate
  std::string migrate_db = env_or("AGENTPLANE_MIGRATE_URL", "");
  auto* migrate_cmd = cli.add_subcommand(
      "migrate", "Create the roles and apply schema migrations (as a superuser or the database "
                 "owner with CREATEROLE)");
  migrate_cmd->add_option("--database-url", migrate_db, "libpq URL (env AGENTPLANE_MIGRATE_URL)");

  // operator client commands
  app::cli::ClientConfig client;
  client.data_dir = app::default_data_dir();
  auto add_client_opts = [&](CLI::App* c) {
    c->add_option("--url", client.url, "Server URL (env AGENTPLANE_URL, else dev.json)");
    c->add_option("--data-dir", client.data_dir, "dev folder whose dev.json has the tokens");
  };
  auto* tenant_cmd = cli.add_subcommand("tenant", "Manage tenants (admin token)");
  tenant_cmd->require_subcommand(1);
  std::string tenant_name;
  auto* tenant_create = tenant_cmd->add_subcommand("create", "Create a tenant");
  tenant_create->add_option("--name", tenant_name, "Tenant name")->required();
  add_client_opts(tenant_create);
  auto* tenant_list = tenant_cmd->add_subcommand("list", "List tenants");
  add_client_opts(tenant_list);
  std::string tenant_id;
  int retain_days = -1;
  bool tenant_yes = false;
  auto* tenant_delete = tenant_cmd->add_subcommand(
      "delete", "Delete a tenant: its keys stop, its data is deleted, its audit chain is sealed and kept");
  tenant_delete->add_option("tenant_id", tenant_id, "Tenant id")->required();
  tenant_delete->add_option("--retain-days", retain_days, "Keep the audit chain this long (default: the server's)");
  tenant_delete->add_flag("--yes", tenant_yes, "Confirm: this cannot be undone");
  add_client_opts(tenant_delete);

  auto* key_cmd = cli.add_subcommand(
      "key", "Manage API keys (with --tenant: admin token; without: the tenant's AGENTPLANE_API_KEY)");
  key_cmd->require_subcommand(1);
  std::string key_tenant, key_name, key_id;
  std::vector<std::string> key_scopes;
  auto* key_create = key_cmd->add_subcommand("create", "Create a key (shown once)");
  key_create->add_option("--tenant", key_tenant, "Tenant id (admin)");
  key_create->add_option("--name", key_name, "Key name")->required();
  key_create->add_option("--scopes", key_scopes, "keys, agents, models, credentials, read")
      ->delimiter(',');
  add_client_opts(key_create);
  auto* key_list = key_cmd->add_subcommand("list", "List keys");
  key_list->add_option("--tenant", key_tenant, "Tenant id (admin)");
  add_client_opts(key_list);
  auto* key_revoke = key_cmd->add_subcommand("revoke", "Revoke a key");
  key_revoke->add_option("key_id", key_id, "Key id")->required();
  key_revoke->add_option("--tenant", key_tenant, "Tenant id (admin)");
  add_client_opts(key_revoke);

  std::string cred_name, cred_kind = "secret", cred_metadata;
  auto* cred_cmd = cli.add_subcommand("credential", "Manage the tenant's credentials (AGENTPLANE_API_KEY)");
  cred_cmd->require_subcommand(1);
  auto* cred_put = cred_cmd->add_subcommand("put", "Store a new version; the value is read from stdin");
  cred_put->add_option("name", cred_name, "Credential name")->required();
  cred_put->add_option("--kind", cred_kind, "provider_key, http_header or secret")->capture_default_str();
  cred_put->add_option("--metadata", cred_metadata, "JSON object");
  std::vector<std::string> cred_hosts;
  cred_put->add_option("--allowed-host", cred_hosts,
                       "A host the value may be sent to (repeat; '*.example.com' for sub-domains); tools need one");
  add_client_opts(cred_put);
  auto* cred_list = cred_cmd->add_subcommand("list", "List credentials (never their values)");
  add_client_opts(cred_list);
  auto* cred_delete = cred_cmd->add_subcommand("delete", "Delete every version of a credential");
  cred_delete->add_option("name", cred_name, "Credential name")->required();
  add_client_opts(cred_delete);

  std::string run_assistant = "demo", run_thread, run_message;
  bool run_stream = false;
  auto* run_cmd = cli.add_subcommand("run", "Run an agent once on a thread (the tenant's AGENTPLANE_API_KEY)");
  run_cmd->add_option("message", run_message, "The human message")->required();
  run_cmd->add_option("--assistant", run_assistant, "Assistant id or graph id")->capture_default_str();
  run_cmd->add_option("--thread", run_thread, "Continue this thread (default: a new one)");
  run_cmd->add_flag("--stream", run_stream, "Show each step and message as it happens");
  add_client_opts(run_cmd);

  app::cli::UsageOptions usage_opts;
  auto* usage_cmd = cli.add_subcommand(
      "usage", "Model usage and cost: the tenant's (AGENTPLANE_API_KEY), or with --tenant / --all-tenants the operator's");
  auto* usage_tenant = usage_cmd->add_option("--tenant", usage_opts.tenant, "This tenant's usage (admin token)");
  usage_cmd->add_flag("--all-tenants", usage_opts.all_tenants, "Every tenant's totals, for billing (admin token)")
      ->excludes(usage_tenant);
  usage_cmd->add_option("--from", usage_opts.from, "First day (YYYY-MM-DD, in the tenant's time zone) or RFC 3339 instant");
  usage_cmd->add_option("--to", usage_opts.to, "Last day (inclusive) or RFC 3339 instant");
  usage_cmd->add_option("--group-by", usage_opts.group_by, "model, day or key")
      ->check(CLI::IsMember({"model", "day", "key"}))
      ->capture_default_str();
  add_client_opts(usage_cmd);

  app::cli::SandboxRunOptions sb_opts;
  auto* sandbox_cmd = cli.add_subcommand("sandbox", "Try the code sandbox on this host (no server needed)");
  sandbox_cmd->require_subcommand(1);
  auto* sandbox_run = sandbox_cmd->add_subcommand("run", "Run a command in a fresh sandbox: agentplane sandbox run -- CMD ...");
  sandbox_run->add_option("--backend", sb_opts.backend, "native or gvisor")->check(CLI::IsMember({"native", "gvisor", "microvm"}))
      ->capture_default_str();
  sandbox_run->add_option("--timeout", sb_opts.timeout, "Wall-clock (and CPU) limit: 500ms, 5s, 2m")->capture_default_str();
  sandbox_run->add_option("--memory", sb_opts.memory, "Memory limit: 64M, 1G")->capture_default_str();
  sandbox_run->add_option("--pids", sb_opts.pids, "Processes and threads at once")->capture_default_str();
  sandbox_run->add_option("--disk", sb_opts.disk, "Size of the workspace and of /tmp")->capture_default_str();
  sandbox_run->add_option("--file", sb_opts.files, "A local file to copy into the workspace (repeat)")->allow_extra_args(false);
  sandbox_run->add_flag("--network", sb_opts.network,
                        "Egress through the sandbox's HTTP(S) proxy (HTTP_PROXY set inside), to public addresses and --egress-allow");
  sandbox_run->add_option("--egress-allow", sb_opts.egress_allow, "With --network: hosts or networks allowed besides public ones (repeat)")
      ->allow_extra_args(false);
  sandbox_run->add_flag("!--no-egress-public", sb_opts.egress_public, "With --network: only the --egress-allow list");
  sandbox_run->add_flag("--quiet", sb_opts.quiet, "No summary line on stderr");
  sandbox_run->add_option("command", sb_opts.command, "The command and its arguments (after --)")->required();
  auto* sandbox_probe = sandbox_cmd->add_subcommand("probe", "Which backends can run on this host, and why not");

  std::string key_file = env_or("AGENTPLANE_MASTER_KEY_FILE", "");
  std::string ops_db = env_or("AGENTPLANE_DATABASE_URL", "");
  int retire_version = 0;
  auto* vault_cmd = cli.add_subcommand("vault", "Master key versions and re-encryption");
  vault_cmd->require_subcommand(1);
  auto* vault_rotate = vault_cmd->add_subcommand("rotate", "Add a new master key version (becomes current)");
  auto* vault_rewrap = vault_cmd->add_subcommand("rewrap", "Re-encrypt credentials under the current version");
  auto* vault_retire = vault_cmd->add_subcommand("retire", "Retire a version no credential uses any more");
  vault_retire->add_option("--version", retire_version, "Master key version")->required();
  for (auto* c : {vault_rotate, vault_rewrap, vault_retire})
    c->add_option("--master-key-file", key_file, "Master key file (env AGENTPLANE_MASTER_KEY_FILE)");
  for (auto* c : {vault_rewrap, vault_retire})
    c->add_option("--database-url", ops_db, "libpq URL of the app role (env AGENTPLANE_DATABASE_URL)");
  std::string rewrap_tenant;
  vault_rewrap->add_option("--tenant", rewrap_tenant, "Only this tenant (default: every tenant)");

  std::string audit_tenant, audit_checkpoint;
  auto* audit_cmd = cli.add_subcommand("audit", "The audit log");
  audit_cmd->require_subcommand(1);
  auto* audit_verify = audit_cmd->add_subcommand("verify", "Recompute hash chains; name the first bad entry");
  audit_verify->add_option("--database-url", ops_db, "libpq URL of the app role (env AGENTPLANE_DATABASE_URL)");
  audit_verify->add_option("--tenant", audit_tenant, "One tenant (default: every tenant and the platform chain)");
  audit_verify->add_option("--checkpoint", audit_checkpoint, "A saved GET /v1/audit/checkpoint response");
  audit_verify->add_option("--master-key-file", key_file, "Checks the checkpoint's signature");
  auto* tenant_purge = tenant_cmd->add_subcommand(
      "purge", "Sweep deleted tenants now: late data, and audit chains past their retention (the server does it hourly)");
  tenant_purge->add_option("--database-url", ops_db, "libpq URL of the app role (env AGENTPLANE_DATABASE_URL)");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);  // prints help, or the error in one line
    return rc == 0 ? 0 : 2;      // usage errors exit 2, as every command's own usage errors do
  }

  if (*dev_cmd) return app::run_dev(dev);
  if (*serve_cmd) {
    if (serve_db.empty()) {
      std::cerr << "agentplane serve: --database-url (or AGENTPLANE_DATABASE_URL) is required\n";
      return 2;
    }
    serve.database_url = serve_db;
    serve.admin_token = SecretString(env_or("AGENTPLANE_ADMIN_TOKEN", ""));
    serve.master_key_file = serve_key_file;
    serve.server.purge_interval = std::chrono::seconds(purge_seconds);
    if (!oidc_issuers.empty() && oidc_audiences.empty()) {
      std::cerr << "agentplane serve: --oidc-issuer needs at least one --oidc-audience\n";
      return 2;
    }
    for (const auto& a : oidc_algorithms)
      if (a != "RS256" && a != "ES256") {
        std::cerr << "agentplane serve: --oidc-algorithms: " << a << " is not supported (RS256, ES256)\n";
        return 2;
      }
    for (const auto& i : oidc_issuers)
      serve.oidc.push_back({i, oidc_audiences, oidc_algorithms, oidc_tenant_claim});
    serve.master_key = SecretString(env_or("AGENTPLANE_MASTER_KEY", ""));
    telemetry::init_logging({telemetry::parse_level(log_level), log_file, log_health});
    int rc = app::serve(serve);
    telemetry::shutdown_logging();
    return rc;
  }
  if (*migrate_cmd) {
    if (migrate_db.empty()) {
      std::cerr << "agentplane migrate: --database-url (or AGENTPLANE_MIGRATE_URL) is required\n";
      return 2;
    }
    store::MigrateOptions mo;
    mo.database_url = migrate_db;
    if (auto pw = env_or("AGENTPLANE_APP_PASSWORD", ""); !pw.empty()) mo.app_password = SecretString(pw);
    auto r = store::migrate(mo);
    if (!r) {
      std::cerr << "agentplane migrate: " << r.error().message << "\n";
      return 1;
    }
    std::cout << "schema at version " << r->version << " (" << r->applied.size()
              << " migration(s) applied)\n";
    return 0;
  }
  auto need = [](const std::string& v, const char* what) {
    if (!v.empty()) return true;
    std::cerr << "agentplane: " << what << " is required\n";
    return false;
  };
  if (*vault_rotate) return need(key_file, "--master-key-file") ? app::cli::vault_rotate(key_file) : 2;
  if (*vault_rewrap)
    return need(key_file, "--master-key-file") && need(ops_db, "--database-url") ? app::cli::vault_rewrap(key_file, ops_db, rewrap_tenant) : 2;
  if (*vault_retire)
    return need(key_file, "--master-key-file") && need(ops_db, "--database-url")
               ? app::cli::vault_retire(key_file, ops_db, retire_version)
               : 2;
  if (*audit_verify)
    return need(ops_db, "--database-url") ? app::cli::audit_verify(ops_db, audit_tenant, audit_checkpoint, key_file) : 2;
  if (*sandbox_run) return app::cli::sandbox_run(sb_opts);
  if (*sandbox_probe) return app::cli::sandbox_probe();
  if (*run_cmd) return app::cli::run_agent(client, run_assistant, run_thread, run_message, run_stream);
  if (*cred_put) return app::cli::credential_put(client, cred_name, cred_kind, cred_metadata, cred_hosts);
  if (*cred_list) return app::cli::credential_list(client);
  if (*cred_delete) return app::cli::credential_delete(client, cred_name);
  if (*tenant_create) return app::cli::tenant_create(client, tenant_name);
  if (*tenant_list) return app::cli::tenant_list(client);
  if (*usage_cmd) return app::cli::usage(client, usage_opts);
  if (*tenant_delete) {
    if (!tenant_yes) {
      std::cerr << "agentplane tenant delete: this deletes every credential, key, thread and run of the tenant; add --yes\n";
      return 2;
    }
    return app::cli::tenant_delete(client, tenant_id, retain_days);
  }
  if (*tenant_purge) return need(ops_db, "--database-url") ? app::cli::tenant_purge(ops_db) : 2;
  if (*key_create) return app::cli::key_create(client, key_tenant, key_name, key_scopes);
  if (*key_list) return app::cli::key_list(client, key_tenant);
  if (*key_revoke) return app::cli::key_revoke(client, key_tenant, key_id);
  return 0;
}
