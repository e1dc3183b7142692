// Runs across replicas: an API replica (serve --role api) and a worker replica (--role worker)
// on one PostgreSQL. The run executes on the worker; its events, its end and cancel requests
// cross through the run_events log and LISTEN/NOTIFY (docs/agent_api.md, "Across replicas").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "common/thread_priority.h"
#include "control/plane.h"
#include "control/run_hub.h"
#include "control/run_relay.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::testing {
namespace {

const json kLinear = json::parse(R"({
  "channels": {"count": "last_value", "log": "append"},
  "nodes": {
    "a": {"kind": "set", "values": {"count": {"increment": "count"}, "log": {"template": "a{{count}}"}}},
    "b": {"kind": "set", "values": {"count": {"increment": "count"}, "log": {"template": "b{{count}}"}}},
    "c": {"kind": "set", "values": {"count": {"increment": "count"}, "log": {"template": "c{{count}}"}}}},
  "edges": [["__start__", "a"], ["a", "b"], ["b", "c"], ["c", "__end__"]]})");
// Endless until the recursion limit: fan out one task per item, again and again.
const json kSlow = json::parse(R"({
  "channels": {"items": "last_value", "hits": "add"},
  "nodes": {"fan": {"kind": "send", "items": "items", "node": "work", "arg": {"from": "$item"}},
            "work": {"kind": "set", "values": {"hits": 1}}},
  "edges": [["__start__", "fan"], ["work", "fan"]]})");
const json kSlowRun = json::parse(R"({"assistant_id": "slow", "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8], "hits": 0},
  "config": {"recursion_limit": 5000}, "durability": "sync"})");

// SSE events of a body: (event, data) pairs.
std::vector<std::pair<std::string, json>> events_of(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  size_t pos = 0;
  while ((pos = body.find("event: ", pos)) != std::string::npos) {
    size_t eol = body.find('\n', pos);
    std::string name = body.substr(pos + 7, eol - pos - 7);
    size_t d = body.find("data: ", eol);
    size_t deol = body.find('\n', d);
    out.emplace_back(name, json::parse(body.substr(d + 6, deol - d - 6), nullptr, false));
    pos = deol;
  }
  return out;
}

class Replicas : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    api = new TestServer(2, std::chrono::seconds(30), {}, "api");
    worker = new TestServer(1, std::chrono::seconds(30), {}, "worker");
    t = new TestServer::Tenant(api->make_tenant("replicas"));
    for (const auto& [id, spec] : {std::pair{"linear", kLinear}, std::pair{"slow", kSlow}})
      ASSERT_EQ(api->call("PUT", std::string("/v1/graphs/") + id, t->key, spec.dump()).status, 201);
  }
  static void TearDownTestSuite() {
    delete t;
    delete worker;
    delete api;
  }
  static json post(const std::string& path, const json& body, int status = 200) {
    return api->call_json("POST", path, t->key, body.dump(), status);
  }
  static std::string new_thread() { return post("/threads", json::object())["thread_id"]; }
  static json run_of(const std::string& thread, const std::string& run) {
    return api->call_json("GET", "/threads/" + thread + "/runs/" + run, t->key);
  }
  static TestServer *api, *worker;
  static TestServer::Tenant* t;
};
TestServer* Replicas::api = nullptr;
TestServer* Replicas::worker = nullptr;
TestServer::Tenant* Replicas::t = nullptr;

TEST_F(Replicas, WaitAnswersWhenTheRunEndsOnAnotherReplica) {
  auto out = post("/threads/" + new_thread() + "/runs/wait", {{"assistant_id", "linear"}, {"input", {{"count", 0}}}});
  EXPECT_EQ(out["count"], 3) << out.dump();
  EXPECT_EQ(out["log"], json::array({"a0", "b1", "c2"}));
  auto stateless = post("/runs/wait", {{"assistant_id", "linear"}, {"input", {{"count", 10}}}});
  EXPECT_EQ(stateless["count"], 13);
}

// The worker's thread runs at --worker-nice (default -5) relative to the process where the
// process may raise a thread's priority, and at the process's otherwise: every "ap-worker"
// thread of this process (the in-process servers' workers) says so in /proc.
TEST_F(Replicas, TheWorkerThreadRunsAtItsNiceValue) {
  const int base = process_nice();
  int expected = base;
  std::thread([&] {
    if (set_thread_nice(base - 5) == 0) expected = base - 5;  // permitted here (what the worker tries)
  }).join();
  int workers = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name != "ap-worker") continue;
    ++workers;
    std::ifstream stat(task.path() / "stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // After "(comm) ": state, then fields 4..; nice is field 19.
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::vector<std::string> f((std::istream_iterator<std::string>(rest)), std::istream_iterator<std::string>());
    ASSERT_GT(f.size(), 16u);
    EXPECT_EQ(std::stoi(f[16]), expected) << task.path();
  }
  EXPECT_GE(workers, 1);
}

// A run queued on the API replica wakes the worker replica by NOTIFY (sent after the run's
// commit: src/control/runs.cc, wake_workers), so it is claimed at once. Were the NOTIFY lost,
// each run would wait for the worker's next poll (every second): ten in a row all claimed
// within 500 ms would then have about one chance in a thousand.
TEST_F(Replicas, AQueuedRunWakesTheWorkerReplicaAtOnce) {
  auto claimed_within = [](const std::string& le) {
    auto m = worker->call("GET", "/metrics");
    const std::string name = "agentplane_run_pickup_seconds_bucket{le=\"" + le + "\"} ";
    const size_t at = m.body.find(name);
    return at == std::string::npos ? 0.0 : std::stod(m.body.substr(at + name.size()));
  };
  const double quick0 = claimed_within("0.5"), all0 = claimed_within("+Inf");
  for (int i = 0; i < 10; ++i) {
    auto out = post("/runs/wait", {{"assistant_id", "linear"}, {"input", {{"count", i}}}});
    EXPECT_EQ(out["count"], i + 3);
  }
  EXPECT_EQ(claimed_within("+Inf") - all0, 10);
  EXPECT_EQ(claimed_within("0.5") - quick0, 10);

  // A batch commits its runs back to back: none waits for the poll either.
  json batch = json::array();
  for (int i = 0; i < 12; ++i) batch.push_back({{"assistant_id", "linear"}, {"input", {{"count", i}}}});
  json runs = api->call_json("POST", "/runs/batch", t->key, batch.dump());
  ASSERT_EQ(runs.size(), 12u) << runs.dump();
  for (const auto& r : runs) {
    auto out = api->call_json("GET", "/threads/" + r["thread_id"].get<std::string>() + "/runs/" +
                                         r["run_id"].get<std::string>() + "/join", t->key);
    EXPECT_EQ(out["count"].get<int>() - 3, r["kwargs"]["input"]["count"].get<int>()) << out.dump();
  }
  EXPECT_EQ(claimed_within("+Inf") - all0, 22);
  EXPECT_EQ(claimed_within("0.5") - quick0, 22);
}

// The run relay does not rely on notifications alone (one sent after its commit can fail:
// store::notify_after_commit): events and an end written with no NOTIFY at all still reach a
// subscriber, from the relay's once-a-second read of the runs it watches.
TEST_F(Replicas, TheRelayDeliversEventsAndTheEndEvenWithoutANotification) {
  // A run due in an hour: no worker touches it.
  auto run = post("/threads/" + new_thread() + "/runs",
                  {{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"after_seconds", 3600}});
  const Uuid run_id = *Uuid::parse(run["run_id"].get<std::string>());
  const TenantId tenant = *TenantId::parse(t->id);
  control::RunHub hub;
  control::RunRelay relay(hub, Database::get().app_url());
  relay.start();
  boost::asio::io_context ioc;
  auto sub = hub.subscribe(run_id, tenant, ioc.get_executor(), -1, /*catch_up=*/true);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the relay's first read: nothing yet
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  ASSERT_TRUE((*su)->exec("INSERT INTO agentplane.run_events (tenant_id, run_id, seq, event, data) "
                          "VALUES ($1, $2, 0, 'values', '{\"count\": 3}')",
                          {t->id, run_id.to_string()}));
  ASSERT_TRUE((*su)->exec("UPDATE agentplane.runs SET status = 'success' WHERE tenant_id = $1 AND run_id = $2",
                          {t->id, run_id.to_string()}));
  std::vector<std::string> got;
  bool ended = false;
  boost::asio::co_spawn(ioc, [&]() -> boost::asio::awaitable<void> {
    for (;;) {
      auto e = co_await sub->next(std::chrono::seconds(5));
      if (!e) {
        ended = !sub->timed_out();
        co_return;
      }
      got.push_back(e->event + " " + e->data);
    }
  }, boost::asio::detached);
  ioc.run();
  EXPECT_EQ(got, std::vector<std::string>{"values {\"count\": 3}"});
  EXPECT_TRUE(ended) << "the run's end never came";
  hub.unsubscribe(run_id, sub);
  relay.stop();
}

TEST_F(Replicas, StreamCarriesEveryEventFromTheWorkerReplica) {
  std::string th = new_thread();
  auto r = api->call("POST", "/threads/" + th + "/runs/stream", t->key,
                     json{{"assistant_id", "linear"}, {"input", {{"count", 0}}}, {"stream_mode", {"values", "updates"}}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  auto ev = events_of(r.body);
  ASSERT_FALSE(ev.empty()) << r.body;
  EXPECT_EQ(ev.front().first, "metadata");
  std::vector<std::string> updates;
  for (const auto& [name, data] : ev)
    if (name == "updates") updates.push_back(data.begin().key());
  EXPECT_EQ(updates, (std::vector<std::string>{"a", "b", "c"})) << r.body;
  EXPECT_EQ(ev.back().first, "values");
  EXPECT_EQ(ev.back().second["log"], json::array({"a0", "b1", "c2"}));
  // Ids run from 0 without gaps.
  size_t ids = 0;
  for (size_t pos = 0; (pos = r.body.find("\nid: ", pos)) != std::string::npos; ++pos, ++ids)
    EXPECT_EQ(std::stoul(r.body.substr(pos + 5)), ids);
  EXPECT_EQ(ids, ev.size());
}

TEST_F(Replicas, JoinStreamOfARunningRunReplaysFromLastEventId) {
  std::string th = new_thread();
  json run = post("/threads/" + th + "/runs", kSlowRun);
  const std::string rid = run["run_id"];
  ASSERT_TRUE(eventually([&] { return run_of(th, rid)["status"] == "running"; }));
  // Cancelled from the API replica once the relay has brought it a few events.
  net::HttpResponse r;
  std::thread join([&] {
    r = api->call("GET", "/threads/" + th + "/runs/" + rid + "/stream", t->key, "", {{"last-event-id", "-1"}});
  });
  const Uuid id = *Uuid::parse(rid);
  EXPECT_TRUE(eventually([&] { return api->wiring().agents->hub.last_event(id) >= 3; }, std::chrono::seconds(10)));
  api->call("POST", "/threads/" + th + "/runs/" + rid + "/cancel", t->key);
  join.join();
  ASSERT_EQ(r.status, 200);
  auto ev = events_of(r.body);
  ASSERT_GE(ev.size(), 2u) << r.body;
  EXPECT_EQ(ev.front().first, "metadata") << "replayed from event 0";
  EXPECT_EQ(run_of(th, rid)["status"], "interrupted");
}

TEST_F(Replicas, CancelReachesTheWorkerAtOnce) {
  std::string th = new_thread();
  json run = post("/threads/" + th + "/runs", kSlowRun);
  const std::string rid = run["run_id"];
  ASSERT_TRUE(eventually([&] { return run_of(th, rid)["status"] == "running"; }));
  auto c = api->call("POST", "/threads/" + th + "/runs/" + rid + "/cancel?wait=true", t->key);
  EXPECT_EQ(c.status, 204) << c.body;
  EXPECT_EQ(run_of(th, rid)["status"], "interrupted");
  auto thread = api->call_json("GET", "/threads/" + th, t->key);
  EXPECT_EQ(thread["status"], "idle") << thread.dump();
  auto state = api->call_json("GET", "/threads/" + th + "/state", t->key);
  EXPECT_TRUE(state["checkpoint"]["checkpoint_id"].is_string()) << "the state up to the cancel is kept: " << state.dump();
}

// Deleting a thread while its run runs on the worker replica cancels the run at once; when it
// ends, the run and everything it checkpointed after the delete go too (nothing is left that
// no API could reach again).
TEST_F(Replicas, DeletingABusyThreadCancelsItsRunAndLeavesNothing) {
  std::string th = new_thread();
  json run = post("/threads/" + th + "/runs", kSlowRun);
  const std::string rid = run["run_id"];
  ASSERT_TRUE(eventually([&] { return run_of(th, rid)["status"] == "running"; }));
  EXPECT_EQ(api->call("DELETE", "/threads/" + th, t->key).status, 204);
  auto su = store::SyncConn::connect(Database::get().superuser_url());
  ASSERT_TRUE(su);
  auto left = [&] {
    auto r = (*su)->exec("SELECT (SELECT count(*) FROM agentplane.runs WHERE run_id = $1::uuid) + "
                         "(SELECT count(*) FROM agentplane.checkpoints WHERE thread_id = $2) + "
                         "(SELECT count(*) FROM agentplane.checkpoint_blobs WHERE thread_id = $2)", {rid, th});
    return r ? std::stoll(std::string(r->get(0, 0))) : -1;
  };
  // The lease renewal (every 2 s) would also tell the worker: the NOTIFY makes it at once.
  EXPECT_TRUE(eventually([&] { return left() == 0; }, std::chrono::milliseconds(500))) << left() << " rows left";
  EXPECT_EQ(api->call("GET", "/threads/" + th, t->key).status, 404);

  // A thread made again with the same id before the cancelled run stopped is a new one: the
  // run's state, status and checkpoints do not land in it.
  std::string again = new_thread();
  json second = post("/threads/" + again + "/runs", kSlowRun);
  const std::string rid2 = second["run_id"];
  ASSERT_TRUE(eventually([&] { return run_of(again, rid2)["status"] == "running"; }));
  EXPECT_EQ(api->call("DELETE", "/threads/" + again, t->key).status, 204);
  EXPECT_EQ(post("/threads", {{"thread_id", again}, {"metadata", {{"fresh", true}}}})["thread_id"], again);
  auto old_run_rows = [&] {
    auto r = (*su)->exec("SELECT (SELECT count(*) FROM agentplane.runs WHERE run_id = $1::uuid) + "
                         "(SELECT count(*) FROM agentplane.checkpoints WHERE thread_id = $2 AND metadata->>'run_id' = $1::text)",
                         {rid2, again});
    return r ? std::stoll(std::string(r->get(0, 0))) : -1;
  };
  EXPECT_TRUE(eventually([&] { return old_run_rows() == 0; }, std::chrono::seconds(5))) << old_run_rows() << " rows left";
  auto fresh = api->call_json("GET", "/threads/" + again, t->key);
  EXPECT_EQ(fresh["status"], "idle") << fresh.dump();
  EXPECT_TRUE(fresh["values"].is_null() || fresh["values"].empty()) << fresh.dump();
  EXPECT_EQ(fresh["metadata"]["fresh"], true);
}

}  // namespace
}  // namespace ap::testing
