// Private to the engine: the compiled layout of a graph (channels, nodes, triggers, edges).
#pragma once

#include <unordered_map>

#include "graph/graph.h"

namespace ap::graph {

struct CompiledGraph::Impl {
  struct Node {
    std::string name;
    NodeFn fn;  // null for the START node, which applies the input
    RetryPolicy retry;
    std::shared_ptr<const CompiledGraph> subgraph;  // what fn runs as its subgraph, if any
    std::vector<size_t> triggers;     // channels that start this node
    std::vector<size_t> edge_writes;  // branch:to:X channels it writes when it finishes
    std::vector<size_t> join_writes;  // barrier channels it writes its name to
    std::vector<const StateGraph::BranchDef*> branches;
  };
  std::vector<ChannelSpec> channels;  // user channels first, then internal ones
  size_t user_channels = 0;
  size_t start_channel = 0, tasks_channel = 0;
  std::vector<size_t> branch_channel;  // per node: its branch:to channel
  std::vector<Node> nodes;             // nodes[0] is START
  std::unordered_map<std::string, size_t> channel_index, node_index;
  std::vector<StateGraph::BranchDef> branch_defs;
  std::shared_ptr<const std::vector<std::string>> channel_names, node_names;
  std::shared_ptr<const std::vector<std::string>> state_names;  // the user's channels

  std::optional<size_t> channel(std::string_view name) const {
    auto it = channel_index.find(std::string(name));
    if (it == channel_index.end()) return std::nullopt;
    return it->second;
  }
  std::optional<size_t> node(std::string_view name) const {
    auto it = node_index.find(std::string(name));
    if (it == node_index.end()) return std::nullopt;
    return it->second;
  }
  bool available(size_t c, const ValuePtr& v) const {
    if (!v) return false;
    if (channels[c].reducer == Reducer::kBarrier)
      return v->seen().size() == channels[c].barrier_names.size();
    return true;
  }
};

}  // namespace ap::graph
