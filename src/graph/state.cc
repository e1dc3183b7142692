// Reading and writing a thread's state outside a run: get_state, history, update_state.
#include <unordered_map>

#include "graph/internal/loop.h"

namespace ap::graph {

using namespace internal;

namespace {

StateSnapshot snapshot(const Impl& g, const CheckpointTuple& t) {
  StateSnapshot s;
  Checkpoint cp = adapt(g, t.checkpoint);
  s.channel_names = g.state_names;
  s.channel_values.assign(cp.values.begin(), cp.values.begin() + g.user_channels);
  std::unordered_map<std::string, std::string> task_node;
  for (const auto& task : plan(g, cp, t.metadata.step + 1, t.config.checkpoint_ns)) {
    bool done = false;
    for (const auto& w : t.pending_writes)
      done = done || (w.task_id == task.id && !is_special_write(w.channel));
    task_node[task.id] = g.nodes[task.node].name;
    if (!done) {
      const auto& node = g.nodes[task.node];
      s.next.push_back(node.name);
      s.next_task_ids.push_back(task.id);
      // The namespace run_subgraph gives this task's subgraph.
      s.next_task_ns.push_back(node.subgraph ? subgraph_ns(t.config.checkpoint_ns, node.name, task.id) : "");
    }
  }
  for (const auto& w : t.pending_writes)
    if (w.channel == kInterruptChannel && w.value && w.value->is_array())
      for (const auto& i : *w.value) {
        auto n = task_node.find(w.task_id);
        s.interrupts.push_back({i.value("id", ""), i.value("value", Json()), n == task_node.end() ? "" : n->second, w.task_id});
      }
  s.config = t.config;
  s.parent_config = t.parent;
  s.metadata = t.metadata.to_json();
  s.created_at = t.checkpoint.ts;
  return s;
}

}  // namespace

Json StateSnapshot::values() const {
  Json out = Json::object();
  for (size_t c = 0; c < channel_values.size(); ++c)
    if (channel_values[c]) out[(*channel_names)[c]] = channel_values[c]->to_json();
  return out;
}

Result<StateSnapshot> CompiledGraph::get_state(Checkpointer& cp, const CheckpointConfig& config,
                                               bool subgraphs) const {
  AP_ASSIGN_OR_RETURN(auto t, cp.get_tuple(config));
  if (!t) return Error::not_found("no checkpoint for this thread");
  StateSnapshot s = snapshot(*impl_, *t);
  s.next_task_states.resize(s.next.size());
  if (!subgraphs) return s;
  for (size_t k = 0; k < s.next.size(); ++k) {
    if (s.next_task_ns[k].empty()) continue;
    const auto child = subgraph_of(s.next[k]);
    CheckpointConfig at{config.thread_id, s.next_task_ns[k], ""};
    auto state = child->get_state(cp, at, true);
    if (!state && state.error().code != Code::kNotFound) return state.error();
    if (!state) {
      // Not started yet: LangGraph's empty snapshot for the namespace.
      StateSnapshot empty;
      empty.channel_names = child->impl_->state_names;
      empty.config = at;
      state = std::move(empty);
    }
    s.next_task_states[k] = std::make_shared<const StateSnapshot>(std::move(*state));
  }
  return s;
}

Result<std::vector<StateSnapshot>> CompiledGraph::get_state_history(Checkpointer& cp,
                                                                    const ListOptions& o) const {
  AP_ASSIGN_OR_RETURN(auto tuples, cp.list(o));
  std::vector<StateSnapshot> out;
  out.reserve(tuples.size());
  for (const auto& t : tuples) out.push_back(snapshot(*impl_, t));
  return out;
}

Result<CheckpointConfig> CompiledGraph::update_state(Checkpointer& saver, const CheckpointConfig& config,
                                                     const Json& values, const std::string& as_node,
                                                     const std::string& metadata_json) const {
  const Impl& g = *impl_;
  if (!values.is_object() && !values.is_null())
    return Error::invalid_argument("values must be an object of channel values");
  AP_ASSIGN_OR_RETURN(auto tuple, saver.get_tuple(config));
  if (!tuple && !config.checkpoint_id.empty()) return Error::not_found("checkpoint not found");
  if (!tuple) {
    // A thread's first checkpoint, as LangGraph writes it: the update applied to the empty
    // state as if `as_node` had run, at step 0.
    CheckpointTuple first;
    first.checkpoint = empty_checkpoint(g);
    first.config = {config.thread_id, config.checkpoint_ns, ""};
    first.metadata.step = -1;
    tuple = std::move(first);
  }
  Checkpoint cp = adapt(g, tuple->checkpoint);
  std::string node_name = as_node;
  if (node_name.empty()) {
    // The node that ran last: the one that saw the newest version.
    uint64_t best = 0;
    bool tie = false;
    for (size_t n = 1; n < g.nodes.size(); ++n)
      for (size_t c = 0; c < g.channels.size(); ++c) {
        uint64_t v = cp.seen_at(n, c);
        if (v > best) {
          best = v;
          node_name = g.nodes[n].name;
          tie = false;
        } else if (v == best && v && node_name != g.nodes[n].name) {
          tie = true;
        }
      }
    if (node_name.empty()) node_name = kStart;
    if (tie) return Error::invalid_argument("ambiguous update: name the node with as_node");
  }
  auto n = g.node(node_name);
  if (!n) return Error::invalid_argument("unknown node '" + node_name + "'");
  RunOptions o;
  o.thread_id = config.thread_id;
  o.checkpoint_ns = config.checkpoint_ns;
  o.checkpoint_metadata = metadata_json;
  Loop loop{g, o, &saver, cp, tuple->config, tuple->metadata, {}, tuple->metadata.step, false, ""};
  Task t;
  t.node = *n;
  NodeOutput out = NodeOutput::update(values.is_null() ? Json::object() : values);
  if (*n == 0) {
    for (const auto& [k, v] : out.writes) {
      auto c = g.channel(k);
      if (!c || *c >= g.user_channels) return Error::invalid_argument("unknown channel '" + k + "'");
      t.writes.emplace_back(*c, v);
    }
  } else {
    AP_RETURN_IF_ERROR(loop.control_writes(t, out));
  }
  AP_RETURN_IF_ERROR(apply_step(g, loop.cp, {t}));
  loop.new_checkpoint();
  ++loop.step;
  AP_RETURN_IF_ERROR(loop.save("update"));
  return loop.config;
}
}  // namespace ap::graph
