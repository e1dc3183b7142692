#include "graph/spec.h"

#include <gtest/gtest.h>

#include "graph/memory_saver.h"

namespace ap::graph {
namespace {

std::shared_ptr<const CompiledGraph> compile(const char* text) {
  auto c = compile_spec(Json::parse(text), NodeKinds::builtin());
  EXPECT_TRUE(c) << c.error().message;
  return c ? *c : nullptr;
}

TEST(Spec, RouterAndCounterLoop) {
  auto g = compile(R"({
    "channels": {"attempts": "last_value", "log": {"reducer": "append"}},
    "nodes": {
      "count": {"kind": "set", "values": {"attempts": {"increment": "attempts"},
                                          "log": {"template": "attempt {{attempts}}"}}},
      "check": {"kind": "router", "cases": [
                  {"when": {"path": "attempts", "op": "<", "value": 3}, "goto": "count"}],
                "default": "__end__"}
    },
    "edges": [["__start__", "count"], ["count", "check"]]
  })");
  ASSERT_TRUE(g);
  auto r = g->invoke(Input::of({{"attempts", 0}}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["attempts"], 3);
  // Templates read the state at the start of the node's step.
  EXPECT_EQ(r->values["log"], Json::array({"attempt 0", "attempt 1", "attempt 2"}));
}

TEST(Spec, RouteOnTheLastMessagesToolCalls) {
  auto g = compile(R"({
    "channels": {"messages": "messages", "route": "last_value"},
    "nodes": {
      "agent": {"kind": "router", "cases": [
        {"when": {"and": [{"path": "messages[-1].tool_calls", "op": "exists"},
                          {"not": {"path": "messages[-1].tool_calls", "op": "empty"}}]},
         "goto": "tools"}], "default": "done"},
      "tools": {"kind": "set", "values": {"route": "tools"}},
      "done": {"kind": "set", "values": {"route": "done"}}
    },
    "edges": [["__start__", "agent"]]
  })");
  ASSERT_TRUE(g);
  Json with_calls = {{"messages", Json::array({Json{{"type", "ai"}, {"content", ""},
                                                    {"tool_calls", {{{"name", "search"}}}}}})}};
  EXPECT_EQ(g->invoke(Input::of(with_calls), {})->values["route"], "tools");
  Json plain = {{"messages", Json::array({Json{{"type", "ai"}, {"content", "hi"}}})}};
  EXPECT_EQ(g->invoke(Input::of(plain), {})->values["route"], "done");
}

TEST(Spec, InterruptWritesTheResumeValue) {
  auto g = compile(R"({
    "channels": {"question": "last_value", "answer": "last_value"},
    "nodes": {"ask": {"kind": "interrupt", "payload": {"template": "approve {{question}}?"},
                      "resume_to": "answer"}},
    "edges": [["__start__", "ask"]]
  })");
  ASSERT_TRUE(g);
  MemorySaver saver;
  RunOptions o;
  o.thread_id = "s";
  auto r = g->invoke(Input::of({{"question", "refund"}}), o, &saver);
  ASSERT_TRUE(r && r->interrupted);
  EXPECT_EQ(r->interrupts[0].value, "approve refund?");
  r = g->invoke(Input::resume_with("yes"), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["answer"], "yes");
}

TEST(Spec, SendFansOutOneTaskPerItem) {
  auto g = compile(R"({
    "channels": {"subjects": "last_value", "jokes": "append", "topic": "last_value"},
    "nodes": {
      "fan": {"kind": "send", "items": "subjects", "node": "joke",
              "arg": {"subject": {"from": "$item"}}},
      "joke": {"kind": "set", "values": {"jokes": {"template": "a joke"}}}
    },
    "edges": [["__start__", "fan"]]
  })");
  ASSERT_TRUE(g);
  auto r = g->invoke(Input::of({{"subjects", {"a", "b", "c"}}}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->values["jokes"].size(), 3u);
}

TEST(Spec, InvalidSpecsListEveryProblem) {
  auto c = compile_spec(Json::parse(R"({
    "channels": {"x": "concat"},
    "nodes": {
      "a": {"kind": "llm"},
      "b": {"kind": "router", "cases": [{"when": {"path": "nope", "op": "~"}, "goto": "ghost"}]},
      "c": {"kind": "set", "values": {"y": 1}},
      "d": {"kind": "set", "values": {"x": {"from": "x[oops"}}}
    },
    "edges": [["__start__", "b"], ["b", "nowhere"]]
  })"), NodeKinds::builtin());
  ASSERT_FALSE(c);
  const auto& m = c.error().message;
  for (const char* p : {"unknown reducer 'concat'", "unknown kind 'llm'", "unknown channel 'nope'",
                        "unknown operator '~'", "unknown node 'ghost'", "unknown channel 'y'",
                        "malformed path 'x[oops'", "edge to unknown node 'nowhere'",
                        "'c' is unreachable"})
    EXPECT_NE(m.find(p), std::string::npos) << p << " in: " << m;
  EXPECT_FALSE(compile_spec(Json::array(), NodeKinds::builtin()));
  EXPECT_FALSE(compile_spec(Json::object(), NodeKinds::builtin()));
}

}  // namespace
}  // namespace ap::graph

namespace ap::graph {
namespace {

TEST(Spec, SubgraphWithMappingInterruptsAndResumesUnderItsNamespace) {
  auto g = compile(R"({
    "channels": {"request": "last_value", "decision": "last_value"},
    "nodes": {
      "review": {"kind": "subgraph",
                 "spec": {"channels": {"q": "last_value", "a": "last_value"},
                          "nodes": {"ask": {"kind": "interrupt", "payload": {"from": "q"},
                                            "resume_to": "a"}},
                          "edges": [["__start__", "ask"]]},
                 "input": {"q": {"template": "approve {{request}}?"}},
                 "output": {"decision": "a"}}
    },
    "edges": [["__start__", "review"]]
  })");
  ASSERT_TRUE(g);
  MemorySaver saver;
  RunOptions o;
  o.thread_id = "sub";
  auto r = g->invoke(Input::of({{"request", "refund"}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->interrupted);
  ASSERT_EQ(r->interrupts.size(), 1u);
  EXPECT_EQ(r->interrupts[0].value, "approve refund?");
  // The child's checkpoints live under "review:<task id>", with a link to the parent's.
  auto all = saver.list({.thread_id = "sub"});
  ASSERT_TRUE(all);
  bool child_seen = false;
  for (const auto& t : *all) {
    if (t.config.checkpoint_ns.rfind("review:", 0) == 0) {
      child_seen = true;
      EXPECT_EQ(t.metadata.parents.size(), 1u);
      EXPECT_EQ(t.metadata.parents[0].first, "");
    }
  }
  EXPECT_TRUE(child_seen);
  r = g->invoke(Input::resume_with(Json{{r->interrupts[0].id, "yes"}}), o, &saver);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->values["decision"], "yes");
}

TEST(Spec, BadEmbeddedSpecIsListed) {
  auto c = compile_spec(Json::parse(R"({
    "channels": {"x": "last_value"},
    "nodes": {"sub": {"kind": "subgraph", "spec": {"nodes": {"n": {"kind": "nope"}}}}},
    "edges": [["__start__", "sub"]]})"), NodeKinds::builtin());
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("embedded spec"), std::string::npos);
  EXPECT_NE(c.error().message.find("unknown kind 'nope'"), std::string::npos);
}

}  // namespace
}  // namespace ap::graph
