#include "tests/integration/fixture.h"

#include <atomic>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <sstream>
#include <thread>
#include <signal.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "auth/api_key.h"
#include "auth/authenticator.h"
#include "common/crypto.h"
#include "store/migrate.h"
#include "store/sync_conn.h"
#include "telemetry/log.h"

extern char** environ;

namespace ap::testing {

namespace {

std::string evidence_dir() {
  const char* d = std::getenv("AP_EVIDENCE_DIR");
  return d ? d : "";
}

std::mutex& evidence_mu() {
  static std::mutex mu;
  return mu;
}

}  // namespace

void register_secret(const std::string& secret) {
  if (evidence_dir().empty() || secret.empty()) return;
  std::lock_guard lock(evidence_mu());
  std::ofstream(evidence_dir() + "/secrets.txt", std::ios::app) << secret << "\n";
}

void add_evidence(const std::string& kind, const std::string& text) {
  if (evidence_dir().empty() || text.empty()) return;
  std::lock_guard lock(evidence_mu());
  std::ofstream(evidence_dir() + "/" + std::to_string(getpid()) + "." + kind, std::ios::app) << text << "\n";
}

Database& Database::get() {
  static Database* db = new Database();  // stopped by the atexit hook below
  return *db;
}

Database::Database() {
  // The in-process servers' logs go where the leak check reads them.
  if (!evidence_dir().empty())
    telemetry::init_logging({telemetry::Level::kInfo, evidence_dir() + "/" + std::to_string(getpid()) + ".log", true});
  char tmpl[] = "/tmp/ap-test-XXXXXX";
  temp_ = mkdtemp(tmpl);
  // The postgres user (when we are root) must be able to reach the cluster.
  chmod(temp_.c_str(), 0755);
  socket_dir_ = temp_ + "/s";
  auto pg = store::LocalPostgres::start({temp_ + "/pg", socket_dir_, temp_ + "/postgres.log",
                                         /*durable=*/false});
  if (!pg) {
    std::fprintf(stderr, "cannot start PostgreSQL: %s\n", pg.error().message.c_str());
    std::abort();
  }
  pg_ = std::move(*pg);
  auto admin = store::SyncConn::connect(pg_->conninfo("postgres", "postgres"));
  if (!admin || !(*admin)->exec_script("CREATE DATABASE agentplane")) std::abort();
  store::MigrateOptions mo;
  mo.database_url = superuser_url();
  if (auto r = store::migrate(mo); !r) {
    std::fprintf(stderr, "migrate failed: %s\n", r.error().message.c_str());
    std::abort();
  }
  std::atexit([] {
    auto& d = Database::get();
    (void)d.pg_->stop();
    std::error_code ec;
    std::filesystem::remove_all(d.temp_, ec);
  });
}

std::string Database::superuser_url() const { return pg_->conninfo("postgres", "agentplane"); }
std::string Database::app_url() const { return pg_->conninfo("agentplane_app", "agentplane"); }

TestServer::TestServer(int threads, std::chrono::seconds touch_interval, std::vector<auth::OidcIssuerConfig> oidc,
                       std::string role, std::string redis_url, int worker_lease_ms) {
  admin_ = std::string(auth::generate_admin_token().reveal());
  app::ServeConfig c;
  c.database_url = Database::get().app_url();
  c.admin_token = SecretString(admin_);
  c.server.listen = "127.0.0.1:0";
  c.server.threads = threads;
  c.server.body_limit = 64 * 1024;
  c.touch_interval = touch_interval;
  c.oidc = std::move(oidc);
  c.role = std::move(role);
  c.egress_allow = {"127.0.0.1"};  // the tests' mock providers listen on loopback
  c.webhook_retry_ms = 100;        // webhook retries within a test's patience (5 POSTs in ~4 s)
  if (worker_lease_ms > 0) c.worker_lease_ms = worker_lease_ms;
  if (!redis_url.empty()) {
    c.ratelimit_backend = "redis";
    c.redis_url = std::move(redis_url);
    c.ratelimit_fail_open = false;
  }
  std::string raw(32, '\0');
  random_bytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size());
  master_key_ = base64_encode(raw);
  c.master_key = SecretString(master_key_);
  register_secret(admin_);
  register_secret(master_key_);
  auto s = app::start_server(c, wiring_);
  if (!s) {
    ADD_FAILURE() << s.error().message;
    std::abort();
  }
  server_ = std::move(*s);
}

TestServer::~TestServer() {
  if (auto m = net::http_request(url(), "GET", "/metrics", {}, ""); m) add_evidence("metrics", m->body);
  server_->stop();
  server_.reset();
  wiring_.reset();
}

net::HttpResponse TestServer::call(const std::string& method, const std::string& target,
                                   const std::string& credential, const std::string& body,
                                   std::vector<std::pair<std::string, std::string>> headers) {
  if (!credential.empty()) headers.emplace_back("authorization", "Bearer " + credential);
  auto r = net::http_request(url(), method, target, headers, body);
  if (!r) {
    ADD_FAILURE() << r.error().message;
    return {};
  }
  if (r->status >= 400) add_evidence("bodies", r->body);
  if (r->status == 201 && r->body.find("\"key\":\"ap_") != std::string::npos) {  // a new API key, shown once
    auto j = json::parse(r->body, nullptr, false);
    if (j.is_object() && j.contains("key") && j["key"].is_string()) register_secret(j["key"].get<std::string>());
  }
  return *r;
}

json TestServer::call_json(const std::string& method, const std::string& target,
                           const std::string& credential, const std::string& body,
                           int expect_status) {
  auto r = call(method, target, credential, body);
  EXPECT_EQ(r.status, expect_status) << method << " " << target << ": " << r.body;
  json j = json::parse(r.body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.body;
  return j;
}

TestServer::Tenant TestServer::make_tenant(const std::string& name) {
  auto t = call_json("POST", "/v1/tenants", admin_, json{{"name", name}}.dump(), 201);
  Tenant out;
  out.id = t.value("tenant_id", "");
  auto k = call_json("POST", "/v1/tenants/" + out.id + "/keys", admin_,
                     json{{"name", "all"}}.dump(), 201);
  out.key = k.value("key", "");
  out.key_id = k.value("key_id", "");
  register_secret(out.key);
  return out;
}


std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the agentplane binary with `args` and extra environment `env` ("K=V").
namespace {

// Runs `exe` (looked up on PATH when `search_path`) and waits; output is captured in files.
// Starts `exe` with `args`; stdin from `in`, stdout and stderr to `out` and `err`. The caller's
// AGENTPLANE_* variables and HOME are dropped; `env` is added.
pid_t spawn_program(std::string exe, bool search_path, std::vector<std::string> args, std::vector<std::string> env,
                    const std::string& in, const std::string& out, const std::string& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> argv{exe.data()};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string s(*e);
    if (s.rfind("AGENTPLANE_", 0) != 0 && s.rfind("HOME=", 0) != 0) envs.push_back(s);
  }
  envs.push_back("HOME=" + Database::get().temp_dir());  // no dev.json to fall back on
  for (auto& e : env) envs.push_back(e);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid;
  int spawned = search_path ? posix_spawnp(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data())
                            : posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  return spawned == 0 ? pid : -1;
}

Run run_program(std::string exe, bool search_path, std::vector<std::string> args, std::vector<std::string> env,
                const std::string& stdin_text) {
  std::string dir = Database::get().temp_dir();
  static std::atomic<int> n{0};
  std::string out = dir + "/cli" + std::to_string(++n) + ".out", err = out + ".err";
  std::string in = out + ".in";
  {
    std::ofstream(in) << stdin_text;
  }
  Run r;
  pid_t pid = spawn_program(std::move(exe), search_path, std::move(args), std::move(env), in, out, err);
  if (pid < 0) return r;
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace

Run agentplane(std::vector<std::string> args, std::vector<std::string> env, const std::string& stdin_text) {
  const char* bin = std::getenv("AP_BINARY");
  Run r = run_program(bin ? bin : "./agentplane", false, std::move(args), std::move(env), stdin_text);
  add_evidence("stderr", r.err);
  return r;
}

pid_t spawn_agentplane(std::vector<std::string> args, const std::string& log) {
  const char* bin = std::getenv("AP_BINARY");
  return spawn_program(bin ? bin : "./agentplane", false, std::move(args), {}, "/dev/null", log, log + ".err");
}

Run node(std::vector<std::string> args, std::vector<std::string> env) {
  return run_program("node", true, std::move(args), std::move(env), "");
}

}  // namespace ap::testing

namespace ap::testing {

RedisServer::RedisServer() {
  if (access("/usr/bin/redis-server", X_OK) != 0) return;
  {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port_ = a.local_endpoint().port();
  }
  dir_ = (std::filesystem::temp_directory_path() / ("ap-redis-" + std::to_string(getpid()) + "-" + std::to_string(port_))).string();
  std::filesystem::create_directories(dir_);
  pid_ = fork();
  if (pid_ == 0) {
    const std::string port = std::to_string(port_);
    execl("/usr/bin/redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port.c_str(), "--save", "",
          "--appendonly", "no", "--dir", dir_.c_str(), "--logfile", "", "--daemonize", "no", nullptr);
    _exit(127);
  }
  for (int i = 0; i < 250; ++i) {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket s(ioc);
    boost::system::error_code ec;
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    if (!ec) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

RedisServer::~RedisServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace ap::testing
