#include "exec/worker/execute.h"

#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "control/runs.h"
#include "exec/worker/debug_streams.h"
#include "graph/checkpoint.h"
#include "graph/graph.h"

namespace ap::exec {
namespace {

class Publisher {
 public:
  explicit Publisher(const RunContext& rc) : rc_(rc) {}
  void operator()(const std::string& event, const Json& data) {
    rc_.hub->publish(rc_.run, event, data.dump(-1, ' ', false, Json::error_handler_t::replace));
    if (rc_.on_publish) rc_.on_publish();
  }

 private:
  const RunContext& rc_;
};

std::vector<std::string> nodes_of(const Json& list, const graph::CompiledGraph& g) {
  if (list.is_string() && list == "*") return g.node_names();
  std::vector<std::string> out;
  for (const auto& n : list) out.push_back(n);
  return out;
}

std::set<std::string> message_channels(const Json& spec) {
  std::set<std::string> out;
  const Json channels = spec.value("channels", Json::object());  // items() of a temporary would dangle
  for (const auto& [name, ch] : channels.items()) {
    std::string reducer = ch.is_string() ? ch.get<std::string>() : ch.value("reducer", "");
    if (reducer == "messages") out.insert(name);
  }
  return out;
}

}  // namespace

RunOutcome RunOutcome::failed(std::string error, std::string message) {
  RunOutcome o;
  o.kind = kError;
  o.error = {{"error", std::move(error)}, {"message", std::move(message)}};
  o.result = {{"__error__", o.error}};
  return o;
}

void seal(RunOutcome& out) {
  auto text = [](const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); };
  if (out.result_text.empty()) out.result_text = text(out.result_is_values ? out.values : out.result);
  // A result that is the state: the thread's row (or a temporary thread's run row) takes result_text.
  if (out.has_state && !out.result_is_values && out.values_text.empty()) out.values_text = text(out.values);
  out.values = Json();
  out.result = Json();
}

void publish_error(const RunContext& rc, const RunOutcome& out) {
  Publisher publish(rc);
  publish("metadata", Json{{"run_id", rc.run.to_string()}, {"attempt", rc.attempt}});
  publish("error", out.error);
}

RunOutcome execute_run(const RunContext& rc, const control::LoadedGraph& g, const control::SaverFor& savers) {
  RunOutcome out;
  Publisher publish(rc);
  const Json& k = rc.kwargs;
  const auto modes_list = control::stream_modes(k);
  const std::set<std::string> modes(modes_list.begin(), modes_list.end());
  const bool messages = modes.count("messages") || modes.count("messages-tuple");
  // A /wait run's events go out only while someone reads them (metadata and errors always).
  const bool on_demand = k.value("events_on_demand", false) && rc.events_wanted;
  auto wanted = [&] { return !on_demand || rc.events_wanted(); };
  const auto msg_channels = message_channels(g.spec);
  const std::string thread = rc.thread.to_string(), run_id = rc.run.to_string();
  publish("metadata", Json{{"run_id", run_id}, {"attempt", rc.attempt}});

  auto saver = savers(rc.tenant);
  graph::RunOptions o;
  o.thread_id = thread;
  o.checkpoint_id = k.value("checkpoint_id", "");
  o.checkpoint_ns = k.value("checkpoint_ns", "");
  // A stateless run's first attempt starts on the thread made for it (a later one may find
  // what an earlier attempt saved).
  o.new_thread = k.value("new_thread", false) && rc.attempt == 1 && o.checkpoint_id.empty();
  o.config = k.value("config", Json::object());
  o.recursion_limit = o.config.value("recursion_limit", 25);
  o.interrupt_before = nodes_of(k.value("interrupt_before", Json::array()), *g.graph);
  o.interrupt_after = nodes_of(k.value("interrupt_after", Json::array()), *g.graph);
  const std::string durability = k.value("durability", "async");
  o.durability = durability == "sync" ? graph::Durability::kSync
                 : durability == "exit" ? graph::Durability::kExit
                                        : graph::Durability::kAsync;
  // A temporary thread's first steps rebuild from the run's input (a later attempt that finds
  // no checkpoint of this run starts from it): not saved unless the run stops there.
  // Its end (Worker::finish) deletes it, with its checkpoints: a clean end's is not saved.
  if (k.value("temporary", false)) {
    o.first_saved_step = 1;
    o.thread_dropped_at_end = true;
  }
  // The run's end (Worker::finish) is a durable commit after the run, on the same database.
  o.durable_end_follows = true;
  Json cp_md = rc.metadata.is_object() ? rc.metadata : Json::object();
  cp_md["run_id"] = run_id;
  cp_md["thread_id"] = thread;
  cp_md["graph_id"] = g.graph_id;
  o.checkpoint_metadata = cp_md.dump();
  o.stream_subgraphs = k.value("subgraphs", false);
  o.scope = rc.scope;
  auto stop = rc.stop;
  auto stopping = rc.worker_stopping;
  o.should_stop = [stop, stopping] { return stop->load() != 0 || (stopping && stopping->load()); };
  // messages modes: a model's tokens as they come (on_message_chunk), and the messages a step
  // added that were not streamed, taken from the state after the step (so they carry the ids
  // the reducer gave them), attributed to the node that wrote the channel. `messages-tuple`
  // sends [message or chunk, metadata] as `messages` events; `messages` sends LangGraph's
  // messages/metadata, messages/partial (the message so far) and messages/complete.
  const bool tuples = modes.count("messages-tuple") > 0, partials = modes.count("messages") > 0;
  std::mutex msg_mu;  // chunks come from node threads, values from the engine's thread
  int step = 0;
  std::map<std::string, size_t> seen;        // message channel -> messages already in the state
  struct Writer {
    std::string node, task_id;
    std::vector<std::string> triggers;
  };
  std::map<std::string, Writer> writer;  // message channel -> the task that last wrote it
  std::map<std::string, Json> streamed;       // message id -> the message so far (from chunks)
  bool first_values = true;
  // As LangGraph's: the run's metadata (assistant, graph, the client's keys), the step, and the
  // task: its node, what triggered it, and its namespace ("<node>:<task id>" under its graph's).
  auto meta_for = [&](const std::string& node, int at_step, const std::string& ns, const std::string& task_id,
                      const std::vector<std::string>& triggers) {
    Json m = cp_md;
    m["langgraph_step"] = at_step;
    m["langgraph_node"] = node;
    m["langgraph_triggers"] = triggers;
    m["langgraph_path"] = Json::array({"__pregel_pull", node});
    // (A message no task wrote, as an update through __start__: the graph's namespace.)
    const std::string task_ns = task_id.empty() ? ns : (ns.empty() ? "" : ns + "|") + node + ":" + task_id;
    m["langgraph_checkpoint_ns"] = task_ns;
    m["checkpoint_ns"] = task_ns;
    m["run_attempt"] = rc.attempt;
    m["tags"] = Json::array({"graph:step:" + std::to_string(at_step)});
    return m;
  };
  auto complete = [&](const Json& msg, const Json& meta, const std::string& suffix) {
    if (tuples) publish("messages" + suffix, Json::array({msg, meta}));
    if (partials) {
      publish("messages/metadata" + suffix, Json{{msg.value("id", ""), {{"metadata", meta}}}});
      publish("messages/complete" + suffix, Json::array({msg}));
    }
  };
  // Namespaces as the run's graph sees them: a run on a subgraph's namespace (`checkpoint_ns`) is
  // the root of its stream, as its engine events already are.
  auto relative = [root = o.checkpoint_ns](const std::string& ns) {
    if (root.empty() || ns.compare(0, root.size(), root) != 0) return ns;
    if (ns.size() == root.size()) return std::string();
    return ns[root.size()] == '|' ? ns.substr(root.size() + 1) : ns;
  };
  if (messages)
    o.on_message_chunk = [&](const graph::ChunkSource& from, const Json& chunk) {
      std::lock_guard lock(msg_mu);
      const std::string ns = relative(from.ns);
      const std::string suffix = ns.empty() ? "" : "|" + ns;
      const Json meta = meta_for(from.node, step, ns, from.task_id, from.triggers);
      if (tuples) publish("messages" + suffix, Json::array({chunk, meta}));
      const std::string id = chunk.value("id", "");
      auto [it, fresh] = streamed.try_emplace(id, chunk);
      Json& so_far = it->second;
      if (!fresh) {
        so_far["content"] = so_far.value("content", "") + chunk.value("content", "");
        if (!chunk.value("tool_calls", Json::array()).empty()) so_far["tool_calls"] = chunk["tool_calls"];
        if (!chunk.value("response_metadata", Json::object()).empty()) so_far["response_metadata"] = chunk["response_metadata"];
      }
      if (partials) {
        if (fresh) publish("messages/metadata" + suffix, Json{{id, {{"metadata", meta}}}});
        Json whole = so_far;
        whole["type"] = "ai";
        whole.erase("tool_call_chunks");
        publish("messages/partial" + suffix, Json::array({whole}));
      }
    };
  DebugStreams debug(modes, run_id, cp_md, o.stream_subgraphs, [&](const std::string& event, const Json& data) {
    if (wanted()) publish(event, data);
  });
  o.stream_debug = debug.wanted();
  if (debug.wants_calls()) {
    o.on_call_event = [&debug, &relative](const graph::ChunkSource& from, const graph::CallEvent& e) {
      const std::string ns = relative(from.ns);
      debug.on_call(graph::ChunkSource{from.node, ns, from.task_id, from.triggers}, e);
    };
    o.subgraph_tasks = true;  // `events` shows what runs in subgraphs, subgraphs: true or not
  }
  if (on_demand && !messages) o.want_values = wanted;  // the messages modes read every step's values
  o.on_event = [&](const graph::StreamEvent& raw) {
    std::optional<graph::StreamEvent> rebased;  // (a subgraph's event in a run on a subgraph's namespace)
    if (!raw.ns.empty() && !o.checkpoint_ns.empty()) {
      rebased = raw;
      rebased->ns = relative(raw.ns);
    }
    const graph::StreamEvent& e = rebased ? *rebased : raw;
    const std::string suffix = e.ns.empty() ? "" : "|" + e.ns;
    if (e.mode == "checkpoints" || e.mode == "tasks") {
      debug.on_event(e);
    } else if (e.mode == "values") {
      std::unique_lock lock(msg_mu);  // the bookkeeping only: a big state is written unlocked
      if (e.ns.empty()) ++step;  // the root graph's steps
      if (messages && e.ns.empty() && e.data.is_object()) {
        for (const auto& ch : msg_channels) {
          auto it = e.data.find(ch);
          if (it == e.data.end() || !it->is_array()) continue;
          size_t& n = seen[ch];
          if (!first_values)
            for (size_t k = n; k < it->size(); ++k) {
              const Json& msg = (*it)[k];
              if (msg.is_object() && streamed.count(msg.value("id", ""))) {  // went out as chunks
                // `messages` ends a streamed message with the whole of it, as it is in the state.
                if (partials) publish("messages/complete", Json::array({msg}));
                continue;
              }
              const Writer& w = writer[ch];
              complete(msg, meta_for(w.node, step - 1, e.ns, w.task_id, w.triggers), "");
            }
          n = it->size();
        }
        first_values = false;
      }
      lock.unlock();
      if (modes.count("values") && wanted()) publish("values" + suffix, e.data);
    } else if (e.mode == "updates") {
      if (modes.count("updates") && wanted()) publish("updates" + suffix, e.data);
      std::lock_guard lock(msg_mu);
      if (e.ns.empty() && e.data.is_object())
        for (const auto& [node, writes] : e.data.items())
          if (writes.is_object())
            for (const auto& [ch, v] : writes.items())
              if (msg_channels.count(ch)) writer[ch] = Writer{node, e.task_id, e.triggers};
    } else if (e.mode == "custom" && modes.count("custom") && wanted()) {
      publish("custom" + suffix, e.data);
    }
  };

  graph::Input input;
  const Json command = k.value("command", Json());
  if (command.is_object()) {
    // (A null resume is none, as LangGraph's: it answers nothing.)
    if (command.contains("resume") && !command["resume"].is_null()) input.resume = command["resume"];
    if (command.contains("update") && !command["update"].is_null()) input.update = command["update"];
    if (command.contains("goto")) {
      const Json& go = command["goto"];
      for (const auto& n : go.is_array() ? go : Json::array({go}))
        if (n.is_string()) input.goto_nodes.push_back(n);
        else if (n.is_object() && n.contains("node")) input.goto_nodes.push_back(n["node"]);
    }
  } else if (k.contains("input") && k["input"].is_object()) {
    input.values = k["input"];
  }
  // A later attempt (the first worker died) continues from the run's last checkpoint when it
  // got that far: finished tasks are not run again.
  if (rc.attempt > 1) {
    graph::ListOptions lo;
    lo.thread_id = thread;
    lo.checkpoint_ns = "";
    lo.limit = 1;
    lo.filter.emplace_back("run_id", Json(run_id).dump());
    auto mine = saver->list(lo);
    if (mine && !mine->empty()) {
      input = graph::Input{};
      o.checkpoint_id.clear();
    }
  }

  debug.begin(input.values ? *input.values : command);
  // The `events` mode's end event needs the tree; a run in a subgraph's namespace leaves the
  // thread's (root) state to be read back.
  o.final_values_as_text = !debug.wanted() && o.checkpoint_ns.empty();
  auto r = g.graph->invoke(input, o, saver.get());
  if (!r && r.error().code == Code::kCancelled) {
    int why = stop->load();
    if (why == kCancelInterrupt || why == kCancelRollback) {
      out.kind = RunOutcome::kCancelled;
      out.cancel_action = why == kCancelRollback ? "rollback" : "interrupt";
    } else {
      out.kind = RunOutcome::kReleased;
      return out;
    }
  } else if (!r) {
    std::string name = r.error().code == Code::kResourceExhausted ? "GraphRecursionError" : std::string(code_name(r.error().code));
    out = RunOutcome::failed(name, r.error().message);
    publish("error", out.error);
  }
  // Rolled back: the run's checkpoints go too (while the run still holds the thread, so the run
  // waiting for it starts from what was there before).
  const bool rolled_back = out.kind == RunOutcome::kCancelled && out.cancel_action == "rollback";
  if (rolled_back) {
    if (auto st = saver->delete_run(thread, run_id); !st) {
      out = RunOutcome::failed("InternalError", "rollback could not delete the run's checkpoints: " + st.error().message);
      return out;
    }
  }
  const bool temporary = k.value("temporary", false);
  if (out.kind == RunOutcome::kSuccess && !r->values_text.empty()) {
    // Ran to its end with nothing pending: the thread's state is what the run left, as text
    // (not read back from the checkpointer), and the result is that state. A temporary thread
    // is deleted next: no state to keep.
    out.has_state = !temporary;
    out.result_text = std::move(r->values_text);
    out.result_is_values = true;
  } else if (out.kind == RunOutcome::kSuccess && temporary && r->values.is_object()) {
    // A temporary thread that ran to its end is deleted next: no state to read back.
    out.interrupted = r->interrupted;
  } else {
    // The thread's state after the run, as its cached values and interrupts.
    auto snap = g.graph->get_state(*saver, graph::CheckpointConfig{thread, "", ""});
    if (rolled_back && (!snap || snap->config.checkpoint_id.empty())) {
      out.has_state = true;  // nothing before the run: an empty state
    } else if (snap && !snap->config.checkpoint_id.empty()) {
      // Stopped at a breakpoint (interrupt_before/after): its next tasks are listed with no
      // interrupt values.
      auto summary = control::summarize(*snap, out.kind == RunOutcome::kSuccess && r->interrupted);
      out.has_state = true;
      out.values = summary.values;
      out.interrupts = summary.interrupts;
      if (out.kind == RunOutcome::kSuccess) out.interrupted = summary.interrupted || !snap->next.empty();
    }
  }
  if (out.kind == RunOutcome::kSuccess) {
    if (!out.result_is_values) out.result = r->values.is_object() ? r->values : out.values;
    if (r->interrupted || !r->interrupts.empty()) {
      // Paused: at interrupt() calls (their values), or at a breakpoint (an empty list).
      Json list = Json::array();
      for (const auto& i : r->interrupts) {
        list.push_back({{"value", i.value}, {"id", i.id}});
        out.decisions.push_back({"run.interrupted", {{"run_id", run_id}, {"node", i.node}, {"interrupt_id", i.id}, {"value", i.value}}});
      }
      // (A breakpoint after the last node pauses nothing: the thread is idle.)
      if (r->interrupts.empty() && out.interrupted)
        out.decisions.push_back({"run.interrupted", {{"run_id", run_id}, {"breakpoint", true}}});
      out.result["__interrupt__"] = list;
      if (modes.count("updates")) publish("updates", Json{{"__interrupt__", list}});
      if (modes.count("values")) publish("values", Json{{"__interrupt__", list}});
    }
    if (command.is_object() && command.contains("resume") && !command["resume"].is_null())
      out.decisions.push_back({"run.resumed", {{"run_id", run_id}, {"resume", command["resume"]}}});
  } else if (out.kind == RunOutcome::kCancelled) {
    out.result = out.values;
  }
  debug.end(out.result);  // (final_values_as_text is off when this writes anything)
  return out;
}

}  // namespace ap::exec
