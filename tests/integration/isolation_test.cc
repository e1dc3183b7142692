// The database itself isolates tenants: row-level security as the app role, with no help from
// the server's code.
#include <gtest/gtest.h>

#include <set>

#include "common/ids.h"
#include "store/migrate.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

// Platform tables: not tenant-owned (docs/database.md). Every other table must be a tenant table.
const std::set<std::string> kPlatformTables = {"tenants", "schema_migrations"};
// Tenant tables and a statement inserting one row for tenant $1 (the test's fixtures).
const std::vector<std::pair<std::string, std::string>> kTenantTables = {
    {"api_keys",
     "INSERT INTO api_keys (tenant_id, id, hash, prefix, name, scopes, created_by) VALUES "
     "($1, gen_random_uuid(), sha256(gen_random_uuid()::text::bytea), 'ap_x', 'k', '{read}', "
     "'test')"},
    {"checkpoint_layouts",
     "INSERT INTO checkpoint_layouts (tenant_id, id, channels, nodes) VALUES ($1, 'l', '{}', '{}')"},
    {"checkpoints",
     "INSERT INTO checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, source, step, "
     "header) VALUES ($1, 't', '', gen_random_uuid(), 'input', -1, '{}')"},
    {"checkpoint_blobs",
     "INSERT INTO checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, channel, ref, kind, data) "
     "VALUES ($1, 't', '', 'c', gen_random_uuid(), 0, '1')"},
    {"checkpoint_writes",
     "INSERT INTO checkpoint_writes (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, "
     "idx, task_path, channel, value) SELECT $1, 't', '', checkpoint_id, 'task', 0, '', 'c', '1' "
     "FROM checkpoints LIMIT 1"},
    {"audit_events",
     "INSERT INTO audit_events (tenant_id, seq, level, kind, body, hash) VALUES ($1, 1, 0, 'k', "
     "'\\x7b7d', '\\x00')"},
    {"audit_heads", "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, '\\x00')"},
    {"audit_seals", "INSERT INTO audit_seals (tenant_id, seq, hash, checkpoint) VALUES ($1, 0, '\\x00', '{}')"},
    {"graphs", "INSERT INTO graphs (tenant_id, graph_id, spec, created_by) VALUES ($1, 'g', '{}', 'test')"},
    {"assistants",
     "INSERT INTO assistants (tenant_id, assistant_id, graph_id, version, name) VALUES ($1, gen_random_uuid(), 'g', 1, 'a')"},
    {"assistant_versions",
     "INSERT INTO assistant_versions (tenant_id, assistant_id, version, graph_id, name) VALUES ($1, "
     "(SELECT assistant_id FROM assistants LIMIT 1), 1, 'g', 'a')"},
    {"threads", "INSERT INTO threads (tenant_id, thread_id) VALUES ($1, gen_random_uuid())"},
    {"runs",
     "INSERT INTO runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, status) VALUES ($1, "
     "gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '{}', 'test', 'success')"},
    // (the app role may only read running_runs: a running run's trigger writes its row)
    {"running_runs",
     "INSERT INTO runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, status) VALUES ($1, "
     "gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '{}', 'test', 'running')"},
    {"run_events",
     "INSERT INTO run_events (tenant_id, run_id, seq, event, data) VALUES ($1, gen_random_uuid(), 0, 'metadata', '{}')"},
    {"store_items", "INSERT INTO store_items (tenant_id, namespace, key, value) VALUES ($1, '{a}', 'k', '{}')"},
    {"webhook_deliveries",
     "INSERT INTO webhook_deliveries (tenant_id, id, run_id, url, payload, next_at) VALUES ($1, gen_random_uuid(), "
     "gen_random_uuid(), 'http://127.0.0.1:9/', '{}', now() + interval '1 day')"},
    {"crons",
     "INSERT INTO crons (tenant_id, cron_id, assistant_id, schedule, payload, next_run_date) VALUES ($1, "
     "gen_random_uuid(), gen_random_uuid(), '* * * * *', '{}', now() + interval '1 day')"},
    {"credentials",
     "INSERT INTO credentials (tenant_id, name, version, kind, key_version, token, created_by) "
     "VALUES ($1, 'c', 1, 'secret', 1, 'gAAAA', 'test')"},
    {"model_routes",
     "INSERT INTO model_routes (tenant_id, name, provider, upstream_model) VALUES ($1, 'm', 'openai', 'gpt')"},
    {"usage_records",
     "INSERT INTO usage_records (tenant_id, id, created_at, source, model, provider, status) VALUES ($1, "
     "gen_random_uuid(), now(), 'gateway', 'm', 'openai', 200)"},
    {"usage_hourly", "INSERT INTO usage_hourly (tenant_id, hour, model) VALUES ($1, date_trunc('hour', now()), 'm')"},
    {"tenant_limits", "INSERT INTO tenant_limits (tenant_id, limits) VALUES ($1, '{}')"},
};

std::unique_ptr<store::SyncConn> connect(const std::string& url) {
  auto c = store::SyncConn::connect(url);
  EXPECT_TRUE(c) << (c ? "" : c.error().message);
  return std::move(*c);
}

class Isolation : public ::testing::Test {
 protected:
  void SetUp() override {
    su = connect(Database::get().superuser_url());
    app = connect(Database::get().app_url());
    a = Uuid::random_v4().to_string();
    b = Uuid::random_v4().to_string();
    for (const auto& t : {a, b}) {
      ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'iso')", {t}));
      ASSERT_TRUE(su->exec_script("SET search_path = agentplane"));
      for (const auto& [table, insert] : kTenantTables) {
        // Rows are written as the app role under each tenant's own context.
        ASSERT_TRUE(app->exec_script("BEGIN"));
        ASSERT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {t}));
        auto r = app->exec(insert, {t});
        ASSERT_TRUE(r) << table << ": " << r.error().message;
        ASSERT_TRUE(app->exec_script("COMMIT"));
      }
    }
  }

  // Runs `sql` as the app role in a transaction bound to `tenant` ("" = no tenant set).
  Result<store::Rows> as_tenant(const std::string& tenant, const std::string& sql,
                                std::vector<store::Param> params = {}) {
    EXPECT_TRUE(app->exec_script("BEGIN"));
    if (!tenant.empty()) {
      EXPECT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {tenant}));
    }
    auto r = app->exec(sql, params);
    (void)app->exec_script(r ? "COMMIT" : "ROLLBACK");
    return r;
  }

  std::unique_ptr<store::SyncConn> su, app;
  std::string a, b;
};

TEST_F(Isolation, SelectStarSeesOnlyTheCurrentTenant) {
  for (const auto& [table, _] : kTenantTables) {
    auto rows = as_tenant(a, "SELECT tenant_id FROM " + table);
    ASSERT_TRUE(rows) << rows.error().message;
    ASSERT_GE(rows->size(), 1) << table;
    for (int i = 0; i < rows->size(); ++i) EXPECT_EQ(rows->get(i, 0), a) << table;
  }
  auto tenants = as_tenant(a, "SELECT id FROM tenants");
  ASSERT_TRUE(tenants);
  ASSERT_EQ(tenants->size(), 1);
  EXPECT_EQ(tenants->get(0, 0), a);
}

TEST_F(Isolation, NoTenantSetSeesNothingWithoutError) {
  for (const auto& [table, _] : kTenantTables) {
    auto rows = as_tenant("", "SELECT * FROM " + table);
    ASSERT_TRUE(rows) << table << ": " << rows.error().message;
    EXPECT_EQ(rows->size(), 0) << table;
  }
  // After a transaction-local set_config the setting reads back as '' on this connection.
  auto rows = as_tenant("", "SELECT count(*) FROM api_keys");
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->get(0, 0), "0");
}

TEST_F(Isolation, WritesCarryingAnotherTenantsIdFail) {
  for (const auto& [table, insert] : kTenantTables) {
    auto r = as_tenant(a, insert, {b});
    ASSERT_FALSE(r) << table;
    EXPECT_EQ(r.error().code, Code::kPermissionDenied) << r.error().message;
  }
  auto moved = as_tenant(a, "UPDATE api_keys SET tenant_id = $1", {b});
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, Code::kPermissionDenied);
  auto touch = as_tenant(a, "UPDATE api_keys SET name = 'x' WHERE tenant_id = $1", {b});
  ASSERT_TRUE(touch);
  EXPECT_EQ(touch->affected(), 0);
  auto del = as_tenant(a, "DELETE FROM api_keys WHERE tenant_id = $1", {b});
  ASSERT_TRUE(del);
  EXPECT_EQ(del->affected(), 0);
  auto count = as_tenant(b, "SELECT count(*) FROM api_keys WHERE name <> 'x'");
  EXPECT_EQ(count->get(0, 0), "1");
}

TEST_F(Isolation, AppRoleCannotEscape) {
  for (const char* sql : {"ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY",
                          "ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY",
                          "DROP POLICY tenant_isolation ON api_keys",
                          "SET row_security = off",
                          "SET ROLE agentplane_system",
                          "SET ROLE agentplane_owner",
                          "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'x')",
                          "SELECT 1 FROM pg_authid"}) {
    auto r = as_tenant(a, sql);
    if (r && std::string(sql) == "SET row_security = off") {
      // Accepted as a setting, but with FORCE RLS a query that would be filtered now errors
      // instead of showing other tenants' rows.
      ASSERT_TRUE(app->exec_script("BEGIN"));
      ASSERT_TRUE(app->exec_script("SET LOCAL row_security = off"));
      auto q = app->exec("SELECT * FROM api_keys");
      (void)app->exec_script("ROLLBACK");
      EXPECT_FALSE(q) << "row_security=off must not reveal rows";
      continue;
    }
    EXPECT_FALSE(r) << sql;
  }
}

TEST_F(Isolation, EveryNonPlatformTableIsATenantTable) {
  auto tables = su->exec(
      "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
      "  (SELECT a.attname FROM pg_attribute a JOIN pg_index i ON i.indrelid = c.oid "
      "   AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = i.indkey[0]), "
      "  (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid), "
      "  (SELECT bool_and(pg_get_expr(p.polqual, p.polrelid) LIKE '(tenant_id = (NULLIF(current_setting(''app.tenant_id''::text, true), ''''::text))::uuid)' "
      "     AND pg_get_expr(p.polwithcheck, p.polrelid) = pg_get_expr(p.polqual, p.polrelid)) "
      "   FROM pg_policy p WHERE p.polrelid = c.oid) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = 'agentplane' AND c.relkind IN ('r', 'p') ORDER BY 1");
  ASSERT_TRUE(tables) << tables.error().message;
  std::set<std::string> tenant_tables;
  for (const auto& [t, _] : kTenantTables) tenant_tables.insert(t);
  int checked = 0;
  for (int i = 0; i < tables->size(); ++i) {
    std::string name(tables->get(i, 0));
    if (kPlatformTables.count(name)) continue;
    ++checked;
    EXPECT_TRUE(tenant_tables.count(name)) << name << " is not on the platform list and has no "
                                              "isolation test: add it to kTenantTables";
    EXPECT_EQ(tables->get(i, 1), "t") << name << ": RLS not enabled";
    EXPECT_EQ(tables->get(i, 2), "t") << name << ": RLS not forced";
    EXPECT_EQ(tables->get(i, 3), "tenant_id") << name << ": tenant_id is not first in the key";
    EXPECT_EQ(tables->get(i, 4), "1") << name << ": needs exactly one policy";
    EXPECT_EQ(tables->get(i, 5), "t") << name << ": policy must compare tenant_id with app.tenant_id";
  }
  EXPECT_EQ(checked, static_cast<int>(kTenantTables.size()));
}

TEST_F(Isolation, AppRoleIsUnprivilegedAndOwnsNothing) {
  auto r = su->exec(
      "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, "
      "(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) "
      "FROM pg_roles r WHERE rolname = 'agentplane_app'");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get(0, 0), "f");
  EXPECT_EQ(r->get(0, 1), "f");
  EXPECT_EQ(r->get(0, 2), "f");
  EXPECT_EQ(r->get(0, 3), "f");
  EXPECT_EQ(r->get(0, 4), "0");
}

// Cross-tenant functions belong to the system role; the owner's few (deleting a tenant) must
// bind themselves to their one tenant's row-level security first.
TEST_F(Isolation, SecurityDefinerFunctionsAreOwnedBySystemRoleAndPinned) {
  auto r = su->exec(
      "SELECT p.proname, pg_get_userbyid(p.proowner), p.proconfig::text, p.prosrc "
      "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
      "WHERE n.nspname = 'agentplane' AND p.prosecdef ORDER BY 1");
  ASSERT_TRUE(r);
  ASSERT_GE(r->size(), 4);
  const std::set<std::string> owners = {"tenant_delete_data", "tenant_purge_audit"};
  for (int i = 0; i < r->size(); ++i) {
    if (owners.count(std::string(r->get(i, 0)))) {
      EXPECT_EQ(r->get(i, 1), "agentplane_owner") << r->get(i, 0);
      auto body = std::string(r->get(i, 3));
      auto bind = body.find("set_config('app.tenant_id', p_id::text, true)");
      EXPECT_NE(bind, std::string::npos) << r->get(i, 0);
      EXPECT_LT(bind, body.find("DELETE")) << r->get(i, 0);
    } else {
      EXPECT_EQ(r->get(i, 1), "agentplane_system") << r->get(i, 0);
    }
    EXPECT_NE(std::string(r->get(i, 2)).find("search_path=agentplane"), std::string::npos)
        << r->get(i, 0);
  }
}

TEST(Migrate, IsIdempotent) {
  store::MigrateOptions mo;
  mo.database_url = Database::get().superuser_url();
  auto r = store::migrate(mo);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->applied.empty());
  EXPECT_GE(r->version, 1);
}

// The documented production set-up: migrate as the database owner with CREATEROLE (not a
// superuser), after a superuser created the BYPASSRLS role once.
TEST(Migrate, RunsAsDatabaseOwnerWithCreateRole) {
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  ASSERT_TRUE((*su)->exec_script(
      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deployer') THEN "
      "CREATE ROLE deployer LOGIN CREATEROLE; END IF; END $$"));
  ASSERT_TRUE((*su)->exec_script("CREATE DATABASE agentplane_prod OWNER deployer"));
  std::string base = "host=" + Database::get().socket_dir() + " dbname=agentplane_prod";
  store::MigrateOptions mo;
  mo.database_url = base + " user=deployer";
  auto r = store::migrate(mo);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_GE(r->applied.size(), 1u);
  auto app = store::SyncConn::connect(base + " user=agentplane_app");
  ASSERT_TRUE(app);
  auto rows = (*app)->exec("SELECT count(*) FROM api_keys");
  ASSERT_TRUE(rows) << rows.error().message;
  EXPECT_EQ(rows->get(0, 0), "0");
  auto owner = (*su)->exec("SELECT tableowner FROM pg_tables WHERE schemaname = 'agentplane' "
                           "AND tablename = 'api_keys'");
  EXPECT_EQ(owner->get(0, 0), "agentplane_owner");
}

}  // namespace
}  // namespace ap::testing
