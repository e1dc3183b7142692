// LangGraph's documented behaviour, on the in-memory checkpointer.
#include "graph/graph.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "graph/memory_saver.h"

namespace ap::graph {
namespace {

NodeFn append(std::string item) {
  return [item](NodeContext&) -> Result<NodeOutput> {
    return NodeOutput().write("log", Json::array({item}));
  };
}

std::shared_ptr<const CompiledGraph> compile(StateGraph& g) {
  auto c = g.compile();
  EXPECT_TRUE(c) << c.error().message;
  return *c;
}

RunOptions on_thread(std::string id) {
  RunOptions o;
  o.thread_id = std::move(id);
  return o;
}

TEST(Graph, LinearRunCheckpointsEverySuperstep) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).channel("n").node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b").edge("b", kEnd);
  auto graph = compile(g);
  MemorySaver saver;
  auto r = graph->invoke(Input::of({{"log", Json::array({"in"})}, {"n", 1}}), on_thread("t"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values, (Json{{"log", {"in", "a", "b"}}, {"n", 1}}));
  EXPECT_EQ(r->steps, 3);  // START, a, b
  auto history = graph->get_state_history(saver, {.thread_id = "t"});
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 4u);  // input, and one per superstep
  EXPECT_EQ((*history)[3].metadata["source"], "input");
  EXPECT_EQ((*history)[3].metadata["step"], -1);
  EXPECT_EQ((*history)[0].metadata["source"], "loop");
  EXPECT_EQ((*history)[0].metadata["step"], 2);
  EXPECT_TRUE((*history)[0].next.empty());
  EXPECT_EQ((*history)[1].next, std::vector<std::string>{"b"});
  for (size_t i = 0; i + 1 < history->size(); ++i) {
    ASSERT_TRUE((*history)[i].parent_config);
    EXPECT_EQ((*history)[i].parent_config->checkpoint_id, (*history)[i + 1].config.checkpoint_id);
    EXPECT_GT((*history)[i].config.checkpoint_id, (*history)[i + 1].config.checkpoint_id);
  }
}

TEST(Graph, CheckpointJsonFollowsTheV4Contract) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).edge(kStart, "a");
  auto graph = compile(g);
  MemorySaver saver;
  ASSERT_TRUE(graph->invoke(Input::of({{"log", "x"}}), on_thread("t"), &saver));
  auto t = saver.get_tuple({"t", "", ""});
  ASSERT_TRUE(t && *t);
  Json j = (*t)->checkpoint.to_json();
  EXPECT_EQ(j["v"], 4);
  for (const char* k : {"id", "ts", "channel_values", "channel_versions", "versions_seen"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["channel_values"]["log"], Json::array({"x", "a"}));
  EXPECT_TRUE(j["versions_seen"].contains("a"));
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

TEST(Graph, InterruptThenResume) {
  std::atomic<int> runs{0};
  StateGraph g;
  g.channel("answers", Reducer::kAppend);
  g.node("ask", [&](NodeContext& ctx) -> Result<NodeOutput> {
    ++runs;
    AP_ASSIGN_OR_RETURN(Json name, ctx.interrupt("name?"));
    AP_ASSIGN_OR_RETURN(Json age, ctx.interrupt("age?"));
    return NodeOutput().write("answers", Json::array({name, age}));
  });
  g.edge(kStart, "ask");
  auto graph = compile(g);
  MemorySaver saver;
  auto r = graph->invoke(Input::of({{"answers", Json::array()}}), on_thread("h"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->interrupted);
  ASSERT_EQ(r->interrupts.size(), 1u);
  EXPECT_EQ(r->interrupts[0].value, "name?");
  auto state = graph->get_state(saver, {"h", "", ""});
  ASSERT_TRUE(state);
  EXPECT_EQ(state->next, std::vector<std::string>{"ask"});
  ASSERT_EQ(state->interrupts.size(), 1u);
  // The node re-executes from its start; the k-th interrupt() gets the k-th resume value.
  r = graph->invoke(Input::resume_with("Ada"), on_thread("h"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->interrupted);
  EXPECT_EQ(r->interrupts[0].value, "age?");
  std::string id = r->interrupts[0].id;
  r = graph->invoke(Input::resume_with(Json{{id, 36}}), on_thread("h"), &saver);  // keyed by id
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->values["answers"], Json::array({"Ada", 36}));
  EXPECT_EQ(runs, 3);
  // Nothing left to resume: a clear error that changes nothing.
  auto again = graph->invoke(Input::resume_with("x"), on_thread("h"), &saver);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kInvalidArgument);
}

TEST(Graph, CrashResumeKeepsFinishedSiblings) {
  std::atomic<int> left_runs{0}, right_runs{0};
  std::atomic<bool> fail{true};
  StateGraph g;
  g.channel("log", Reducer::kAppend);
  g.node("left", [&](NodeContext&) -> Result<NodeOutput> {
    ++left_runs;
    return NodeOutput().write("log", "left");
  });
  g.node("right", [&](NodeContext&) -> Result<NodeOutput> {
    ++right_runs;
    if (fail) return Error::unavailable("worker died");
    return NodeOutput().write("log", "right");
  });
  g.edge(kStart, "left").edge(kStart, "right");
  auto graph = compile(g);
  MemorySaver saver;
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), on_thread("c"), &saver);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kUnavailable);
  fail = false;
  r = graph->invoke(Input{}, on_thread("c"), &saver);  // resume from the last checkpoint
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"left", "right"}));
  EXPECT_EQ(left_runs, 1);  // its writes were kept: not run again
  EXPECT_EQ(right_runs, 2);
}

TEST(Graph, InterruptBeforeAndAfter) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b");
  auto graph = compile(g);
  MemorySaver saver;
  RunOptions o = on_thread("ib");
  o.interrupt_before = {"b"};
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->interrupted);
  EXPECT_EQ(graph->get_state(saver, {"ib", "", ""})->next, std::vector<std::string>{"b"});
  r = graph->invoke(Input{}, o, &saver);  // continue: the interrupt does not fire twice
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->values["log"], Json::array({"a", "b"}));
  RunOptions after = on_thread("ia");
  after.interrupt_after = {"a"};
  r = graph->invoke(Input::of({{"log", Json::array()}}), after, &saver);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->interrupted);
  EXPECT_EQ(graph->get_state(saver, {"ia", "", ""})->values()["log"], Json::array({"a"}));
}

TEST(Graph, UpdateStateAndTimeTravel) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b");
  auto graph = compile(g);
  MemorySaver saver;
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array()}}), on_thread("tt"), &saver));
  auto history = *graph->get_state_history(saver, {.thread_id = "tt"});
  // Fork from the checkpoint after "a": update as if "a" wrote, then continue to b.
  const auto& after_a = history[1];
  ASSERT_EQ(after_a.next, std::vector<std::string>{"b"});
  auto forked = graph->update_state(saver, after_a.config, {{"log", "edited"}}, "a");
  ASSERT_TRUE(forked) << forked.error().message;
  auto fs = graph->get_state(saver, *forked);
  EXPECT_EQ(fs->metadata["source"], "update");
  EXPECT_EQ(fs->values()["log"], Json::array({"a", "edited"}));
  RunOptions replay = on_thread("tt");
  replay.checkpoint_id = forked->checkpoint_id;
  auto r = graph->invoke(Input{}, replay, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"a", "edited", "b"}));
  // History now has both branches, newest first.
  auto all = *graph->get_state_history(saver, {.thread_id = "tt"});
  EXPECT_EQ(all.size(), history.size() + 2);
  EXPECT_FALSE(graph->update_state(saver, after_a.config, {{"nope", 1}}, "a"));
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

TEST(Graph, BadInputChangesNothing) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).edge(kStart, "a");
  auto graph = compile(g);
  MemorySaver saver;
  auto r = graph->invoke(Input::of({{"unknown", 1}}), on_thread("b"), &saver);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_EQ(saver.thread_count(), 0u);
}

TEST(Graph, CommandUpdateKeepsPendingTasks) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).channel("note").node("a", append("a"));
  g.node("b", [](NodeContext& ctx) -> Result<NodeOutput> {
    return NodeOutput().write("log", "b saw " + ctx.get("note").get<std::string>());
  });
  g.edge(kStart, "a").edge("a", "b");
  auto graph = compile(g);
  MemorySaver saver;
  RunOptions o = on_thread("cu");
  o.interrupt_before = {"b"};
  ASSERT_TRUE(graph->invoke(Input::of({{"log", Json::array()}, {"note", "old"}}), o, &saver));
  Input cmd;
  cmd.update = Json{{"note", "new"}};
  auto r = graph->invoke(cmd, o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->values["log"], Json::array({"a", "b saw new"}));
}

TEST(Graph, ExitDurabilityStillResumes) {
  StateGraph g;
  g.channel("answer").node("ask", [](NodeContext& ctx) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(Json a, ctx.interrupt("?"));
    return NodeOutput().write("answer", a);
  });
  g.edge(kStart, "ask");
  auto graph = compile(g);
  MemorySaver saver;
  RunOptions o = on_thread("exit");
  o.durability = Durability::kExit;
  auto r = graph->invoke(Input::of({{"answer", nullptr}}), o, &saver);
  ASSERT_TRUE(r && r->interrupted);
  r = graph->invoke(Input::resume_with(42), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["answer"], 42);
}

TEST(Graph, ParallelInterruptsResumeIndependently) {
  std::atomic<int> left_runs{0};
  StateGraph g;
  g.channel("log", Reducer::kAppend);
  auto asker = [&](std::string name) {
    return [&, name](NodeContext& ctx) -> Result<NodeOutput> {
      if (name == "left") ++left_runs;
      AP_ASSIGN_OR_RETURN(Json a, ctx.interrupt(name));
      return NodeOutput().write("log", name + "=" + a.get<std::string>());
    };
  };
  g.node("left", asker("left")).node("right", asker("right"));
  g.edge(kStart, "left").edge(kStart, "right");
  auto graph = compile(g);
  MemorySaver saver;
  auto o = on_thread("pi");
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), o, &saver);
  ASSERT_TRUE(r && r->interrupted);
  ASSERT_EQ(r->interrupts.size(), 2u);
  std::string left_id = r->interrupts[0].value == "left" ? r->interrupts[0].id : r->interrupts[1].id;
  r = graph->invoke(Input::resume_with(Json{{left_id, "L"}}), o, &saver);
  ASSERT_TRUE(r && r->interrupted);
  ASSERT_EQ(r->interrupts.size(), 1u);
  EXPECT_EQ(r->interrupts[0].value, "right");
  r = graph->invoke(Input::resume_with("R"), o, &saver);  // goes to the one still waiting
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->values["log"], Json::array({"left=L", "right=R"}));
  EXPECT_EQ(left_runs, 2);  // once to ask, once with its answer; not again
}

TEST(Graph, NativeSubgraphSharesStateAndResumesAfterACrash) {
  std::atomic<int> inner_runs{0};
  std::atomic<bool> fail{true};
  StateGraph child;
  child.channel("messages", Reducer::kMessages).channel("note");
  child.node("one", [&](NodeContext&) -> Result<NodeOutput> {
    ++inner_runs;
    return NodeOutput().write("messages", Json{{"type", "ai"}, {"content", "from child"}, {"id", "c1"}});
  });
  child.node("two", [&](NodeContext&) -> Result<NodeOutput> {
    if (fail) return Error::unavailable("crash");
    return NodeOutput().write("note", "done");
  });
  child.edge(kStart, "one").edge("one", "two");
  auto inner = compile(child);
  StateGraph parent;
  parent.channel("messages", Reducer::kMessages).channel("note");
  parent.subgraph("inner", inner).edge(kStart, "inner");
  auto graph = compile(parent);
  MemorySaver saver;
  auto o = on_thread("native-sub");
  auto r = graph->invoke(Input::of({{"messages", {"hi"}}}), o, &saver);
  ASSERT_FALSE(r);
  fail = false;
  r = graph->invoke(Input{}, o, &saver);  // the parent task re-runs; the child continues
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(inner_runs, 1);  // "one" finished before the crash: not run again
  EXPECT_EQ(r->values["note"], "done");
  ASSERT_EQ(r->values["messages"].size(), 2u);  // ids dedupe the shared messages
  EXPECT_EQ(r->values["messages"][1]["content"], "from child");
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

TEST(Graph, CommandToParentRoutesTheEnclosingGraph) {
  StateGraph child;
  child.channel("x").node("escalate", [](NodeContext&) -> Result<NodeOutput> {
    NodeOutput out;
    out.to_parent = true;
    out.write("log", "escalated");
    out.goto_nodes.push_back("human");
    return out;
  });
  child.node("never", append("never")).edge(kStart, "escalate").edge("escalate", "never");
  child.channel("log", Reducer::kAppend);
  StateGraph parent;
  parent.channel("log", Reducer::kAppend).channel("x");
  parent.subgraph("team", compile(child)).node("human", append("human")).node("bot", append("bot"));
  parent.edge(kStart, "team").branch("team", [](NodeContext&) -> Result<Route> { return Route{}; },
                                     {"human", "bot"});
  MemorySaver saver;
  auto r = compile(parent)->invoke(Input::of({{"log", Json::array()}, {"x", 1}}), on_thread("cp"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"escalated", "human"}));
  // At the root there is no parent: a clear error.
  StateGraph lone;
  lone.channel("x").node("n", [](NodeContext&) -> Result<NodeOutput> {
    NodeOutput o;
    o.to_parent = true;
    return o;
  }).edge(kStart, "n");
  auto bad = compile(lone)->invoke(Input::of({{"x", 1}}), {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
}

TEST(Graph, StreamsUpdatesValuesCustomAndSubgraphEvents) {
  StateGraph child;
  child.channel("log", Reducer::kAppend).node("inner", [](NodeContext& ctx) -> Result<NodeOutput> {
    ctx.emit({{"progress", 50}});
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
}

TEST(MemorySaver, DeleteCopyPrune) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).edge(kStart, "a");
  auto graph = compile(g);
  MemorySaver saver;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(graph->invoke(Input::of({{"log", "in"}}), on_thread("p"), &saver));
  ASSERT_TRUE(saver.copy_thread("p", "q"));
  EXPECT_EQ(graph->get_state(saver, {"q", "", ""})->values(), graph->get_state(saver, {"p", "", ""})->values());
  std::vector<std::string> ids = {"p"};
  ASSERT_TRUE(saver.prune(ids, 1));
  EXPECT_EQ(saver.list({.thread_id = "p"})->size(), 1u);
  EXPECT_EQ(saver.list({.thread_id = "q"})->size(), 9u);
  ASSERT_TRUE(saver.delete_thread("q"));
  EXPECT_EQ(saver.list({.thread_id = "q"})->size(), 0u);
  // The pruned thread still continues from its latest checkpoint.
  auto r = graph->invoke(Input::of({{"log", "more"}}), on_thread("p"), &saver);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->values["log"].size(), 8u);
}

}  // namespace
}  // namespace ap::graph
