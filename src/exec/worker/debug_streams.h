// The stream modes built from the engine's `checkpoints` and `tasks` events
// (graph::RunOptions::stream_debug): `checkpoints`, `tasks`, `debug` (both wrapped as
// {type, step, timestamp, payload}) and `events` (astream_events v2: on_chain_start/stream/end
// for the graph and each node, and the model and tool calls inside the nodes), in LangGraph's
// shapes. begin and end come from the run's thread; on_event from it or, for subgraphs' tasks, from
// the threads that run them; on_call from node threads.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "control/common.h"
#include "graph/graph.h"

namespace ap::exec {

using control::Json;

class DebugStreams {
 public:
  using Publish = std::function<void(const std::string& event, const Json& data)>;
  // `metadata`: the run's metadata (for `events`); `run_id` names the root chain. `subgraphs`:
  // the run streams its subgraphs' events (as `<mode>|<namespace>`). Without it, subgraphs'
  // `tasks` events (graph::RunOptions::subgraph_tasks) and calls only go to `events`, which
  // names every event `events`, nested or not, as LangGraph's servers.
  DebugStreams(const std::set<std::string>& modes, std::string run_id, Json metadata, bool subgraphs, Publish publish);

  // True when the run asked for any of these modes (then the engine must emit its events).
  bool wanted() const { return checkpoints_ || tasks_ || debug_ || events_; }
  void begin(const Json& input);                // events: the graph's on_chain_start
  void on_event(const graph::StreamEvent& e);   // checkpoints / tasks from the engine
  void end(const Json& output);                 // events: the graph's on_chain_end
  bool wants_calls() const { return events_; }
  void on_call(const graph::ChunkSource& from, const graph::CallEvent& e);  // events: a node's model/tool call

 private:
  Json parents(std::string_view ns) const;  // the run, then the tasks enclosing namespace `ns`
  void to_events(const graph::StreamEvent& e);  // a task's start or result as chain events
  void chain(const std::string& ns, const std::string& kind, const std::string& name, const std::string& id,
             Json tags, Json metadata, Json data, bool root);
  bool checkpoints_, tasks_, debug_, events_, subgraphs_;
  std::string run_id_;
  Json metadata_;
  Publish publish_;
  struct Task {
    Json input;     // for its on_chain_end
    Json metadata;  // its events' metadata, for the calls inside it too
  };
  std::mutex mu_;  // running_
  std::map<std::string, Task> running_;  // task id -> a running task
  Json root_input_;
};

}  // namespace ap::exec
