// The stream modes built from the engine's `checkpoints` and `tasks` events
// (graph::RunOptions::stream_debug): `checkpoints`, `tasks`, `debug` (both wrapped as
// {type, step, timestamp, payload}) and `events` (astream_events v2: on_chain_start/stream/end
// for the graph and each node), in LangGraph's shapes. Not thread-safe: used on the run's thread.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>

#include "control/common.h"
#include "graph/graph.h"

namespace ap::exec {

using control::Json;

class DebugStreams {
 public:
  using Publish = std::function<void(const std::string& event, const Json& data)>;
  // `metadata`: the run's metadata (for `events`); `run_id` names the root chain.
  DebugStreams(const std::set<std::string>& modes, std::string run_id, Json metadata, Publish publish);

  // True when the run asked for any of these modes (then the engine must emit its events).
  bool wanted() const { return checkpoints_ || tasks_ || debug_ || events_; }
  void begin(const Json& input);                // events: the graph's on_chain_start
  void on_event(const graph::StreamEvent& e);   // checkpoints / tasks from the engine
  void end(const Json& output);                 // events: the graph's on_chain_end

 private:
  void chain(const std::string& suffix, const std::string& kind, const std::string& name, const std::string& id,
             Json tags, Json metadata, Json data, bool root);
  bool checkpoints_, tasks_, debug_, events_;
  std::string run_id_;
  Json metadata_;
  Publish publish_;
  std::map<std::string, Json> inputs_;  // task id -> its input (for on_chain_end)
  Json root_input_;
};

}  // namespace ap::exec
