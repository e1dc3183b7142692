// LangGraph's documented behaviour that needs no checkpointer; the suites of
// checkpointer_suite.h run here on the in-memory saver.
#include "graph/graph.h"

#include <gtest/gtest.h>

#include <atomic>
#include <span>
#include <nlohmann/json.hpp>

#include "graph/checkpointer_suite.h"
#include "graph/memory_saver.h"

namespace ap::graph {
namespace {

// A saver that notes how each checkpoint was asked to be committed.
class RecordingSaver final : public Checkpointer {
 public:
  std::vector<std::pair<int, Durability>> puts;  // (step, durability)
  Result<std::optional<CheckpointTuple>> get_tuple(const CheckpointConfig& c) override { return m_.get_tuple(c); }
  Result<std::vector<CheckpointTuple>> list(const ListOptions& o) override { return m_.list(o); }
  Result<CheckpointConfig> put(const CheckpointConfig& c, const Checkpoint& cp, const CheckpointMetadata& md,
                               Durability d) override {
    puts.emplace_back(md.step, d);
    return m_.put(c, cp, md, d);
  }
  Status put_writes(const CheckpointConfig& c, std::span<const PendingWrite> w, Durability d) override {
    return m_.put_writes(c, w, d);
  }
  Status delete_thread(const std::string& t) override { return m_.delete_thread(t); }
  void thread_deleted(const std::string& t) override { m_.thread_deleted(t); }
  Status delete_run(const std::string& t, const std::string& r) override { return m_.delete_run(t, r); }
  Status patch_metadata(const CheckpointConfig& c, const Json& p) override { return m_.patch_metadata(c, p); }
  Status copy_thread(const std::string& f, const std::string& t) override { return m_.copy_thread(f, t); }
  Status prune(std::span<const std::string> ids, size_t keep) override { return m_.prune(ids, keep); }

 private:
  MemorySaver m_;
};

// With a durable commit to follow the run (the worker's end of a run), durability sync waits
// for the flush of every checkpoint a later step builds on, and of no other: not the input's or
// the START step's (no node's work is in them), nor the one the run ends with.
TEST(Graph, ADurableEndLetsTheFirstAndLastCheckpointsGoWithoutWaitingForTheirFlush) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b").edge("b", kEnd);
  auto graph = compile(g);
  using P = std::vector<std::pair<int, Durability>>;
  constexpr auto S = Durability::kSync, A = Durability::kAsync;
  RecordingSaver saver;
  RunOptions o;
  o.thread_id = "t";
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array({"in"})}}), o, &saver));
  EXPECT_EQ(saver.puts, (P{{-1, S}, {0, S}, {1, S}, {2, S}}));  // without it: every one waits
  saver.puts.clear();
  o.durable_end_follows = true;
  auto r = graph->invoke(Input::of({{"log", Json::array({"again"})}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"in", "a", "b", "again", "a", "b"}));
  EXPECT_EQ(saver.puts, (P{{3, A}, {4, A}, {5, S}, {6, A}}));  // input, START, a, b (the end)
  // A run that stops: where it stops is its end.
  saver.puts.clear();
  o.thread_id = "stops";
  o.interrupt_before = {"b"};
  r = graph->invoke(Input::of({{"log", Json::array()}}), o, &saver);
  ASSERT_TRUE(r && r->interrupted);
  EXPECT_EQ(saver.puts, (P{{-1, A}, {0, A}, {1, S}, {1, A}}));  // (1 again: as it stopped)
  saver.puts.clear();
  o.interrupt_before.clear();
  r = graph->invoke(Input{}, o, &saver);  // resumed: b runs and ends the run
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(saver.puts, (P{{2, A}}));
  // Durability async asks for no flush anyway.
  saver.puts.clear();
  o.thread_id = "async";
  o.durability = Durability::kAsync;
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array()}}), o, &saver));
  EXPECT_EQ(saver.puts, (P{{-1, A}, {0, A}, {1, A}, {2, A}}));
}

TEST(Graph, ParallelBranchesAndJoin) {
  StateGraph g;
  g.channel("log", Reducer::kAppend);
  g.node("fan", append("fan")).node("left", append("left")).node("right", append("right"));
  g.node("slow", append("slow")).node("merge", append("merge"));
  g.edge(kStart, "fan").edge("fan", "left").edge("fan", "right").edge("right", "slow");
  g.join({"left", "slow"}, "merge").edge("merge", kEnd);
  auto graph = compile(g);
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), {});
  ASSERT_TRUE(r) << r.error().message;
  // left and right run in the same superstep (writes in task-path order); merge waits for both.
  EXPECT_EQ(r->values["log"], Json::array({"fan", "left", "right", "slow", "merge"}));
}

TEST(Graph, FinalValuesAsTextAreTheStateAsJsonText) {
  // Channels out of name order, a list with objects, a barrier-free join, text that needs
  // escaping: the text is exactly what the JSON tree would dump.
  StateGraph g;
  g.channel("zeta").channel("log", Reducer::kAppend).channel("alpha", Reducer::kAdd);
  g.node("a", [](NodeContext&) -> Result<NodeOutput> {
    return NodeOutput()
        .write("log", Json::array({Json{{"role", "ai"}, {"content", "quote \" and \u00e9"}}, 2}))
        .write("alpha", 3)
        .write("zeta", Json{{"k", nullptr}});
  });
  g.edge(kStart, "a").edge("a", kEnd);
  auto graph = compile(g);
  const Input in = Input::of({{"log", Json::array({"first"})}, {"alpha", 1}});
  auto tree = graph->invoke(in, {});
  ASSERT_TRUE(tree) << tree.error().message;
  RunOptions o;
  o.final_values_as_text = true;
  auto text = graph->invoke(in, o);
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_TRUE(text->values.is_null());
  EXPECT_EQ(text->values_text, tree->values.dump());
  EXPECT_EQ(Json::parse(text->values_text)["log"].size(), 3u);
}

TEST(Graph, InterruptedRunsKeepTheirValuesAsATreeEvenWhenTextIsAsked) {
  StateGraph g;
  g.channel("x");
  g.node("a", [](NodeContext&) -> Result<NodeOutput> { return NodeOutput().write("x", 1); });
  g.node("b", [](NodeContext&) -> Result<NodeOutput> { return NodeOutput().write("x", 2); });
  g.edge(kStart, "a").edge("a", "b").edge("b", kEnd);
  MemorySaver saver;
  RunOptions o;
  o.thread_id = "t";
  o.interrupt_before = {"b"};
  o.final_values_as_text = true;
  auto r = compile(g)->invoke(Input::of({{"x", 0}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->interrupted);
  EXPECT_TRUE(r->values_text.empty());
  EXPECT_EQ(r->values["x"], 1);
}

TEST(Graph, ConcurrentWritesToALastValueChannelFail) {
  StateGraph g;
  g.channel("x");
  auto set = [](int v) {
    return [v](NodeContext&) -> Result<NodeOutput> { return NodeOutput().write("x", v); };
  };
  g.node("a", set(1)).node("b", set(2)).edge(kStart, "a").edge(kStart, "b");
  auto r = compile(g)->invoke(Input::of({{"x", 0}}), {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("INVALID_CONCURRENT_GRAPH_UPDATE"), std::string::npos);
}

TEST(Graph, ConditionalEdgesSeeTheNodesOwnWrites) {
  StateGraph g;
  g.channel("attempts").channel("log", Reducer::kAppend);
  g.node("try", [](NodeContext& ctx) -> Result<NodeOutput> {
    int n = ctx.get("attempts").is_number() ? ctx.get("attempts").get<int>() : 0;
    return NodeOutput().write("attempts", n + 1).write("log", "try");
  });
  g.node("done", append("done"));
  g.edge(kStart, "try").branch(
      "try",
      [](NodeContext& ctx) -> Result<Route> {
        return Route{{ctx.get("attempts").get<int>() < 3 ? "try" : "done"}, {}};
      },
      {"try", "done"});
  g.edge("done", kEnd);
  auto r = compile(g)->invoke(Input::of({{"attempts", 0}}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["attempts"], 3);
  EXPECT_EQ(r->values["log"], Json::array({"try", "try", "try", "done"}));
}

TEST(Graph, SendMapReduce) {
  StateGraph g;
  g.channel("subjects").channel("jokes", Reducer::kAppend);
  g.node("plan", [](NodeContext&) -> Result<NodeOutput> { return NodeOutput(); });
  g.node("joke", [](NodeContext& ctx) -> Result<NodeOutput> {
    return NodeOutput().write("jokes", "joke about " + ctx.arg()["subject"].get<std::string>());
  });
  g.edge(kStart, "plan").branch("plan", [](NodeContext& ctx) -> Result<Route> {
    Route r;
    for (const auto& s : ctx.get("subjects")) r.sends.push_back({"joke", {{"subject", s}}});
    return r;
  });
  auto r = compile(g)->invoke(Input::of({{"subjects", {"cats", "dogs", "owls"}}}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["jokes"],
            Json::array({"joke about cats", "joke about dogs", "joke about owls"}));
}

TEST(Graph, CommandGotoAndUpdate) {
  StateGraph g;
  g.channel("route").channel("log", Reducer::kAppend);
  g.node("decide", [](NodeContext& ctx) -> Result<NodeOutput> {
    NodeOutput out;
    out.write("log", "decide");
    out.goto_nodes.push_back(ctx.get("route").get<std::string>());
    return out;
  });
  g.node("x", append("x")).node("y", append("y"));
  g.edge(kStart, "decide").branch("decide", [](NodeContext&) -> Result<Route> { return Route{}; },
                                  {"x", "y"});
  auto r = compile(g)->invoke(Input::of({{"route", "y"}}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"decide", "y"}));
}

TEST(Graph, RecursionLimit) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("loop", append("again")).edge(kStart, "loop").edge("loop", "loop");
  RunOptions o;
  o.recursion_limit = 5;
  auto r = compile(g)->invoke(Input::of({{"log", Json::array()}}), o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kResourceExhausted);
  EXPECT_NE(r.error().message.find("GRAPH_RECURSION_LIMIT"), std::string::npos);
}

TEST(Graph, RetryPolicy) {
  std::atomic<int> calls{0};
  StateGraph g;
  g.channel("log", Reducer::kAppend);
  RetryPolicy retry;
  retry.max_attempts = 3;
  retry.initial_interval_s = 0.001;
  g.node("flaky", [&](NodeContext&) -> Result<NodeOutput> {
    if (++calls < 3) return Error::unavailable("upstream down");
    return NodeOutput().write("log", "ok");
  }, retry);
  g.edge(kStart, "flaky");
  auto graph = compile(g);
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(calls, 3);
  StateGraph g2;
  g2.channel("log", Reducer::kAppend);
  std::atomic<int> bad_calls{0};
  g2.node("bad", [&](NodeContext&) -> Result<NodeOutput> {
    ++bad_calls;
    return Error::invalid_argument("bad input");
  }, retry);
  g2.edge(kStart, "bad");
  auto r2 = compile(g2)->invoke(Input::of({{"log", Json::array()}}), {});
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, Code::kInvalidArgument);  // not retried: not a retryable code
  EXPECT_EQ(bad_calls, 1);
}

TEST(Graph, InvalidGraphsListEveryProblem) {
  StateGraph g;
  g.channel("__bad").node("a", append("a")).node("island", append("x"));
  g.edge("a", "ghost").edge("nowhere", "a");
  auto c = g.compile();
  ASSERT_FALSE(c);
  const auto& m = c.error().message;
  for (const char* p : {"'__bad' is reserved", "edge to unknown node 'ghost'",
                        "edge from unknown node 'nowhere'", "no entry", "'island' is unreachable"})
    EXPECT_NE(m.find(p), std::string::npos) << p << " in " << m;
}

TEST(Graph, ANodeThatThrowsFailsItsTaskNotTheProcess) {
  StateGraph g;
  g.channel("x").node("boom", [](NodeContext& ctx) -> Result<NodeOutput> {
    return NodeOutput().write("x", ctx.get("x").at("missing"));  // throws out_of_range
  });
  g.edge(kStart, "boom");
  auto r = compile(g)->invoke(Input::of({{"x", Json::object()}}), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInternal);
  EXPECT_NE(r.error().message.find("node 'boom' threw"), std::string::npos);
}

TEST(Graph, StreamsUpdatesValuesCustomAndSubgraphEvents) {
  StateGraph child;
  child.channel("log", Reducer::kAppend).node("inner", [](NodeContext& ctx) -> Result<NodeOutput> {
    ctx.emit({{"progress", 50}});
    ctx.call_event(CallEvent{"on_tool_start", "calc", "C1", Json::object(), nullptr});
    return NodeOutput().write("log", "inner");
  }).edge(kStart, "inner");
  StateGraph parent;
  parent.channel("log", Reducer::kAppend).subgraph("sub", compile(child)).node("after", append("after"));
  parent.edge(kStart, "sub").edge("sub", "after");
  auto graph = compile(parent);
  std::vector<StreamEvent> events;
  RunOptions o;
  o.on_event = [&](const StreamEvent& e) { events.push_back(e); };
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array()}}), o));
  auto count = [&](const std::string& mode, bool in_sub) {
    return std::count_if(events.begin(), events.end(), [&](const StreamEvent& e) {
      return e.mode == mode && (e.ns.empty() != in_sub);
    });
  };
  EXPECT_EQ(count("updates", false), 2);  // sub, after
  EXPECT_EQ(count("values", false), 3);   // after START, sub, after
  EXPECT_EQ(count("custom", true), 0);    // not streamed without stream_subgraphs
  events.clear();
  o.stream_subgraphs = true;
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array()}}), o));
  EXPECT_EQ(count("custom", true), 1);
  EXPECT_EQ(count("updates", true), 1);
  auto it = std::find_if(events.begin(), events.end(), [](const StreamEvent& e) { return e.mode == "custom"; });
  ASSERT_NE(it, events.end());
  EXPECT_EQ(it->ns.rfind("sub:", 0), 0u);
  EXPECT_EQ(it->data["progress"], 50);
  // subgraph_tasks alone (the `events` mode): the subgraph's task events and calls, nothing else.
  events.clear();
  std::vector<std::string> calls;
  o.stream_subgraphs = false;
  o.subgraph_tasks = true;
  o.stream_debug = true;
  o.on_call_event = [&](const ChunkSource& from, const CallEvent& e) { calls.push_back(e.name + "@" + from.ns); };
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array()}}), o));
  EXPECT_EQ(count("tasks", true), 2);  // inner's start and result
  for (const char* mode : {"custom", "updates", "values", "checkpoints"}) EXPECT_EQ(count(mode, true), 0) << mode;
  EXPECT_EQ(count("tasks", false), 4);  // sub's and after's
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].rfind("calc@sub:", 0), 0u) << calls[0];
  // Two levels down: the innermost namespace, still tasks and calls only.
  StateGraph outer;
  outer.channel("log", Reducer::kAppend).subgraph("mid", compile(parent));
  outer.edge(kStart, "mid");
  events.clear();
  calls.clear();
  ASSERT_TRUE(compile(outer)->invoke(Input::of({{"log", Json::array()}}), o));
  std::vector<std::string> inner_ns;
  for (const auto& e : events) {
    if (!e.ns.empty()) {
      EXPECT_EQ(e.mode, "tasks") << e.ns;
    }
    if (e.node == "inner") inner_ns.push_back(e.ns);
  }
  ASSERT_EQ(inner_ns.size(), 2u);
  EXPECT_EQ(inner_ns[0].rfind("mid:", 0), 0u) << inner_ns[0];
  EXPECT_NE(inner_ns[0].find("|sub:"), std::string::npos) << inner_ns[0];
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_NE(calls[0].find("|sub:"), std::string::npos) << calls[0];
}

const SaverFactory kMemory{"memory", [] { return std::make_unique<MemorySaver>(); }};
INSTANTIATE_TEST_SUITE_P(Memory, Conformance, ::testing::Values(kMemory), saver_name);
INSTANTIATE_TEST_SUITE_P(Memory, GraphOnSaver, ::testing::Values(kMemory), saver_name);

}  // namespace
}  // namespace ap::graph
