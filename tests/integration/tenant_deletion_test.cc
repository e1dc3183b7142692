// Deleting a tenant: its keys stop at once, its data goes, its audit chain is sealed by a final
// signed checkpoint and kept for the retention period (append refused, deletes refused until
// then, verifiable against the seal), and the purge removes it afterwards. Other tenants are
// untouched.
#include <gtest/gtest.h>

#include <fstream>

#include "audit/chain.h"
#include "common/crypto.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

class TenantDeletion : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server = new TestServer(); }
  static void TearDownTestSuite() {
    delete server;
    server = nullptr;
  }
  void SetUp() override { su = std::move(*store::SyncConn::connect(Database::get().superuser_url())); }

  int64_t count(const std::string& sql, const std::string& tenant) {
    auto r = su->exec(sql, {tenant});
    EXPECT_TRUE(r) << r.error().message;
    return r ? std::stoll(std::string(r->get(0, 0))) : -1;
  }
  int64_t rows_of(const std::string& tenant) {
    return count("SELECT (SELECT count(*) FROM agentplane.api_keys WHERE tenant_id = $1) + "
                 "(SELECT count(*) FROM agentplane.credentials WHERE tenant_id = $1) + "
                 "(SELECT count(*) FROM agentplane.checkpoints WHERE tenant_id = $1)",
                 tenant);
  }
  // Puts a credential and a checkpoint row, and waits for the audit entries of the puts.
  void fill(const TestServer::Tenant& t) {
    for (int i = 0; i < 2; ++i)
      ASSERT_EQ(server->call("PUT", "/v1/credentials/c" + std::to_string(i), t.key,
                             json{{"value", "x"}, {"kind", "secret"}}.dump()).status, 201);
    ASSERT_TRUE(su->exec("INSERT INTO agentplane.checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, "
                         "source, step, header) VALUES ($1, 't', '', gen_random_uuid(), 'input', -1, '{}')",
                         {t.id}));
    ASSERT_TRUE(eventually([&] {
      return count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND kind = 'credential.put'",
                   t.id) == 2;
    }));
  }
  net::HttpResponse remove(const std::string& id, const std::string& query = "") {
    return server->call("DELETE", "/v1/tenants/" + id + query, server->admin_token());
  }
  ap::testing::Run purge() { return agentplane({"tenant", "purge", "--database-url", Database::get().app_url()}); }

  static TestServer* server;
  std::unique_ptr<store::SyncConn> su;
};
TestServer* TenantDeletion::server = nullptr;

TEST_F(TenantDeletion, KeysStopDataGoesChainIsSealedAndKept) {
  auto t = server->make_tenant("to-delete");
  auto other = server->make_tenant("stays");
  fill(t);
  fill(other);
  auto before = server->call("GET", "/v1/audit/checkpoint", t.key);
  ASSERT_EQ(before.status, 200);
  const int64_t other_rows = rows_of(other.id);

  // Bad input changes nothing.
  EXPECT_EQ(remove(t.id, "?retain_days=-1").status, 400);
  EXPECT_EQ(remove(t.id, "?retain_days=ten").status, 400);
  EXPECT_EQ(remove("not-a-uuid").status, 404);
  EXPECT_EQ(remove(Uuid::random_v4().to_string()).status, 404);
  EXPECT_EQ(server->call("DELETE", "/v1/tenants/" + t.id, t.key).status, 403);  // admin only
  EXPECT_EQ(server->call("GET", "/v1/credentials", t.key).status, 200);

  auto r = remove(t.id, "?retain_days=30");
  ASSERT_EQ(r.status, 200) << r.body;
  auto body = json::parse(r.body);
  EXPECT_EQ(body["status"], "deleted");
  EXPECT_GE(body["deleted_rows"].get<int64_t>(), 4);  // a key, two credentials, a checkpoint
  auto seal = audit::Checkpoint::from_json(body["audit_seal"].dump());
  ASSERT_TRUE(seal);
  EXPECT_EQ(seal->tenant, t.id);

  // The key is refused at once (this replica dropped it; others hear the NOTIFY).
  EXPECT_EQ(server->call("GET", "/v1/credentials", t.key).status, 401);
  EXPECT_EQ(rows_of(t.id), 0);
  EXPECT_EQ(rows_of(other.id), other_rows);
  EXPECT_EQ(server->call("GET", "/v1/credentials", other.key).status, 200);
  EXPECT_EQ(server->call("POST", "/v1/tenants/" + t.id + "/keys", server->admin_token(),
                         json{{"name", "late"}}.dump()).status, 409);

  // The seal is signed by the published key, covers the last entry (tenant.deleted), and the
  // retained chain verifies against it and against the checkpoint saved before.
  auto keys = server->call_json("GET", "/v1/audit/public-keys", "");
  auto pub = base64_decode(keys["keys"][0]["public_key"].get<std::string>());
  EXPECT_TRUE(audit::verify_signature(*pub, seal->signed_bytes(), *base64_decode(seal->signature)));
  EXPECT_EQ(count("SELECT max(seq) FROM agentplane.audit_events WHERE tenant_id = $1", t.id), seal->size);
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1 AND seq = "
                  "(SELECT max(seq) FROM agentplane.audit_events WHERE tenant_id = $1) "
                  "AND kind = 'tenant.deleted' AND level = 1",
                  t.id),
            1);
  std::string dir = Database::get().temp_dir();
  std::ofstream(dir + "/seal-" + t.id + ".json") << body["audit_seal"].dump();
  std::ofstream(dir + "/before-" + t.id + ".json") << before.body;
  for (const auto& f : {"/seal-", "/before-"}) {
    auto v = agentplane({"audit", "verify", "--database-url", Database::get().app_url(), "--tenant", t.id,
                         "--checkpoint", dir + f + t.id + ".json"});
    EXPECT_EQ(v.code, 0) << f << v.out << v.err;
  }

  // The sealed chain takes no more entries, and its entries cannot be deleted before their time.
  auto app = std::move(*store::SyncConn::connect(Database::get().app_url()));
  ASSERT_TRUE(app->exec_script("BEGIN"));
  ASSERT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {t.id}));
  auto late = app->exec("SELECT * FROM audit_append($1, '{0}', '{late}', ARRAY['\\x7b7d'::bytea])", {t.id});
  (void)app->exec_script("ROLLBACK");
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message.find("sealed"), std::string::npos) << late.error().message;
  EXPECT_FALSE(su->exec("DELETE FROM agentplane.audit_events WHERE tenant_id = $1", {t.id}));

  // The admin sees the tenant as deleted, with its seal; repeating the delete changes nothing.
  auto got = server->call_json("GET", "/v1/tenants/" + t.id, server->admin_token());
  EXPECT_EQ(got["status"], "deleted");
  EXPECT_EQ(got["audit_seal"], body["audit_seal"]);
  auto again = remove(t.id);
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(json::parse(again.body)["audit_seal"], body["audit_seal"]);
  EXPECT_EQ(json::parse(again.body)["audit_retain_until"], body["audit_retain_until"]);
  auto list = server->call_json("GET", "/v1/tenants?limit=1000", server->admin_token());
  bool listed = false;
  for (const auto& i : list["items"])
    if (i["tenant_id"] == t.id) listed = i["status"] == "deleted";
  EXPECT_TRUE(listed) << list.dump();

  // A row that reaches the tenant late (a request already in flight) is swept; the chain is
  // still within its retention and stays.
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.credentials (tenant_id, name, version, kind, key_version, token, "
                       "created_by) VALUES ($1, 'late', 1, 'secret', 1, 'gAAAA', 'test')",
                       {t.id}));
  auto p = purge();
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_GE(json::parse(p.out)["swept_rows"].get<int64_t>(), 1);
  EXPECT_EQ(rows_of(t.id), 0);
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1", t.id), seal->size);
}

TEST_F(TenantDeletion, PurgeRemovesTheChainAfterItsRetention) {
  auto t = server->make_tenant("short-retention");
  fill(t);
  auto r = remove(t.id, "?retain_days=0");
  ASSERT_EQ(r.status, 200) << r.body;
  auto p = purge();
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_GE(json::parse(p.out)["purged_tenants"].get<int>(), 1);
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1", t.id), 0);
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.audit_seals WHERE tenant_id = $1", t.id), 0);
  EXPECT_EQ(count("SELECT count(*) FROM agentplane.tenants WHERE id = $1", t.id), 0);
  EXPECT_EQ(server->call("GET", "/v1/tenants/" + t.id, server->admin_token()).status, 404);
  // The app role still cannot delete a live tenant's chain, even through the purge.
  auto live = server->make_tenant("live");
  fill(live);
  ASSERT_EQ(purge().code, 0);
  EXPECT_GE(count("SELECT count(*) FROM agentplane.audit_events WHERE tenant_id = $1", live.id), 2);
}

}  // namespace
}  // namespace ap::testing
