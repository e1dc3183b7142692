// What a node sees and returns. A node reads the state as it was at the start of its superstep
// (frozen), and returns writes, Sends and gotos (LangGraph's Command), or calls interrupt().
// Not thread-safe: a NodeContext belongs to one task.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "graph/channel.h"

namespace ap::graph {

inline constexpr const char* kStart = "__start__";
inline constexpr const char* kEnd = "__end__";

// Run `node` as its own task with `arg` as its input (map-reduce fan-out).
struct Send {
  std::string node;
  Json arg;
};

// A node's result: state writes, plus what LangGraph's Command carries.
struct NodeOutput {
  std::vector<std::pair<std::string, Json>> writes;  // channel -> value, in order
  std::vector<std::string> goto_nodes;                // Command(goto=...)
  std::vector<Send> sends;                            // Command(goto=Send(...))
  bool to_parent = false;                             // Command(graph=PARENT)

  // Writes every key of a JSON object ({"channel": value, ...}).
  static NodeOutput update(const Json& object);
  NodeOutput& write(std::string channel, Json value) {
    writes.emplace_back(std::move(channel), std::move(value));
    return *this;
  }
};

class CompiledGraph;
class RunScope;
struct ChunkSource;
struct CallEvent;

class NodeContext {
 public:
  struct Frame;  // engine-owned task state
  explicit NodeContext(Frame& frame) : f_(frame) {}

  const std::string& node() const;
  int step() const;
  // The channel's value at the start of this step (null: empty). Lists are not materialised.
  const ValuePtr& channel(std::string_view name) const;
  // Convenience: a scalar channel's value, or a list channel materialised; null if empty.
  Json get(std::string_view name) const;
  // The whole state as a JSON object (materialises lists: O(state)).
  Json state() const;
  // A Send's argument (null for tasks started by edges).
  const Json& arg() const;
  bool is_send() const;
  // The run's configuration (`configurable` etc.).
  const Json& config() const;

  // Asks a human: returns the resume value when this is the k-th call and a k-th resume value
  // exists; otherwise records the interrupt and returns an error that the node must return
  // (AP_ASSIGN_OR_RETURN does that). The node runs again from its start on resume.
  Result<Json> interrupt(Json value);
  // Sends a value to the `custom` stream mode.
  void emit(Json value);
  // Streams a piece of a message being produced (a model's tokens) to the `messages` mode; the
  // message itself still has to be written to the state when the node returns.
  void stream_message_chunk(const Json& chunk);
  // Reports a model's or a tool's call to the `events` stream mode; wants_call_events() says
  // whether anyone listens (so a node builds the events' inputs only then).
  bool wants_call_events() const;
  void call_event(const CallEvent& e);
  // What the embedding program gave this run (RunOptions::scope); null if nothing.
  RunScope* scope() const;
  // The checkpoint namespace of the graph running this node ("" at the root).
  const std::string& checkpoint_ns() const;
  // True if the graph running this node has a state channel of that name.
  bool has_channel(std::string_view name) const;

  // Runs `child` as this task's subgraph: in the same thread, under the checkpoint namespace
  // "<parent ns>|<node>:<task id>", with the parent's checkpointer. Returns the child's final
  // state. An interrupt inside the child interrupts this task (same interrupt ids); when the
  // parent is resumed, the child resumes from its own latest checkpoint. After a crash the child
  // continues where it stopped; a child that had already finished is not run again.
  // If a node of the child returns Command(graph=PARENT), its writes, gotos and Sends are
  // appended to `parent_command` (required then; InvalidArgument without it).
  Result<Json> run_subgraph(const CompiledGraph& child, Json input,
                            NodeOutput* parent_command = nullptr);

 private:
  ChunkSource source() const;  // this task, as chunks and call events name it
  Frame& f_;
};

using NodeFn = std::function<Result<NodeOutput>(NodeContext&)>;

// Where a conditional edge goes: node names (or END) and/or Sends.
struct Route {
  std::vector<std::string> targets;
  std::vector<Send> sends;
};
// Reads the state with the node's own writes applied (LangGraph's fresh read for branches).
using RouterFn = std::function<Result<Route>(NodeContext&)>;

struct RetryPolicy {
  int max_attempts = 1;  // 1: no retry
  double initial_interval_s = 0.5;
  double backoff_factor = 2.0;
  double max_interval_s = 128;
  // Retry only errors with these codes (default: Unavailable, DeadlineExceeded, Aborted,
  // ResourceExhausted, Internal).
  std::vector<Code> retry_on = {Code::kUnavailable, Code::kDeadlineExceeded, Code::kAborted,
                                Code::kResourceExhausted, Code::kInternal};
};

}  // namespace ap::graph
