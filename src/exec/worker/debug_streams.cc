#include "exec/worker/debug_streams.h"

#include "common/clock.h"

namespace ap::exec {
namespace {

// The task ids of the namespace's enclosing tasks ("<node>:<task id>|<node>:<task id>|..."),
// outermost first.
void add_enclosing_tasks(Json& ids, std::string_view ns) {
  while (!ns.empty()) {
    const size_t bar = ns.find('|');
    const std::string_view part = ns.substr(0, bar);
    if (const size_t colon = part.rfind(':'); colon != std::string_view::npos) ids.push_back(std::string(part.substr(colon + 1)));
    if (bar == std::string_view::npos) break;
    ns.remove_prefix(bar + 1);
  }
}

}  // namespace

DebugStreams::DebugStreams(const std::set<std::string>& modes, std::string run_id, Json metadata, bool subgraphs,
                           Publish publish)
    : checkpoints_(modes.count("checkpoints") > 0),
      tasks_(modes.count("tasks") > 0),
      debug_(modes.count("debug") > 0),
      events_(modes.count("events") > 0),
      subgraphs_(subgraphs),
      run_id_(std::move(run_id)),
      metadata_(metadata.is_object() ? std::move(metadata) : Json::object()),
      publish_(std::move(publish)) {}

Json DebugStreams::parents(std::string_view ns) const {
  Json ids = Json::array({run_id_});
  add_enclosing_tasks(ids, ns);
  return ids;
}

void DebugStreams::chain(const std::string& ns, const std::string& kind, const std::string& name,
                         const std::string& id, Json tags, Json metadata, Json data, bool root) {
  Json event{{"event", kind},
             {"name", name},
             {"run_id", id},
             {"tags", std::move(tags)},
             {"metadata", std::move(metadata)},
             {"data", std::move(data)},
             {"parent_ids", root ? Json::array() : parents(ns)}};
  publish_("events", event);
}

void DebugStreams::begin(const Json& input) {
  if (!events_) return;
  root_input_ = input;
  chain("", "on_chain_start", "LangGraph", run_id_, Json::array(), metadata_, Json{{"input", input}}, true);
}

void DebugStreams::end(const Json& output) {
  if (!events_) return;
  chain("", "on_chain_end", "LangGraph", run_id_, Json::array(), metadata_,
        Json{{"output", output}, {"input", root_input_}}, true);
}

void DebugStreams::on_event(const graph::StreamEvent& e) {
  const std::string suffix = e.ns.empty() ? "" : "|" + e.ns;
  if (!e.ns.empty() && !subgraphs_) {  // a subgraph's task, for `events` only
    if (e.mode == "tasks") to_events(e);
    return;
  }
  if (e.mode == "checkpoints") {
    if (checkpoints_) publish_("checkpoints" + suffix, e.data);
    if (debug_) {
      // LangGraph's debug checkpoints also name the checkpoint and its parent directly.
      Json payload = e.data;
      auto as_checkpoint = [](const Json& config) {
        return config.is_object() ? config.value("configurable", Json()) : Json();
      };
      payload["checkpoint"] = as_checkpoint(e.data.value("config", Json()));
      payload["parent_checkpoint"] = as_checkpoint(e.data.value("parent_config", Json()));
      publish_("debug" + suffix, Json{{"step", e.step},
                                      {"timestamp", format_rfc3339(std::chrono::system_clock::now())},
                                      {"type", "checkpoint"},
                                      {"payload", std::move(payload)}});
    }
    return;
  }
  if (e.mode != "tasks") return;
  const bool result = e.data.contains("result");
  if (tasks_) publish_("tasks" + suffix, e.data);
  if (debug_)
    publish_("debug" + suffix, Json{{"step", e.step},
                                    {"timestamp", format_rfc3339(std::chrono::system_clock::now())},
                                    {"type", result ? "task_result" : "task"},
                                    {"payload", e.data}});
  to_events(e);
}

void DebugStreams::to_events(const graph::StreamEvent& e) {
  if (!events_) return;
  const bool result = e.data.contains("result");
  const std::string id = e.data.value("id", ""), node = e.data.value("name", "");
  Json md = metadata_;
  md["langgraph_step"] = e.step;
  md["langgraph_node"] = node;
  md["langgraph_path"] = Json::array({"__pregel_pull", node});
  md["langgraph_checkpoint_ns"] = (e.ns.empty() ? "" : e.ns + "|") + node + ":" + id;
  Json tags = Json::array({"graph:step:" + std::to_string(e.step)});
  if (!result) {
    md["langgraph_triggers"] = e.data.value("triggers", Json::array());
    const Json input = e.data.value("input", Json());
    {
      std::lock_guard lock(mu_);
      running_[id] = Task{input, md};
    }
    chain(e.ns, "on_chain_start", node, id, tags, md, Json{{"input", input}}, false);
    return;
  }
  Task task;
  {
    std::lock_guard lock(mu_);
    if (auto it = running_.find(id); it != running_.end()) {
      task = std::move(it->second);
      running_.erase(it);
    }
  }
  const Json output = e.data.value("result", Json::object());
  chain(e.ns, "on_chain_stream", node, id, tags, md, Json{{"chunk", output}}, false);
  Json data{{"output", output}, {"input", std::move(task.input)}};
  if (e.data.contains("error") && !e.data["error"].is_null()) data["error"] = e.data["error"];
  chain(e.ns, "on_chain_end", node, id, tags, md, std::move(data), false);
}

void DebugStreams::on_call(const graph::ChunkSource& from, const graph::CallEvent& e) {
  if (!events_) return;
  Json md;
  {
    std::lock_guard lock(mu_);
    if (auto it = running_.find(from.task_id); it != running_.end()) md = it->second.metadata;
  }
  if (!md.is_object()) {  // (a task the engine did not announce: still its node and namespace)
    md = metadata_;
    md["langgraph_node"] = from.node;
    md["langgraph_checkpoint_ns"] = (from.ns.empty() ? "" : from.ns + "|") + from.node + ":" + from.task_id;
  }
  md["checkpoint_ns"] = md["langgraph_checkpoint_ns"];
  if (e.metadata.is_object()) md.update(e.metadata);
  // parent_ids: the graph's run, the enclosing tasks, then the call's task (root first, as
  // LangChain's v2 events).
  Json ids = parents(from.ns);
  ids.push_back(from.task_id);
  publish_("events", Json{{"event", e.event},
                          {"name", e.name},
                          {"run_id", e.run_id},
                          {"tags", Json::array()},
                          {"metadata", std::move(md)},
                          {"data", e.data},
                          {"parent_ids", std::move(ids)}});
}

}  // namespace ap::exec
