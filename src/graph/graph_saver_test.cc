// LangGraph's documented behaviour where checkpoints matter (interrupts, resumes, crash resume,
// time travel, subgraphs), run against every Checkpointer: graph_test instantiates it on the
// in-memory saver, tests/integration/postgres_saver_test.cc on PostgreSQL.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "graph/checkpointer_suite.h"
#include "graph/graph.h"

namespace ap::graph {
namespace {

RunOptions on_thread(std::string id) {
  RunOptions o;
  o.thread_id = std::move(id);
  return o;
}

TEST_P(GraphOnSaver, LinearRunCheckpointsEverySuperstep) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).channel("n").node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b").edge("b", kEnd);
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, CheckpointJsonFollowsTheV4Contract) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).edge(kStart, "a");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, InterruptThenResume) {
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
  Checkpointer& saver = *saver_;
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
  // Nothing left to resume: as LangGraph's, the run goes on from the checkpoint, where nothing
  // is left to run. The state stays, and no node runs again.
  auto again = graph->invoke(Input::resume_with("x"), on_thread("h"), &saver);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(again->interrupted);
  EXPECT_EQ(again->values["answers"], Json::array({"Ada", 36}));
  EXPECT_EQ(runs, 3);
}

// A resume value with no interrupt pending (here: at a breakpoint) goes on from the checkpoint,
// and the value answers the first interrupt() of the first task to run.
TEST_P(GraphOnSaver, ResumeAtABreakpointAnswersTheNextInterrupt) {
  StateGraph g;
  g.channel("answers", Reducer::kAppend);
  g.node("start", [](NodeContext&) -> Result<NodeOutput> { return NodeOutput().write("answers", "start"); });
  g.node("ask", [](NodeContext& ctx) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(Json name, ctx.interrupt("name?"));
    AP_ASSIGN_OR_RETURN(Json age, ctx.interrupt("age?"));
    return NodeOutput().write("answers", Json::array({name, age}));
  });
  g.edge(kStart, "start").edge("start", "ask");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  RunOptions stop = on_thread("bp");
  stop.interrupt_before = {"ask"};
  auto r = graph->invoke(Input::of({{"answers", Json::array()}}), stop, &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->interrupted);
  EXPECT_TRUE(r->interrupts.empty());
  r = graph->invoke(Input::resume_with("Bob"), on_thread("bp"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->interrupts.size(), 1u);
  EXPECT_EQ(r->interrupts[0].value, "age?");  // "name?" was answered by the resume value
  r = graph->invoke(Input::resume_with(41), on_thread("bp"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->values["answers"], Json::array({"start", "Bob", 41}));

  // A map keyed by interrupt ids answers only those pending: a stale one (or none) answers
  // nothing, so the next question is asked, not answered with the map.
  ASSERT_TRUE(graph->invoke(Input::of({{"answers", Json::array()}}), [&] {
    RunOptions o = on_thread("bp2");
    o.interrupt_before = {"ask"};
    return o;
  }(), &saver));
  r = graph->invoke(Input::resume_with(Json{{std::string(32, 'a'), "yes"}}), on_thread("bp2"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->interrupts.size(), 1u);
  EXPECT_EQ(r->interrupts[0].value, "name?");
  const std::string name_id = r->interrupts[0].id;
  // Partly stale: the pending one is answered, the other key is ignored.
  r = graph->invoke(Input::resume_with(Json{{name_id, "Cy"}, {std::string(32, 'b'), "no"}}), on_thread("bp2"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->interrupts.size(), 1u);
  EXPECT_EQ(r->interrupts[0].value, "age?");
}

TEST_P(GraphOnSaver, CrashResumeKeepsFinishedSiblings) {
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
  Checkpointer& saver = *saver_;
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

// A step whose tasks ran in parallel and one failed, as LangGraph's get_state and history show
// it: every task planned from the checkpoint is listed, with its result (its writes) or its error
// (the JSON text of {"message", "name"}). The latest state has the finished task's writes applied
// and only the failed task left in `next`; the same checkpoint in the history has neither.
TEST_P(GraphOnSaver, StateShowsFinishedAndFailedTasks) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).channel("count", Reducer::kLastValue);
  g.node("ok", [](NodeContext&) -> Result<NodeOutput> {
    return NodeOutput().write("log", "ok").write("log", "ok again").write("count", 10);
  });
  g.node("bad", [](NodeContext&) -> Result<NodeOutput> { return Error::unavailable("boom"); });
  g.edge(kStart, "ok").edge(kStart, "bad");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  ASSERT_FALSE(graph->invoke(Input::of({{"log", Json::array({"hi"})}}), on_thread("failed-fan"), &saver));

  const Json error =
      Json{{"message", "node 'bad' failed: boom"}, {"name", std::string(code_name(Code::kUnavailable))}}.dump();
  const Json ok_result = {{"log", {{"$writes", {"ok", "ok again"}}}}, {"count", 10}};
  auto check_tasks = [&](const StateSnapshot& s) {
    ASSERT_EQ(s.tasks.size(), 2u);
    const bool ok_first = s.tasks[0].name == "ok";  // (in the engine's order)
    const SnapshotTask& ok = s.tasks[ok_first ? 0 : 1];
    const SnapshotTask& bad = s.tasks[ok_first ? 1 : 0];
    EXPECT_EQ(ok.name, "ok");
    EXPECT_TRUE(ok.done);
    EXPECT_EQ(ok.error, Json());
    EXPECT_EQ(ok.result, ok_result);
    EXPECT_EQ(bad.name, "bad");
    EXPECT_FALSE(bad.done);
    EXPECT_EQ(bad.error, error);
    EXPECT_EQ(bad.result, Json());
  };
  auto latest = graph->get_state(saver, {"failed-fan", "", ""});
  ASSERT_TRUE(latest) << latest.error().message;
  check_tasks(*latest);
  EXPECT_EQ(latest->next, std::vector<std::string>{"bad"});
  EXPECT_EQ(latest->values()["log"], Json::array({"hi", "ok", "ok again"}));
  EXPECT_EQ(latest->values()["count"], 10);

  auto history = graph->get_state_history(saver, ListOptions{.thread_id = "failed-fan", .checkpoint_ns = ""});
  ASSERT_TRUE(history) << history.error().message;
  ASSERT_FALSE(history->empty());
  const StateSnapshot& same = history->front();
  EXPECT_EQ(same.config.checkpoint_id, latest->config.checkpoint_id);
  check_tasks(same);
  std::vector<std::string> planned;
  for (const auto& t : same.tasks) planned.push_back(t.name);
  EXPECT_EQ(same.next, planned);
  EXPECT_EQ(same.values()["log"], Json::array({"hi"}));
  EXPECT_FALSE(same.values().contains("count"));
  // The same checkpoint by its id: as in the history.
  auto at = graph->get_state(saver, latest->config);
  ASSERT_TRUE(at) << at.error().message;
  EXPECT_EQ(at->next, same.next);
  EXPECT_EQ(at->values(), same.values());

  // An update of the latest state keeps what the finished task wrote, as LangGraph's does.
  auto updated = graph->update_state(saver, {"failed-fan", "", ""}, Json{{"count", 11}}, "bad", "");
  ASSERT_TRUE(updated) << updated.error().message;
  auto after = graph->get_state(saver, {"failed-fan", "", ""});
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->values()["log"], Json::array({"hi", "ok", "ok again"}));
  EXPECT_EQ(after->values()["count"], 11);
}

// Two finished tasks' writes that the engine refuses (two values for a last-value channel): the
// run fails on them; the state still reads (the values as they were), and an update of the
// latest state says why it cannot apply them, as LangGraph's does, instead of dropping them.
TEST_P(GraphOnSaver, AnUpdateOverWritesTheEngineRefusedFails) {
  StateGraph g;
  g.channel("x", Reducer::kLastValue);
  g.node("a", [](NodeContext&) -> Result<NodeOutput> { return NodeOutput().write("x", "a"); });
  g.node("b", [](NodeContext&) -> Result<NodeOutput> { return NodeOutput().write("x", "b"); });
  g.edge(kStart, "a").edge(kStart, "b");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  ASSERT_FALSE(graph->invoke(Input::of({{"x", "start"}}), on_thread("refused"), &saver));
  auto state = graph->get_state(saver, {"refused", "", ""});
  ASSERT_TRUE(state) << state.error().message;
  EXPECT_EQ(state->values()["x"], "start");
  auto updated = graph->update_state(saver, {"refused", "", ""}, Json{{"x", "fixed"}}, "a", "");
  ASSERT_FALSE(updated);
  EXPECT_EQ(updated.error().code, Code::kInvalidArgument) << updated.error().message;
  // At the checkpoint by its id (a fork), the update applies.
  EXPECT_TRUE(graph->update_state(saver, state->config, Json{{"x", "fixed"}}, "a", ""));
}

// A task whose router fails after its node wrote: its writes are not kept with the error, so it
// is not taken for finished; the next attempt runs it again.
TEST_P(GraphOnSaver, AFailedTasksWritesAreNotKept) {
  std::atomic<int> runs{0};
  std::atomic<bool> fail{true};
  StateGraph g;
  g.channel("log", Reducer::kAppend);
  g.node("ok", append("ok"));
  g.node("routed", [&](NodeContext&) -> Result<NodeOutput> {
    ++runs;
    return NodeOutput().write("log", "routed");
  });
  g.node("after", append("after"));
  g.edge(kStart, "ok").edge(kStart, "routed");
  g.branch("routed", [&](NodeContext&) -> Result<Route> {
    if (fail) return Error::unavailable("router down");
    return Route{{"after"}, {}};
  }, {"after"});
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  ASSERT_FALSE(graph->invoke(Input::of({{"log", Json::array()}}), on_thread("failed-router"), &saver));
  auto state = graph->get_state(saver, {"failed-router", "", ""});
  ASSERT_TRUE(state) << state.error().message;
  EXPECT_EQ(state->next, std::vector<std::string>{"routed"});
  EXPECT_EQ(state->values()["log"], Json::array({"ok"}));
  for (const auto& t : state->tasks)
    if (t.name == "routed") {
      EXPECT_FALSE(t.done);
      EXPECT_EQ(t.result, Json());
      EXPECT_TRUE(t.error.is_string());
    }
  fail = false;
  auto r = graph->invoke(Input{}, on_thread("failed-router"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(r->values["log"], Json::array({"ok", "routed", "after"}));
}

TEST_P(GraphOnSaver, InterruptBeforeAndAfter) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, UpdateStateAndTimeTravel) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, BadInputChangesNothing) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).edge(kStart, "a");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  auto r = graph->invoke(Input::of({{"unknown", 1}}), on_thread("b"), &saver);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_TRUE(saver.list({})->empty());
}

TEST_P(GraphOnSaver, CommandUpdateKeepsPendingTasks) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).channel("note").node("a", append("a"));
  g.node("b", [](NodeContext& ctx) -> Result<NodeOutput> {
    return NodeOutput().write("log", "b saw " + ctx.get("note").get<std::string>());
  });
  g.edge(kStart, "a").edge("a", "b");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, ExitDurabilityStillResumes) {
  StateGraph g;
  g.channel("answer").node("ask", [](NodeContext& ctx) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(Json a, ctx.interrupt("?"));
    return NodeOutput().write("answer", a);
  });
  g.edge(kStart, "ask");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  RunOptions o = on_thread("exit");
  o.durability = Durability::kExit;
  auto r = graph->invoke(Input::of({{"answer", nullptr}}), o, &saver);
  ASSERT_TRUE(r && r->interrupted);
  r = graph->invoke(Input::resume_with(42), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["answer"], 42);
}

TEST_P(GraphOnSaver, FirstSavedStepLeavesOutEarlierCheckpointsUnlessTheRunStopsThere) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b").edge("b", kEnd);
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  RunOptions o = on_thread("fs");
  o.first_saved_step = 1;  // a temporary thread's: the input and START steps are not saved
  auto r = graph->invoke(Input::of({{"log", Json::array({"in"})}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"in", "a", "b"}));
  auto history = graph->get_state_history(saver, {.thread_id = "fs"});
  ASSERT_TRUE(history);
  ASSERT_EQ(history->size(), 2u);  // steps 1 (a) and 2 (b)
  EXPECT_EQ((*history)[0].metadata["step"], 2);
  EXPECT_EQ((*history)[0].values()["log"], Json::array({"in", "a", "b"}));
  EXPECT_EQ((*history)[1].metadata["step"], 1);
  EXPECT_EQ((*history)[1].values()["log"], Json::array({"in", "a"}));
  // A run that stops before that step (here: interrupted before a) saves where it stopped, and
  // goes on from there.
  RunOptions stop = on_thread("fs-stop");
  stop.first_saved_step = 1;
  stop.interrupt_before = {"a"};
  r = graph->invoke(Input::of({{"log", Json::array({"in"})}}), stop, &saver);
  ASSERT_TRUE(r && r->interrupted);
  auto at = graph->get_state(saver, {.thread_id = "fs-stop"});
  ASSERT_TRUE(at) << at.error().message;
  EXPECT_EQ(at->next, std::vector<std::string>{"a"});
  EXPECT_EQ(at->metadata["step"], 0);
  r = graph->invoke(Input{}, stop, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"in", "a", "b"}));
  // A graph with a subgraph node saves them all: its subgraph's namespace names a task planned
  // from them, which a later attempt must plan again to find the subgraph's progress.
  StateGraph child;
  child.channel("log", Reducer::kAppend).node("c", append("c")).edge(kStart, "c");
  StateGraph parent;
  parent.channel("log", Reducer::kAppend).subgraph("team", compile(child)).edge(kStart, "team");
  auto with_sub = compile(parent);
  RunOptions sub = on_thread("fs-sub");
  sub.first_saved_step = 1;
  r = with_sub->invoke(Input::of({{"log", Json::array()}}), sub, &saver);
  ASSERT_TRUE(r) << r.error().message;
  auto all = with_sub->get_state_history(saver, {.thread_id = "fs-sub"});
  ASSERT_TRUE(all);
  ASSERT_GE(all->size(), 3u);
  EXPECT_EQ(all->back().metadata["step"], -1);
}

TEST_P(GraphOnSaver, AThreadDroppedAtTheEndSavesNoCleanEndCheckpoint) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).node("b", append("b"));
  g.edge(kStart, "a").edge("a", "b").edge("b", kEnd);
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
  auto steps = [&](const std::string& thread) {
    std::vector<int> out;
    auto h = graph->get_state_history(saver, {.thread_id = thread});
    EXPECT_TRUE(h) << h.error().message;
    if (h)
      for (const auto& s : *h) out.push_back(s.metadata["step"].get<int>());
    return out;
  };
  const Input in = Input::of({{"log", Json::array({"in"})}});
  for (auto durability : {Durability::kSync, Durability::kExit}) {
    const std::string thread = durability == Durability::kSync ? "drop-sync" : "drop-exit";
    RunOptions o = on_thread(thread);
    o.first_saved_step = 1;
    o.thread_dropped_at_end = true;
    o.durability = durability;
    auto r = graph->invoke(in, o, &saver);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->values["log"], Json::array({"in", "a", "b"})) << "the result is the end's state all the same";
    // sync: step 1 (a) only, step 2 (b) ended the run; exit: nothing at all.
    EXPECT_EQ(steps(thread), durability == Durability::kSync ? std::vector<int>{1} : std::vector<int>{});
  }
  // A later attempt (a crash before the thread's delete) goes on from what was saved: b again.
  RunOptions again = on_thread("drop-sync");
  auto r = graph->invoke(Input{}, again, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"in", "a", "b"}));
  // A run that does not end cleanly saves where it stopped: interrupted after b, the end's
  // checkpoint is saved (with the breakpoint seen).
  RunOptions stop = on_thread("drop-stop");
  stop.first_saved_step = 1;
  stop.thread_dropped_at_end = true;
  stop.interrupt_after = {"b"};
  r = graph->invoke(in, stop, &saver);
  ASSERT_TRUE(r && r->interrupted);
  EXPECT_EQ(steps("drop-stop"), (std::vector<int>{2, 1}));
  // Nor with the debug streams: a task's result is streamed once it is saved.
  RunOptions debug = on_thread("drop-debug");
  debug.first_saved_step = 1;
  debug.thread_dropped_at_end = true;
  debug.stream_debug = true;
  debug.on_event = [](const StreamEvent&) {};
  r = graph->invoke(in, debug, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(steps("drop-debug"), (std::vector<int>{2, 1}));
}

TEST_P(GraphOnSaver, ParallelInterruptsResumeIndependently) {
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
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, NativeSubgraphSharesStateAndResumesAfterACrash) {
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
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, GetStateShowsPendingSubgraphs) {
  // parent: START -> team (subgraph: draft -> review, which interrupts) -> END
  StateGraph child;
  child.channel("log", Reducer::kAppend).node("draft", append("draft"));
  child.node("review", [](NodeContext& ctx) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(Json ok, ctx.interrupt("ok?"));
    return NodeOutput().write("log", "review " + ok.get<std::string>());
  });
  child.edge(kStart, "draft").edge("draft", "review");
  StateGraph parent;
  parent.channel("log", Reducer::kAppend).subgraph("team", compile(child)).edge(kStart, "team");
  auto graph = compile(parent);
  EXPECT_NE(graph->subgraph_of("team"), nullptr);
  EXPECT_EQ(graph->subgraph_of("nope"), nullptr);
  Checkpointer& saver = *saver_;
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), on_thread("sub-state"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->interrupted);

  // Without subgraphs: the task names its subgraph's namespace, no state.
  auto plain = graph->get_state(saver, {"sub-state", "", ""});
  ASSERT_TRUE(plain) << plain.error().message;
  ASSERT_EQ(plain->next, std::vector<std::string>{"team"});
  ASSERT_EQ(plain->tasks.size(), 1u);
  const std::string ns = "team:" + plain->tasks[0].id;
  EXPECT_EQ(plain->tasks[0].ns, ns);
  EXPECT_EQ(plain->tasks[0].state, nullptr);

  // With subgraphs: the child's own state, paused at its interrupt, under that namespace.
  auto deep = graph->get_state(saver, {"sub-state", "", ""}, true);
  ASSERT_TRUE(deep) << deep.error().message;
  ASSERT_EQ(deep->tasks.size(), 1u);
  ASSERT_NE(deep->tasks[0].state, nullptr);
  const StateSnapshot& inner = *deep->tasks[0].state;
  EXPECT_EQ(inner.config.checkpoint_ns, ns);
  EXPECT_FALSE(inner.config.checkpoint_id.empty());
  EXPECT_EQ(inner.values()["log"], Json::array({"draft"}));
  EXPECT_EQ(inner.next, std::vector<std::string>{"review"});
  ASSERT_EQ(inner.tasks.size(), 1u);
  EXPECT_EQ(inner.tasks[0].ns, "");  // review runs no subgraph
  ASSERT_EQ(inner.interrupts.size(), 1u);
  EXPECT_EQ(inner.interrupts[0].value, "ok?");
  ASSERT_EQ(deep->interrupts.size(), 1u);
  EXPECT_EQ(deep->interrupts[0].id, inner.interrupts[0].id);  // the same interrupt, seen from the parent

  // Resumed to the end: nothing pending, so no subgraph states.
  r = graph->invoke(Input::resume_with("yes"), on_thread("sub-state"), &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["log"], Json::array({"draft", "review yes"}));
  auto done = graph->get_state(saver, {"sub-state", "", ""}, true);
  ASSERT_TRUE(done);
  EXPECT_TRUE(done->next.empty());
  EXPECT_TRUE(done->tasks.empty());
}

TEST_P(GraphOnSaver, GetStateOfASubgraphNotStartedYet) {
  // interrupt_before the subgraph node: the child has no checkpoint yet.
  StateGraph child;
  child.channel("log", Reducer::kAppend).node("inner", append("inner")).edge(kStart, "inner");
  StateGraph parent;
  parent.channel("log", Reducer::kAppend).subgraph("team", compile(child)).edge(kStart, "team");
  auto graph = compile(parent);
  Checkpointer& saver = *saver_;
  auto o = on_thread("sub-later");
  o.interrupt_before = {"team"};
  auto r = graph->invoke(Input::of({{"log", Json::array()}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  auto deep = graph->get_state(saver, {"sub-later", "", ""}, true);
  ASSERT_TRUE(deep) << deep.error().message;
  ASSERT_EQ(deep->tasks.size(), 1u);
  ASSERT_NE(deep->tasks[0].state, nullptr);
  EXPECT_EQ(deep->tasks[0].state->config.checkpoint_ns, deep->tasks[0].ns);
  EXPECT_TRUE(deep->tasks[0].state->config.checkpoint_id.empty());
  EXPECT_EQ(deep->tasks[0].state->values(), Json::object());
}

TEST_P(GraphOnSaver, ANewThreadsRetriedSubgraphContinuesFromItsCheckpoint) {
  // new_thread skips reading the run's thread at its start; a subgraph retried within the run
  // must still find what its first try saved.
  std::atomic<int> one_runs{0};
  std::atomic<bool> fail{true};
  StateGraph child;
  child.channel("note");
  child.node("one", [&](NodeContext&) -> Result<NodeOutput> {
    ++one_runs;
    return NodeOutput().write("note", "one");
  });
  child.node("two", [&](NodeContext&) -> Result<NodeOutput> {
    if (fail.exchange(false)) return Error::unavailable("flaky");
    return NodeOutput().write("note", "two");
  });
  child.edge(kStart, "one").edge("one", "two");
  auto inner = compile(child);
  RetryPolicy retry;
  retry.max_attempts = 2;
  retry.initial_interval_s = 0;
  StateGraph parent;
  parent.channel("note");
  parent.node("team", [inner](NodeContext& ctx) -> Result<NodeOutput> {
    AP_ASSIGN_OR_RETURN(Json out, ctx.run_subgraph(*inner, Json::object()));
    return NodeOutput().write("note", out["note"]);
  }, retry, inner).edge(kStart, "team");
  Checkpointer& saver = *saver_;
  auto o = on_thread("new-thread-sub");
  o.new_thread = true;
  auto r = compile(parent)->invoke(Input::of({{"note", "start"}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["note"], "two");
  EXPECT_EQ(one_runs, 1);  // the retry continued the child; "one" had finished
}

TEST_P(GraphOnSaver, CommandToParentRoutesTheEnclosingGraph) {
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
  Checkpointer& saver = *saver_;
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

TEST_P(GraphOnSaver, DeleteCopyPrune) {
  StateGraph g;
  g.channel("log", Reducer::kAppend).node("a", append("a")).edge(kStart, "a");
  auto graph = compile(g);
  Checkpointer& saver = *saver_;
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
