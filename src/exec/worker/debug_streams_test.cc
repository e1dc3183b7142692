// The `events` stream mode's events from the engine's task events and the nodes' call events:
// names, metadata and parent ids, at the root and inside subgraphs.
#include "exec/worker/debug_streams.h"

#include <gtest/gtest.h>

namespace ap::exec {
namespace {

struct Sink {
  std::vector<std::pair<std::string, Json>> events;
  DebugStreams::Publish publish() {
    return [this](const std::string& event, const Json& data) { events.emplace_back(event, data); };
  }
};

graph::StreamEvent task_start(const std::string& ns, const std::string& id, const std::string& node) {
  graph::StreamEvent e;
  e.mode = "tasks";
  e.node = node;
  e.ns = ns;
  e.step = 1;
  e.data = Json{{"id", id}, {"name", node}, {"input", Json{{"x", 1}}}, {"triggers", Json::array({"branch:to:" + node})}};
  return e;
}

TEST(DebugStreams, CallEventsCarryTheirTasksMetadataAndParents) {
  Sink sink;
  DebugStreams d({"events"}, "R", Json{{"assistant_id", "A"}}, false, sink.publish());
  ASSERT_TRUE(d.wants_calls());
  d.on_event(task_start("", "T1", "agent"));
  const std::string node = "agent", ns, task = "T1", name = "ChatOpenAI", call = "C1";
  d.on_call(graph::ChunkSource{node, ns, task, {}},
            graph::CallEvent{"on_chat_model_start", name, call, Json{{"input", Json::object()}}, Json{{"ls_provider", "openai"}}});
  ASSERT_EQ(sink.events.size(), 2u);
  const auto& [event, data] = sink.events[1];
  EXPECT_EQ(event, "events");
  EXPECT_EQ(data["event"], "on_chat_model_start");
  EXPECT_EQ(data["name"], "ChatOpenAI");
  EXPECT_EQ(data["run_id"], "C1");
  EXPECT_EQ(data["parent_ids"], Json::array({"R", "T1"}));
  EXPECT_EQ(data["metadata"]["assistant_id"], "A");
  EXPECT_EQ(data["metadata"]["langgraph_node"], "agent");
  EXPECT_EQ(data["metadata"]["langgraph_step"], 1);
  EXPECT_EQ(data["metadata"]["langgraph_triggers"], Json::array({"branch:to:agent"}));
  EXPECT_EQ(data["metadata"]["checkpoint_ns"], "agent:T1");
  EXPECT_EQ(data["metadata"]["ls_provider"], "openai");
  EXPECT_EQ(data["data"], (Json{{"input", Json::object()}}));
}

TEST(DebugStreams, InsideSubgraphsTheEnclosingTasksAreParentsToo) {
  Sink sink;
  DebugStreams d({"events"}, "R", Json::object(), false, sink.publish());
  // A node task inside subgraph `outer` (started by task T0 of the root graph).
  d.on_event(task_start("outer:T0", "T5", "inner"));
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].first, "events");  // not namespaced, as LangGraph's
  EXPECT_EQ(sink.events[0].second["parent_ids"], Json::array({"R", "T0"}));
  EXPECT_EQ(sink.events[0].second["metadata"]["langgraph_checkpoint_ns"], "outer:T0|inner:T5");
  // A call in a task two subgraphs down whose start was not seen: still named by its namespace.
  const std::string node = "n", ns = "outer:T0|inner:T5", task = "T9", name = "calculator", call = "C2";
  d.on_call(graph::ChunkSource{node, ns, task, {}},
            graph::CallEvent{"on_tool_start", name, call, Json{{"input", Json{{"expression", "1+1"}}}}, nullptr});
  ASSERT_EQ(sink.events.size(), 2u);
  const auto& [event, data] = sink.events[1];
  EXPECT_EQ(event, "events");
  EXPECT_EQ(data["parent_ids"], Json::array({"R", "T0", "T5", "T9"}));
  EXPECT_EQ(data["metadata"]["langgraph_node"], "n");
  EXPECT_EQ(data["metadata"]["checkpoint_ns"], "outer:T0|inner:T5|n:T9");
}

TEST(DebugStreams, WithoutTheEventsModeCallsGoNowhere) {
  Sink sink;
  DebugStreams d({"tasks"}, "R", Json::object(), false, sink.publish());
  EXPECT_FALSE(d.wants_calls());
  const std::string node = "agent", ns, task = "T1", name = "m", call = "C";
  d.on_call(graph::ChunkSource{node, ns, task, {}}, graph::CallEvent{"on_chat_model_start", name, call, Json::object(), nullptr});
  EXPECT_TRUE(sink.events.empty());
  d.on_event(task_start("", "T1", "agent"));
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].first, "tasks");
}

// A subgraph's tasks go to `tasks` and `debug` (namespaced) only when the run streams its
// subgraphs; to `events` (not namespaced) either way.
TEST(DebugStreams, SubgraphTasksReachTheirOwnModesOnlyWithSubgraphs) {
  for (const bool subgraphs : {false, true}) {
    Sink sink;
    DebugStreams d({"events", "tasks", "debug", "checkpoints"}, "R", Json::object(), subgraphs, sink.publish());
    d.on_event(task_start("outer:T0", "T5", "inner"));
    graph::StreamEvent cp;
    cp.mode = "checkpoints";
    cp.ns = "outer:T0";
    cp.data = Json{{"values", Json::object()}};
    d.on_event(cp);
    std::vector<std::string> names;
    for (const auto& [event, data] : sink.events) names.push_back(event);
    if (subgraphs)
      EXPECT_EQ(names, (std::vector<std::string>{"tasks|outer:T0", "debug|outer:T0", "events", "checkpoints|outer:T0",
                                                 "debug|outer:T0"}));
    else
      EXPECT_EQ(names, std::vector<std::string>{"events"});
  }
}

}  // namespace
}  // namespace ap::exec
