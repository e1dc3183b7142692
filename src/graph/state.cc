// Reading and writing a thread's state outside a run: get_state, history, update_state.
#include <unordered_map>

#include "graph/internal/loop.h"

namespace ap::graph {

using namespace internal;

namespace {

// LangGraph's text for a task's error in a state: the JSON of {"message", "name"}, from the
// stored error ({"code", "message"}: Loop::put_task_writes).
Json error_text(const Json& saved) {
  auto field = [&](const char* key) -> std::optional<std::string> {
    if (saved.is_object() && saved.contains(key) && saved[key].is_string()) return saved[key].get<std::string>();
    return std::nullopt;
  };
  return Json{{"message", field("message").value_or(saved.dump())}, {"name", field("code").value_or("Error")}}.dump();
}

// A checkpoint as LangGraph reads it back: its stored writes of no task applied, then with
// `finished` the writes of the tasks that finished from it, as the engine applies a step's.
// `tasks`: the tasks planned from it, matched to their stored writes. Writes the engine refuses
// (it failed the step for them) are an error, or with `lenient` (a snapshot, only read) leave
// the values as they are.
Result<Checkpoint> with_stored_writes(const Impl& g, const CheckpointTuple& t, bool finished, bool lenient,
                                      std::vector<Task>& tasks) {
  Checkpoint cp = adapt(g, t.checkpoint);
  auto apply = [&](auto&& step) -> Status {
    Checkpoint with = cp;
    Status st = step(with);
    if (st) cp = std::move(with);
    return lenient ? ok_status() : st;
  };
  if (auto null_writes = null_writes_of(g, t.pending_writes); !null_writes.empty())
    AP_RETURN_IF_ERROR(apply([&](Checkpoint& c) { return apply_null_writes(g, c, null_writes); }));
  tasks = plan(g, cp, t.metadata.step + 1, t.config.checkpoint_ns);
  match_stored_writes(g, tasks, t.pending_writes);
  if (!finished) return cp;
  std::vector<Task> done;
  for (const auto& task : tasks)
    if (task.done) done.push_back(task);
  if (!done.empty()) AP_RETURN_IF_ERROR(apply([&](Checkpoint& c) { return apply_step(g, c, done); }));
  return cp;
}

// As LangGraph's snapshots: every task planned from the checkpoint (after an earlier Command's
// stored update and goto), with what it left in the stored writes. `apply_pending` (the
// thread's latest state, as LangGraph's get_state gives it): the finished tasks' writes applied,
// those tasks left out of `next`.
StateSnapshot snapshot(const Impl& g, const CheckpointTuple& t, bool apply_pending) {
  StateSnapshot s;
  std::vector<Task> tasks;
  const Checkpoint cp = *with_stored_writes(g, t, apply_pending, /*lenient=*/true, tasks);
  std::unordered_map<std::string, size_t> task_at;
  for (const auto& task : tasks) {
    const auto& node = g.nodes[task.node];
    SnapshotTask st;
    st.id = task.id;
    st.name = node.name;
    if (task.push)  // ("~__pregel_push|<index>")
      st.path = Json::array({"__pregel_push", std::stoll(task.path.substr(task.path.find('|') + 1))});
    else
      st.path = Json::array({"__pregel_pull", node.name});
    // The namespace run_subgraph gives this task's subgraph.
    st.ns = node.subgraph ? subgraph_ns(t.config.checkpoint_ns, node.name, task.id) : "";
    st.done = task.done;
    for (const auto& [c, v] : task.writes)
      if (c < g.user_channels) {
        if (st.result.is_null()) st.result = Json::object();
        add_result_write(st.result, g.channels[c].name, v);
      }
    task_at[task.id] = s.tasks.size();
    s.tasks.push_back(std::move(st));
  }
  for (const auto& w : t.pending_writes)
    if (w.channel == kErrorChannel && w.value)
      if (auto at = task_at.find(w.task_id); at != task_at.end()) s.tasks[at->second].error = error_text(*w.value);
  s.channel_names = g.state_names;
  s.channel_values.assign(cp.values.begin(), cp.values.begin() + g.user_channels);
  for (const auto& task : s.tasks)
    if (!apply_pending || !task.done) s.next.push_back(task.name);
  // The interrupts of the tasks that have not finished (one answered and then finished, in a
  // step a sibling failed, is not pending).
  for (const auto& w : t.pending_writes) {
    auto at = task_at.find(w.task_id);
    if (w.channel != kInterruptChannel || !w.value || !w.value->is_array() || (at != task_at.end() && s.tasks[at->second].done))
      continue;
    for (const auto& i : *w.value)
      s.interrupts.push_back({i.value("id", ""), i.value("value", Json()), at == task_at.end() ? "" : s.tasks[at->second].name, w.task_id});
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
  StateSnapshot s = snapshot(*impl_, *t, config.checkpoint_id.empty());
  if (!subgraphs) return s;
  for (auto& task : s.tasks) {
    if (task.ns.empty() || !task.error.is_null()) continue;  // (LangGraph shows no state for a failed task)
    const auto child = subgraph_of(task.name);
    CheckpointConfig at{config.thread_id, task.ns, ""};
    auto state = child->get_state(cp, at, true);
    if (!state && state.error().code != Code::kNotFound) return state.error();
    if (!state) {
      // Not started yet: LangGraph's empty snapshot for the namespace.
      StateSnapshot empty;
      empty.channel_names = child->impl_->state_names;
      empty.config = at;
      state = std::move(empty);
    }
    task.state = std::make_shared<const StateSnapshot>(std::move(*state));
  }
  return s;
}

Result<std::vector<StateSnapshot>> CompiledGraph::get_state_history(Checkpointer& cp,
                                                                    const ListOptions& o) const {
  AP_ASSIGN_OR_RETURN(auto tuples, cp.list(o));
  std::vector<StateSnapshot> out;
  out.reserve(tuples.size());
  for (const auto& t : tuples) out.push_back(snapshot(*impl_, t, false));
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
  // The latest checkpoint (not one named by id) with what its finished tasks and an earlier
  // Command left in its stored writes, as LangGraph's update_state applies them first.
  std::vector<Task> planned;
  Checkpoint cp;
  if (tuple->pending_writes.empty() || !config.checkpoint_id.empty()) {
    cp = adapt(g, tuple->checkpoint);
  } else {
    AP_ASSIGN_OR_RETURN(cp, with_stored_writes(g, *tuple, true, /*lenient=*/false, planned));
  }
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
