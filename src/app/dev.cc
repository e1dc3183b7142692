#include "app/dev.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/serve.h"
#include "auth/api_key.h"
#include "common/crypto.h"
#include "net/blocking_client.h"
#include "store/local_postgres.h"
#include "store/migrate.h"
#include "store/sync_conn.h"
#include "telemetry/log.h"
#include "vault/keyring.h"

namespace ap::app {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kDatabase = "agentplane";

struct Layout {
  std::string cluster_dir, socket_dir, log_file;
};

// PostgreSQL refuses to run as root, and the postgres user cannot traverse /root: as root the
// cluster lives under /var/lib/agentplane (named after the data folder) and the banner says so.
Layout layout_for(const std::string& data_dir) {
  auto id = sha256(data_dir);
  std::string tag = hex_encode(id.data(), 4);
  Layout l;
  // Unix socket paths are limited to ~107 bytes: keep the socket folder short, under /tmp.
  l.socket_dir = "/tmp/ap-" + std::to_string(geteuid()) + "-" + tag;
  if (geteuid() == 0) {
    l.cluster_dir = "/var/lib/agentplane/dev-" + tag + "/pg";
    l.log_file = "/var/lib/agentplane/dev-" + tag + "/postgres.log";
  } else {
    l.cluster_dir = data_dir + "/pg";
    l.log_file = data_dir + "/postgres.log";
  }
  return l;
}

Status ensure_database(const store::LocalPostgres& pg) {
  AP_ASSIGN_OR_RETURN(auto db, store::SyncConn::connect(pg.conninfo("postgres", "postgres")));
  AP_ASSIGN_OR_RETURN(auto rows,
                      db->exec("SELECT 1 FROM pg_database WHERE datname = $1", {kDatabase}));
  if (rows.empty()) AP_RETURN_IF_ERROR(db->exec_script("CREATE DATABASE agentplane"));
  return ok_status();
}

Result<json> read_dev_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::not_found("no dev.json");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error::invalid_argument(path + " is malformed");
  return j;
}

Status write_dev_json(const std::string& path, const json& j) {
  // Secret: dev.json holds the admin token and the demo key: created 0600 before any byte.
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return Error::failed_precondition("cannot write " + tmp);
  std::string text = j.dump(2) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::fsync(fd);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return Error::failed_precondition("cannot write " + path);
  return ok_status();
}

// The demo tenant and its key are made through the server's own admin API on first start.
Status create_demo_tenant(const std::string& url, const std::string& admin, json& dev) {
  std::vector<std::pair<std::string, std::string>> h = {{"authorization", "Bearer " + admin}};
  AP_ASSIGN_OR_RETURN(auto t, net::http_request(url, "POST", "/v1/tenants", h, R"({"name":"demo"})"));
  if (t.status != 201) return Error::internal("creating the demo tenant failed: " + t.body);
  auto tj = json::parse(t.body, nullptr, false);
  std::string tenant = tj.value("tenant_id", "");
  AP_ASSIGN_OR_RETURN(auto k, net::http_request(url, "POST", "/v1/tenants/" + tenant + "/keys", h,
                                                R"({"name":"demo key"})"));
  if (k.status != 201) return Error::internal("creating the demo key failed");
  auto kj = json::parse(k.body, nullptr, false);
  dev["demo_tenant_id"] = tenant;
  dev["demo_api_key"] = kj.value("key", "");
  return ok_status();
}

// The demo tenant's agent "demo" (a graph id, so also its assistant id): the ReAct loop (an llm
// node, a tools node) on the scripted model route "demo-model", which needs no network: it hands
// the user's message to the calculator and answers with the result, token by token. Registered
// (again) on every start so that both follow the binary; a tenant points the graph at a real
// model by changing its "model" (see README, "Models").
constexpr const char* kDemoModel = R"({"provider": "scripted", "upstream_model": "agentplane-demo",
  "script": {"token_delay_ms": 40,
    "replies": [
      {"content": "", "tool_calls": [{"name": "calculator", "args": {"expression": "{{last_user}}"}}]},
      "{{last_user}} = {{last}}. I am agentplane's scripted demo model: the calculator ran as a tool call in a ReAct loop, every step checkpointed in PostgreSQL."],
    "rules": [{"when_last_contains": "Error:",
               "reply": "I am agentplane's scripted demo model and only do arithmetic for now: try agentplane run --assistant demo --stream \"(2 + 3) * 7\". Point the demo graph at a real model route to chat."}]}})";

constexpr const char* kDemoGraph = R"({
  "channels": {"messages": "messages"},
  "nodes": {
    "agent": {"kind": "llm", "model": "demo-model", "tools": ["calculator", "current_time"],
              "system": "You are agentplane's demo agent. Use the calculator for arithmetic."},
    "tools": {"kind": "tools", "tools": ["calculator", "current_time"]},
    "route": {"kind": "router",
              "cases": [{"when": {"path": "messages[-1].tool_calls", "op": "empty"}, "goto": "__end__"}],
              "default": "tools"}},
  "edges": [["__start__", "agent"], ["agent", "route"], ["tools", "agent"]]})";

// The agent "coder": the same loop with the `code` tool on the scripted route "coder-model",
// which wraps the user's Python expression in print() and runs it in the sandbox.
constexpr const char* kCoderModel = R"json({"provider": "scripted", "upstream_model": "agentplane-coder",
  "script": {"token_delay_ms": 40,
    "replies": [
      {"content": "", "tool_calls": [{"name": "code", "args": {"language": "python", "code": "print({{last_user}})"}}]},
      "{{last_user}} is {{last}}That ran as Python in a fresh sandbox (namespaces, seccomp, cgroups; no network)."],
    "rules": [{"when_last_contains": "Error:",
               "reply": "The sandbox said: {{last}}"}]}})json";

constexpr const char* kCoderGraph = R"({
  "channels": {"messages": "messages"},
  "nodes": {
    "agent": {"kind": "llm", "model": "coder-model", "tools": ["code"],
              "system": "You are agentplane's demo coder. Run Python to answer."},
    "tools": {"kind": "tools", "tools": ["code"]},
    "route": {"kind": "router",
              "cases": [{"when": {"path": "messages[-1].tool_calls", "op": "empty"}, "goto": "__end__"}],
              "default": "tools"}},
  "edges": [["__start__", "agent"], ["agent", "route"], ["tools", "agent"]]})";

Status register_demo_agent(const std::string& url, const json& dev) {
  std::vector<std::pair<std::string, std::string>> h = {{"x-api-key", dev.value("demo_api_key", "")}};
  AP_ASSIGN_OR_RETURN(auto m, net::http_request(url, "PUT", "/v1/model-routes/demo-model", h, kDemoModel));
  if (m.status != 200 && m.status != 201) return Error::internal("registering the demo model failed: " + m.body);
  AP_ASSIGN_OR_RETURN(auto r, net::http_request(url, "PUT", "/v1/graphs/demo", h, kDemoGraph));
  if (r.status != 200 && r.status != 201) return Error::internal("registering the demo graph failed: " + r.body);
  AP_ASSIGN_OR_RETURN(auto cm, net::http_request(url, "PUT", "/v1/model-routes/coder-model", h, kCoderModel));
  if (cm.status != 200 && cm.status != 201) return Error::internal("registering the coder model failed: " + cm.body);
  AP_ASSIGN_OR_RETURN(auto cg, net::http_request(url, "PUT", "/v1/graphs/coder", h, kCoderGraph));
  if (cg.status != 200 && cg.status != 201) return Error::internal("registering the coder graph failed: " + cg.body);
  return ok_status();
}

void print_banner(const json& dev, const std::string& data_dir, const Layout& l,
                  const std::string& log_file) {
  std::string key = dev.value("demo_api_key", "");
  std::cout << "\n  agentplane dev is running\n\n"
            << "  API            " << dev.value("url", "") << "\n"
            << "  admin token    " << dev.value("admin_token", "") << "\n"
            << "  demo tenant    " << dev.value("demo_tenant_id", "") << "\n"
            << "  demo API key   " << key << "\n\n"
            << "  data folder    " << data_dir << "  (dev.json holds the values above, mode 0600)\n"
            << "  PostgreSQL     " << l.cluster_dir << "  (socket in " << l.socket_dir << ")\n"
            << "  logs           " << (log_file.empty() ? "stderr" : log_file) << "\n\n"
            << "  try:  curl -H 'x-api-key: " << key << "' " << dev.value("url", "")
            << "/v1/keys\n"
            << "        agentplane run --assistant demo --stream \"(2 + 3) * 7\"   (an agent run: model, tool, streamed tokens)\n"
            << "        agentplane run --assistant coder --stream \"sum(i * i for i in range(10))\"   (the agent runs Python in the sandbox)\n\n"
            << "  Ctrl-C stops the server and PostgreSQL.\n"
            << std::endl;
}

}  // namespace

std::string default_data_dir() {
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.agentplane";
}

int run_dev(const DevConfig& config) {
  std::string data_dir = fs::absolute(config.data_dir.empty() ? default_data_dir() : config.data_dir)
                             .lexically_normal()
                             .string();
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  ::chmod(data_dir.c_str(), 0700);
  std::string log_file = config.log_file.empty() ? data_dir + "/agentplane.log"
                         : config.log_file == "-" ? ""
                                                  : config.log_file;
  telemetry::init_logging({telemetry::parse_level(config.log_level), log_file, false});
  auto fail = [](const Error& e) {
    std::cerr << "agentplane dev: " << e.message << "\n";
    telemetry::shutdown_logging();
    return 1;
  };

  Layout layout = layout_for(data_dir);
  if (geteuid() == 0) {
    fs::create_directories("/var/lib/agentplane", ec);
    ::chmod("/var/lib/agentplane", 0755);
    fs::create_directories(fs::path(layout.cluster_dir).parent_path(), ec);
    ::chmod(fs::path(layout.cluster_dir).parent_path().c_str(), 0755);
  }
  std::cout << "agentplane dev: starting PostgreSQL in " << layout.cluster_dir << " ..."
            << std::endl;
  auto pg = store::LocalPostgres::start(
      {layout.cluster_dir, layout.socket_dir, layout.log_file, /*durable=*/true});
  if (!pg) return fail(pg.error());
  if (auto st = ensure_database(**pg); !st) return fail(st.error());
  store::MigrateOptions mo;
  mo.database_url = (*pg)->conninfo("postgres", kDatabase);
  if (auto r = store::migrate(mo); !r) return fail(r.error());

  std::string dev_json = data_dir + "/dev.json";
  json dev = json::object();
  if (auto existing = read_dev_json(dev_json)) dev = *existing;
  if (!dev.contains("admin_token")) dev["admin_token"] = auth::generate_admin_token().reveal();

  // The master key lives in the data folder (0600), never in the database.
  std::string key_file = data_dir + "/master.key";
  if (!fs::exists(key_file))
    if (auto st = vault::Keyring::create_file(key_file); !st) return fail(st.error());

  ServeConfig sc;
  sc.master_key_file = key_file;
  sc.database_url = (*pg)->conninfo(store::kAppRole, kDatabase);
  sc.admin_token = SecretString(dev["admin_token"].get<std::string>());
  sc.server.listen = config.listen;
  sc.server.threads = config.threads;
  if (config.pool_size) sc.server.pool.max_size = config.pool_size;
  sc.worker_concurrency = config.worker_concurrency;
  sc.egress_allow = config.egress_allow;
  if (!config.redis_url.empty()) {
    sc.ratelimit_backend = "redis";
    sc.redis_url = config.redis_url;
  }
  std::unique_ptr<Wiring> wiring;
  auto server = start_server(sc, wiring);
  if (!server) return fail(server.error());
  auto hp = gateway::parse_listen_address(config.listen);
  std::string url = "http://" + hp->host + ":" + std::to_string((*server)->port());
  dev["url"] = url;
  if (!dev.contains("demo_tenant_id") || !dev.contains("demo_api_key")) {
    if (auto st = create_demo_tenant(url, dev["admin_token"], dev); !st) {
      (*server)->stop();
      return fail(st.error());
    }
  }
  if (auto st = register_demo_agent(url, dev); !st) {
    (*server)->stop();
    return fail(st.error());
  }
  if (auto st = write_dev_json(dev_json, dev); !st) {
    (*server)->stop();
    return fail(st.error());
  }
  print_banner(dev, data_dir, layout, log_file);
  telemetry::log_info("dev_started", {{"url", url}});

  wait_for_stop_signal();
  std::cout << "agentplane dev: stopping ..." << std::endl;
  (*server)->stop();
  server->reset();
  wiring.reset();
  auto st = (*pg)->stop();
  telemetry::shutdown_logging();
  if (!st) {
    std::cerr << "agentplane dev: " << st.error().message << "\n";
    return 1;
  }
  std::cout << "agentplane dev: stopped." << std::endl;
  return 0;
}

}  // namespace ap::app
