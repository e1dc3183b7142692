// The superstep loop's helpers: planning, applying writes, running a task.
#include <algorithm>
#include <thread>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/ids.h"
#include "graph/internal/loop.h"

namespace ap::graph::internal {
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

bool is_interrupt_id(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Json state_json(const Impl& g, const std::vector<ValuePtr>& values) {
  Json out = Json::object();
  for (size_t c = 0; c < g.user_channels; ++c)
    if (values[c]) out[g.channels[c].name] = values[c]->to_json();
  return out;
}

std::string state_text(const Impl& g, const std::vector<ValuePtr>& values) {
  std::map<std::string_view, const ChannelValue*> present;  // in key order, as Json objects are
  for (size_t c = 0; c < g.user_channels; ++c)
    if (values[c]) present.emplace(g.channels[c].name, values[c].get());
  std::string out = "{";
  for (const auto& [name, v] : present) {
    if (out.size() > 1) out += ',';
    out += Json(std::string(name)).dump();
    out += ':';
    v->dump_to(out);
  }
  return out + '}';
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

bool is_special_write(const std::string& channel) {
  return channel == kInterruptChannel || channel == kErrorChannel || channel == kResumeChannel;
}

std::vector<std::pair<size_t, Json>> null_writes_of(const Impl& g, std::span<const PendingWrite> pending) {
  std::vector<std::pair<size_t, Json>> out;
  for (const auto& w : pending)
    if (w.task_id == kNullTaskId && !is_special_write(w.channel))
      if (auto c = g.channel(w.channel)) out.emplace_back(*c, w.value ? *w.value : Json());
  return out;
}

void match_stored_writes(const Impl& g, std::vector<Task>& tasks, std::span<const PendingWrite> pending) {
  for (auto& t : tasks) {
    std::vector<std::pair<size_t, Json>> writes;
    for (const auto& w : pending) {
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
}

void add_result_write(Json& result, const std::string& channel, const Json& value) {
  auto it = result.find(channel);
  if (it == result.end()) {
    result[channel] = value;
    return;
  }
  if (!it->is_object() || !it->contains("$writes")) *it = Json{{"$writes", Json::array({std::move(*it)})}};
  (*it)["$writes"].push_back(value);
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
    f.triggers = &t.triggers;
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

}  // namespace ap::graph::internal
