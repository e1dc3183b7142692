// The PostgreSQL checkpointer: the shared suites (conformance matrix and graph semantics, see
// src/graph/checkpointer_suite.h) on a real PostgreSQL, then what is particular to it: delta
// storage, cold reads, forks, pruning, tenant isolation, group commit under concurrency and bad
// input.
#include "graph/postgres/postgres_saver.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <latch>
#include <thread>

#include <nlohmann/json.hpp>

#include "graph/checkpointer_suite.h"
#include "graph/graph.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::graph {
namespace {

using ap::testing::Database;

TenantId new_tenant() {
  static auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  TenantId id(Uuid::random_v4());
  auto r = su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'saver-test')", {id.to_string()});
  EXPECT_TRUE(r) << r.error().message;
  return id;
}

std::shared_ptr<PostgresCheckpoints> shared_store() {
  static auto s = PostgresCheckpoints::open(Database::get().app_url());
  return s;
}

const SaverFactory kPostgres{"postgres", [] { return shared_store()->for_tenant(new_tenant()); }};
INSTANTIATE_TEST_SUITE_P(Postgres, Conformance, ::testing::Values(kPostgres), saver_name);
INSTANTIATE_TEST_SUITE_P(Postgres, GraphOnSaver, ::testing::Values(kPostgres), saver_name);

// A chat: each turn appends a human message (input) and an AI reply (node) to `messages`.
std::shared_ptr<const CompiledGraph> chat_graph() {
  StateGraph g;
  g.channel("messages", Reducer::kMessages).channel("turns", Reducer::kAdd);
  g.node("assistant", [](NodeContext& ctx) -> Result<NodeOutput> {
    auto n = ctx.state()["messages"].size();
    return NodeOutput()
        .write("messages", Json::array({Json{{"role", "ai"}, {"content", "reply " + std::to_string(n)}}}))
        .write("turns", 1);
  });
  g.edge(kStart, "assistant");
  return *g.compile();
}

Result<RunResult> turn(const CompiledGraph& g, Checkpointer& saver, const std::string& thread, int i,
                       std::string checkpoint_id = "") {
  RunOptions o;
  o.thread_id = thread;
  o.checkpoint_id = std::move(checkpoint_id);
  return g.invoke(Input::of({{"messages", Json::array({Json{{"role", "human"}, {"content", "q" + std::to_string(i)}}})}}),
                  o, &saver);
}

class PostgresSaver : public ::testing::Test {
 protected:
  void SetUp() override {
    tenant = new_tenant();
    saver = shared_store()->for_tenant(tenant);
  }
  // A saver with empty caches: everything comes from the database.
  std::unique_ptr<Checkpointer> cold(PostgresSaverOptions o = {}) {
    return PostgresCheckpoints::open(Database::get().app_url(), o)->for_tenant(tenant);
  }
  store::Rows sql(const std::string& q) {
    static auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
    auto r = su->exec(q, {tenant.to_string()});
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : store::Rows();
  }
  std::vector<Json> history_values(Checkpointer& s, const CompiledGraph& g, const std::string& thread) {
    std::vector<Json> out;
    auto h = g.get_state_history(s, {.thread_id = thread});
    EXPECT_TRUE(h) << h.error().message;
    for (const auto& snap : *h) out.push_back(snap.values());
    return out;
  }
  TenantId tenant;
  std::unique_ptr<Checkpointer> saver;
};

TEST_F(PostgresSaver, MessagesAreStoredAsDeltasAndReadBackCold) {
  auto g = chat_graph();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(turn(*g, *saver, "chat", i));
  // Every checkpoint after the first stores only the messages it added.
  auto kinds = sql("SELECT kind, count(*) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 "
                   "AND channel = 'messages' GROUP BY kind ORDER BY kind");
  ASSERT_EQ(kinds.size(), 2);
  EXPECT_EQ(kinds.get(0, 0), "1");
  EXPECT_EQ(kinds.get(0, 1), "1");  // one whole list, at the start
  EXPECT_EQ(kinds.get(1, 0), "2");
  EXPECT_EQ(kinds.get(1, 1), "39");  // then one delta per message
  auto stored = sql("SELECT sum(octet_length(data)) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 "
                    "AND channel = 'messages'");
  auto final_state = g->get_state(*saver, {"chat", "", ""});
  ASSERT_TRUE(final_state);
  EXPECT_EQ(final_state->values()["messages"].size(), 40u);
  // What is stored is the messages once (plus the brackets of each delta's list).
  EXPECT_LE(std::stoul(std::string(stored.get(0, 0))), final_state->values()["messages"].dump().size() * 11 / 10);
  // The whole history, read by a saver that has nothing cached, equals what the writer sees.
  auto fresh = cold();
  EXPECT_EQ(history_values(*fresh, *g, "chat"), history_values(*saver, *g, "chat"));
  // And the cold saver continues the thread with deltas too.
  ASSERT_TRUE(turn(*g, *fresh, "chat", 20));
  EXPECT_EQ(sql("SELECT count(*) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 AND kind = 1")
                .get(0, 0), "1");
}

// After a lost connection (a restarted or failed-over database may lack what was committed
// asynchronously) nothing cached is built on, not even that a graph's layout row is stored.
TEST_F(PostgresSaver, ALostConnectionForgetsThatALayoutWasStored) {
  const std::string t0(sql("SELECT now()::text, $1::text").get(0, 0));
  PostgresSaverOptions o;
  o.connections = 1;
  auto store = PostgresCheckpoints::open(Database::get().app_url(), o);
  auto s = store->for_tenant(tenant);
  auto g = chat_graph();
  ASSERT_TRUE(turn(*g, *s, "lost", 0));
  // The database comes back without the transaction that stored the layout (the checkpoints
  // committed with it are gone too), and the connection is gone.
  sql("DELETE FROM agentplane.checkpoint_layouts WHERE tenant_id = $1");
  sql("DELETE FROM agentplane.checkpoints WHERE tenant_id = $1");
  sql("DELETE FROM agentplane.checkpoint_blobs WHERE tenant_id = $1");
  sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'agentplane_app' AND backend_start >= '" +
      t0 + "'::timestamptz AND $1::text IS NOT NULL");
  (void)turn(*g, *s, "lost", 1);  // may fail: the connection was lost
  auto again = turn(*g, *s, "lost", 2);
  ASSERT_TRUE(again) << again.error().message;
  // The layout was stored again: a saver with nothing cached reads the thread.
  auto state = g->get_state(*cold(), {"lost", "", ""});
  ASSERT_TRUE(state) << state.error().message;
  EXPECT_GE(state->values()["turns"].get<int>(), 1);
}

TEST_F(PostgresSaver, SnapshotsBoundDeltaChains) {
  PostgresSaverOptions o;
  o.snapshot_every = 4;
  auto store = PostgresCheckpoints::open(Database::get().app_url(), o);
  auto s = store->for_tenant(tenant);
  auto g = chat_graph();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(turn(*g, *s, "snap", i));
  auto full = sql("SELECT count(*) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 AND kind = 1");
  EXPECT_EQ(full.get(0, 0), "5");  // 20 messages: a whole copy every 4th version
  EXPECT_EQ(history_values(*cold(o), *g, "snap"), history_values(*s, *g, "snap"));
}

TEST_F(PostgresSaver, ForkedBranchesKeepTheirOwnValues) {
  auto g = chat_graph();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(turn(*g, *saver, "fork", i));
  auto history = *g->get_state_history(*saver, {.thread_id = "fork"});
  std::string base = history[3].config.checkpoint_id;  // the end of turn 1 (newest first)
  // Two branches from the same checkpoint reach the same channel versions with other values.
  ASSERT_TRUE(turn(*g, *saver, "fork", 100, base));
  auto left = g->get_state(*saver, {"fork", "", ""})->values();
  ASSERT_TRUE(turn(*g, *saver, "fork", 200, base));
  auto right = g->get_state(*saver, {"fork", "", ""})->values();
  EXPECT_NE(left, right);
  auto fresh = cold();
  auto all = *g->get_state_history(*fresh, {.thread_id = "fork"});
  EXPECT_EQ(all.front().values(), right);
  bool saw_left = false;
  for (const auto& snap : all) saw_left = saw_left || snap.values() == left;
  EXPECT_TRUE(saw_left);
  EXPECT_EQ(history_values(*fresh, *g, "fork"), history_values(*saver, *g, "fork"));
}

TEST_F(PostgresSaver, PruneKeepsWhatTheLatestNeeds) {
  auto g = chat_graph();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(turn(*g, *saver, "p", i));
  auto before = g->get_state(*saver, {"p", "", ""})->values();
  std::vector<std::string> ids = {"p"};
  ASSERT_TRUE(saver->prune(ids, 1));
  EXPECT_EQ(saver->list({.thread_id = "p"})->size(), 1u);
  // The delta chain under the kept checkpoint survived; unreachable blobs are gone.
  auto fresh = cold();
  EXPECT_EQ(g->get_state(*fresh, {"p", "", ""})->values(), before);
  auto rows = sql("SELECT count(*) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 AND thread_id = 'p'");
  EXPECT_EQ(rows.get(0, 0), "10");  // the whole chain of 10 messages, nothing else
  ASSERT_TRUE(turn(*g, *fresh, "p", 5));
  EXPECT_EQ(g->get_state(*fresh, {"p", "", ""})->values()["messages"].size(), 12u);
}

// A rolled-back run's checkpoints go with their blobs; what the earlier checkpoints need stays.
TEST_F(PostgresSaver, DeleteRunTakesItsBlobsAndKeepsWhatEarlierCheckpointsNeed) {
  auto g = chat_graph();
  auto run = [&](Checkpointer& cp, int i, const std::string& id) {
    RunOptions o;
    o.thread_id = "rb";
    o.checkpoint_metadata = Json{{"run_id", id}}.dump();
    return g->invoke(Input::of({{"messages", Json::array({Json{{"role", "human"}, {"content", "q" + std::to_string(i)}}})}}),
                     o, &cp);
  };
  auto blobs = [&] {
    return std::string(sql("SELECT count(*) FROM agentplane.checkpoint_blobs WHERE tenant_id = $1 AND thread_id = 'rb'").get(0, 0));
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(run(*saver, i, "A" + std::to_string(i)));
  auto before = g->get_state(*saver, {"rb", "", ""})->values();
  const std::string kept = blobs();
  ASSERT_TRUE(run(*saver, 3, "B"));
  ASSERT_NE(blobs(), kept);
  ASSERT_TRUE(saver->delete_run("rb", "B"));
  EXPECT_EQ(blobs(), kept) << "the run's blobs are gone, no other";
  auto fresh = cold();
  EXPECT_EQ(g->get_state(*fresh, {"rb", "", ""})->values(), before);
  ASSERT_TRUE(run(*fresh, 4, "C"));
  EXPECT_EQ(g->get_state(*fresh, {"rb", "", ""})->values()["messages"].size(), before["messages"].size() + 2);
}

TEST_F(PostgresSaver, TenantsNeverSeeEachOthersThreads) {
  auto g = chat_graph();
  ASSERT_TRUE(turn(*g, *saver, "shared-name", 0));
  auto other = shared_store()->for_tenant(new_tenant());
  EXPECT_FALSE(*other->get_tuple({"shared-name", "", ""}));
  EXPECT_TRUE(other->list({})->empty());
  auto mine = saver->list({.thread_id = "shared-name"});
  ASSERT_FALSE(mine->empty());
  EXPECT_FALSE(*other->get_tuple({"shared-name", "", mine->front().checkpoint.id}));
  ASSERT_TRUE(other->delete_thread("shared-name"));
  EXPECT_FALSE(other->copy_thread("shared-name", "stolen"));
  EXPECT_EQ(saver->list({.thread_id = "shared-name"})->size(), mine->size());
  // The same thread id in the other tenant is a thread of its own.
  ASSERT_TRUE(turn(*g, *other, "shared-name", 7));
  EXPECT_EQ(g->get_state(*saver, {"shared-name", "", ""})->values()["messages"].size(), 2u);
}

TEST_F(PostgresSaver, AsyncDurabilityStillSavesEveryStep) {
  auto g = chat_graph();
  RunOptions o;
  o.thread_id = "async";
  o.durability = Durability::kAsync;
  ASSERT_TRUE(g->invoke(Input::of({{"messages", Json::array({"hi"})}}), o, saver.get()));
  EXPECT_EQ(cold()->list({.thread_id = "async"})->size(), 3u);
}

// Group commit (Shared::commit) under concurrency, with one group at a time and with two:
// - a burst: 16 threads put one checkpoint each at the same moment, so that most of them queue
//   behind the first group and then nobody else comes: only the group's end can wake them;
// - 16 threads each run 8 turns of their own thread of the chat graph at once.
// Every put gets its own result (the turns' values are exact) and every caller is woken: a lost
// wake-up leaves a caller waiting for good, which the watchdog turns into a failure.
TEST_F(PostgresSaver, ConcurrentPutsAreGroupCommittedAndEachCallerGetsItsOwnResult) {
  auto g = chat_graph();
  ASSERT_TRUE(turn(*g, *saver, "burst-seed", 0));
  auto seed = *saver->get_tuple({"burst-seed", "", ""});
  ASSERT_TRUE(seed);
  for (size_t groups : {1, 2}) {
    PostgresSaverOptions po;
    po.commit_groups = groups;
    auto store = PostgresCheckpoints::open(Database::get().app_url(), po);
    auto tenant_saver = store->for_tenant(tenant);
    std::atomic<bool> done{false};
    std::string phase = "burst";
    std::thread watchdog([&] {
      for (int i = 0; i < 600 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!done) {
        std::fprintf(stderr, "group commit stalled (%s, commit_groups %zu)\n", phase.c_str(), groups);
        std::abort();
      }
    });
    auto name = [&](const char* kind, int t) {
      return std::string(kind) + "-" + std::to_string(groups) + "-" + std::to_string(t);
    };
    std::vector<std::string> errors(16);
    auto in_parallel = [&](const std::function<void(int)>& work) {
      std::latch start(16);
      std::vector<std::thread> threads;
      for (int t = 0; t < 16; ++t)
        threads.emplace_back([&, t] {
          start.arrive_and_wait();
          work(t);
        });
      for (auto& th : threads) th.join();
    };
    in_parallel([&](int t) {
      Checkpoint cp = seed->checkpoint;
      cp.id = next_checkpoint_id();
      auto saved = tenant_saver->put({name("burst", t), "", ""}, cp, seed->metadata);
      if (!saved) errors[t] = saved.error().message;
      else if (saved->thread_id != name("burst", t) || saved->checkpoint_id != cp.id) errors[t] = "saved as another";
    });
    phase = "turns";
    in_parallel([&](int t) {
      for (int i = 0; i < 8 && errors[t].empty(); ++i) {
        auto r = turn(*g, *tenant_saver, name("turns", t), i);
        if (!r) errors[t] = r.error().message;
        else if (r->values["turns"] != i + 1 || r->values["messages"].size() != static_cast<size_t>(2 * (i + 1)))
          errors[t] = "turn " + std::to_string(i) + ": " + r->values.dump();
      }
    });
    done = true;
    watchdog.join();
    for (int t = 0; t < 16; ++t) EXPECT_EQ(errors[t], "") << "thread " << t << ", commit_groups " << groups;
    // Read back cold: each burst thread has its checkpoint, each turns thread its 8 turns.
    auto reader = cold();
    for (int t = 0; t < 16; ++t) {
      auto burst = reader->get_tuple({name("burst", t), "", ""});
      ASSERT_TRUE(burst && *burst) << name("burst", t);
      auto state = g->get_state(*reader, {.thread_id = name("turns", t)});
      ASSERT_TRUE(state) << state.error().message;
      EXPECT_EQ(state->values()["turns"], 8) << name("turns", t);
    }
  }
}

TEST_F(PostgresSaver, BadInputIsRefused) {
  auto g = chat_graph();
  ASSERT_TRUE(turn(*g, *saver, "bad", 0));
  auto latest = *saver->get_tuple({"bad", "", ""});
  Checkpoint cp = latest->checkpoint;
  cp.id = "not-a-uuid";
  EXPECT_EQ(saver->put({"bad", "", ""}, cp, latest->metadata).error().code, Code::kInvalidArgument);
  cp.id = next_checkpoint_id();
  EXPECT_EQ(saver->put({"", "", ""}, cp, latest->metadata).error().code, Code::kInvalidArgument);
  cp.versions.pop_back();
  EXPECT_EQ(saver->put({"bad", "", ""}, cp, latest->metadata).error().code, Code::kInvalidArgument);
  EXPECT_EQ(saver->list({.before = "yesterday"}).error().code, Code::kInvalidArgument);
  EXPECT_EQ(saver->list({.filter = {{"step", "{"}}}).error().code, Code::kInvalidArgument);
  std::vector<PendingWrite> w = {{"task", "messages", std::make_shared<const Json>(1), 0, "p"}};
  EXPECT_EQ(saver->put_writes({"bad", "", next_checkpoint_id()}, w).error().code, Code::kNotFound);
  EXPECT_FALSE(*saver->get_tuple({"bad", "", "nope"}));
  EXPECT_EQ(saver->list({.thread_id = "bad"})->size(), 3u);  // nothing changed
}

}  // namespace
}  // namespace ap::graph
