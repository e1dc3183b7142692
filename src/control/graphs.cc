#include "control/graphs.h"

#include <regex>

#include "graph/spec.h"
#include "store/tx.h"

namespace ap::control {
namespace {

// LangGraph's namespace for default assistant ids (uuid5 of the graph id).
const Uuid kGraphNamespace = *Uuid::parse("6ba7b821-9dad-11d1-80b4-00c04fd430c8");

Status check_graph_id(const std::string& id) {
  static const std::regex re("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  if (!std::regex_match(id, re))
    return Error::invalid_argument("graph id must be 1-128 of A-Z a-z 0-9 . _ - (starting with a letter or digit)");
  return ok_status();
}

Json builtin_json(const std::string& id, const Json& spec) {
  return Json{{"graph_id", id}, {"spec", spec}, {"builtin", true}, {"created_at", nullptr}, {"updated_at", nullptr}};
}

constexpr const char* kGraphJson =
    "jsonb_build_object('graph_id', graph_id, 'spec', spec, 'builtin', false, 'created_by', created_by, "
    "'created_at', created_at, 'updated_at', updated_at)::text";

// Creates a graph's default assistant (version 1) unless it exists. $1 tenant, $2 id, $3 graph.
constexpr const char* kEnsureDefault =
    "WITH a AS (INSERT INTO assistants (tenant_id, assistant_id, graph_id, version, name, metadata) "
    "VALUES ($1, $2, $3, 1, $3, '{\"created_by\": \"system\"}') ON CONFLICT DO NOTHING RETURNING *) "
    "INSERT INTO assistant_versions (tenant_id, assistant_id, version, graph_id, name, metadata) "
    "SELECT tenant_id, assistant_id, 1, graph_id, name, metadata FROM a";

}  // namespace

const std::unordered_map<std::string, Json>& Graphs::builtins() {
  static const std::unordered_map<std::string, Json> b = {
      // A chat graph that needs no model: answers each human message with an echo.
      {"builtin.echo",
       Json::parse(R"({
         "channels": {"messages": "messages", "turns": "last_value"},
         "nodes": {"reply": {"kind": "set", "values": {
           "messages": {"object": {"type": "ai", "content": {"template": "echo: {{messages[-1].content}}"}}},
           "turns": {"increment": "turns"}}}},
         "edges": [["__start__", "reply"], ["reply", "__end__"]]})")},
      // The ReAct tool-calling agent: a model node and a tools node in a loop. The assistant's
      // config names the model route, the tools and the system prompt (configurable.model,
      // configurable.tools, configurable.system_prompt).
      {"builtin.react_agent",
       Json::parse(R"({
         "channels": {"messages": "messages"},
         "nodes": {
           "agent": {"kind": "llm", "model": {"from": "$config.configurable.model"},
                     "system": {"from": "$config.configurable.system_prompt"},
                     "tools": {"from": "$config.configurable.tools"}},
           "tools": {"kind": "tools", "tools": {"from": "$config.configurable.tools"}},
           "route": {"kind": "router",
                     "cases": [{"when": {"path": "messages[-1].tool_calls", "op": "empty"}, "goto": "__end__"}],
                     "default": "tools"}},
         "edges": [["__start__", "agent"], ["agent", "route"], ["tools", "agent"]]})")},
  };
  return b;
}

Graphs::Graphs(const graph::NodeKinds& kinds) : kinds_(kinds) {}
Graphs::~Graphs() = default;

Uuid Graphs::default_assistant_id(std::string_view graph_id) { return Uuid::v5(kGraphNamespace, graph_id); }

Result<std::shared_ptr<const graph::CompiledGraph>> Graphs::compile(const std::string& key, const Json& spec) {
  if (auto hit = cached(key)) return hit->graph;
  AP_ASSIGN_OR_RETURN(auto g, graph::compile_spec(spec, kinds_));
  std::lock_guard lock(mu_);
  if (cache_.size() > 4096) cache_.clear();
  cache_[key] = LoadedGraph{"", spec, g};
  return g;
}

std::optional<LoadedGraph> Graphs::cached(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

Task<Json> Graphs::put(Scope s, std::string graph_id, Json spec, bool* created) {
  AP_CO_RETURN_IF_ERROR(check_graph_id(graph_id));
  if (reserved(graph_id)) co_return Error::invalid_argument("graph ids starting with 'builtin.' are reserved");
  if (!spec.is_object()) co_return Error::invalid_argument("the body must be a graph spec (a JSON object)");
  AP_CO_RETURN_IF_ERROR(graph::compile_spec(spec, kinds_));
  const std::string sql = std::string(
      "INSERT INTO graphs (tenant_id, graph_id, spec, created_by) VALUES ($1, $2, $3::jsonb, $4) "
      "ON CONFLICT (tenant_id, graph_id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now() "
      "RETURNING (xmax = 0), ") + kGraphJson;
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await tx.exec(sql, store::params(s.tenant.to_string(), graph_id, spec.dump(), s.actor)));
  const std::string assistant = default_assistant_id(graph_id).to_string();
  AP_CO_RETURN_IF_ERROR(co_await tx.exec(
      kEnsureDefault,
      store::params(s.tenant.to_string(), assistant, graph_id)));
  AP_CO_RETURN_IF_ERROR(co_await tx.commit());
  if (created) *created = rows.get(0, 0) == "t";
  co_return Json::parse(rows.get(0, 1));
}

Task<Json> Graphs::get(Scope s, std::string graph_id) {
  if (auto it = builtins().find(graph_id); it != builtins().end()) co_return builtin_json(graph_id, it->second);
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kGraphJson + " FROM graphs WHERE tenant_id = $1 AND graph_id = $2",
                                        store::params(s.tenant.to_string(), graph_id)));
  if (rows.empty()) co_return Error::not_found("graph not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<Json> Graphs::list(Scope s) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kGraphJson + " FROM graphs WHERE tenant_id = $1 ORDER BY graph_id",
                                        store::params(s.tenant.to_string())));
  Json items = Json::array();
  for (const auto& [id, spec] : builtins()) items.push_back(builtin_json(id, spec));
  std::sort(items.begin(), items.end(), [](const Json& a, const Json& b) { return a["graph_id"] < b["graph_id"]; });
  for (int i = 0; i < rows.size(); ++i) items.push_back(Json::parse(rows.get(i, 0)));
  co_return Json{{"items", items}};
}

Task<void> Graphs::remove(Scope s, std::string graph_id) {
  if (reserved(graph_id)) co_return Error::invalid_argument("built-in graphs cannot be deleted");
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  AP_CO_ASSIGN_OR_RETURN(auto users, co_await tx.exec(
                                         "SELECT count(*) FROM assistants WHERE tenant_id = $1 AND graph_id = $2 "
                                         "AND assistant_id <> $3",
                                         store::params(s.tenant.to_string(), graph_id,
                                                       default_assistant_id(graph_id).to_string())));
  if (users.get(0, 0) != "0")
    co_return Error::failed_precondition("the graph is used by " + std::string(users.get(0, 0)) +
                                         " assistant(s): delete them first");
  AP_CO_RETURN_IF_ERROR(co_await tx.exec("DELETE FROM assistants WHERE tenant_id = $1 AND assistant_id = $2",
                                         store::params(s.tenant.to_string(), default_assistant_id(graph_id).to_string())));
  AP_CO_ASSIGN_OR_RETURN(auto del, co_await tx.exec_and_commit("DELETE FROM graphs WHERE tenant_id = $1 AND graph_id = $2",
                                                               store::params(s.tenant.to_string(), graph_id)));
  if (del.affected() == 0) co_return Error::not_found("graph not found");
  co_return ok_status();
}

Task<bool> Graphs::exists(Scope s, std::string graph_id) {
  if (builtins().count(graph_id)) co_return true;
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant,
                                                                 "SELECT 1 FROM graphs WHERE tenant_id = $1 AND graph_id = $2",
                                                                 store::params(s.tenant.to_string(), graph_id)));
  co_return !rows.empty();
}

Task<LoadedGraph> Graphs::load(Scope s, std::string graph_id, std::string version) {
  LoadedGraph out;
  out.graph_id = graph_id;
  std::string key;
  if (!version.empty() && !reserved(graph_id)) {
    if (auto hit = cached(s.tenant.to_string() + '|' + graph_id + '|' + version)) {
      hit->graph_id = graph_id;
      co_return *hit;
    }
  }
  if (auto it = builtins().find(graph_id); it != builtins().end()) {
    out.spec = it->second;
    key = "builtin|" + graph_id;
  } else {
    AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                          *s.pool, s.tenant,
                                          "SELECT spec::text, updated_at::text FROM graphs WHERE tenant_id = $1 AND graph_id = $2",
                                          store::params(s.tenant.to_string(), graph_id)));
    if (rows.empty()) co_return Error::not_found("graph '" + graph_id + "' not found");
    out.spec = Json::parse(rows.get(0, 0));
    key = s.tenant.to_string() + '|' + graph_id + '|' + std::string(rows.get(0, 1));
  }
  auto g = compile(key, out.spec);
  if (!g) co_return Error::failed_precondition("graph '" + graph_id + "' cannot run here: " + g.error().message);
  out.graph = *g;
  co_return out;
}

Task<void> ensure_default_assistant(Scope s, std::string graph_id) {
  AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
      *s.pool, s.tenant,
      kEnsureDefault,
      store::params(s.tenant.to_string(), Graphs::default_assistant_id(graph_id).to_string(), graph_id)));
  co_return ok_status();
}

}  // namespace ap::control
