// The run queue's running runs and their slots (migration 0015) on a real PostgreSQL:
// `running_runs` follows every way a run starts or ends (inserted running, claimed, finished,
// cancelled back to pending, deleted, a failed statement), per tenant; start_run_slot and
// claim_runs keep a tenant to its cap; and concurrent starts never wait for each other: the
// second of two racing for a tenant's last slot is refused at once.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

// Deletes the runs of `tenants` (a uuid[] literal) when it goes, whatever the test's outcome.
struct DeletesRuns {
  store::SyncConn& su;
  std::string tenants;
  ~DeletesRuns() { (void)su.exec("DELETE FROM agentplane.runs WHERE tenant_id = ANY($1::uuid[])", {tenants}); }
};

class RunningRuns : public ::testing::Test {
 protected:
  void SetUp() override {
    su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
    app = std::move(*store::SyncConn::connect(Database::get().app_url()));
    for (auto* t : {&a, &b}) {
      *t = Uuid::random_v4().to_string();
      ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'running-runs')", {*t}));
    }
    ASSERT_TRUE(as(a, "INSERT INTO tenant_limits (tenant_id, limits) VALUES ($1, '{\"concurrent_runs\": 2}')", {a}));
  }

  // `sql` as the app role in a transaction bound to `tenant`.
  Result<store::Rows> as(const std::string& tenant, const std::string& sql, std::vector<store::Param> p = {}) {
    EXPECT_TRUE(app->exec_script("BEGIN"));
    EXPECT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {tenant}));
    auto r = app->exec(sql, std::move(p));
    (void)app->exec_script(r ? "COMMIT" : "ROLLBACK");
    return r;
  }

  std::string add_run(const std::string& tenant, const std::string& status, std::string thread = "") {
    if (thread.empty()) thread = Uuid::random_v4().to_string();
    std::string run = Uuid::random_v4().to_string();
    auto r = as(tenant,
                "INSERT INTO runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, status) "
                "VALUES ($1, $2, $3, gen_random_uuid(), '{}', 'test', $4)",
                {tenant, run, thread, status});
    EXPECT_TRUE(r) << r.error().message;
    return run;
  }

  // The tenant's rows in running_runs, and whether they are exactly its runs with status running.
  int64_t running(const std::string& tenant) {
    auto n = su->exec("SELECT count(*) FROM agentplane.running_runs WHERE tenant_id = $1", {tenant});
    auto truth = su->exec(
        "SELECT count(*) FROM agentplane.runs r FULL JOIN agentplane.running_runs x USING (tenant_id, run_id) "
        "WHERE (r.tenant_id = $1 OR x.tenant_id = $1) AND (r.status = 'running') IS DISTINCT FROM (x.run_id IS NOT NULL)",
        {tenant});
    EXPECT_TRUE(n && truth);
    EXPECT_EQ(truth->get(0, 0), "0") << "running_runs disagrees with runs.status";
    return std::stoll(std::string(n->get(0, 0)));
  }

  // Whether a new run of `tenant` could start now (asked on `conn` in a transaction that is
  // rolled back, so the slot is not kept).
  bool may_start(const std::string& tenant) {
    EXPECT_TRUE(app->exec_script("BEGIN"));
    auto r = take(*app, tenant);
    EXPECT_TRUE(app->exec_script("ROLLBACK"));
    return r;
  }
  // start_run_slot for a new run id, in `conn`'s open transaction.
  static bool take(store::SyncConn& conn, const std::string& tenant) {
    EXPECT_TRUE(conn.exec("SELECT set_config('app.tenant_id', $1, true)", {tenant}));
    auto r = conn.exec("SELECT agentplane.start_run_slot($1::uuid, NULL, gen_random_uuid())", {tenant});
    EXPECT_TRUE(r) << r.error().message;
    return r && r->get(0, 0) == "t";
  }

  std::unique_ptr<store::SyncConn> su, app;
  std::string a, b;
};

TEST_F(RunningRuns, FollowEveryStartAndEndAndCapTheTenant) {
  std::string r1 = add_run(a, "running");
  add_run(a, "success");
  add_run(b, "running");
  EXPECT_EQ(running(a), 1);
  EXPECT_EQ(running(b), 1);
  EXPECT_TRUE(may_start(a));
  std::string r2 = add_run(a, "running");
  EXPECT_EQ(running(a), 2);
  EXPECT_FALSE(may_start(a)) << "2 running of a cap of 2";
  EXPECT_TRUE(may_start(b)) << "another tenant's runs do not count";

  // Ends: finished, and cancelled back to pending (rollback / requeue), and deleted.
  ASSERT_TRUE(as(a, "UPDATE runs SET status = 'success' WHERE tenant_id = $1 AND run_id = $2", {a, r1}));
  EXPECT_EQ(running(a), 1);
  EXPECT_TRUE(may_start(a));
  ASSERT_TRUE(as(a, "UPDATE runs SET status = 'pending' WHERE tenant_id = $1 AND run_id = $2", {a, r2}));
  EXPECT_EQ(running(a), 0);
  ASSERT_TRUE(as(a, "UPDATE runs SET status = 'running', metadata = '{}' WHERE tenant_id = $1 AND run_id = $2", {a, r2}));
  ASSERT_TRUE(as(a, "UPDATE runs SET metadata = '{\"x\": 1}' WHERE tenant_id = $1 AND run_id = $2", {a, r2}));
  EXPECT_EQ(running(a), 1) << "an update that keeps the status changes nothing";
  ASSERT_TRUE(as(a, "DELETE FROM runs WHERE tenant_id = $1 AND run_id = $2", {a, r2}));
  EXPECT_EQ(running(a), 0);

  // Claims: 3 pending runs on their own threads and one behind a running run's thread; the cap
  // of 2 lets one more start, and not the one on the busy thread. (In a transaction rolled back
  // after: claim_runs serves every tenant, and other tests' runs must stay theirs.)
  std::string busy_thread = Uuid::random_v4().to_string();
  add_run(a, "running", busy_thread);
  add_run(a, "pending", busy_thread);
  for (int i = 0; i < 3; ++i) add_run(a, "pending");
  ASSERT_TRUE(su->exec_script("BEGIN"));
  auto claimed = su->exec("SELECT thread_id FROM agentplane.claim_runs('w', 60000, 10, 3, NULL, true) WHERE tenant_id = $1", {a});
  ASSERT_TRUE(claimed) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 1) << "1 running + 1 claimed = the cap";
  EXPECT_NE(claimed->get(0, 0), busy_thread);
  EXPECT_EQ(running(a), 2);
  ASSERT_TRUE(su->exec_script("ROLLBACK"));
  EXPECT_EQ(running(a), 1);

  // A statement that fails after starting a run leaves no row behind.
  auto dup = as(a, "UPDATE runs SET status = 'running' WHERE tenant_id = $1 AND thread_id = $2", {a, busy_thread});
  EXPECT_FALSE(dup) << "one running run per thread";
  EXPECT_EQ(running(a), 1);
}

TEST_F(RunningRuns, RacingStartsTakeDifferentSlotsAndNeverWait) {
  ASSERT_TRUE(su->exec("DELETE FROM agentplane.runs WHERE tenant_id = $1", {a}));
  auto other = std::move(*store::SyncConn::connect(Database::get().app_url()));
  // Cap 2: two open transactions each take a slot; a third start, while both are uncommitted,
  // finds every slot locked or taken and is refused at once (a wait would hang this test).
  ASSERT_TRUE(app->exec_script("BEGIN"));
  ASSERT_TRUE(other->exec_script("BEGIN"));
  EXPECT_TRUE(take(*app, a));
  EXPECT_TRUE(take(*other, a));
  auto third = std::move(*store::SyncConn::connect(Database::get().app_url()));
  ASSERT_TRUE(third->exec_script("BEGIN"));
  EXPECT_FALSE(take(*third, a)) << "2 slots held by open transactions: none is left";
  EXPECT_TRUE(take(*third, b)) << "another tenant's slots are its own";
  ASSERT_TRUE(third->exec_script("ROLLBACK"));
  ASSERT_TRUE(app->exec_script("COMMIT"));
  ASSERT_TRUE(other->exec_script("ROLLBACK"));
  auto slots = su->exec("SELECT count(*), count(DISTINCT slot), min(slot) >= 0 AND max(slot) < 2 "
                        "FROM agentplane.running_runs WHERE tenant_id = $1", {a});
  ASSERT_TRUE(slots);
  EXPECT_EQ(slots->get(0, 0), "1") << "the rolled-back start gave its slot back";
  EXPECT_EQ(slots->get(0, 2), "t");
  EXPECT_TRUE(may_start(a)) << "one slot free again";
  // That committed slot has no run (as if the triggers had been bypassed): the sweeper frees it
  // and keeps the rows of runs that do run.
  std::string running_run = add_run(b, "running");
  auto swept = su->exec("SELECT agentplane.sweep_running_runs()");
  ASSERT_TRUE(swept) << swept.error().message;
  EXPECT_EQ(su->exec("SELECT count(*) FROM agentplane.running_runs WHERE tenant_id = $1", {a})->get(0, 0), "0");
  EXPECT_EQ(su->exec("SELECT count(*) FROM agentplane.running_runs WHERE run_id = $1", {running_run})->get(0, 0), "1");
  // Slots are only taken under READ COMMITTED (the check after the lock must see new commits).
  ASSERT_TRUE(app->exec_script("BEGIN ISOLATION LEVEL REPEATABLE READ"));
  ASSERT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {a}));
  EXPECT_FALSE(app->exec("SELECT agentplane.start_run_slot($1::uuid, NULL, gen_random_uuid())", {a}));
  ASSERT_TRUE(app->exec_script("ROLLBACK"));
  // Not another tenant's: start_run_slot checks the caller's tenant.
  ASSERT_TRUE(app->exec_script("BEGIN"));
  ASSERT_TRUE(app->exec("SELECT set_config('app.tenant_id', $1, true)", {b}));
  EXPECT_FALSE(app->exec("SELECT agentplane.start_run_slot($1::uuid, NULL, gen_random_uuid())", {a}));
  ASSERT_TRUE(app->exec_script("ROLLBACK"));
}

// Migration 0033: a claim round passes over the backlog of a tenant at its cap without locking
// it, and reaches the runs queued behind it. Before, the round locked the oldest 4x its free
// slots (here all of them tenant a's) and asked a slot for each: b's run was not claimed, and 40
// of a's runs were locked until the round's commit.
TEST_F(RunningRuns, AClaimPassesOverATenantAtItsCapAndReachesTheRunsBehindIt) {
  ASSERT_TRUE(su->exec("DELETE FROM agentplane.runs WHERE tenant_id = $1", {a}));
  DeletesRuns cleanup{*su, "{" + a + "," + b + "}"};
  add_run(a, "running");
  add_run(a, "running");  // a's cap of 2
  for (int i = 0; i < 60; ++i) add_run(a, "pending");
  std::string behind = add_run(b, "pending");

  ASSERT_TRUE(su->exec_script("BEGIN"));
  auto claimed = su->exec("SELECT tenant_id, run_id FROM agentplane.claim_runs('w', 60000, 10, 3, NULL, false) "
                          "WHERE tenant_id = ANY($1::uuid[])",
                          {"{" + a + "," + b + "}"});
  ASSERT_TRUE(claimed) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 1) << "a is at its cap; b's run is claimed";
  EXPECT_EQ(claimed->get(0, 1), behind);
  // While the round's transaction is open: of a's queued runs, it locked at most the one whose
  // slot request told it that a is at its cap (the old round, 40).
  auto other = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  ASSERT_TRUE(other->exec_script("BEGIN"));
  auto free = other->exec("SELECT run_id FROM agentplane.runs WHERE tenant_id = $1 AND status = 'pending' "
                          "FOR UPDATE SKIP LOCKED",
                          {a});
  ASSERT_TRUE(free) << free.error().message;
  EXPECT_GE(free->size(), 59);
  ASSERT_TRUE(other->exec_script("ROLLBACK"));
  ASSERT_TRUE(su->exec_script("ROLLBACK"));

  // A slot frees: the next round takes a's oldest queued run, and only one.
  auto oldest = su->exec("SELECT run_id FROM agentplane.runs WHERE tenant_id = $1 AND status = 'pending' "
                         "ORDER BY created_at LIMIT 1",
                         {a});
  ASSERT_TRUE(oldest);
  ASSERT_TRUE(su->exec("UPDATE agentplane.runs SET status = 'success' WHERE tenant_id = $1 AND run_id = "
                       "(SELECT run_id FROM agentplane.runs WHERE tenant_id = $1 AND status = 'running' LIMIT 1)",
                       {a}));
  ASSERT_TRUE(su->exec_script("BEGIN"));
  claimed = su->exec("SELECT tenant_id, run_id FROM agentplane.claim_runs('w', 60000, 10, 3, NULL, false) "
                     "WHERE tenant_id = $1",
                     {a});
  ASSERT_TRUE(claimed) << claimed.error().message;
  ASSERT_EQ(claimed->size(), 1) << "one slot of a's was free";
  EXPECT_EQ(claimed->get(0, 1), oldest->get(0, 0));
  EXPECT_EQ(running(a), 2);
  ASSERT_TRUE(su->exec_script("ROLLBACK"));
}

}  // namespace
}  // namespace ap::testing

namespace ap::testing {
namespace {

// Migration 0017: a thread's checkpoints (rows and blobs) are deleted with its row, and only its.
TEST_F(RunningRuns, ThreadCheckpointsGoWithTheThread) {
  const std::string gone = Uuid::random_v4().to_string(), kept = Uuid::random_v4().to_string();
  for (const auto& t : {gone, kept}) {
    ASSERT_TRUE(as(a, "INSERT INTO threads (tenant_id, thread_id) VALUES ($1, $2)", {a, t}));
    ASSERT_TRUE(as(a, "INSERT INTO checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, source, step, header) "
                      "VALUES ($1, $2, '', gen_random_uuid(), 'input', -1, '{}')", {a, t}));
    ASSERT_TRUE(as(a, "INSERT INTO checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, channel, ref, kind, data) "
                      "VALUES ($1, $2, '', 'c', gen_random_uuid(), 0, '1')", {a, t}));
  }
  auto count = [&](const std::string& t) {
    auto r = su->exec("SELECT (SELECT count(*) FROM agentplane.checkpoints WHERE tenant_id = $1 AND thread_id = $2) + "
                      "(SELECT count(*) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 AND thread_id = $2)", {a, t});
    EXPECT_TRUE(r);
    return r ? std::string(r->get(0, 0)) : std::string();
  };
  EXPECT_EQ(count(gone), "2");
  ASSERT_TRUE(as(a, "DELETE FROM threads WHERE tenant_id = $1 AND thread_id = $2", {a, gone}));
  EXPECT_EQ(count(gone), "0");
  EXPECT_EQ(count(kept), "2");
}

// Migration 0032: a thread's checkpoints and blobs are deleted through their index by a generic
// plan (drop_thread_checkpoints uses only those, as audit_append and the claims do), even where
// a few long threads hold every row, as on bench/api's rig, and ANALYZE counts that few ids.
TEST_F(RunningRuns, AThreadsCheckpointsAreDeletedThroughTheIndexWhateverTheStatistics) {
  struct Cleanup {
    store::SyncConn& su;
    std::string tenant;
    ~Cleanup() {
      (void)su.exec("DELETE FROM agentplane.checkpoints WHERE tenant_id = $1", {tenant});
      (void)su.exec("DELETE FROM agentplane.checkpoint_blobs WHERE tenant_id = $1", {tenant});
      (void)su.exec_script("DEALLOCATE ALL; RESET plan_cache_mode");
    }
  } cleanup{*su, a};
  // Four threads of 2,500 checkpoints and blobs each.
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, source, "
                       "step, header) SELECT $1, 'long-' || (i % 4), '', gen_random_uuid(), 'loop', i, '{}' "
                       "FROM generate_series(1, 10000) AS i", {a}));
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, channel, ref, kind, "
                       "data) SELECT $1, 'long-' || (i % 4), '', 'c', gen_random_uuid(), 0, '1' "
                       "FROM generate_series(1, 10000) AS i", {a}));
  ASSERT_TRUE(su->exec_script("ANALYZE agentplane.checkpoints; ANALYZE agentplane.checkpoint_blobs; "
                              "SET plan_cache_mode = force_generic_plan"));
  for (const std::string table : {"checkpoints", "checkpoint_blobs"}) {
    ASSERT_TRUE(su->exec_script("PREPARE del_" + table + "(uuid, text) AS DELETE FROM agentplane." + table +
                                " WHERE tenant_id = $1 AND thread_id = $2"));
    for (const std::string& thread : {Uuid::random_v4().to_string(), std::string("long-1")}) {
      auto plan = su->exec("EXPLAIN (FORMAT JSON) EXECUTE del_" + table + "('" + a + "', '" + thread + "')");
      ASSERT_TRUE(plan) << plan.error().message;
      EXPECT_EQ(std::string(plan->get(0, 0)).find("Seq Scan"), std::string::npos) << table << ": " << plan->get(0, 0);
    }
  }
  auto generic = su->exec("SELECT string_agg(proname, ' ' ORDER BY proname) FROM pg_proc WHERE pronamespace = "
                          "'agentplane'::regnamespace AND 'plan_cache_mode=force_generic_plan' = ANY(proconfig)");
  ASSERT_TRUE(generic);
  EXPECT_EQ(generic->get(0, 0), "audit_append claim_runs claim_runs_then_due drop_thread_checkpoints");
}

// Migration 0022 and LocalPostgres's autovacuum_naptime: the churning tables are vacuumed
// seconds after their dead rows pile up, not when a fifth of the table is dead.
TEST_F(RunningRuns, TheChurningTablesAreVacuumedWithinSeconds) {
  auto opts = su->exec(
      "SELECT c.relname, array_to_string(c.reloptions, ',') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = 'agentplane' AND c.relname IN ('runs', 'running_runs', 'threads', 'checkpoints', "
      "'checkpoint_blobs', 'checkpoint_writes', 'run_events', 'audit_heads', 'usage_hourly') ORDER BY 1");
  ASSERT_TRUE(opts) << opts.error().message;
  ASSERT_EQ(opts->size(), 9);
  for (int i = 0; i < opts->size(); ++i) {
    const std::string o(opts->get(i, 1));
    EXPECT_NE(o.find("autovacuum_vacuum_scale_factor="), std::string::npos) << opts->get(i, 0) << ": " << o;
  }
  auto delay = su->exec("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'agentplane.running_runs'::regclass");
  ASSERT_TRUE(delay);
  EXPECT_NE(std::string(delay->get(0, 0)).find("autovacuum_vacuum_cost_delay=0"), std::string::npos);
  auto nap = su->exec("SHOW autovacuum_naptime");
  ASSERT_TRUE(nap);
  EXPECT_EQ(nap->get(0, 0), "5s");

  // 600 runs start and end: 600 dead rows in running_runs, over its threshold of 500.
  auto vacuums = [&] {
    auto r = su->exec("SELECT autovacuum_count FROM pg_stat_all_tables WHERE relid = 'agentplane.running_runs'::regclass");
    EXPECT_TRUE(r);
    return std::stoll(std::string(r->get(0, 0)));
  };
  const int64_t before = vacuums();
  std::vector<std::string> runs;
  for (int i = 0; i < 600; ++i) runs.push_back(add_run(b, "running"));
  std::string ids = "{";
  for (const auto& r : runs) ids += (ids.size() > 1 ? "," : "") + r;
  ids += "}";
  ASSERT_TRUE(as(b, "UPDATE runs SET status = 'success' WHERE tenant_id = $1 AND run_id = ANY($2::uuid[])", {b, ids}));
  EXPECT_EQ(running(b), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(45);
  while (vacuums() == before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_GT(vacuums(), before) << "running_runs was not vacuumed within 45 s of 600 dead rows";
}


// Migration 0030: `runs` is vacuumed as its rows churn but not analyzed every time a tenth of it
// has changed (an ANALYZE sorted a 30,000-row sample of its JSON columns: 650 ms a round under
// bench/api's load), and its JSON columns, and the audit log's bodies and hashes, have no
// statistics. The changes made here (n rows inserted, then updated, after an ANALYZE) are over
// PostgreSQL's default analyze threshold (50 + a tenth of the table) and over the table's vacuum
// one (50 + 2%), under its analyze one (20,000 + a tenth): once autovacuum has vacuumed them away,
// it has not analyzed the table. And although most runs here have a thread of their own, spread
// over many tenants, the planner still expects a tenant's thread to have many runs, so a run's
// start finds the thread's active runs through their partial index, not by walking the thread's
// whole history.
TEST_F(RunningRuns, ChurningRunsAreVacuumedButNotAnalyzed) {
  auto targets = su->exec(
      "SELECT count(*) FROM pg_attribute WHERE attstattarget = 0 AND ((attrelid = 'agentplane.runs'::regclass AND "
      "attname IN ('kwargs', 'result', 'metadata', 'watchers')) OR (attrelid = 'agentplane.audit_events'::regclass "
      "AND attname IN ('body', 'hash')))");
  ASSERT_TRUE(targets) << targets.error().message;
  EXPECT_EQ(targets->get(0, 0), "6");
  struct Stats {
    int64_t vacuums = -1, analyzes = -1, dead = -1;
  };
  auto stats = [&] {
    auto r = su->exec("SELECT autovacuum_count, autoanalyze_count, n_dead_tup FROM pg_stat_all_tables "
                      "WHERE relid = 'agentplane.runs'::regclass");
    Stats out;
    if (!r || r->size() != 1) return out;
    out.vacuums = std::stoll(std::string(r->get(0, 0)));
    out.analyzes = std::stoll(std::string(r->get(0, 1)));
    out.dead = std::stoll(std::string(r->get(0, 2)));
    return out;
  };
  // (a worker that both vacuums and analyzes a table reports the vacuum first)
  auto busy = [&] {
    auto r = su->exec("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE '%.runs%'");
    return !r || r->get(0, 0) != "0";
  };
  // The rows are spread over tenants of their own, and go when the test ends, passed or not.
  std::vector<std::string> tenants;
  for (int i = 0; i < 30; ++i) {
    tenants.push_back(Uuid::random_v4().to_string());
    ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'runs-analyze')", {tenants.back()}));
  }
  std::string tenant_array = "{";
  for (const auto& t : tenants) tenant_array += (tenant_array.size() > 1 ? "," : "") + t;
  tenant_array += "}";
  const DeletesRuns cleanup{*su, tenant_array};

  // Changes other tests made since the last ANALYZE count towards the threshold too: start at 0.
  ASSERT_TRUE(su->exec_script("ANALYZE agentplane.runs"));
  ASSERT_TRUE(eventually([&] { return !busy(); }, std::chrono::seconds(30)));
  const Stats before = stats();
  ASSERT_GE(before.vacuums, 0);
  auto rows = su->exec("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'agentplane.runs'::regclass");
  ASSERT_TRUE(rows);
  const int64_t tuples = std::stoll(std::string(rows->get(0, 0)));
  const int64_t n = std::max<int64_t>(600, 100 + tuples / 5);
  ASSERT_LT(2 * n, 20000 + tuples / 10) << "the test database's runs table is too large for this test";
  // (a third of them on one thread: a most common value in the statistics, as a long
  // conversation's thread is)
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, status) "
                       "SELECT t[1 + i % array_length(t, 1)], gen_random_uuid(), CASE WHEN i % 3 = 0 THEN $3::uuid "
                       "ELSE gen_random_uuid() END, gen_random_uuid(), '{\"k\": 1}', 'test', 'success' "
                       "FROM generate_series(1, $2::int) AS i, (SELECT $1::uuid[] AS t) AS x",
                       {tenant_array, std::to_string(n), Uuid::random_v4().to_string()}));
  ASSERT_TRUE(su->exec("UPDATE agentplane.runs SET result = '{\"done\": true}' WHERE tenant_id = ANY($1::uuid[])",
                       {tenant_array}));
  // Vacuumed since: its dead rows (the updated ones) gone, by a vacuum that began after they were
  // made, so it looked at the table's changes for an analyze too.
  EXPECT_TRUE(eventually([&] {
    const Stats now = stats();
    return now.vacuums > before.vacuums && now.dead < n / 2 && !busy();
  }, std::chrono::seconds(45))) << "runs was not vacuumed within 45 s of " << n << " new and " << n << " dead rows";
  EXPECT_EQ(stats().analyzes, before.analyzes);

  ASSERT_TRUE(su->exec_script("ANALYZE agentplane.runs"));
  auto distinct = su->exec("SELECT n_distinct FROM pg_stats WHERE schemaname = 'agentplane' AND tablename = 'runs' "
                           "AND attname = 'thread_id'");
  ASSERT_TRUE(distinct && distinct->size() == 1);
  EXPECT_EQ(distinct->get(0, 0), "-0.05");
  // The server's statements are prepared: a generic plan (no values) goes by n_distinct and by
  // the statistics that say a thread belongs to one tenant.
  ASSERT_TRUE(su->exec_script("SET plan_cache_mode = force_generic_plan; PREPARE thread_runs(uuid, uuid) AS "
                              "SELECT 1 FROM agentplane.runs WHERE tenant_id = $1 AND thread_id = $2"));
  auto plan = su->exec("EXPLAIN (FORMAT JSON) EXECUTE thread_runs('" + tenants[0] + "', '" +
                       Uuid::random_v4().to_string() + "')");
  ASSERT_TRUE(su->exec_script("DEALLOCATE thread_runs; RESET plan_cache_mode"));
  ASSERT_TRUE(plan) << plan.error().message;
  const double expected = nlohmann::json::parse(std::string(plan->get(0, 0)))[0]["Plan"]["Plan Rows"].get<double>();
  EXPECT_GE(expected, 10) << "runs a tenant's thread is expected to have: " << plan->get(0, 0);
}


// Migration 0031: a run of a tenant the statistics do not know yet (made since the last ANALYZE)
// is looked up by its key, not by walking the tenant's runs through the index of a thread's runs
// (the two cost the same to the planner when it expects no rows for the tenant).
TEST_F(RunningRuns, ARunIsLookedUpByItsKeyForATenantTheStatisticsDoNotKnow) {
  const std::string known = Uuid::random_v4().to_string(), tenant = Uuid::random_v4().to_string(),
                    thread = Uuid::random_v4().to_string();  // (the new tenant's runs: one thread)
  for (const auto& t : {known, tenant})
    ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'runs-by-key')", {t}));
  const DeletesRuns cleanup{*su, "{" + known + "," + tenant + "}"};
  // A table the statistics know (a tenant with 5,000 runs), then a tenant they do not.
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, status) "
                       "SELECT $1, gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '{}', 'test', 'success' "
                       "FROM generate_series(1, 5000)", {known}));
  ASSERT_TRUE(su->exec_script("ANALYZE agentplane.runs"));
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.runs (tenant_id, run_id, thread_id, assistant_id, kwargs, created_by, status) "
                       "SELECT $1, gen_random_uuid(), $2, gen_random_uuid(), '{}', 'test', 'success' "
                       "FROM generate_series(1, 200)", {tenant, thread}));
  auto run = su->exec("SELECT run_id FROM agentplane.runs WHERE tenant_id = $1 LIMIT 1", {tenant});
  ASSERT_TRUE(run && run->size() == 1);
  for (const std::string& sql : {"SELECT created_at FROM agentplane.runs WHERE tenant_id = '" + tenant +
                                    "' AND run_id = '" + std::string(run->get(0, 0)) + "'",
                                "SELECT created_at FROM agentplane.runs WHERE tenant_id = '" + tenant + "' AND run_id = '" +
                                    Uuid::random_v4().to_string() + "'"}) {
    auto plan = su->exec("EXPLAIN (FORMAT JSON) " + sql);
    ASSERT_TRUE(plan) << plan.error().message;
    const auto p = nlohmann::json::parse(std::string(plan->get(0, 0)))[0]["Plan"];
    EXPECT_EQ(p.value("Index Name", ""), "runs_pkey") << p.dump();
  }
  // A thread's runs, in order, still go through the thread's index.
  auto known_thread = su->exec("SELECT thread_id FROM agentplane.runs WHERE tenant_id = $1 LIMIT 1", {known});
  ASSERT_TRUE(known_thread && known_thread->size() == 1);
  auto plan = su->exec("EXPLAIN (FORMAT JSON) SELECT run_id FROM agentplane.runs WHERE tenant_id = '" + known +
                       "' AND thread_id = '" + std::string(known_thread->get(0, 0)) + "' ORDER BY created_at DESC LIMIT 10");
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_NE(std::string(plan->get(0, 0)).find("\"runs_thread\""), std::string::npos) << plan->get(0, 0);
}

}  // namespace
}  // namespace ap::testing
