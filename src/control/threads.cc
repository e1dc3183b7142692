#include "control/threads.h"

#include <set>

#include "control/blocking.h"
#include "control/graphs.h"
#include "graph/graph.h"
#include "store/tx.h"

namespace ap::control {
namespace {

constexpr const char* kThreadJson =
    "json_build_object('thread_id', thread_id, 'created_at', created_at, 'updated_at', updated_at, "
    "'metadata', metadata, 'status', status, 'values', coalesce(\"values\", '{}'::json), "
    "'interrupts', interrupts, 'config', config, 'error', error)::text";

Json checkpoint_json(const graph::CheckpointConfig& c) {
  return {{"thread_id", c.thread_id}, {"checkpoint_ns", c.checkpoint_ns}, {"checkpoint_id", c.checkpoint_id},
          {"checkpoint_map", nullptr}};
}

Json empty_state() {
  return {{"values", Json::object()}, {"next", Json::array()},     {"tasks", Json::array()},
          {"checkpoint", nullptr},     {"metadata", nullptr},       {"created_at", nullptr},
          {"parent_checkpoint", nullptr}, {"interrupts", Json::array()}};
}

// "ttl": minutes, or {"strategy": "delete", "ttl": minutes}.
Result<std::optional<double>> ttl_minutes(const Json& body) {
  auto it = body.find("ttl");
  if (it == body.end() || it->is_null()) return std::optional<double>();
  Json t = *it;
  if (t.is_object()) {
    if (t.value("strategy", "delete") != "delete") return Error::invalid_argument("ttl strategy must be delete");
    t = t.value("ttl", Json());
  }
  if (!t.is_number() || t.get<double>() <= 0) return Error::invalid_argument("'ttl' must be a positive number of minutes");
  return std::optional<double>(t.get<double>());
}

Result<std::string> thread_filters(const Json& body, std::vector<store::Param>& params) {
  std::string where = "tenant_id = $1";
  for (const char* f : {"metadata", "values"}) {
    AP_ASSIGN_OR_RETURN(Json m, object_field(body, f));
    if (m.empty()) continue;
    params.emplace_back(m.dump());
    const std::string p = "$" + std::to_string(params.size()) + "::jsonb";
    // `values` is json, which (unlike jsonb) holds \u0000: such a state matches no filter
    // instead of failing the search (CASE: the cast is not tried on it).
    where += std::string(f) == "values"
                 ? " AND CASE WHEN strpos(\"values\"::text, '\\u0000') > 0 THEN false ELSE \"values\"::jsonb @> " + p + " END"
                 : " AND metadata @> " + p;
  }
  if (auto st = body.find("status"); st != body.end() && !st->is_null()) {
    static const std::set<std::string> ok = {"idle", "busy", "interrupted", "error"};
    if (!st->is_string() || !ok.count(st->get<std::string>()))
      return Error::invalid_argument("'status' must be idle, busy, interrupted or error");
    params.emplace_back(st->get<std::string>());
    where += " AND status = $" + std::to_string(params.size());
  }
  if (auto ids = body.find("ids"); ids != body.end() && !ids->is_null()) {
    if (!ids->is_array()) return Error::invalid_argument("'ids' must be a list of thread ids");
    std::string list = "{";
    for (const auto& i : *ids) {
      if (!i.is_string() || !Uuid::parse(i.get<std::string>())) return Error::invalid_argument("'ids' must be thread ids");
      if (list.size() > 1) list += ',';
      list += i.get<std::string>();
    }
    params.emplace_back(list + "}");
    where += " AND thread_id = ANY ($" + std::to_string(params.size()) + "::uuid[])";
  }
  return where;
}

// `select` for state reads: top-level fields, or "values.<key>" for single state keys (the SDK's
// getState/getHistory option). Null or empty: everything. Checked before any work.
Status check_state_select(const Json& select) {
  static const std::set<std::string> kFields = {"values",     "next",     "tasks",   "checkpoint", "metadata",
                                                "created_at", "parent_checkpoint", "interrupts"};
  if (select.is_null()) return {};
  const char* shape =
      "'select' must be a list of state fields (values, next, tasks, checkpoint, metadata, created_at, "
      "parent_checkpoint, interrupts) or values.<key>";
  if (!select.is_array()) return Error::invalid_argument(shape);
  for (const auto& f : select) {
    if (!f.is_string()) return Error::invalid_argument(shape);
    const std::string& name = f.get_ref<const std::string&>();
    if (!kFields.count(name) && !(name.starts_with("values.") && name.size() > 7))
      return Error::invalid_argument(std::string(shape) + ": unknown field '" + name + "'");
  }
  return {};
}

Json select_state(Json state, const Json& select) {
  if (!select.is_array() || select.empty()) return state;
  Json out = Json::object();
  for (const auto& f : select) {
    const std::string& name = f.get_ref<const std::string&>();
    if (!name.starts_with("values.")) {
      out[name] = state[name];
      continue;
    }
    if (!out.contains("values") || !out["values"].is_object()) out["values"] = Json::object();
    const Json& values = state["values"];
    const std::string key = name.substr(7);
    if (values.is_object() && values.contains(key)) out["values"][key] = values[key];
  }
  return out;
}

// A task's `state`: its subgraph's state when it was read (get_state with subgraphs); null
// otherwise, and for a task that runs no subgraph.
Json task_state(const graph::SnapshotTask& task) {
  if (!task.state) return nullptr;
  const graph::StateSnapshot& child = *task.state;
  if (!child.config.checkpoint_id.empty()) return state_json(child);
  Json empty = empty_state();
  empty["checkpoint"] = {{"thread_id", child.config.thread_id}, {"checkpoint_ns", child.config.checkpoint_ns}};
  return empty;
}

// A task's `checkpoint`, as LangGraph's server gives it when the subgraph's state was not read:
// the subgraph's thread and namespace (none for a failed task).
Json task_checkpoint(const graph::StateSnapshot& snap, const graph::SnapshotTask& task) {
  if (task.state || task.ns.empty() || !task.error.is_null()) return nullptr;
  return {{"thread_id", snap.config.thread_id}, {"checkpoint_ns", task.ns}};
}

}  // namespace

ThreadSummary summarize(const graph::StateSnapshot& snap, bool paused) {
  ThreadSummary t;
  t.values = snap.values();
  for (const auto& i : snap.interrupts) {
    t.interrupts[i.task_id.empty() ? i.node : i.task_id].push_back({{"value", i.value}, {"id", i.id}});
    t.interrupted = true;
  }
  if (paused && !t.interrupted && !snap.next.empty()) {
    for (const auto& task : snap.tasks)
      if (!task.done) t.interrupts[task.id] = Json::array();
    t.interrupted = true;
  }
  return t;
}

Json state_json(const graph::StateSnapshot& snap) {
  Json tasks = Json::array();
  for (const auto& task : snap.tasks) {
    Json interrupts = Json::array();
    for (const auto& i : snap.interrupts)
      if (i.task_id == task.id || (i.task_id.empty() && i.node == task.name)) interrupts.push_back({{"value", i.value}, {"id", i.id}});
    tasks.push_back({{"id", task.id},
                     {"name", task.name},
                     {"path", task.path},
                     {"error", task.error},
                     {"interrupts", interrupts},
                     {"checkpoint", task_checkpoint(snap, task)},
                     {"state", task_state(task)},
                     {"result", task.result}});
  }
  Json interrupts = Json::array();
  for (const auto& i : snap.interrupts) interrupts.push_back({{"value", i.value}, {"id", i.id}});
  return {{"values", snap.values()},
          {"next", snap.next},
          {"tasks", tasks},
          {"checkpoint", checkpoint_json(snap.config)},
          {"metadata", snap.metadata},
          {"created_at", snap.created_at},
          {"parent_checkpoint", snap.parent_config ? checkpoint_json(*snap.parent_config) : Json(nullptr)},
          {"interrupts", interrupts}};
}

Task<Json> Threads::create(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  AP_CO_ASSIGN_OR_RETURN(auto ttl, ttl_minutes(body));
  std::string if_exists = body.value("if_exists", "raise");
  if (if_exists != "raise" && if_exists != "do_nothing")
    co_return Error::invalid_argument("'if_exists' must be raise or do_nothing");
  // supersteps: [{updates: [{values, as_node}, ...]}, ...], applied in order as state updates
  // (each update its own checkpoint) to the graph named by metadata.graph_id.
  std::vector<Json> updates;
  if (auto steps = body.find("supersteps"); steps != body.end() && !steps->is_null()) {
    const char* shape = "'supersteps' must be a list of {\"updates\": [{\"values\": {...}, \"as_node\": \"node\"}]}";
    if (!steps->is_array()) co_return Error::invalid_argument(shape);
    for (const auto& step : *steps) {
      if (!step.is_object() || !step.contains("updates") || !step["updates"].is_array()) co_return Error::invalid_argument(shape);
      for (const auto& u : step["updates"]) {
        if (!u.is_object() || !u.value("as_node", Json()).is_string() ||
            !(u.value("values", Json()).is_object() || u.value("values", Json()).is_null()))
          co_return Error::invalid_argument(shape);
        updates.push_back({{"values", u.value("values", Json())}, {"as_node", u["as_node"]}});
      }
    }
    if (!metadata.value("graph_id", Json()).is_string())
      co_return Error::invalid_argument("'supersteps' need the thread's graph: give graph_id");
  }
  Uuid id = Uuid::v7(Clock::system().unix_ms());
  if (auto t = body.find("thread_id"); t != body.end() && !t->is_null()) {
    auto u = t->is_string() ? Uuid::parse(t->get<std::string>()) : std::nullopt;
    if (!u) co_return Error::invalid_argument("'thread_id' must be a UUID");
    id = *u;
  }
  store::Param expires;
  if (ttl) expires = std::to_string(*ttl);
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("INSERT INTO threads (tenant_id, thread_id, metadata, expires_at) "
                                                    "VALUES ($1, $2, $3::jsonb, now() + $4::float8 * interval '1 minute') "
                                                    "ON CONFLICT DO NOTHING RETURNING ") + kThreadJson,
                                        store::params(s.tenant.to_string(), id.to_string(), metadata.dump(), expires)));
  if (!rows.empty() && updates.empty()) co_return Json::parse(rows.get(0, 0));
  if (!rows.empty()) {
    for (const auto& u : updates) {
      auto applied = co_await update_state(s, id.to_string(), u);
      if (!applied) {
        (void)co_await remove(s, id.to_string());  // bad input changes nothing
        co_return applied.error();
      }
    }
    co_return co_await get(s, id.to_string());
  }
  if (if_exists == "raise") co_return Error::already_exists("thread already exists");
  co_return co_await get(s, id.to_string());
}

Task<Json> Threads::get(Scope s, std::string id) {
  AP_CO_ASSIGN_OR_RETURN(Uuid u, parse_id(id, "thread"));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kThreadJson + " FROM threads WHERE tenant_id = $1 AND thread_id = $2",
                                        store::params(s.tenant.to_string(), u.to_string())));
  if (rows.empty()) co_return Error::not_found("thread not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<Json> Threads::update(Scope s, std::string id, Json body) {
  AP_CO_ASSIGN_OR_RETURN(Uuid u, parse_id(id, "thread"));
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  AP_CO_ASSIGN_OR_RETURN(auto ttl, ttl_minutes(body));
  store::Param minutes;
  if (ttl) minutes = std::to_string(*ttl);
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("UPDATE threads SET metadata = metadata || $3::jsonb, updated_at = now(), "
                                                    "expires_at = CASE WHEN $4::float8 IS NULL THEN expires_at "
                                                    "ELSE now() + $4::float8 * interval '1 minute' END "
                                                    "WHERE tenant_id = $1 AND thread_id = $2 RETURNING ") + kThreadJson,
                                        store::params(s.tenant.to_string(), u.to_string(), metadata.dump(), minutes)));
  if (rows.empty()) co_return Error::not_found("thread not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<void> Threads::remove(Scope s, std::string id) {
  AP_CO_ASSIGN_OR_RETURN(Uuid u, parse_id(id, "thread"));
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  auto p = store::params(s.tenant.to_string(), u.to_string());
  AP_CO_RETURN_IF_ERROR(co_await tx.exec(
      "DELETE FROM run_events e USING runs r WHERE e.tenant_id = $1 AND r.tenant_id = $1 AND r.thread_id = $2 "
      "AND e.run_id = r.run_id AND r.status <> 'running'", p));
  AP_CO_RETURN_IF_ERROR(co_await tx.exec("DELETE FROM runs WHERE tenant_id = $1 AND thread_id = $2 AND status <> 'running'", p));
  // A running run (one a worker claimed while the DELETE above waited for it is among them) is
  // cancelled wherever it runs (NOTIFY at the commit); when it ends, the worker finds its thread
  // gone and deletes the run and what it checkpointed meanwhile.
  AP_CO_RETURN_IF_ERROR(co_await tx.exec("UPDATE runs SET cancel = 'interrupt' WHERE tenant_id = $1 AND thread_id = $2 "
                                         "AND status = 'running' RETURNING pg_notify('agentplane_run_ctl', "
                                         "run_id || ' cancel interrupt')", p));
  AP_CO_ASSIGN_OR_RETURN(auto del, co_await tx.exec_and_commit("DELETE FROM threads WHERE tenant_id = $1 AND thread_id = $2", p));
  if (del.affected() == 0) co_return Error::not_found("thread not found");
  savers_(s.tenant)->thread_deleted(u.to_string());  // its checkpoints went with it (migration 0017)
  co_return ok_status();
}

Task<Json> Threads::search(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::vector<store::Param> params = store::params(s.tenant.to_string());
  AP_CO_ASSIGN_OR_RETURN(std::string where, thread_filters(body, params));
  AP_CO_ASSIGN_OR_RETURN(auto page, paging(body));
  std::string by = body.value("sort_by", "created_at"), order = body.value("sort_order", "desc");
  static const std::set<std::string> cols = {"thread_id", "status", "created_at", "updated_at"};
  if (!cols.count(by)) co_return Error::invalid_argument("'sort_by' must be thread_id, status, created_at or updated_at");
  if (order != "asc" && order != "desc") co_return Error::invalid_argument("'sort_order' must be asc or desc");
  params.emplace_back(std::to_string(page.limit));
  params.emplace_back(std::to_string(page.offset));
  std::string sql = std::string("SELECT ") + kThreadJson + " FROM threads WHERE " + where + " ORDER BY " + by + " " +
                    order + ", thread_id LIMIT $" + std::to_string(params.size() - 1) + "::int OFFSET $" +
                    std::to_string(params.size()) + "::bigint";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant, sql, std::move(params)));
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) out.push_back(Json::parse(rows.get(i, 0)));
  co_return project(std::move(out), body.value("select", Json()));
}

Task<int64_t> Threads::count(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::vector<store::Param> params = store::params(s.tenant.to_string());
  AP_CO_ASSIGN_OR_RETURN(std::string where, thread_filters(body, params));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant, "SELECT count(*) FROM threads WHERE " + where,
                                                                 std::move(params)));
  co_return std::stoll(std::string(rows.get(0, 0)));
}

Task<Json> Threads::copy(Scope s, std::string id) {
  AP_CO_ASSIGN_OR_RETURN(Uuid u, parse_id(id, "thread"));
  Uuid to = Uuid::v7(Clock::system().unix_ms());
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("INSERT INTO threads (tenant_id, thread_id, status, metadata, config, \"values\", "
                                                    "interrupts) SELECT tenant_id, $3, CASE WHEN status = 'busy' THEN 'idle' "
                                                    "ELSE status END, metadata, config, \"values\", interrupts FROM threads "
                                                    "WHERE tenant_id = $1 AND thread_id = $2 RETURNING ") + kThreadJson,
                                        store::params(s.tenant.to_string(), u.to_string(), to.to_string())));
  if (rows.empty()) co_return Error::not_found("thread not found");
  auto saver = savers_;
  TenantId tenant = s.tenant;
  std::string from = u.to_string(), target = to.to_string();
  auto copy = [saver, tenant, from, target]() -> Status {
    return saver(tenant)->copy_thread(from, target);
  };  // (g++ 12: no lambda temporaries in co_await)
  AP_CO_RETURN_IF_ERROR(co_await run_blocking(blocking_, copy));
  co_return Json::parse(rows.get(0, 0));
}

Task<Json> Threads::prune(Scope s, Json body) {
  if (!body.is_object() || !body.contains("thread_ids") || !body["thread_ids"].is_array())
    co_return Error::invalid_argument("'thread_ids' (a list) is required");
  std::string strategy = body.value("strategy", "delete");
  if (strategy != "delete" && strategy != "keep_latest")
    co_return Error::invalid_argument("'strategy' must be delete or keep_latest");
  std::vector<std::string> ids;
  for (const auto& i : body["thread_ids"]) {
    if (!i.is_string() || !Uuid::parse(i.get<std::string>())) co_return Error::invalid_argument("'thread_ids' must be thread ids");
    ids.push_back(i.get<std::string>());
  }
  int64_t pruned = 0;
  if (strategy == "delete") {
    for (const auto& id : ids) {
      auto st = co_await remove(s, id);
      if (st) ++pruned;
      else if (st.error().code != Code::kNotFound) co_return st.error();
    }
  } else {
    auto saver = savers_;
    TenantId tenant = s.tenant;
    auto prune_all = [saver, tenant, ids]() -> Status {
      return saver(tenant)->prune(ids, 1);
    };  // (g++ 12: no lambda temporaries in co_await)
    AP_CO_RETURN_IF_ERROR(co_await run_blocking(blocking_, prune_all));
    pruned = static_cast<int64_t>(ids.size());
  }
  co_return Json{{"pruned_count", pruned}};
}

Task<Json> Threads::thread_graph(Scope s, const std::string& id, std::string* graph_id) {
  AP_CO_ASSIGN_OR_RETURN(Json thread, co_await get(s, id));
  const Json& md = thread["metadata"];
  *graph_id = md.contains("graph_id") && md["graph_id"].is_string() ? md["graph_id"].get<std::string>() : "";
  co_return thread;
}

Task<Json> Threads::state(Scope s, std::string id, std::string checkpoint_id, std::string checkpoint_ns, bool subgraphs,
                          Json select) {
  AP_CO_RETURN_IF_ERROR(check_state_select(select));
  std::string graph_id;
  AP_CO_RETURN_IF_ERROR(co_await thread_graph(s, id, &graph_id));
  if (graph_id.empty()) co_return select_state(empty_state(), select);
  AP_CO_ASSIGN_OR_RETURN(auto g, co_await graphs_.load(s, graph_id));
  auto saver = savers_;
  TenantId tenant = s.tenant;
  graph::CheckpointConfig cfg{id, checkpoint_ns, checkpoint_id};
  auto read_state = [saver, tenant, g, cfg, subgraphs, select]() -> Result<Json> {
    auto cp = saver(tenant);
    auto snap = g.graph->get_state(*cp, cfg, subgraphs);
    if (!snap) {
      if (snap.error().code == Code::kNotFound && cfg.checkpoint_id.empty()) return select_state(empty_state(), select);
      return snap.error();
    }
    if (snap->config.checkpoint_id.empty()) return select_state(empty_state(), select);
    return select_state(state_json(*snap), select);
  };  // (g++ 12: no lambda temporaries in co_await)
  co_return co_await run_blocking(blocking_, read_state);
}

Task<Json> Threads::history(Scope s, std::string id, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  graph::ListOptions o;
  o.thread_id = id;
  o.checkpoint_ns = "";
  o.limit = 10;
  if (auto l = body.find("limit"); l != body.end() && !l->is_null()) {
    if (!l->is_number_integer() || *l < 1 || *l > 10000) co_return Error::invalid_argument("'limit' must be 1..10000");
    o.limit = l->get<size_t>();
  }
  if (auto b = body.find("before"); b != body.end() && !b->is_null()) {
    // A checkpoint id, or a config as the SDK sends it ({configurable: {checkpoint_id}}).
    if (b->is_string()) o.before = b->get<std::string>();
    else if (b->is_object()) {
      const Json& c = b->contains("configurable") ? (*b)["configurable"] : *b;
      if (!c.contains("checkpoint_id") || !c["checkpoint_id"].is_string())
        co_return Error::invalid_argument("'before' must be a checkpoint id or a config with one");
      o.before = c["checkpoint_id"].get<std::string>();
    } else {
      co_return Error::invalid_argument("'before' must be a checkpoint id or a config with one");
    }
  }
  AP_CO_ASSIGN_OR_RETURN(Json md, object_field(body, "metadata"));
  for (const auto& [k, v] : md.items()) o.filter.emplace_back(k, v.dump());
  AP_CO_ASSIGN_OR_RETURN(Json cp, object_field(body, "checkpoint"));
  if (cp.contains("checkpoint_ns") && cp["checkpoint_ns"].is_string()) o.checkpoint_ns = cp["checkpoint_ns"].get<std::string>();
  Json select = body.value("select", Json());
  AP_CO_RETURN_IF_ERROR(check_state_select(select));
  std::string graph_id;
  AP_CO_RETURN_IF_ERROR(co_await thread_graph(s, id, &graph_id));
  if (graph_id.empty()) co_return Json::array();
  AP_CO_ASSIGN_OR_RETURN(auto g, co_await graphs_.load(s, graph_id));
  auto saver = savers_;
  TenantId tenant = s.tenant;
  auto read_history = [saver, tenant, g, o, select]() -> Result<Json> {
    auto cp = saver(tenant);
    AP_ASSIGN_OR_RETURN(auto snaps, g.graph->get_state_history(*cp, o));
    Json out = Json::array();
    for (const auto& snap : snaps) out.push_back(select_state(state_json(snap), select));
    return out;
  };  // (g++ 12: no lambda temporaries in co_await)
  co_return co_await run_blocking(blocking_, read_history);
}

Task<Json> Threads::update_state(Scope s, std::string id, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::string graph_id;
  AP_CO_RETURN_IF_ERROR(co_await thread_graph(s, id, &graph_id));
  if (graph_id.empty()) co_return Error::failed_precondition("the thread has no graph yet: run it once first");
  AP_CO_ASSIGN_OR_RETURN(auto active, co_await store::tenant_query(
                                          *s.pool, s.tenant,
                                          "SELECT 1 FROM runs WHERE tenant_id = $1 AND thread_id = $2 AND status IN ('pending', 'running')",
                                          store::params(s.tenant.to_string(), id)));
  if (!active.empty()) co_return Error::failed_precondition("thread is busy: a run is active on it");
  graph::CheckpointConfig cfg{id, "", ""};
  Json cp = body.value("checkpoint", Json::object());
  if (cp.is_object()) {
    cfg.checkpoint_id = cp.value("checkpoint_id", "");
    cfg.checkpoint_ns = cp.value("checkpoint_ns", "");
  }
  if (body.contains("checkpoint_id") && body["checkpoint_id"].is_string()) cfg.checkpoint_id = body["checkpoint_id"];
  Json values = body.value("values", Json());
  std::string as_node = body.value("as_node", "");
  AP_CO_ASSIGN_OR_RETURN(auto g, co_await graphs_.load(s, graph_id));
  auto saver = savers_;
  TenantId tenant = s.tenant;
  ThreadSummary summary;
  // As LangGraph's: the update's checkpoint names its graph and thread.
  const std::string md = Json{{"graph_id", graph_id}, {"thread_id", id}}.dump();
  auto write_state = [&, saver, tenant, g, cfg, values, as_node, md]() -> Result<Json> {
    auto cp = saver(tenant);
    AP_ASSIGN_OR_RETURN(auto next, g.graph->update_state(*cp, cfg, values, as_node, md));
    AP_ASSIGN_OR_RETURN(auto snap, g.graph->get_state(*cp, graph::CheckpointConfig{id, "", ""}));
    summary = summarize(snap, true);  // tasks left to run: the thread waits for a run to go on
    return Json{{"checkpoint", checkpoint_json(next)}};
  };  // (g++ 12: no lambda temporaries in co_await)
  AP_CO_ASSIGN_OR_RETURN(Json out, co_await run_blocking(blocking_, write_state));
  AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
      *s.pool, s.tenant,
      "UPDATE threads SET \"values\" = $3::json, interrupts = $4::jsonb, status = $5, updated_at = now() "
      "WHERE tenant_id = $1 AND thread_id = $2",
      store::params(s.tenant.to_string(), id, summary.values.dump(), summary.interrupts.dump(),
                    summary.interrupted ? "interrupted" : "idle")));
  co_return out;
}

Task<void> Threads::patch_state(Scope s, std::string id, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(Json patch, object_field(body, "metadata"));
  if (patch.empty()) co_return Error::invalid_argument("'metadata' must be a non-empty object");
  if (patch.contains("source") || patch.contains("step"))
    co_return Error::invalid_argument("'metadata' cannot change a checkpoint's source or step");
  std::string graph_id;
  AP_CO_RETURN_IF_ERROR(co_await thread_graph(s, id, &graph_id));  // NotFound for another tenant's
  graph::CheckpointConfig cfg{id, "", ""};
  if (auto cp = body.find("checkpoint"); cp != body.end() && cp->is_object()) {
    cfg.checkpoint_id = cp->value("checkpoint_id", "");
    cfg.checkpoint_ns = cp->value("checkpoint_ns", "");
  }
  if (auto c = body.find("checkpoint_id"); c != body.end() && c->is_string()) cfg.checkpoint_id = c->get<std::string>();
  auto saver = savers_;
  TenantId tenant = s.tenant;
  auto write = [saver, tenant, cfg, patch]() { return saver(tenant)->patch_metadata(cfg, patch); };  // (g++ 12)
  AP_CO_RETURN_IF_ERROR(co_await run_blocking(blocking_, write));
  co_return ok_status();
}

}  // namespace ap::control
