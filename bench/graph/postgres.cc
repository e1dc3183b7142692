// Benchmarks (b), (c) and (d) of issue 4 on the PostgreSQL checkpointer, against a private,
// durable PostgreSQL 15 that this program starts (initdb defaults: fsync on,
// synchronous_commit on). Prints one JSON line per case. Run through bench/graph/run.sh, which
// also measures the disk's commit latency with pg_test_fsync.
//
//   bench_graph_postgres linear [seconds=10]   (b) 10-node linear graph, a new thread per run:
//                                              sync with 1 and 8 callers, async, exit
//   bench_graph_postgres chat [conversations=10] (c) 50-turn chat, ~1 KB AI message per turn;
//                                              then one 200-turn chat for bytes per turn
//   bench_graph_postgres history [repeats=20]  (d) list 500 checkpoints with full state
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bench/common/db.h"
#include "graph/graph.h"
#include "graph/postgres/postgres_saver.h"
#include "store/sync_conn.h"

using namespace ap;
using namespace ap::graph;
using Clock = std::chrono::steady_clock;

namespace {

using bench::die;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

long max_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Bytes stored for one thread: every column of every row (pg_column_size, as stored), and
// whole rows with their tuple headers.
std::pair<long, long> thread_bytes(bench::Db& db, const std::string& thread) {
  auto r = db.su->exec(
      "SELECT (SELECT coalesce(sum(pg_column_size(tenant_id) + pg_column_size(thread_id) + "
      "pg_column_size(checkpoint_ns) + pg_column_size(checkpoint_id) + coalesce(pg_column_size(parent_id), 0) + "
      "pg_column_size(source) + pg_column_size(step) + coalesce(pg_column_size(metadata), 0) + "
      "pg_column_size(header)), 0) FROM agentplane.checkpoints WHERE thread_id = $1) + "
      "(SELECT coalesce(sum(pg_column_size(tenant_id) + pg_column_size(thread_id) + "
      "pg_column_size(checkpoint_ns) + pg_column_size(channel) + pg_column_size(ref) + "
      "pg_column_size(kind) + coalesce(pg_column_size(base), 0) + pg_column_size(data)), 0) "
      "FROM agentplane.checkpoint_blobs WHERE thread_id = $1) + "
      "(SELECT coalesce(sum(pg_column_size(tenant_id) + pg_column_size(thread_id) + "
      "pg_column_size(checkpoint_ns) + pg_column_size(checkpoint_id) + pg_column_size(task_id) + "
      "pg_column_size(idx) + pg_column_size(task_path) + pg_column_size(channel) + "
      "coalesce(pg_column_size(value), 0)), 0) FROM agentplane.checkpoint_writes WHERE thread_id = $1), "
      "(SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM agentplane.checkpoints t WHERE thread_id = $1) + "
      "(SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM agentplane.checkpoint_blobs t WHERE thread_id = $1) + "
      "(SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM agentplane.checkpoint_writes t WHERE thread_id = $1)",
      {thread});
  if (!r) die(r.error().message);
  return {std::stol(std::string(r->get(0, 0))), std::stol(std::string(r->get(0, 1)))};
}

std::shared_ptr<const CompiledGraph> linear_graph() {
  StateGraph g;
  g.channel("messages", Reducer::kAppend).channel("counter");
  std::string prev = kStart;
  for (int i = 0; i < 10; ++i) {
    std::string name = "node_" + std::to_string(i);
    g.node(name, [name](NodeContext& ctx) -> Result<NodeOutput> {
      const auto& c = ctx.channel("counter");
      int64_t n = c ? c->value().get<int64_t>() : 0;
      return NodeOutput().write("messages", Json{{"role", "ai"}, {"content", name}}).write("counter", n + 1);
    });
    g.edge(prev, name);
    prev = name;
  }
  return *g.compile();
}

void linear_case(bench::Db& db, const char* name, Durability d, int callers, double seconds) {
  PostgresSaverOptions opt;
  opt.connections = static_cast<size_t>(callers);
  if (const char* g = getenv("AP_COMMIT_GROUPS")) opt.commit_groups = static_cast<size_t>(std::atoi(g));
  auto store = PostgresCheckpoints::open(db.app_url(), opt);
  auto graph = linear_graph();
  Input input = Input::of({{"messages", Json::array()}, {"counter", 0}});
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  std::vector<std::vector<double>> lat(static_cast<size_t>(callers));
  static std::atomic<long> seq{0};
  auto caller = [&](int k) {
    auto saver = store->for_tenant(db.tenant);
    while (!stop) {
      RunOptions o;
      o.thread_id = std::string(name) + "-" + std::to_string(seq++);
      o.durability = d;
      auto t = Clock::now();
      auto r = graph->invoke(input, o, saver.get());
      if (!r || r->values["counter"] != 10) die(r ? "wrong result" : r.error().message);
      if (measuring) lat[static_cast<size_t>(k)].push_back(ms_since(t));
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < callers; ++k) threads.emplace_back(caller, k);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up
  measuring = true;
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  double elapsed = ms_since(start) / 1000;
  stop = true;
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  double runs = static_cast<double>(all.size());
  std::printf(
      "{\"case\": \"%s\", \"callers\": %d, \"runs\": %.0f, \"seconds\": %.1f, \"supersteps_per_s\": %.0f, "
      "\"ms_per_run_mean\": %.2f, \"p50\": %.2f, \"p99\": %.2f, \"ms_per_superstep_per_caller\": %.3f}\n",
      name, callers, runs, elapsed, runs * 10 / elapsed, mean(all), percentile(all, 0.5),
      percentile(all, 0.99), mean(all) / 10);
  std::fflush(stdout);
}

// LangGraph.js peer's makeText: deterministic pseudo-random lowercase words of 2-9 letters.
std::string make_text(size_t bytes, uint32_t seed) {
  std::string s = "Answer " + std::to_string(seed) + ":";
  uint32_t x = static_cast<uint32_t>((static_cast<uint64_t>(seed) + 1) * 2654435761ULL);
  auto next = [&] {
    x = x * 1103515245u + 12345u;
    return x >> 8;
  };
  while (s.size() < bytes) {
    uint32_t len = 2 + next() % 8;
    s += ' ';
    for (uint32_t i = 0; i < len; ++i) s += static_cast<char>('a' + next() % 26);
  }
  s.resize(bytes);
  return s;
}

std::shared_ptr<const CompiledGraph> chat_graph() {
  StateGraph g;
  g.channel("messages", Reducer::kMessages);
  g.node("assistant", [](NodeContext& ctx) -> Result<NodeOutput> {
    uint32_t n = static_cast<uint32_t>(ctx.channel("messages")->size());
    return NodeOutput().write("messages", Json::array({Json{{"type", "ai"}, {"content", make_text(1024, n)}}}));
  });
  g.edge(kStart, "assistant");
  return *g.compile();
}

Input human(int turn) {
  return Input::of({{"messages", Json::array({Json{{"type", "human"},
                                                    {"content", "question " + std::to_string(turn) + ": what next?"}}})}});
}

void chat_case(bench::Db& db, int conversations) {
  const int turns = 50;
  auto store = PostgresCheckpoints::open(db.app_url());
  auto saver = store->for_tenant(db.tenant);
  auto graph = chat_graph();
  std::vector<std::vector<double>> lat(turns);
  Json last;
  std::string thread;
  for (int c = -1; c < conversations; ++c) {  // conversation -1 warms up
    thread = "chat-" + std::to_string(c + 1);
    RunOptions o;
    o.thread_id = thread;
    for (int t = 1; t <= turns; ++t) {
      auto start = Clock::now();
      auto r = graph->invoke(human(t), o, saver.get());
      if (!r) die(r.error().message);
      if (c >= 0) lat[static_cast<size_t>(t - 1)].push_back(ms_since(start));
      if (r->values["messages"].size() != static_cast<size_t>(2 * t)) die("chat: wrong message count");
      last = r->values["messages"];
    }
  }
  Json history = Json::array();
  for (const auto& m : last) history.push_back({{"type", m["type"]}, {"content", m["content"]}, {"id", m["id"]}});
  size_t history_bytes = history.dump().size();
  auto [payload, rows] = thread_bytes(db, thread);
  std::vector<double> per_turn;
  for (const auto& v : lat) per_turn.push_back(mean(v));
  double first5 = (per_turn[0] + per_turn[1] + per_turn[2] + per_turn[3] + per_turn[4]) / 5;
  double last5 = 0;
  for (int i = turns - 5; i < turns; ++i) last5 += per_turn[static_cast<size_t>(i)] / 5;
  // Least-squares slope of the mean latency against the turn number.
  double mx = (turns + 1) / 2.0, my = mean(per_turn), num = 0, den = 0;
  for (int i = 0; i < turns; ++i) {
    num += (i + 1 - mx) * (per_turn[static_cast<size_t>(i)] - my);
    den += (i + 1 - mx) * (i + 1 - mx);
  }
  std::printf(
      "{\"case\": \"chat_postgres\", \"conversations\": %d, \"turns\": %d, \"turn1_ms\": %.3f, "
      "\"turn50_ms\": %.3f, \"turn50_over_turn1\": %.2f, \"first5_ms\": %.3f, \"last5_ms\": %.3f, "
      "\"last5_over_first5\": %.2f, \"slope_ms_per_turn\": %.4f, \"history_json_bytes\": %zu, "
      "\"stored_payload_bytes\": %ld, \"payload_over_history\": %.2f, \"stored_row_bytes\": %ld, "
      "\"rows_over_history\": %.2f, \"max_rss_kb\": %ld}\n",
      conversations, turns, per_turn[0], per_turn[turns - 1], per_turn[turns - 1] / per_turn[0], first5,
      last5, last5 / first5, num / den, history_bytes, payload,
      static_cast<double>(payload) / static_cast<double>(history_bytes), rows,
      static_cast<double>(rows) / static_cast<double>(history_bytes), max_rss_kb());
  std::fflush(stdout);

  // Growth: bytes added by each turn of one 200-turn conversation.
  RunOptions o;
  o.thread_id = "chat-long";
  std::vector<long> bytes{0};
  std::vector<double> ms;
  for (int t = 1; t <= 200; ++t) {
    auto start = Clock::now();
    if (auto r = graph->invoke(human(t), o, saver.get()); !r) die(r.error().message);
    ms.push_back(ms_since(start));
    bytes.push_back(thread_bytes(db, "chat-long").first);
  }
  auto per = [&](int t) { return bytes[static_cast<size_t>(t)] - bytes[static_cast<size_t>(t - 1)]; };
  std::printf(
      "{\"case\": \"chat_postgres_growth\", \"turns\": 200, \"bytes_turn10\": %ld, \"bytes_turn50\": %ld, "
      "\"bytes_turn200\": %ld, \"mean_bytes_per_turn\": %.0f, \"turn1_ms\": %.3f, \"turn200_ms\": %.3f, "
      "\"mean_ms_turns_191_200\": %.3f, \"max_rss_kb\": %ld}\n",
      per(10), per(50), per(200), static_cast<double>(bytes[200]) / 200, ms[0], ms[199],
      std::accumulate(ms.end() - 10, ms.end(), 0.0) / 10, max_rss_kb());
  std::fflush(stdout);
}

void history_case(bench::Db& db, int repeats) {
  StateGraph g;
  g.channel("messages", Reducer::kMessages);
  std::string prev = kStart;
  for (const char* n : {"plan", "act", "answer"}) {
    std::string name = n;
    g.node(name, [name](NodeContext&) -> Result<NodeOutput> {
      return NodeOutput().write("messages", Json{{"type", "ai"}, {"content", name + " reply"}});
    });
    g.edge(prev, name);
    prev = name;
  }
  auto graph = *g.compile();
  auto store = PostgresCheckpoints::open(db.app_url());
  auto saver = store->for_tenant(db.tenant);
  RunOptions o;
  o.thread_id = "history";
  for (int turn = 0; turn < 100; ++turn)
    if (auto r = graph->invoke(Input::of({{"messages", {"question " + std::to_string(turn)}}}), o, saver.get()); !r)
      die(r.error().message);
  auto timed = [&](bool cold, bool materialise) {
    std::vector<double> t;
    size_t count = 0;
    for (int i = 0; i < repeats; ++i) {
      // Cold: a new process-wide store, nothing cached. Its connection is opened and its
      // statements prepared beforehand, as on a server that has been up for a while.
      auto fresh = cold ? PostgresCheckpoints::open(db.app_url()) : store;
      auto s = fresh->for_tenant(db.tenant);
      if (cold) (void)s->list({.thread_id = "no-such-thread"});
      auto start = Clock::now();
      auto h = graph->get_state_history(*s, {.thread_id = "history"});
      if (!h) die(h.error().message);
      count = h->size();
      size_t messages = 0;
      if (materialise)
        for (const auto& snap : *h) messages += snap.values()["messages"].size();
      t.push_back(ms_since(start));
    }
    return std::make_pair(percentile(t, 0.5), count);
  };
  auto [warm, n] = timed(false, false);
  auto [cold, n2] = timed(true, false);
  auto [cold_json, n3] = timed(true, true);
  std::printf(
      "{\"case\": \"history_postgres\", \"checkpoints\": %zu, \"median_ms_warm\": %.3f, "
      "\"median_ms_cold\": %.3f, \"median_ms_cold_materialised\": %.3f}\n",
      n, warm, cold, cold_json);
  (void)n2;
  (void)n3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: bench_graph_postgres linear|chat|history [arg]");
  std::string what = argv[1];
  bench::Db db;
  if (what == "linear") {
    // A fresh cluster first creates its WAL segments: keep that out of the first measurement.
    linear_case(db, "warm_up", Durability::kSync, 1, 2);
  }
  if (what == "linear8") {  // the 8-caller sync case alone (for profiling)
    linear_case(db, "linear_postgres_sync_8", Durability::kSync, 8, argc > 2 ? std::atof(argv[2]) : 10);
  } else if (what == "linear") {
    double s = argc > 2 ? std::atof(argv[2]) : 10;
    linear_case(db, "linear_postgres_sync", Durability::kSync, 1, s);
    linear_case(db, "linear_postgres_sync_8", Durability::kSync, 8, s);
    linear_case(db, "linear_postgres_async", Durability::kAsync, 1, s);
    linear_case(db, "linear_postgres_async_8", Durability::kAsync, 8, s);
    linear_case(db, "linear_postgres_exit", Durability::kExit, 1, s);
  } else if (what == "chat") {
    chat_case(db, argc > 2 ? std::atoi(argv[2]) : 10);
  } else if (what == "history") {
    history_case(db, argc > 2 ? std::atoi(argv[2]) : 20);
  } else {
    die("unknown case " + what);
  }
}
