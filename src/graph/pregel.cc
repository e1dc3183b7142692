// The run loop, LangGraph's Pregel: plan the step's tasks from channel versions, run them on a
// frozen snapshot, apply their writes through the reducers in task-path order, bump versions,
// save a checkpoint; repeat until no task is triggered, an interrupt, or an error.
#include <algorithm>
#include <map>

#include "graph/internal/loop.h"

namespace ap::graph {

using namespace internal;

Result<RunResult> CompiledGraph::invoke(const Input& input, const RunOptions& o,
                                        Checkpointer* saver) const {
  const Impl& g = *impl_;
  // A new thread's "input" checkpoint is step -1, as in LangGraph.
  Loop loop{g, o, saver, empty_checkpoint(g), {o.thread_id, o.checkpoint_ns, ""}, {}, {}, -2, false, ""};
  if (input.values && !input.values->is_object())
    return Error::invalid_argument("input must be an object of channel values");
  if (input.values)
    for (auto it = input.values->begin(); it != input.values->end(); ++it)
      if (auto c = g.channel(it.key()); !c || *c >= g.user_channels)
        return Error::invalid_argument("input names unknown channel '" + it.key() + "'");

  // Load the thread's checkpoint (or the one to replay / fork from).
  if (loop.persistent() && !o.new_thread) {
    AP_ASSIGN_OR_RETURN(auto tuple, saver->get_tuple({o.thread_id, o.checkpoint_ns, o.checkpoint_id}));
    if (!tuple && !o.checkpoint_id.empty()) return Error::not_found("checkpoint not found");
    if (tuple) {
      loop.cp = adapt(g, tuple->checkpoint);
      loop.config = tuple->config;
      loop.parent_id = tuple->parent ? tuple->parent->checkpoint_id : "";
      loop.prev_id = loop.parent_id;
      loop.md = tuple->metadata;
      loop.pending = tuple->pending_writes;
      loop.step = tuple->metadata.step;
    }
  }

  std::vector<Task> tasks;
  bool have_tasks = false;
  if (input.values) {
    // New input: a new "input" checkpoint. Tasks the old checkpoint still had pending are
    // discarded the LangGraph way: applied with no writes, so their triggers count as seen.
    std::vector<Task> step_tasks;
    if (!loop.cp.id.empty()) step_tasks = plan(g, loop.cp, loop.step + 1, o.checkpoint_ns);
    Task in;
    // Applied after the discarded tasks (vector order is application order).
    in.writes.emplace_back(g.start_channel, *input.values);
    step_tasks.push_back(std::move(in));
    AP_RETURN_IF_ERROR(apply_step(g, loop.cp, step_tasks));
    loop.new_checkpoint();
    ++loop.step;
    AP_RETURN_IF_ERROR(loop.save("input"));
  } else {
    if (loop.cp.id.empty())
      return Error::invalid_argument("nothing to run: the thread has no state and no input was given");
    // Writes of no task: stored ones (an earlier Command) and this Command's update/goto.
    std::vector<std::pair<size_t, Json>> null_writes = null_writes_of(g, loop.pending);
    std::vector<PendingWrite> new_null;
    if (input.update) {
      if (!input.update->is_object()) return Error::invalid_argument("update must be an object of channel values");
      for (auto it = input.update->begin(); it != input.update->end(); ++it) {
        auto c = g.channel(it.key());
        if (!c || *c >= g.user_channels)
          return Error::invalid_argument("update names unknown channel '" + it.key() + "'");
        null_writes.emplace_back(*c, it.value());
        new_null.push_back({kNullTaskId, it.key(), std::make_shared<const Json>(it.value()),
                            static_cast<int>(new_null.size()), ""});
      }
    }
    for (const auto& n : input.goto_nodes) {
      auto c = g.node(n);
      if (!c || *c == 0) return Error::invalid_argument("goto names unknown node '" + n + "'");
      null_writes.emplace_back(g.branch_channel[*c], Json(kStart));
      new_null.push_back({kNullTaskId, g.channels[g.branch_channel[*c]].name,
                          std::make_shared<const Json>(kStart), static_cast<int>(new_null.size()), ""});
    }
    // Saved first, so that a step that then fails or interrupts does not lose them.
    if (!new_null.empty() && loop.persistent()) AP_RETURN_IF_ERROR(saver->put_writes(loop.config, new_null));
    AP_RETURN_IF_ERROR(apply_null_writes(g, loop.cp, null_writes));
    // Resuming: what is there now has been seen by interrupt_before/after (LangGraph does the
    // same), so continuing after an interrupt, or after an update, does not stop again at once.
    loop.cp.interrupt_seen = loop.cp.versions;

    tasks = plan(g, loop.cp, loop.step + 1, o.checkpoint_ns);
    have_tasks = true;
    // A task that finished is not run again; one with only an interrupt or an error runs again.
    match_stored_writes(g, tasks, loop.pending);
    std::map<std::string, std::string> interrupt_task;  // interrupt id -> unfinished task id
    for (const auto& w : loop.pending) {
      if (w.channel != kInterruptChannel || !w.value || !w.value->is_array()) continue;
      bool unfinished = std::any_of(tasks.begin(), tasks.end(),
                                    [&](const Task& t) { return t.id == w.task_id && !t.done; });
      if (unfinished)
        for (const auto& i : *w.value) interrupt_task[i.value("id", "")] = w.task_id;
    }
    if (input.resume) {
      // With no interrupt pending (a static breakpoint, or none), the run goes on from the
      // checkpoint, as LangGraph's does: the value waits for the first interrupt() of the first
      // task to run.
      const Json& r = *input.resume;
      // A map whose keys are all interrupt ids answers those interrupts only: one that is not
      // pending (answered already, or the thread moved on) answers nothing.
      bool by_id = r.is_object() && !r.empty();
      for (auto it = r.begin(); by_id && it != r.end(); ++it) by_id = is_interrupt_id(it.key());
      if (by_id) {
        for (auto it = r.begin(); it != r.end(); ++it)
          for (auto& t : tasks)
            if (interrupt_task.count(it.key()) && t.id == interrupt_task[it.key()]) {
              t.resume.push_back(it.value());
              // Kept keyed by id: a subgraph task passes it on to its child as is.
              if (!t.fresh_resume || !t.fresh_resume->is_object()) t.fresh_resume = Json::object();
              (*t.fresh_resume)[it.key()] = it.value();
            }
      } else {
        // One value: for the first interrupted task in path order (the first task to run when
        // none is).
        for (auto& t : tasks)
          if (!t.done && (interrupt_task.empty() ||
                          std::any_of(interrupt_task.begin(), interrupt_task.end(),
                                      [&](const auto& p) { return p.second == t.id; }))) {
            t.resume.push_back(r);
            t.fresh_resume = r;
            break;
          }
      }
    }
  }

  RunResult result;
  const int limit = o.recursion_limit + 1;  // the START step counts
  for (;;) {
    if (!have_tasks) tasks = plan(g, loop.cp, loop.step + 1, o.checkpoint_ns);
    have_tasks = false;
    loop.emit_checkpoint(tasks);
    if (tasks.empty()) break;
    if (o.should_stop && o.should_stop()) {
      AP_RETURN_IF_ERROR(loop.finish());
      return Error::cancelled("the run was cancelled");
    }
    if (result.steps >= limit)
      return Error::resource_exhausted("GRAPH_RECURSION_LIMIT: recursion limit of " +
                                       std::to_string(o.recursion_limit) +
                                       " reached without hitting a stop condition");
    if (should_interrupt(g, loop.cp, o.interrupt_before, tasks)) {
      loop.cp.interrupt_seen = loop.cp.versions;
      loop.ending = true;
      AP_RETURN_IF_ERROR(loop.flush());
      result.interrupted = true;
      break;
    }
    ++loop.step;
    // Run the step: one task inline, several concurrently when the caller gave a runner.
    std::vector<Task*> todo;
    for (auto& t : tasks)
      if (!t.done) todo.push_back(&t);
    for (auto* t : todo) loop.emit_task_start(*t);
    std::vector<Status> statuses(todo.size());
    if (todo.size() > 1 && o.run_parallel) {
      std::vector<std::function<void()>> jobs;
      for (size_t i = 0; i < todo.size(); ++i)
        jobs.push_back([&, i] { statuses[i] = loop.run_task(*todo[i]); });
      o.run_parallel(jobs);
    } else {
      for (size_t i = 0; i < todo.size(); ++i) statuses[i] = loop.run_task(*todo[i]);
    }
    bool single = tasks.size() == 1;
    std::optional<Error> failure;
    for (size_t i = 0; i < todo.size(); ++i) {
      Task& t = *todo[i];
      if (!statuses[i] && !t.error) t.error = statuses[i].error();
      if (!o.task_events_only)
        for (auto& c : t.custom) loop.emit("custom", g.nodes[t.node].name, std::move(c));
      // Each finished task's writes are durable at once (a crash keeps finished siblings); a
      // lone task's writes go with the step's checkpoint instead. Its result is streamed once
      // they are saved, so a logged result means the task will not run again.
      if (!single || !t.interrupts.empty() || t.error) {
        AP_RETURN_IF_ERROR(loop.put_task_writes(t));
        loop.emit_task_result(t);
      }
      if (t.error && !failure) failure = t.error;
      for (const auto& i : t.interrupts) result.interrupts.push_back(i);
    }
    if (failure) {
      --loop.step;
      AP_RETURN_IF_ERROR(loop.finish());
      return *failure;
    }
    for (auto* t : todo) {
      if (!t->parent_command) continue;
      // Command(graph=PARENT): this graph stops; the enclosing graph applies the command.
      --loop.step;
      AP_RETURN_IF_ERROR(loop.finish());
      result.parent_command = std::move(t->parent_command);
      result.values = state_json(g, loop.cp.values);
      result.checkpoint = loop.config;
      return result;
    }
    if (!result.interrupts.empty()) {
      --loop.step;
      AP_RETURN_IF_ERROR(loop.finish());
      result.interrupted = true;
      break;
    }
    AP_RETURN_IF_ERROR(apply_step(g, loop.cp, tasks));
    ++result.steps;
    loop.new_checkpoint();
    // The next step's tasks, planned before the save: whether this checkpoint ends the run
    // decides how it is committed (Loop::put_durability).
    std::vector<Task> next = plan(g, loop.cp, loop.step + 1, o.checkpoint_ns);
    loop.ending = next.empty();
    if (std::any_of(tasks.begin(), tasks.end(), [](const Task& t) { return t.node != 0; })) loop.node_ran = true;
    AP_RETURN_IF_ERROR(loop.save("loop"));
    if (single && !tasks.front().done) loop.emit_task_result(tasks.front());
    if (o.on_event && !o.task_events_only) {
      for (const auto& t : tasks) {
        Json upd = Json::object();
        for (const auto& [c, v] : t.writes)
          if (c < g.user_channels) upd[g.channels[c].name] = v;
        if (t.node == 0) continue;
        StreamEvent e{"updates", g.nodes[t.node].name, Json{{g.nodes[t.node].name, std::move(upd)}}, "", 0, t.id, {}};
        for (size_t c : t.triggers) e.triggers.push_back(g.channels[c].name);
        o.on_event(e);
      }
      if (!o.want_values || o.want_values()) loop.emit("values", "", state_json(g, loop.cp.values));
    }
    if (should_interrupt(g, loop.cp, o.interrupt_after, tasks)) {
      loop.cp.interrupt_seen = loop.cp.versions;
      loop.ending = true;
      AP_RETURN_IF_ERROR(loop.flush());
      result.interrupted = true;
      break;
    }
    tasks = std::move(next);
    have_tasks = true;
  }
  AP_RETURN_IF_ERROR(loop.finish());
  if (o.final_values_as_text && !result.interrupted && result.interrupts.empty())
    result.values_text = state_text(g, loop.cp.values);
  else
    result.values = state_json(g, loop.cp.values);
  result.checkpoint = loop.config;
  return result;
}

}  // namespace ap::graph
