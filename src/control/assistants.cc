#include "control/assistants.h"

#include <set>

#include "control/graphs.h"
#include "control/graph_view.h"
#include "store/tx.h"

namespace ap::control {
namespace {

constexpr const char* kAssistantJson =
    "jsonb_build_object('assistant_id', assistant_id, 'graph_id', graph_id, 'config', config, "
    "'context', context, 'metadata', metadata, 'version', version, 'name', name, "
    "'description', description, 'created_at', created_at, 'updated_at', updated_at)::text";
constexpr const char* kVersionJson =
    "jsonb_build_object('assistant_id', assistant_id, 'graph_id', graph_id, 'config', config, "
    "'context', context, 'metadata', metadata, 'version', version, 'name', name, "
    "'description', description, 'created_at', created_at)::text";

Result<std::optional<std::string>> optional_text(const Json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return Error::invalid_argument(std::string("'") + field + "' must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

// The assistant id for a path parameter: a UUID, or a graph id naming its default assistant.
Uuid id_of(const std::string& id) {
  if (auto u = Uuid::parse(id)) return *u;
  return Graphs::default_assistant_id(id);
}

// WHERE clause and parameters of a search/count body (params start after the tenant at $1).
Result<std::string> filters(const Json& body, std::vector<store::Param>& params) {
  std::string where = "tenant_id = $1";
  AP_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  if (!metadata.empty()) {
    params.emplace_back(metadata.dump());
    where += " AND metadata @> $" + std::to_string(params.size()) + "::jsonb";
  }
  AP_ASSIGN_OR_RETURN(auto graph_id, optional_text(body, "graph_id"));
  if (graph_id) {
    params.emplace_back(*graph_id);
    where += " AND graph_id = $" + std::to_string(params.size());
  }
  AP_ASSIGN_OR_RETURN(auto name, optional_text(body, "name"));
  if (name) {
    params.emplace_back(*name);
    where += " AND strpos(lower(name), lower($" + std::to_string(params.size()) + ")) > 0";
  }
  return where;
}

Result<std::string> order_by(const Json& body, const char* def) {
  AP_ASSIGN_OR_RETURN(auto by, optional_text(body, "sort_by"));
  AP_ASSIGN_OR_RETURN(auto order, optional_text(body, "sort_order"));
  std::string col = by.value_or(def);
  static const std::set<std::string> ok = {"assistant_id", "graph_id", "name", "created_at", "updated_at"};
  if (!ok.count(col)) return Error::invalid_argument("'sort_by' must be one of assistant_id, graph_id, name, created_at, updated_at");
  std::string dir = order.value_or("desc");
  if (dir != "asc" && dir != "desc") return Error::invalid_argument("'sort_order' must be asc or desc");
  return col + " " + dir + ", assistant_id";
}

}  // namespace

Task<Json> Assistants::create(Scope s, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(auto graph_id, optional_text(body, "graph_id"));
  if (!graph_id) co_return Error::invalid_argument("'graph_id' is required");
  AP_CO_ASSIGN_OR_RETURN(auto given_id, optional_text(body, "assistant_id"));
  AP_CO_ASSIGN_OR_RETURN(Json config, object_field(body, "config"));
  AP_CO_ASSIGN_OR_RETURN(Json context, object_field(body, "context"));
  AP_CO_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  AP_CO_ASSIGN_OR_RETURN(auto name, optional_text(body, "name"));
  AP_CO_ASSIGN_OR_RETURN(auto description, optional_text(body, "description"));
  AP_CO_ASSIGN_OR_RETURN(auto if_exists, optional_text(body, "if_exists"));
  if (if_exists && *if_exists != "raise" && *if_exists != "do_nothing")
    co_return Error::invalid_argument("'if_exists' must be raise or do_nothing");
  Uuid id = Uuid::v7(Clock::system().unix_ms());
  if (given_id) {
    auto u = Uuid::parse(*given_id);
    if (!u) co_return Error::invalid_argument("'assistant_id' must be a UUID");
    id = *u;
  }
  AP_CO_ASSIGN_OR_RETURN(bool known, co_await graphs_.exists(s, *graph_id));
  if (!known) co_return Error::not_found("graph '" + *graph_id + "' not found");
  store::Param desc;
  if (description) desc = *description;
  const std::string sql = std::string(
      "WITH a AS (INSERT INTO assistants (tenant_id, assistant_id, graph_id, version, name, description, config, "
      "context, metadata) VALUES ($1, $2, $3, 1, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb) ON CONFLICT DO NOTHING "
      "RETURNING *), v AS (INSERT INTO assistant_versions (tenant_id, assistant_id, version, graph_id, name, "
      "description, config, context, metadata) SELECT tenant_id, assistant_id, 1, graph_id, name, description, "
      "config, context, metadata FROM a) SELECT ") + kAssistantJson + " FROM a";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant, sql,
                                        store::params(s.tenant.to_string(), id.to_string(), *graph_id,
                                                      name.value_or("Untitled"), desc, config.dump(), context.dump(),
                                                      metadata.dump())));
  if (!rows.empty()) co_return Json::parse(rows.get(0, 0));
  if (if_exists.value_or("raise") == "raise") co_return Error::already_exists("assistant already exists");
  co_return co_await get(s, id.to_string());
}

Task<Json> Assistants::get(Scope s, std::string id) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kAssistantJson +
                                            " FROM assistants WHERE tenant_id = $1 AND assistant_id = $2",
                                        store::params(s.tenant.to_string(), id_of(id).to_string())));
  if (rows.empty()) {
    // A built-in graph's default assistant exists once it is first used.
    if (Graphs::builtins().count(id)) {
      AP_CO_RETURN_IF_ERROR(co_await ensure_default_assistant(s, id));
      co_return co_await get(s, Graphs::default_assistant_id(id).to_string());
    }
    co_return Error::not_found("assistant not found");
  }
  co_return Json::parse(rows.get(0, 0));
}

Task<Json> Assistants::update(Scope s, std::string id, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(auto graph_id, optional_text(body, "graph_id"));
  AP_CO_ASSIGN_OR_RETURN(auto name, optional_text(body, "name"));
  AP_CO_ASSIGN_OR_RETURN(auto description, optional_text(body, "description"));
  for (const char* f : {"config", "context", "metadata"}) {
    AP_CO_RETURN_IF_ERROR(object_field(body, f));
  }
  if (graph_id) {
    AP_CO_ASSIGN_OR_RETURN(bool known, co_await graphs_.exists(s, *graph_id));
    if (!known) co_return Error::not_found("graph '" + *graph_id + "' not found");
  }
  auto text_or_null = [](const std::optional<std::string>& v) { return v ? store::Param(*v) : store::Param(); };
  auto json_or_null = [&](const char* f) {
    return body.contains(f) && !body[f].is_null() ? store::Param(body[f].dump()) : store::Param();
  };
  // The new version starts from the latest one; metadata is merged, the rest replaced if given.
  const std::string sql = std::string(
      "WITH cur AS (SELECT * FROM assistants WHERE tenant_id = $1 AND assistant_id = $2 FOR UPDATE), "
      "nv AS (SELECT coalesce(max(v.version), 0) + 1 AS version FROM assistant_versions v, cur "
      "       WHERE v.tenant_id = cur.tenant_id AND v.assistant_id = cur.assistant_id), "
      "u AS (UPDATE assistants a SET version = nv.version, graph_id = coalesce($3, cur.graph_id), "
      "      name = coalesce($4, cur.name), description = coalesce($5, cur.description), "
      "      config = coalesce($6::jsonb, cur.config), context = coalesce($7::jsonb, cur.context), "
      "      metadata = cur.metadata || coalesce($8::jsonb, '{}'), updated_at = now() "
      "      FROM cur, nv WHERE a.tenant_id = cur.tenant_id AND a.assistant_id = cur.assistant_id RETURNING a.*), "
      "v AS (INSERT INTO assistant_versions (tenant_id, assistant_id, version, graph_id, name, description, "
      "      config, context, metadata) SELECT tenant_id, assistant_id, version, graph_id, name, description, "
      "      config, context, metadata FROM u) "
      "SELECT ") + kAssistantJson + " FROM u";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant, sql,
                                        store::params(s.tenant.to_string(), id_of(id).to_string(), text_or_null(graph_id),
                                                      text_or_null(name), text_or_null(description), json_or_null("config"),
                                                      json_or_null("context"), json_or_null("metadata"))));
  if (rows.empty()) co_return Error::not_found("assistant not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<void> Assistants::remove(Scope s, std::string id) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant, "DELETE FROM assistants WHERE tenant_id = $1 AND assistant_id = $2",
                                        store::params(s.tenant.to_string(), id_of(id).to_string())));
  if (rows.affected() == 0) co_return Error::not_found("assistant not found");
  co_return ok_status();
}

Task<Json> Assistants::search(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::vector<store::Param> params = store::params(s.tenant.to_string());
  AP_CO_ASSIGN_OR_RETURN(std::string where, filters(body, params));
  AP_CO_ASSIGN_OR_RETURN(auto page, paging(body));
  AP_CO_ASSIGN_OR_RETURN(std::string order, order_by(body, "created_at"));
  params.emplace_back(std::to_string(page.limit));
  params.emplace_back(std::to_string(page.offset));
  const std::string sql = std::string("SELECT ") + kAssistantJson + " FROM assistants WHERE " + where +
                          " ORDER BY " + order + " LIMIT $" + std::to_string(params.size() - 1) + "::int OFFSET $" +
                          std::to_string(params.size()) + "::bigint";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant, sql, std::move(params)));
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) out.push_back(Json::parse(rows.get(i, 0)));
  co_return project(std::move(out), body.value("select", Json()));
}

Task<int64_t> Assistants::count(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::vector<store::Param> params = store::params(s.tenant.to_string());
  AP_CO_ASSIGN_OR_RETURN(std::string where, filters(body, params));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant,
                                                                 "SELECT count(*) FROM assistants WHERE " + where,
                                                                 std::move(params)));
  co_return std::stoll(std::string(rows.get(0, 0)));
}

Task<Json> Assistants::versions(Scope s, std::string id, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  AP_CO_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  AP_CO_ASSIGN_OR_RETURN(auto page, paging(body));
  AP_CO_RETURN_IF_ERROR(co_await get(s, id));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kVersionJson +
                                            " FROM assistant_versions WHERE tenant_id = $1 AND assistant_id = $2 "
                                            "AND metadata @> $3::jsonb ORDER BY version DESC LIMIT $4::int OFFSET $5::bigint",
                                        store::params(s.tenant.to_string(), id_of(id).to_string(), metadata.dump(),
                                                      std::to_string(page.limit), std::to_string(page.offset))));
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) out.push_back(Json::parse(rows.get(i, 0)));
  co_return out;
}

Task<Json> Assistants::set_latest(Scope s, std::string id, Json body) {
  if (!body.is_object() || !body.contains("version") || !body["version"].is_number_integer())
    co_return Error::invalid_argument("'version' (an integer) is required");
  const std::string sql = std::string(
      "WITH v AS (SELECT * FROM assistant_versions WHERE tenant_id = $1 AND assistant_id = $2 AND version = $3::int), "
      "u AS (UPDATE assistants a SET version = v.version, graph_id = v.graph_id, name = v.name, "
      "description = v.description, config = v.config, context = v.context, metadata = v.metadata, "
      "updated_at = now() FROM v WHERE a.tenant_id = v.tenant_id AND a.assistant_id = v.assistant_id RETURNING a.*) "
      "SELECT ") + kAssistantJson + " FROM u";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant, sql,
                                        store::params(s.tenant.to_string(), id_of(id).to_string(),
                                                      std::to_string(body["version"].get<int64_t>()))));
  if (rows.empty()) co_return Error::not_found("assistant or version not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<AssistantRef> Assistants::resolve(Scope s, std::string id) {
  AP_CO_ASSIGN_OR_RETURN(Json a, co_await get(s, id));
  AssistantRef r;
  r.assistant_id = *Uuid::parse(a["assistant_id"].get<std::string>());
  r.graph_id = a["graph_id"];
  r.version = a["version"];
  r.config = a["config"];
  r.context = a["context"];
  r.metadata = a["metadata"];
  co_return r;
}

Task<Json> Assistants::spec_of(Scope s, std::string id, std::string* graph_id) {
  AP_CO_ASSIGN_OR_RETURN(auto ref, co_await resolve(s, id));
  AP_CO_ASSIGN_OR_RETURN(Json g, co_await graphs_.get(s, ref.graph_id));
  *graph_id = ref.graph_id;
  co_return g["spec"];
}

Task<Json> Assistants::graph_view(Scope s, std::string id, bool xray) {
  std::string graph_id;
  AP_CO_ASSIGN_OR_RETURN(Json spec, co_await spec_of(s, id, &graph_id));
  co_return drawable_graph(spec, xray);
}

Task<Json> Assistants::schemas(Scope s, std::string id) {
  std::string graph_id;
  AP_CO_ASSIGN_OR_RETURN(Json spec, co_await spec_of(s, id, &graph_id));
  co_return graph_schemas(graph_id, spec);
}

Task<Json> Assistants::subgraphs(Scope s, std::string id, std::string ns, bool recurse) {
  std::string graph_id;
  AP_CO_ASSIGN_OR_RETURN(Json spec, co_await spec_of(s, id, &graph_id));
  co_return graph_subgraphs(graph_id, spec, ns, recurse);
}

}  // namespace ap::control
