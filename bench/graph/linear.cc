// Benchmark (a) of issue 4: a 10-node linear graph; each node appends one small
// {role, content} item to `messages` (append reducer) and increments `counter` (last value).
// A new thread per run, a checkpoint per superstep in the in-memory checkpointer; the thread is
// deleted after its run so memory must stay flat. Also the same graph without a checkpointer.
// Prints JSON lines. Usage: bench_graph_linear [seconds=5]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "graph/graph.h"
#include "graph/memory_saver.h"

using namespace ap::graph;

namespace {

long rss_kb() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * 4;
}

std::shared_ptr<const CompiledGraph> build(int nodes) {
  StateGraph g;
  g.channel("messages", Reducer::kAppend).channel("counter");
  std::string prev = kStart;
  for (int i = 0; i < nodes; ++i) {
    std::string name = "node_" + std::to_string(i);
    g.node(name, [name](NodeContext& ctx) -> ap::Result<NodeOutput> {
      const auto& c = ctx.channel("counter");
      int64_t n = c ? c->value().get<int64_t>() : 0;
      NodeOutput out;
      out.writes.reserve(2);
      out.writes.emplace_back("messages", Json{{"role", "ai"}, {"content", name}});
      out.writes.emplace_back("counter", n + 1);
      return out;
    });
    g.edge(prev, name);
    prev = name;
  }
  return *g.compile();
}

void run_case(const char* name, bool checkpoints, double seconds) {
  auto graph = build(10);
  MemorySaver saver;
  Input input = Input::of({{"messages", Json::array()}, {"counter", 0}});
  auto once = [&](long i) {
    RunOptions o;
    if (checkpoints) o.thread_id = "t" + std::to_string(i);
    auto r = graph->invoke(input, o, checkpoints ? &saver : nullptr);
    if (!r || r->values["counter"] != 10) {
      std::fprintf(stderr, "run failed\n");
      std::exit(1);
    }
    if (checkpoints) (void)saver.delete_thread(o.thread_id);
  };
  for (long i = 0; i < 2000; ++i) once(i);  // warm-up
  long rss_start = rss_kb();
  auto start = std::chrono::steady_clock::now();
  long runs = 0;
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int k = 0; k < 1000; ++k) once(runs++);
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"case\": \"%s\", \"runs\": %ld, \"seconds\": %.2f, \"supersteps_per_s\": %.0f, "
      "\"us_per_superstep\": %.3f, \"rss_start_kb\": %ld, \"rss_end_kb\": %ld, \"max_rss_kb\": %ld}\n",
      name, runs, elapsed, runs * 10 / elapsed, elapsed * 1e6 / (runs * 10.0), rss_start, rss_kb(),
      ru.ru_maxrss);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 5;
  run_case("linear_nocheckpointer", false, seconds);
  run_case("linear_memory", true, seconds);
}
