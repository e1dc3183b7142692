// Benchmark (d) of issue 4, on the in-memory checkpointer: a thread with 500 checkpoints
// (100 turns of a 3-node graph, 400 messages at the end); time to list the whole history with
// each snapshot's full state (shared, as get_state_history returns it), and to materialise every
// snapshot's values as JSON too. Prints JSON. Usage: bench_graph_history [repeats=20]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "graph/memory_saver.h"

using namespace ap::graph;

int main(int argc, char** argv) {
  int repeats = argc > 1 ? std::atoi(argv[1]) : 20;
  StateGraph g;
  g.channel("messages", Reducer::kMessages);
  std::string prev = kStart;
  for (const char* n : {"plan", "act", "answer"}) {
    std::string name = n;
    g.node(name, [name](NodeContext&) -> ap::Result<NodeOutput> {
      return NodeOutput().write("messages", Json{{"type", "ai"}, {"content", name + " reply"}});
    });
    g.edge(prev, name);
    prev = name;
  }
  auto graph = *g.compile();
  MemorySaver saver;
  RunOptions o;
  o.thread_id = "history";
  for (int turn = 0; turn < 100; ++turn) {
    auto r = graph->invoke(Input::of({{"messages", {"question " + std::to_string(turn)}}}), o, &saver);
    if (!r) return 1;
  }
  auto time_ms = [&](bool materialise) {
    std::vector<double> t;
    size_t count = 0, messages = 0;
    for (int i = 0; i < repeats; ++i) {
      auto start = std::chrono::steady_clock::now();
      auto h = graph->get_state_history(saver, {.thread_id = "history"});
      count = h->size();
      messages = 0;
      if (materialise)
        for (const auto& s : *h) messages += s.values()["messages"].size();
      t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(t.begin(), t.end());
    return std::make_tuple(t[t.size() / 2], count, messages);
  };
  auto [shared_ms, n, _] = time_ms(false);
  auto [json_ms, n2, total_messages] = time_ms(true);
  std::printf("{\"case\": \"history_memory\", \"checkpoints\": %zu, \"final_messages\": %zu, "
              "\"median_ms_shared\": %.3f, \"median_ms_materialised\": %.3f, "
              "\"messages_materialised\": %zu}\n",
              n, graph->get_state(saver, {"history", "", ""})->channel_values[0]->size(), shared_ms,
              json_ms, total_messages);
  (void)n2;
}
