// The run loop, LangGraph's Pregel: plan the step's tasks from channel versions, run them on a
// frozen snapshot, apply their writes through the reducers in task-path order, bump versions,
// save a checkpoint; repeat until no task is triggered, an interrupt, or an error.
#include <algorithm>
#include <map>
#include <thread>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/ids.h"
#include "graph/graph.h"
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
  std::string checkpoint_id;       // the parent's current checkpoint
  std::optional<Json> fresh_resume;  // a resume value given to this task by this invocation
};

namespace {

using Impl = CompiledGraph::Impl;
const Json kNullJson;

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

// A deterministic task id: SHA-256 over the parts, each followed by a NUL, shaped as a UUID.
std::string hash_id(std::initializer_list<std::string_view> parts) {
  std::string_view list[16];
  size_t n = 0;
  static constexpr char kNul[1] = {'\0'};
  for (auto p : parts) {
    list[n++] = p;
    list[n++] = std::string_view(kNul, 1);
  }
  auto d = sha256_parts({list, n});
  std::array<uint8_t, 16> b{};
  std::copy(d.begin(), d.begin() + 16, b.begin());
  b[6] = (b[6] & 0x0f) | 0x50;
  b[8] = (b[8] & 0x3f) | 0x80;
  return Uuid(b).to_string();
}

std::string interrupt_id_for(const std::string& ns, const std::string& node, const std::string& task) {
  auto d = sha256("interrupt\0" + ns + "|" + node + ":" + task);
  return hex_encode(d.data(), 16);
}

Json state_json(const Impl& g, const std::vector<ValuePtr>& values) {
  Json out = Json::object();
  for (size_t c = 0; c < g.user_channels; ++c)
    if (values[c]) out[g.channels[c].name] = values[c]->to_json();
  return out;
}

Checkpoint empty_checkpoint(const Impl& g) {
  Checkpoint cp;
  cp.channels = g.channel_names;
  cp.nodes = g.node_names;
  cp.values.assign(g.channels.size(), nullptr);
  cp.versions.assign(g.channels.size(), 0);
  cp.seen.assign(g.channels.size() * g.nodes.size(), 0);
  return cp;
}

// A checkpoint written by another version of the graph: map values and versions by name.
Checkpoint adapt(const Impl& g, const Checkpoint& in) {
  if (in.channels == g.channel_names && in.nodes == g.node_names) return in;
  Checkpoint cp = empty_checkpoint(g);
  cp.id = in.id;
  cp.ts = in.ts;
  for (size_t c = 0; c < in.channels->size(); ++c) {
    if (auto idx = g.channel((*in.channels)[c])) {
      cp.values[*idx] = in.values[c];
      cp.versions[*idx] = in.versions[c];
    }
  }
  for (size_t n = 0; n < in.nodes->size(); ++n) {
    auto ni = g.node((*in.nodes)[n]);
    if (!ni) continue;
    for (size_t c = 0; c < in.channels->size(); ++c)
      if (auto ci = g.channel((*in.channels)[c]))
        cp.seen[*ni * g.channels.size() + *ci] = in.seen_at(n, c);
  }
  if (!in.interrupt_seen.empty()) {
    cp.interrupt_seen.assign(g.channels.size(), 0);
    for (size_t c = 0; c < in.channels->size() && c < in.interrupt_seen.size(); ++c)
      if (auto ci = g.channel((*in.channels)[c])) cp.interrupt_seen[*ci] = in.interrupt_seen[c];
  }
  return cp;
}

std::vector<Task> plan(const Impl& g, const Checkpoint& cp, int step, const std::string& ns) {
  std::vector<Task> tasks;
  const std::string step_s = std::to_string(step);
  if (const auto& sends = cp.values[g.tasks_channel]) {
    for (size_t i = 0; i < sends->size(); ++i) {
      const Json& s = *sends->at(static_cast<int64_t>(i));
      auto n = g.node(s.value("node", ""));
      if (!n) continue;
      Task t;
      t.node = *n;
      t.push = true;
      t.arg = s.contains("arg") ? s["arg"] : Json();
      char idx[16];
      std::snprintf(idx, sizeof idx, "%010zu", i);
      t.path = std::string("~__pregel_push|") + idx;
      t.id = hash_id({cp.id, ns, step_s, g.nodes[*n].name, "push", idx});
      tasks.push_back(std::move(t));
    }
  }
  const size_t nc = g.channels.size();
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    Task t;
    for (size_t c : g.nodes[n].triggers)
      if (g.available(c, cp.values[c]) && cp.versions[c] > cp.seen[n * nc + c]) t.triggers.push_back(c);
    if (t.triggers.empty()) continue;
    t.node = n;
    t.path = "~__pregel_pull|" + g.nodes[n].name;
    std::string trig;
    if (t.triggers.size() > 1)
      for (size_t c : t.triggers) trig += g.channels[c].name + ",";
    t.id = hash_id({cp.id, ns, step_s, g.nodes[n].name, "pull",
                    t.triggers.size() > 1 ? std::string_view(trig)
                                          : std::string_view(g.channels[t.triggers[0]].name)});
    tasks.push_back(std::move(t));
  }
  std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.path < b.path; });
  return tasks;
}

// Applies the step's writes (tasks in path order) through the reducers; bumps versions.
Status apply_step(const Impl& g, Checkpoint& cp, const std::vector<Task>& tasks) {
  const size_t nc = g.channels.size();
  for (const auto& t : tasks)
    for (size_t c : t.triggers) cp.seen[t.node * nc + c] = cp.versions[c];
  uint64_t next = *std::max_element(cp.versions.begin(), cp.versions.end()) + 1;
  for (const auto& t : tasks)
    for (size_t c : t.triggers) {
      auto v = consume(g.channels[c], cp.values[c]);
      if (v != cp.values[c]) {
        cp.values[c] = std::move(v);
        cp.versions[c] = next;
      }
    }
  // Group the writes by channel, keeping task-path order within a channel.
  std::vector<std::pair<size_t, const Json*>> all;
  size_t total = 0;
  for (const auto& t : tasks) total += t.writes.size();
  all.reserve(total);
  for (const auto& t : tasks)
    for (const auto& [c, v] : t.writes) all.emplace_back(c, &v);
  // Stable by construction: the pointers increase in task order within each task's vector, and
  // tasks are distinct vectors, so compare (channel, position in `all`) instead of stable_sort
  // (which allocates a buffer every step).
  std::vector<uint32_t> order(all.size());
  for (uint32_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return all[a].first != all[b].first ? all[a].first < all[b].first : a < b;
  });
  std::vector<std::pair<size_t, const Json*>> sorted;
  sorted.reserve(all.size());
  for (uint32_t k : order) sorted.push_back(all[k]);
  all.swap(sorted);
  std::vector<Json> batch;
  size_t i = 0;
  for (size_t c = 0; c < nc; ++c) {
    batch.clear();
    for (; i < all.size() && all[i].first == c; ++i) batch.push_back(*all[i].second);
    const auto& spec = g.channels[c];
    bool clears = spec.reducer == Reducer::kEphemeral || spec.reducer == Reducer::kTopic;
    if (batch.empty() && !(clears && cp.values[c])) continue;
    AP_ASSIGN_OR_RETURN(auto v, apply_writes(spec, cp.values[c], batch));
    if (v != cp.values[c]) {
      cp.values[c] = std::move(v);
      cp.versions[c] = next;
    }
  }
  return ok_status();
}

// Writes of no task (Command(update/goto) given as input): applied through the reducers without
// marking anything seen or clearing ephemeral channels, as LangGraph applies its null writes.
Status apply_null_writes(const Impl& g, Checkpoint& cp,
                         const std::vector<std::pair<size_t, Json>>& writes) {
  if (writes.empty()) return ok_status();
  uint64_t next = *std::max_element(cp.versions.begin(), cp.versions.end()) + 1;
  for (size_t c = 0; c < g.channels.size(); ++c) {
    std::vector<Json> batch;
    for (const auto& [wc, v] : writes)
      if (wc == c) batch.push_back(v);
    if (batch.empty()) continue;
    AP_ASSIGN_OR_RETURN(auto v, apply_writes(g.channels[c], cp.values[c], batch));
    if (v != cp.values[c]) {
      cp.values[c] = std::move(v);
      cp.versions[c] = next;
    }
  }
  return ok_status();
}

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

bool is_special_write(const std::string& channel) {
  return channel == kInterruptChannel || channel == kErrorChannel || channel == kResumeChannel;
}

bool should_interrupt(const Impl& g, const Checkpoint& cp, const std::vector<std::string>& names,
                      const std::vector<Task>& tasks) {
  if (names.empty()) return false;
  bool changed = cp.interrupt_seen.empty();
  for (size_t c = 0; !changed && c < cp.versions.size(); ++c)
    changed = cp.versions[c] > cp.interrupt_seen[c];
  if (!changed) return false;
  for (const auto& t : tasks) {
    const auto& n = g.nodes[t.node].name;
    if (std::find(names.begin(), names.end(), n) != names.end() ||
        (n != kStart && std::find(names.begin(), names.end(), "*") != names.end()))
      return true;
  }
  return false;
}

}  // namespace

// ---- NodeContext ------------------------------------------------------------------------

const std::string& NodeContext::node() const { return *f_.node; }
int NodeContext::step() const { return f_.step; }
const Json& NodeContext::arg() const { return *f_.arg; }
bool NodeContext::is_send() const { return f_.is_send; }
const Json& NodeContext::config() const { return *f_.config; }
void NodeContext::emit(Json value) { f_.custom.push_back(std::move(value)); }

const ValuePtr& NodeContext::channel(std::string_view name) const {
  static const ValuePtr kNone;
  auto c = f_.g->channel(name);
  if (!c || *c >= f_.g->user_channels) return kNone;
  return (*f_.values)[*c];
}

Json NodeContext::get(std::string_view name) const {
  const auto& v = channel(name);
  return v ? v->to_json() : Json();
}

Json NodeContext::state() const { return state_json(*f_.g, *f_.values); }

Result<Json> NodeContext::interrupt(Json value) {
  size_t k = f_.calls++;
  if (k < f_.resume.size()) return f_.resume[k];
  if (f_.interrupt_id.empty() && f_.opts)
    f_.interrupt_id = interrupt_id_for(f_.opts->checkpoint_ns, *f_.node, f_.task_id);
  f_.pending.push_back(Interrupt{f_.interrupt_id, std::move(value), *f_.node});
  return Error::aborted("interrupted: waiting for a resume value");
}

bool NodeContext::has_channel(std::string_view name) const {
  auto c = f_.g->channel(name);
  return c && *c < f_.g->user_channels;
}

Result<Json> NodeContext::run_subgraph(const CompiledGraph& child, Json input,
                                       NodeOutput* parent_command) {
  if (!f_.opts) return Error::failed_precondition("run_subgraph outside a running graph");
  RunOptions o = *f_.opts;
  o.interrupt_before.clear();
  o.interrupt_after.clear();
  o.checkpoint_id.clear();
  o.on_event = nullptr;
  const std::string& parent_ns = f_.opts->checkpoint_ns;
  o.checkpoint_ns = (parent_ns.empty() ? "" : parent_ns + "|") + *f_.node + ":" + f_.task_id;
  o.parents = f_.opts->parents;
  o.parents.emplace_back(parent_ns, f_.checkpoint_id);
  Input in = Input::of(std::move(input));
  if (f_.saver && !o.thread_id.empty()) {
    // The child's own latest checkpoint decides: resume it, continue it, or reuse its result.
    AP_ASSIGN_OR_RETURN(auto state, [&]() -> Result<std::optional<StateSnapshot>> {
      auto s = child.get_state(*f_.saver, {o.thread_id, o.checkpoint_ns, ""});
      if (!s) {
        if (s.error().code == Code::kNotFound) return std::optional<StateSnapshot>();
        return s.error();
      }
      return std::optional<StateSnapshot>(std::move(*s));
    }());
    if (state) {
      if (state->next.empty() && state->interrupts.empty()) return state->values;
      in = f_.fresh_resume ? Input::resume_with(*f_.fresh_resume) : Input{};
    }
  }
  AP_ASSIGN_OR_RETURN(RunResult r, child.invoke(in, o, f_.saver));
  if (r.interrupted && !r.interrupts.empty()) {
    for (auto& i : r.interrupts) f_.pending.push_back(std::move(i));
    return Error::aborted("interrupted inside a subgraph");
  }
  if (r.parent_command) {
    if (!parent_command)
      return Error::invalid_argument("a subgraph node sent Command(graph=PARENT) to a caller that does not take it");
    auto& pc = *r.parent_command;
    for (auto& w : pc.writes) parent_command->writes.push_back(std::move(w));
    for (auto& n : pc.goto_nodes) parent_command->goto_nodes.push_back(std::move(n));
    for (auto& sd : pc.sends) parent_command->sends.push_back(std::move(sd));
  }
  return r.values;
}

// ---- CompiledGraph::invoke ----------------------------------------------------------------

namespace {

struct Loop {
  const Impl& g;
  const RunOptions& o;
  Checkpointer* saver;
  Checkpoint cp;
  CheckpointConfig config;  // names `cp` once saved
  CheckpointMetadata md;
  std::vector<PendingWrite> pending;
  int step = -1;
  bool dirty = false;  // cp not yet saved (durability exit)

  bool persistent() const { return saver && !o.thread_id.empty(); }

  Status save(const std::string& source) {
    CheckpointMetadata m;
    m.source = source;
    m.step = step;
    m.parents = o.parents;
    md = m;
    if (!persistent()) return ok_status();
    if (o.durability == Durability::kExit && source == "loop") {
      dirty = true;
      return ok_status();
    }
    return flush();
  }
  Status flush() {
    if (!persistent()) return ok_status();
    CheckpointConfig parent{o.thread_id, o.checkpoint_ns, config.checkpoint_id};
    if (config.checkpoint_id == cp.id) parent.checkpoint_id = parent_id;  // re-saving the same one
    AP_ASSIGN_OR_RETURN(auto saved, saver->put(parent, cp, md));
    if (config.checkpoint_id != cp.id) parent_id = config.checkpoint_id;
    config = saved;
    dirty = false;
    return ok_status();
  }
  std::string parent_id;

  std::vector<PendingWrite> deferred;  // durability exit: this step's task writes

  void new_checkpoint() {
    cp.id = next_checkpoint_id();
    cp.ts = format_rfc3339(std::chrono::system_clock::now());
    pending.clear();
    deferred.clear();
  }

  // Saves what is not saved yet (durability exit, or the end of a run).
  Status finish() {
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
    return saver->put_writes(config, w);
  }

  void emit(const std::string& mode, const std::string& node, Json data) {
    if (o.on_event) o.on_event(StreamEvent{mode, node, std::move(data)});
  }

  Status run_task(Task& t);
  Status control_writes(Task& t, const NodeOutput& out);
};

Status Loop::control_writes(Task& t, const NodeOutput& out) {
  const auto& node = g.nodes[t.node];
  t.writes.reserve(out.writes.size() + out.sends.size() + out.goto_nodes.size() +
                   node.edge_writes.size() + node.join_writes.size() + node.branches.size());
  for (const auto& [name, v] : out.writes) {
    auto c = g.channel(name);
    if (!c || *c >= g.user_channels)
      return Error::invalid_argument("node '" + node.name + "' wrote to unknown channel '" + name + "'");
    t.writes.emplace_back(*c, v);
  }
  auto add_send = [&](const Send& s) -> Status {
    auto n = g.node(s.node);
    if (!n || *n == 0) return Error::invalid_argument("Send to unknown node '" + s.node + "'");
    t.writes.emplace_back(g.tasks_channel, Json{{"node", s.node}, {"arg", s.arg}});
    return ok_status();
  };
  auto add_goto = [&](const std::string& target) -> Status {
    if (target == kEnd) return ok_status();
    auto n = g.node(target);
    if (!n || *n == 0) return Error::invalid_argument("node '" + node.name + "' routes to unknown node '" + target + "'");
    t.writes.emplace_back(g.branch_channel[*n], Json(node.name));
    return ok_status();
  };
  if (out.to_parent) {
    if (o.parents.empty()) return Error::invalid_argument("Command(graph=PARENT) outside a subgraph");
    t.parent_command = out;  // for the enclosing graph: nothing of it applies here
    return ok_status();
  }
  for (const auto& s : out.sends) AP_RETURN_IF_ERROR(add_send(s));
  for (const auto& n : out.goto_nodes) AP_RETURN_IF_ERROR(add_goto(n));
  for (size_t c : node.edge_writes) t.writes.emplace_back(c, Json(node.name));
  for (size_t c : node.join_writes) t.writes.emplace_back(c, Json(node.name));
  if (!node.branches.empty()) {
    // Routers read the state with this task's own writes applied (LangGraph's fresh read).
    std::vector<ValuePtr> fresh = cp.values;
    std::vector<std::vector<Json>> mine(g.user_channels);
    for (const auto& [c, v] : t.writes)
      if (c < g.user_channels) mine[c].push_back(v);
    for (size_t c = 0; c < g.user_channels; ++c)
      if (!mine[c].empty()) {
        AP_ASSIGN_OR_RETURN(fresh[c], apply_writes(g.channels[c], fresh[c], mine[c]));
      }
    for (const auto* b : node.branches) {
      NodeContext::Frame f{&g, &fresh, &node.name, step, &t.arg, t.push, &o.config, {}, 0, "", {}, {}};
      NodeContext ctx(f);
      AP_ASSIGN_OR_RETURN(Route r, guarded(node.name, [&] { return b->router(ctx); }));
      for (const auto& target : r.targets) {
        if (!b->targets.empty() && target != kEnd &&
            std::find(b->targets.begin(), b->targets.end(), target) == b->targets.end())
          return Error::invalid_argument("branch of '" + node.name + "' chose '" + target +
                                         "', not one of its declared targets");
        AP_RETURN_IF_ERROR(add_goto(target));
      }
      for (const auto& s : r.sends) AP_RETURN_IF_ERROR(add_send(s));
    }
  }
  return ok_status();
}

Status Loop::run_task(Task& t) {
  const auto& node = g.nodes[t.node];
  if (!node.fn) {  // START: write the input to the state channels
    const auto& input = cp.values[g.start_channel];
    NodeOutput out = NodeOutput::update(input ? input->value() : Json::object());
    return control_writes(t, out);
  }
  const auto& retry = node.retry;
  double interval = retry.initial_interval_s;
  for (int attempt = 1;; ++attempt) {
    NodeContext::Frame f{&g, &cp.values, &node.name, step, &t.arg, t.push, &o.config,
                         t.resume, 0, {}, {}, {}};  // interrupt id: computed on first interrupt()
    f.opts = &o;
    f.saver = persistent() ? saver : nullptr;
    f.task_id = t.id;
    f.checkpoint_id = cp.id;
    f.fresh_resume = t.fresh_resume;
    NodeContext ctx(f);
    auto out = guarded(node.name, [&] { return node.fn(ctx); });
    t.custom = std::move(f.custom);
    if (!f.pending.empty()) {
      t.interrupts = std::move(f.pending);
      return ok_status();
    }
    if (out) {
      t.writes.clear();
      return control_writes(t, *out);
    }
    bool retryable = std::find(retry.retry_on.begin(), retry.retry_on.end(), out.error().code) !=
                     retry.retry_on.end();
    if (attempt >= retry.max_attempts || !retryable) {
      t.error = Error{out.error().code, "node '" + node.name + "' failed: " + out.error().message};
      return ok_status();
    }
    // Blocks: retries wait on the running thread (nodes run on worker threads).
    std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    interval = std::min(interval * retry.backoff_factor, retry.max_interval_s);
  }
}

}  // namespace

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
  if (loop.persistent()) {
    AP_ASSIGN_OR_RETURN(auto tuple, saver->get_tuple({o.thread_id, o.checkpoint_ns, o.checkpoint_id}));
    if (!tuple && !o.checkpoint_id.empty()) return Error::not_found("checkpoint not found");
    if (tuple) {
      loop.cp = adapt(g, tuple->checkpoint);
      loop.config = tuple->config;
      loop.parent_id = tuple->parent ? tuple->parent->checkpoint_id : "";
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
    std::vector<std::pair<size_t, Json>> null_writes;
    for (const auto& w : loop.pending)
      if (w.task_id == kNullTaskId && !is_special_write(w.channel))
        if (auto c = g.channel(w.channel)) null_writes.emplace_back(*c, w.value ? *w.value : Json());
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
    // Match stored writes to tasks: a task with ordinary writes (or __no_writes__) finished and
    // is not run again; one with only an interrupt or an error runs again.
    for (auto& t : tasks) {
      std::vector<std::pair<size_t, Json>> writes;
      for (const auto& w : loop.pending) {
        if (w.task_id != t.id) continue;
        if (w.channel == kResumeChannel && w.value && w.value->is_array()) {
          t.resume.assign(w.value->begin(), w.value->end());
        } else if (!is_special_write(w.channel)) {
          t.done = true;
          if (auto c = g.channel(w.channel)) writes.emplace_back(*c, w.value ? *w.value : Json());
        }
      }
      if (t.done) t.writes = std::move(writes);
    }
    std::map<std::string, std::string> interrupt_task;  // interrupt id -> unfinished task id
    for (const auto& w : loop.pending) {
      if (w.channel != kInterruptChannel || !w.value || !w.value->is_array()) continue;
      bool unfinished = std::any_of(tasks.begin(), tasks.end(),
                                    [&](const Task& t) { return t.id == w.task_id && !t.done; });
      if (unfinished)
        for (const auto& i : *w.value) interrupt_task[i.value("id", "")] = w.task_id;
    }
    if (input.resume) {
      const Json& r = *input.resume;
      if (interrupt_task.empty())
        return Error::invalid_argument("the thread has no pending interrupt to resume");
      bool by_id = r.is_object() && !r.empty();
      for (auto it = r.begin(); by_id && it != r.end(); ++it) by_id = interrupt_task.count(it.key()) > 0;
      if (by_id) {
        for (auto it = r.begin(); it != r.end(); ++it)
          for (auto& t : tasks)
            if (t.id == interrupt_task[it.key()]) {
              t.resume.push_back(it.value());
              // Kept keyed by id: a subgraph task passes it on to its child as is.
              if (!t.fresh_resume || !t.fresh_resume->is_object()) t.fresh_resume = Json::object();
              (*t.fresh_resume)[it.key()] = it.value();
            }
      } else {
        // One value: for the first interrupted task in path order.
        for (auto& t : tasks)
          if (!t.done && std::any_of(interrupt_task.begin(), interrupt_task.end(),
                                     [&](const auto& p) { return p.second == t.id; })) {
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
    if (tasks.empty()) break;
    if (result.steps >= limit)
      return Error::resource_exhausted("GRAPH_RECURSION_LIMIT: recursion limit of " +
                                       std::to_string(o.recursion_limit) +
                                       " reached without hitting a stop condition");
    if (should_interrupt(g, loop.cp, o.interrupt_before, tasks)) {
      loop.cp.interrupt_seen = loop.cp.versions;
      AP_RETURN_IF_ERROR(loop.flush());
      result.interrupted = true;
      break;
    }
    ++loop.step;
    // Run the step: one task inline, several concurrently when the caller gave a runner.
    std::vector<Task*> todo;
    for (auto& t : tasks)
      if (!t.done) todo.push_back(&t);
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
      for (auto& c : t.custom) loop.emit("custom", g.nodes[t.node].name, std::move(c));
      // Each finished task's writes are durable at once (a crash keeps finished siblings); a
      // lone task's writes go with the step's checkpoint instead.
      if (!single || !t.interrupts.empty() || t.error) AP_RETURN_IF_ERROR(loop.put_task_writes(t));
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
    AP_RETURN_IF_ERROR(loop.save("loop"));
    if (o.on_event) {
      for (const auto& t : tasks) {
        Json upd = Json::object();
        for (const auto& [c, v] : t.writes)
          if (c < g.user_channels) upd[g.channels[c].name] = v;
        if (t.node != 0) loop.emit("updates", g.nodes[t.node].name, Json{{g.nodes[t.node].name, upd}});
      }
      loop.emit("values", "", state_json(g, loop.cp.values));
    }
    if (should_interrupt(g, loop.cp, o.interrupt_after, tasks)) {
      loop.cp.interrupt_seen = loop.cp.versions;
      AP_RETURN_IF_ERROR(loop.flush());
      result.interrupted = true;
      break;
    }
  }
  AP_RETURN_IF_ERROR(loop.finish());
  result.values = state_json(g, loop.cp.values);
  result.checkpoint = loop.config;
  return result;
}

// ---- State ------------------------------------------------------------------------------

namespace {

StateSnapshot snapshot(const Impl& g, const CheckpointTuple& t) {
  StateSnapshot s;
  Checkpoint cp = adapt(g, t.checkpoint);
  s.values = state_json(g, cp.values);
  for (const auto& task : plan(g, cp, t.metadata.step + 1, t.config.checkpoint_ns)) {
    bool done = false;
    for (const auto& w : t.pending_writes)
      done = done || (w.task_id == task.id && !is_special_write(w.channel));
    if (!done) s.next.push_back(g.nodes[task.node].name);
  }
  for (const auto& w : t.pending_writes)
    if (w.channel == kInterruptChannel && w.value && w.value->is_array())
      for (const auto& i : *w.value) s.interrupts.push_back({i.value("id", ""), i.value("value", Json()), ""});
  s.config = t.config;
  s.parent_config = t.parent;
  s.metadata = t.metadata.to_json();
  s.created_at = t.checkpoint.ts;
  return s;
}

}  // namespace

Result<StateSnapshot> CompiledGraph::get_state(Checkpointer& cp, const CheckpointConfig& config) const {
  AP_ASSIGN_OR_RETURN(auto t, cp.get_tuple(config));
  if (!t) return Error::not_found("no checkpoint for this thread");
  return snapshot(*impl_, *t);
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
                                                     const Json& values,
                                                     const std::string& as_node) const {
  const Impl& g = *impl_;
  if (!values.is_object() && !values.is_null())
    return Error::invalid_argument("values must be an object of channel values");
  AP_ASSIGN_OR_RETURN(auto tuple, saver.get_tuple(config));
  if (!tuple) return Error::not_found("no checkpoint for this thread");
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
