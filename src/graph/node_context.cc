// NodeContext: what a node sees, and run_subgraph.
#include "graph/internal/loop.h"

namespace ap::graph {

using namespace internal;

const std::string& NodeContext::node() const { return *f_.node; }
int NodeContext::step() const { return f_.step; }
const Json& NodeContext::arg() const { return *f_.arg; }
bool NodeContext::is_send() const { return f_.is_send; }
const Json& NodeContext::config() const { return *f_.config; }
void NodeContext::emit(Json value) { f_.custom.push_back(std::move(value)); }

ChunkSource NodeContext::source() const {
  ChunkSource from{*f_.node, f_.opts->checkpoint_ns, f_.task_id, {}};
  if (f_.triggers)
    for (size_t c : *f_.triggers) from.triggers.push_back(f_.g->channels[c].name);
  return from;
}

void NodeContext::stream_message_chunk(const Json& chunk) {
  if (!f_.opts || !f_.opts->on_message_chunk) return;
  f_.opts->on_message_chunk(source(), chunk);
}

bool NodeContext::wants_call_events() const { return f_.opts && f_.opts->on_call_event; }

void NodeContext::call_event(const CallEvent& e) {
  if (wants_call_events()) f_.opts->on_call_event(source(), e);
}

RunScope* NodeContext::scope() const { return f_.opts ? f_.opts->scope.get() : nullptr; }

const std::string& NodeContext::checkpoint_ns() const {
  static const std::string kRoot;
  return f_.opts ? f_.opts->checkpoint_ns : kRoot;
}

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
  o.new_thread = false;  // the child's own checkpoints decide (a retried task finds them)
  o.final_values_as_text = false;  // the parent reads the child's values
  o.durable_end_follows = false;   // the parent's next step follows, not the embedder's commit
  o.thread_dropped_at_end = false;  // the parent goes on: its step needs the child's end
  if (!f_.opts->stream_subgraphs) {
    o.on_message_chunk = nullptr;
    if (!o.subgraph_tasks) {
      o.on_event = nullptr;
      o.on_call_event = nullptr;
    } else {
      o.task_events_only = true;
    }
  }
  const std::string& parent_ns = f_.opts->checkpoint_ns;
  o.checkpoint_ns = subgraph_ns(parent_ns, *f_.node, f_.task_id);
  if (o.on_event) {
    // The child's events carry its namespace (innermost first set wins).
    o.on_event = [parent = std::move(o.on_event), ns = o.checkpoint_ns](const StreamEvent& e) {
      StreamEvent copy = e;
      if (copy.ns.empty()) copy.ns = ns;
      parent(copy);
    };
  }
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
      // (tasks whose writes are saved still need their step finished: continued below)
      if (state->tasks.empty() && state->interrupts.empty()) return state->values();
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

}  // namespace ap::graph
