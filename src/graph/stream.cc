// The `checkpoints` and `tasks` stream events (RunOptions::stream_debug), in the shapes of
// LangGraph's map_debug_checkpoint / map_debug_tasks / map_debug_task_results.
#include "graph/internal/loop.h"

namespace ap::graph::internal {
namespace {

Json config_json(const std::string& thread, const std::string& ns, const std::string& id) {
  return Json{{"configurable", {{"thread_id", thread}, {"checkpoint_ns", ns}, {"checkpoint_id", id}}}};
}

Json interrupts_json(const std::vector<Interrupt>& list) {
  Json out = Json::array();
  for (const auto& i : list) out.push_back({{"value", i.value}, {"id", i.id}});
  return out;
}

}  // namespace

void Loop::emit_checkpoint(const std::vector<Task>& tasks) {
  if (!o.on_event || !o.stream_debug || o.task_events_only) return;
  Json parents = Json::object();
  for (const auto& [ns, id] : o.parents) parents[ns] = id;
  Json next = Json::array(), list = Json::array();
  for (const auto& t : tasks) {
    next.push_back(g.nodes[t.node].name);
    Json task{{"id", t.id}, {"name", g.nodes[t.node].name}, {"interrupts", interrupts_json(t.interrupts)},
              {"state", nullptr}};
    if (t.error) task["error"] = {{"error", std::string(code_name(t.error->code))}, {"message", t.error->message}};
    list.push_back(std::move(task));
  }
  Json data{{"config", config_json(o.thread_id, o.checkpoint_ns, cp.id)},
            {"parent_config", prev_id.empty() ? Json(nullptr) : config_json(o.thread_id, o.checkpoint_ns, prev_id)},
            {"values", state_json(g, cp.values)},
            {"metadata", {{"source", md.source}, {"step", md.step}, {"parents", parents}}},
            {"next", std::move(next)},
            {"tasks", std::move(list)}};
  emit("checkpoints", "", std::move(data), md.step);
}

void Loop::emit_task_start(const Task& t) {
  if (!o.on_event || !o.stream_debug || t.node == 0) return;  // __start__ is hidden, as in LangGraph
  Json triggers = Json::array();
  for (size_t c : t.triggers) triggers.push_back(g.channels[c].name);
  Json input = t.push ? t.arg : state_json(g, cp.values);
  emit("tasks", g.nodes[t.node].name,
       Json{{"id", t.id}, {"name", g.nodes[t.node].name}, {"input", std::move(input)}, {"triggers", std::move(triggers)},
            {"interrupts", Json::array()}},
       step);
}

void Loop::emit_task_result(const Task& t) {
  if (!o.on_event || !o.stream_debug || t.node == 0) return;
  Json result = Json::object();
  for (const auto& [c, v] : t.writes)
    if (c < g.user_channels) add_result_write(result, g.channels[c].name, v);
  Json error = t.error ? Json{{"error", std::string(code_name(t.error->code))}, {"message", t.error->message}} : Json();
  emit("tasks", g.nodes[t.node].name,
       Json{{"id", t.id}, {"name", g.nodes[t.node].name}, {"error", std::move(error)}, {"result", std::move(result)},
            {"interrupts", interrupts_json(t.interrupts)}},
       step);
}

}  // namespace ap::graph::internal
