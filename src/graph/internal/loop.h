// Private to the engine: the superstep loop's state and helpers, shared by pregel.cc (invoke),
// state.cc (get_state, history, update_state) and node_context.cc.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "common/clock.h"
#include "graph/internal/impl.h"

namespace ap::graph {

struct NodeContext::Frame {
  const CompiledGraph::Impl* g;
  const std::vector<ValuePtr>* values;
  const std::string* node;
  int step;
  const Json* arg;
  bool is_send;
  const Json* config;
  std::vector<Json> resume;  // resume values for this task, in interrupt() order
  size_t calls = 0;
  std::string interrupt_id;
  std::vector<Interrupt> pending;
  std::vector<Json> custom;
  // For subgraphs.
  const RunOptions* opts = nullptr;
  Checkpointer* saver = nullptr;
  std::string task_id;
  const std::vector<size_t>* triggers = nullptr;  // the channels that started the task
  std::string checkpoint_id;       // the parent's current checkpoint
  std::optional<Json> fresh_resume;  // a resume value given to this task by this invocation
};

namespace internal {

using Impl = CompiledGraph::Impl;

// The checkpoint namespace of a task's subgraph: "<parent ns>|<node>:<task id>" ("<node>:<task
// id>" under the root graph).
inline std::string subgraph_ns(const std::string& parent_ns, const std::string& node, const std::string& task_id) {
  return (parent_ns.empty() ? "" : parent_ns + "|") + node + ":" + task_id;
}

struct Task {
  size_t node = 0;
  bool push = false;
  Json arg;
  std::string id, path;
  std::vector<size_t> triggers;
  bool done = false;  // finished in an earlier attempt: its stored writes are reused
  std::vector<std::pair<size_t, Json>> writes;
  std::vector<Json> resume;
  std::optional<Json> fresh_resume;
  std::optional<NodeOutput> parent_command;
  std::vector<Interrupt> interrupts;
  std::optional<Error> error;
  std::vector<Json> custom;
};

std::string hash_id(std::initializer_list<std::string_view> parts);
std::string interrupt_id_for(const std::string& ns, const std::string& node, const std::string& task);
// Whether `s` has the shape of interrupt_id_for's ids (32 lowercase hex digits).
bool is_interrupt_id(std::string_view s);
Json state_json(const Impl& g, const std::vector<ValuePtr>& values);
// state_json(g, values).dump(), written without building the tree.
std::string state_text(const Impl& g, const std::vector<ValuePtr>& values);
Checkpoint empty_checkpoint(const Impl& g);
// A checkpoint written by another version of the graph: values and versions mapped by name.
Checkpoint adapt(const Impl& g, const Checkpoint& in);
std::vector<Task> plan(const Impl& g, const Checkpoint& cp, int step, const std::string& ns);
Status apply_step(const Impl& g, Checkpoint& cp, const std::vector<Task>& tasks);
Status apply_null_writes(const Impl& g, Checkpoint& cp,
                         const std::vector<std::pair<size_t, Json>>& writes);
bool is_special_write(const std::string& channel);
// A checkpoint's stored writes of no task (an earlier Command's update and goto), for
// apply_null_writes: LangGraph applies them before planning the checkpoint's tasks.
std::vector<std::pair<size_t, Json>> null_writes_of(const Impl& g, std::span<const PendingWrite> pending);
// Matches a checkpoint's stored writes to the tasks planned from it: a task with ordinary
// writes (or __no_writes__) finished (`done`, with those writes); one with only an interrupt or
// an error did not. Resume values go to their task.
void match_stored_writes(const Impl& g, std::vector<Task>& tasks, std::span<const PendingWrite> pending);
// Adds a task's write to `channel` to its result as LangGraph shows it ({channel: value}; a
// channel written more than once: {"$writes": [every value]}). `result` is an object.
void add_result_write(Json& result, const std::string& channel, const Json& value);
bool should_interrupt(const Impl& g, const Checkpoint& cp, const std::vector<std::string>& names,
                      const std::vector<Task>& tasks);

// Node and router code is the user's: an exception from it (or from a JSON access in it) fails
// that task with Internal instead of unwinding through the engine.
template <class F>
auto guarded(const std::string& node, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Error::internal("node '" + node + "' threw: " + e.what());
  } catch (...) {
    return Error::internal("node '" + node + "' threw");
  }
}

struct Loop {
  const Impl& g;
  const RunOptions& o;
  Checkpointer* saver;
  Checkpoint cp;
  CheckpointConfig config;  // names `cp` once saved
  CheckpointMetadata md;
  std::vector<PendingWrite> pending;
  int step = -1;
  bool dirty = false;  // cp not yet saved (durability exit, or a step before first_saved_step)

  bool persistent() const { return saver && !o.thread_id.empty(); }
  // What the saver is asked for: kExit's deferred saves at the end of a run are synchronous.
  Durability durability() const {
    return o.durability == Durability::kAsync ? Durability::kAsync : Durability::kSync;
  }
  // A checkpoint's: asynchronous when a durable commit is sure to follow (durable_end_follows).
  Durability put_durability() const {
    if (o.durable_end_follows && (!node_ran || ending)) return Durability::kAsync;
    return durability();
  }

  // A subgraph's checkpoint namespace names the task that runs it, and task ids derive from the
  // checkpoint they were planned from: a graph with subgraphs saves every checkpoint, so that a
  // later attempt plans the same tasks and finds its subgraphs' saved progress.
  bool runs_subgraphs() const {
    for (const auto& n : g.nodes)
      if (n.subgraph) return true;
    return false;
  }

  Status save(const std::string& source) {
    CheckpointMetadata m;
    m.source = source;
    m.step = step;
    m.parents = o.parents;
    m.extra_json = o.checkpoint_metadata;
    md = m;
    if (!persistent()) return ok_status();
    if (source == "loop" && ending && o.thread_dropped_at_end && !o.stream_debug && !runs_subgraphs()) {
      dirty = end_dropped = true;  // saved after all only if the run does not end here (flush)
      return ok_status();
    }
    if ((o.durability == Durability::kExit && source == "loop") || (step < o.first_saved_step && !runs_subgraphs())) {
      dirty = true;
      return ok_status();
    }
    return flush();
  }
  Status flush() {
    end_dropped = false;
    if (!persistent()) return ok_status();
    CheckpointConfig parent{o.thread_id, o.checkpoint_ns, config.checkpoint_id};
    if (config.checkpoint_id == cp.id) parent.checkpoint_id = parent_id;  // re-saving the same one
    AP_ASSIGN_OR_RETURN(auto saved, saver->put(parent, cp, md, put_durability()));
    if (config.checkpoint_id != cp.id) parent_id = config.checkpoint_id;
    config = saved;
    dirty = false;
    return ok_status();
  }
  std::string parent_id;

  std::vector<PendingWrite> deferred;  // durability exit: this step's task writes

  std::string prev_id;  // the checkpoint before `cp` (for the checkpoints stream)
  bool node_ran = false;  // a step of this invocation ran a node (not only __start__)
  bool ending = false;    // the checkpoint being saved is the one the run ends with
  bool end_dropped = false;  // `cp` is a clean end's, not saved (RunOptions::thread_dropped_at_end)

  void new_checkpoint() {
    prev_id = cp.id;
    cp.id = next_checkpoint_id();
    cp.ts = format_rfc3339(std::chrono::system_clock::now());
    pending.clear();
    deferred.clear();
  }

  // Saves what is not saved yet (durability exit, or the end of a run).
  Status finish() {
    ending = true;
    if (end_dropped) return ok_status();  // nor are the writes durability exit deferred
    if (dirty) AP_RETURN_IF_ERROR(flush());
    if (persistent() && !deferred.empty()) {
      if (config.checkpoint_id != cp.id) AP_RETURN_IF_ERROR(flush());
      AP_RETURN_IF_ERROR(saver->put_writes(config, deferred));
      deferred.clear();
    }
    return ok_status();
  }

  Status put_task_writes(const Task& t) {
    if (!persistent()) return ok_status();
    std::vector<PendingWrite> w;
    int idx = 0;
    // A failed task's writes (some made before a router failed) are not kept: they would make it
    // count as finished.
    if (!t.error)
      for (const auto& [c, v] : t.writes)
        w.push_back({t.id, g.channels[c].name, std::make_shared<const Json>(v), idx++, t.path});
    if (!t.interrupts.empty()) {
      Json list = Json::array();
      for (const auto& i : t.interrupts) list.push_back(Json{{"value", i.value}, {"id", i.id}});
      w.push_back({t.id, kInterruptChannel, std::make_shared<const Json>(std::move(list)), -3, t.path});
    }
    if (!t.resume.empty())
      w.push_back({t.id, kResumeChannel, std::make_shared<const Json>(Json(t.resume)), -4, t.path});
    if (t.error)
      w.push_back({t.id, kErrorChannel,
                   std::make_shared<const Json>(Json{{"code", std::string(code_name(t.error->code))},
                                                     {"message", t.error->message}}),
                   -1, t.path});
    if (w.empty()) w.push_back({t.id, kNoWritesChannel, std::make_shared<const Json>(), 0, t.path});
    if (o.durability == Durability::kExit) {
      deferred.insert(deferred.end(), w.begin(), w.end());
      return ok_status();
    }
    if (config.checkpoint_id != cp.id) AP_RETURN_IF_ERROR(flush());
    return saver->put_writes(config, w, durability());
  }

  void emit(const std::string& mode, const std::string& node, Json data, int at_step = 0) {
    if (o.on_event) o.on_event(StreamEvent{mode, node, std::move(data), "", at_step});
  }
  // stream_debug: the current checkpoint with the tasks planned from it; a task's start; its
  // result.
  void emit_checkpoint(const std::vector<Task>& tasks);
  void emit_task_start(const Task& t);
  void emit_task_result(const Task& t);

  Status run_task(Task& t);
  Status control_writes(Task& t, const NodeOutput& out);
};

}  // namespace internal
}  // namespace ap::graph
