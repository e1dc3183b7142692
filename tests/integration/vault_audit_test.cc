// The credential vault and the audit log through the HTTP API, the CLI and the database: write-only
// credentials per tenant, decryption only after its audit event is committed (fail closed),
// tokens Python can read, rewrap after a master-key rotation, the hash chain with its signed head,
// and `agentplane audit verify` catching an edited, dropped, reordered, truncated or rewritten
// chain.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "app/serve.h"
#include "audit/audit_log.h"
#include "audit/chain.h"
#include "common/crypto.h"
#include "store/pool.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"
#include "vault/credentials.h"
#include "vault/keyring.h"

namespace ap::testing {
namespace {

namespace asio = boost::asio;

class VaultAudit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server = new TestServer(); }
  static void TearDownTestSuite() {
    delete server;
    server = nullptr;
  }
  void SetUp() override {
    su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
    t = server->make_tenant("vault");
  }
  // Runs `f` on a pool of the app role, as a server shard would.
  template <class T>
  Result<T> on_pool(std::function<asio::awaitable<Result<T>>(store::Pool&)> f) {
    asio::io_context ioc;
    store::PoolOptions po;
    po.conninfo = Database::get().app_url();
    store::Pool pool(ioc.get_executor(), po);
    std::optional<Result<T>> out;
    asio::co_spawn(ioc, [&]() -> asio::awaitable<void> { out = co_await f(pool); }, asio::detached);
    ioc.run();
    // The server's audit log keeps a queue per pool: this one's goes with it.
    const std::vector<store::Pool*> pools(1, &pool);
    server->wiring().audit->forget(pools);
    pool.close();
    return out ? std::move(*out) : Result<T>(Error::internal("did not run"));
  }
  audit::Context ctx(store::Pool& pool) { return {*TenantId::parse(t.id), "key:test", "req-1", &pool}; }
  int64_t count(const std::string& sql) {
    auto r = su->exec(sql, {t.id});
    EXPECT_TRUE(r) << r.error().message;
    return r ? std::stoll(std::string(r->get(0, 0))) : -1;
  }
  // Edits the audit table as a database superuser would (triggers off), then on again.
  void tamper(const std::string& sql) {
    ASSERT_TRUE(su->exec_script("ALTER TABLE agentplane.audit_events DISABLE TRIGGER USER"));
    auto r = su->exec(sql, {t.id});
    EXPECT_TRUE(r) << r.error().message;
    ASSERT_TRUE(su->exec_script("ALTER TABLE agentplane.audit_events ENABLE TRIGGER USER"));
  }
  void swap_2_4() {  // two steps: the primary key is checked row by row
    tamper("UPDATE agentplane.audit_events SET seq = -seq WHERE tenant_id = $1 AND seq IN (2, 4)");
    tamper("UPDATE agentplane.audit_events SET seq = CASE seq WHEN -2 THEN 4 ELSE 2 END WHERE tenant_id = $1 AND seq IN (-2, -4)");
  }
  ap::testing::Run verify(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"audit", "verify", "--database-url", Database::get().app_url(), "--tenant", t.id};
    args.insert(args.end(), extra.begin(), extra.end());
    return agentplane(args);
  }

  static TestServer* server;
  std::unique_ptr<store::SyncConn> su;
  TestServer::Tenant t;
};
TestServer* VaultAudit::server = nullptr;

TEST_F(VaultAudit, CredentialsAreWriteOnlyVersionedAndPerTenant) {
  const std::string secret = "sk-test-write-only-7f3a9c";
  register_secret(secret);
  auto r = server->call("PUT", "/v1/credentials/openai", t.key,
                        json{{"value", secret}, {"kind", "provider_key"}, {"metadata", {{"team", "a"}}}}.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body.find(secret), std::string::npos);
  EXPECT_EQ(json::parse(r.body)["version"], 1);
  r = server->call("PUT", "/v1/credentials/openai", t.key, json{{"value", secret + "-2"}, {"kind", "provider_key"}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["version"], 2);
  for (const char* path : {"/v1/credentials", "/v1/credentials/openai"}) {
    auto g = server->call("GET", path, t.key);
    ASSERT_EQ(g.status, 200) << g.body;
    EXPECT_EQ(g.body.find(secret), std::string::npos) << path;
    EXPECT_EQ(g.body.find("value"), std::string::npos) << path;
  }
  // The stored token is a plain Fernet token under the tenant's key, version 1 of the master key.
  auto row = su->exec("SELECT token, key_version FROM agentplane.credentials WHERE tenant_id = $1 AND version = 2", {t.id});
  ASSERT_TRUE(row && row->size() == 1);
  EXPECT_EQ(row->get(0, 1), "1");
  EXPECT_EQ(std::string(row->get(0, 0)).find(secret), std::string::npos);
  // Python's cryptography reads it with HKDF(master, info=tenant id).
  std::string script = ::testing::TempDir() + "/read_token.py";
  std::ofstream(script) << "import base64, sys\n"
                           "from cryptography.fernet import Fernet\n"
                           "from cryptography.hazmat.primitives import hashes\n"
                           "from cryptography.hazmat.primitives.kdf.hkdf import HKDF\n"
                           "master = base64.b64decode(sys.argv[1])\n"
                           "key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=sys.argv[2].encode()).derive(master)\n"
                           "print(Fernet(base64.urlsafe_b64encode(key)).decrypt(sys.argv[3].encode()).decode())\n";
  std::string cmd = "/usr/bin/python3 -I " + script + " " + server->master_key() + " " + t.id + " " + std::string(row->get(0, 0));
  FILE* p = popen(cmd.c_str(), "r");
  char buf[256] = {};
  ASSERT_TRUE(p && fgets(buf, sizeof buf, p));
  pclose(p);
  EXPECT_EQ(std::string(buf), secret + "-2\n");

  // Another tenant sees nothing of it.
  auto other = server->make_tenant("other");
  EXPECT_EQ(server->call("GET", "/v1/credentials/openai", other.key).status, 404);
  EXPECT_EQ(server->call_json("GET", "/v1/credentials", other.key)["items"].size(), 0u);
  EXPECT_EQ(server->call("DELETE", "/v1/credentials/openai", other.key).status, 404);
  EXPECT_EQ(server->call("GET", "/v1/credentials/openai", t.key).status, 200);

  // Bad input: a clear 400 that changes nothing.
  for (auto [path, body] : std::vector<std::pair<std::string, json>>{
           {"/v1/credentials/openai", {{"kind", "secret"}}},
           {"/v1/credentials/openai", {{"value", 5}, {"kind", "secret"}}},
           {"/v1/credentials/openai", {{"value", "x"}, {"kind", "password"}}},
           {"/v1/credentials/openai", {{"value", "x"}, {"kind", "secret"}, {"metadata", "m"}}},
           {"/v1/credentials/openai", {{"value", "x"}, {"kind", "secret"}, {"colour", "red"}}},
           {"/v1/credentials/-bad-name", {{"value", "x"}, {"kind", "secret"}}}}) {
    auto b = server->call("PUT", path, t.key, body.dump());
    EXPECT_EQ(b.status, 400) << body.dump() << " " << b.body;
    EXPECT_TRUE(json::parse(b.body).contains("detail"));
  }
  EXPECT_EQ(server->call_json("GET", "/v1/credentials/openai", t.key)["version"], 2);
  // A key without the credentials scope is refused.
  auto read_only = server->call_json("POST", "/v1/keys", t.key, json{{"name", "ro"}, {"scopes", {"read"}}}.dump(), 201);
  EXPECT_EQ(server->call("GET", "/v1/credentials", read_only["key"]).status, 403);

  ASSERT_EQ(server->call("DELETE", "/v1/credentials/openai", t.key).status, 200);
  EXPECT_EQ(server->call("GET", "/v1/credentials/openai", t.key).status, 404);
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.credentials WHERE tenant_id = $1"), 0);
}

TEST_F(VaultAudit, UseWritesItsAuditEventFirstAndFailsClosed) {
  register_secret("v-123-c0ffee");
  register_secret("v-456-c0ffee");
  ASSERT_EQ(server->call("PUT", "/v1/credentials/api", t.key, json{{"value", "v-123-c0ffee"}, {"kind", "secret"}}.dump()).status, 201);
  auto& store = *server->wiring().credentials;
  auto before = count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND kind = 'credential.use'");
  auto v = on_pool<SecretString>([&](store::Pool& pool) { return store.use(ctx(pool), "api", "test"); });
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->reveal(), "v-123-c0ffee");
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND kind = 'credential.use'"), before + 1);
  // From the cache: not loaded again, but counted; the counts go to the audit log in batches
  // (the server flushes every few seconds; here at once).
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(on_pool<SecretString>([&](store::Pool& pool) { return store.use(ctx(pool), "api", "test"); }));
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND kind = 'credential.use'"), before + 1);
  ASSERT_TRUE(on_pool<bool>([&](store::Pool& pool) -> asio::awaitable<Result<bool>> {
    store.flush_uses(pool, std::chrono::seconds(0));
    // record() is fire-and-forget: an append on the same shard commits after it.
    audit::Event marker;  // (g++ 12: no braced temporaries in co_await)
    marker.kind = "test.marker";
    auto st = co_await server->wiring().audit->append(ctx(pool), marker);
    if (!st) co_return st.error();
    co_return true;
  }));
  auto counted = su->exec("SELECT convert_from(body, 'UTF8') FROM agentplane.audit_events WHERE tenant_id = $1 "
                          "AND kind = 'credential.use_count'", {t.id});
  ASSERT_TRUE(counted && counted->size() == 1);
  auto payload = json::parse(counted->get(0, 0))["payload"];
  EXPECT_EQ(payload["count"], 2);
  EXPECT_EQ(payload["name"], "api");
  EXPECT_EQ(payload["request_ids"], json::array({"req-1"}));
  EXPECT_EQ(payload["request_ids_truncated"], false);

  // A new version drops the cached value; with the audit log refusing writes, nothing is decrypted.
  ASSERT_EQ(server->call("PUT", "/v1/credentials/api", t.key, json{{"value", "v-456-c0ffee"}, {"kind", "secret"}}.dump()).status, 200);
  ASSERT_TRUE(su->exec_script("REVOKE INSERT ON agentplane.audit_events FROM agentplane_app"));
  auto refused = on_pool<SecretString>([&](store::Pool& pool) { return store.use(ctx(pool), "api", "test"); });
  ASSERT_TRUE(su->exec_script("GRANT INSERT ON agentplane.audit_events TO agentplane_app"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::kPermissionDenied);
  auto again = on_pool<SecretString>([&](store::Pool& pool) { return store.use(ctx(pool), "api", "test"); });
  ASSERT_TRUE(again);
  EXPECT_EQ(again->reveal(), "v-456-c0ffee");
  EXPECT_FALSE(on_pool<SecretString>([&](store::Pool& pool) { return store.use(ctx(pool), "missing", "test"); }));
}

TEST_F(VaultAudit, RecordedEventsGatherAndAppendsAreNotHeldBack) {
  // A linger far longer than the test: whatever is written early was sent on purpose.
  audit::AuditLog log(Clock::system(), std::chrono::seconds(60));
  asio::io_context ioc;
  store::PoolOptions po;
  po.conninfo = Database::get().app_url();
  store::Pool pool(ioc.get_executor(), po);
  auto work = asio::make_work_guard(ioc);
  std::thread io([&] { ioc.run(); });
  const std::string gathered = "SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND kind = 'test.gather'";
  auto record = [&](int n) {
    std::promise<void> queued;
    asio::post(ioc, [&] {
      for (int i = 0; i < n; ++i) log.record(ctx(pool), audit::Event{"test.gather", audit::Level::kReplay, json::object()});
      queued.set_value();
    });
    queued.get_future().wait();
  };

  record(3);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(count(gathered), 0);  // still gathering
  // An append goes at once and takes the gathered events with it, in their order before it.
  std::promise<Status> appended;
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    audit::Event marker{"test.marker", audit::Level::kReplay, json::object()};
    appended.set_value(co_await log.append(ctx(pool), marker));
  }, asio::detached);
  auto f = appended.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(f.get());
  EXPECT_EQ(count(gathered), 3);
  auto order = su->exec("SELECT kind FROM agentplane.audit_events WHERE tenant_id = $1 AND kind LIKE 'test.%' ORDER BY seq", {t.id});
  ASSERT_TRUE(order && order->size() == 4);
  EXPECT_EQ(order->get(3, 0), "test.marker");

  // Shutdown: drain sends what is gathering without waiting out the linger.
  record(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(count(gathered), 3);
  const std::vector<store::Pool*> pools(1, &pool);
  auto t0 = std::chrono::steady_clock::now();
  log.drain(pools, std::chrono::seconds(10));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(count(gathered), 5);
  work.reset();
  ioc.stop();
  io.join();
  log.forget(pools);
  pool.close();
}

TEST_F(VaultAudit, RotateRewrapAndRetire) {
  std::string file = Database::get().temp_dir() + "/master-" + t.id + ".key";
  {
    std::ofstream(file) << "1 " << server->master_key() << "\n";
  }
  ::chmod(file.c_str(), 0600);
  register_secret("pw-1-rotated-secret");
  ASSERT_EQ(server->call("PUT", "/v1/credentials/db", t.key, json{{"value", "pw-1-rotated-secret"}, {"kind", "secret"}}.dump()).status, 201);
  auto before = su->exec("SELECT token FROM agentplane.credentials WHERE tenant_id = $1", {t.id});
  uint64_t ts = *vault::Fernet::timestamp(before->get(0, 0));

  auto rotated = agentplane({"vault", "rotate", "--master-key-file", file});
  ASSERT_EQ(rotated.code, 0) << rotated.err;
  auto refused = agentplane({"vault", "retire", "--version", "1", "--master-key-file", file, "--database-url",
                             Database::get().app_url()});
  EXPECT_EQ(refused.code, 1);  // credentials still use version 1
  EXPECT_NE(refused.err.find("rewrap"), std::string::npos) << refused.err;
  auto rewrap = agentplane({"vault", "rewrap", "--master-key-file", file, "--database-url", Database::get().app_url(),
                            "--tenant", t.id});
  ASSERT_EQ(rewrap.code, 0) << rewrap.err;

  auto keys = vault::Keyring::load_file(file);
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->current(), 2);
  auto after = su->exec("SELECT token, key_version FROM agentplane.credentials WHERE tenant_id = $1", {t.id});
  EXPECT_EQ(after->get(0, 1), "2");
  EXPECT_EQ(*vault::Fernet::timestamp(after->get(0, 0)), ts);  // as MultiFernet.rotate keeps it
  auto key2 = keys->tenant_key(*TenantId::parse(t.id), 2);
  EXPECT_EQ(key2->decrypt(after->get(0, 0), 0)->reveal(), "pw-1-rotated-secret");
  EXPECT_FALSE(keys->tenant_key(*TenantId::parse(t.id), 1)->decrypt(after->get(0, 0), 0));
}

TEST_F(VaultAudit, ChainListsSignsAndVerifies) {
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(server->call("PUT", "/v1/credentials/c" + std::to_string(i), t.key,
                           json{{"value", "x"}, {"kind", "secret"}}.dump()).status, 201);
  // Events are recorded asynchronously: wait for the three puts.
  ASSERT_TRUE(eventually([&] {
    return count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND kind = 'credential.put'") == 3;
  }));
  auto list = server->call_json("GET", "/v1/audit?kind=credential.put&limit=2", t.key);
  ASSERT_EQ(list["items"].size(), 2u);
  EXPECT_EQ(list["items"][0]["entry"]["tenant"], t.id);
  auto next = server->call_json("GET", "/v1/audit?kind=credential.put&after=" + list["next_after"].dump(), t.key);
  ASSERT_EQ(next["items"].size(), 1u);
  // Events queued by different server shards need not keep the requests' order; all are there.
  std::set<std::string> names;
  for (const auto& page : {list, next})
    for (const auto& i : page["items"]) names.insert(i["entry"]["payload"]["name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"c0", "c1", "c2"}));
  EXPECT_EQ(server->call("GET", "/v1/audit?limit=0", t.key).status, 400);
  EXPECT_EQ(server->call_json("GET", "/v1/audit/decisions", t.key)["items"].size(), 0u);
  auto other = server->make_tenant("other-audit");
  EXPECT_EQ(server->call_json("GET", "/v1/audit?kind=credential.put", other.key)["items"].size(), 0u);

  // The signed head verifies with the published key, and the chain with the CLI.
  auto head = server->call("GET", "/v1/audit/checkpoint", t.key);
  ASSERT_EQ(head.status, 200) << head.body;
  auto cp = audit::Checkpoint::from_json(head.body);
  ASSERT_TRUE(cp);
  auto keys = server->call_json("GET", "/v1/audit/public-keys", "");
  ASSERT_EQ(keys["keys"].size(), 1u);
  auto pub = base64_decode(keys["keys"][0]["public_key"].get<std::string>());
  EXPECT_TRUE(audit::verify_signature(*pub, cp->signed_bytes(), *base64_decode(cp->signature)));
  std::string cp_file = Database::get().temp_dir() + "/checkpoint-" + t.id + ".json";
  std::ofstream(cp_file) << head.body;
  auto ok = verify({"--checkpoint", cp_file});
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("chain intact"), std::string::npos);
  // Failed authentication lands in the platform's chain.
  EXPECT_EQ(server->call("GET", "/v1/credentials", "ap_not_a_real_key").status, 401);
  ASSERT_TRUE(eventually([&] {
    auto r = su->exec("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = "
                      "'00000000-0000-0000-0000-000000000000' AND kind = 'auth.failure'");
    return r && r->get(0, 0) != "0";
  }));
}

TEST_F(VaultAudit, VerifyNamesTheFirstBadEntry) {
  for (int i = 0; i < 6; ++i)
    ASSERT_EQ(server->call("PUT", "/v1/credentials/k" + std::to_string(i), t.key,
                           json{{"value", "x"}, {"kind", "secret"}}.dump()).status, 201);
  ASSERT_TRUE(eventually([&] { return count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1") >= 6; }));
  auto head = server->call("GET", "/v1/audit/checkpoint", t.key);
  std::string cp_file = Database::get().temp_dir() + "/cp-" + t.id + ".json";
  std::ofstream(cp_file) << head.body;
  // No more requests from here on; wait until events queued without waiting (a sign-in in a new
  // minute) have landed, so that the chain stays as it is while it is tampered with.
  int64_t n = -1;
  ASSERT_TRUE(eventually([&] {
    int64_t now = count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1");
    bool stable = now == n;
    n = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return stable;
  }));
  ASSERT_EQ(verify().code, 0);
  // The app role cannot change history at all.
  auto app = std::move(*store::SyncConn::connect(Database::get().app_url()));
  ASSERT_TRUE(app->exec_script("BEGIN"));
  ASSERT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {t.id}));
  EXPECT_FALSE(app->exec("UPDATE audit_events SET kind = 'x' WHERE tenant_id = $1", {t.id}));
  (void)app->exec_script("ROLLBACK");

  // Edit entry 3's body.
  tamper("UPDATE agentplane.audit_events SET body = body || '\\x20'::bytea WHERE tenant_id = $1 AND seq = 3");
  auto r = verify();
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("entry 3"), std::string::npos) << r.out;
  tamper("UPDATE agentplane.audit_events SET body = substring(body from 1 for length(body) - 1) WHERE tenant_id = $1 AND seq = 3");
  ASSERT_EQ(verify().code, 0);

  // Swap entries 2 and 4.
  swap_2_4();
  r = verify();
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("entry 2"), std::string::npos) << r.out;
  swap_2_4();
  ASSERT_EQ(verify().code, 0);

  // Truncate the tail back into what the checkpoint covers (events that landed after it, such as
  // a sign-in in a new minute, go too): the chain still checks, the checkpoint catches it.
  const int64_t signed_size = json::parse(head.body)["size"].get<int64_t>();
  tamper("DELETE FROM agentplane.audit_events WHERE tenant_id = $1 AND seq >= " + std::to_string(signed_size));
  EXPECT_EQ(verify().code, 0);
  r = verify({"--checkpoint", cp_file});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("missing"), std::string::npos) << r.out;

  // Drop entry 2.
  tamper("DELETE FROM agentplane.audit_events WHERE tenant_id = $1 AND seq = 2");
  r = verify();
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("entry 2 is missing"), std::string::npos) << r.out;

  // Rewrite the whole chain consistently (new bodies, recomputed hashes): only the saved
  // checkpoint can tell.
  tamper("DELETE FROM agentplane.audit_events WHERE tenant_id = $1");
  std::string prev(32, '\0');
  for (int64_t seq = 1; seq <= n; ++seq) {
    std::string body = "{\"forged\":" + std::to_string(seq) + "}";
    std::string_view parts[] = {prev, body};
    auto h = sha256_parts(parts);
    prev.assign(reinterpret_cast<const char*>(h.data()), h.size());
    tamper("INSERT INTO agentplane.audit_events (tenant_id, seq, level, kind, body, hash) VALUES ($1, " +
           std::to_string(seq) + ", 0, 'forged', '\\x" + hex_encode(body) + "', '\\x" + hex_encode(prev) + "')");
  }
  EXPECT_EQ(verify().code, 0);
  r = verify({"--checkpoint", cp_file});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("entry " + std::to_string(signed_size)), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ap::testing
