#include "control/crons.h"

#include <set>

#include "common/clock.h"
#include "control/assistants.h"
#include "control/cron_schedule.h"
#include "control/runs.h"
#include "store/tx.h"
#include "telemetry/log.h"

namespace ap::control {
namespace {

constexpr const char* kCronJson =
    "jsonb_build_object('cron_id', cron_id, 'assistant_id', assistant_id, 'thread_id', thread_id, "
    "'on_run_completed', on_run_completed, 'end_time', end_time, 'schedule', schedule, 'timezone', timezone, "
    "'created_at', created_at, 'updated_at', updated_at, 'payload', payload, 'user_id', user_id, "
    "'next_run_date', next_run_date, 'metadata', metadata, 'enabled', enabled)::text";

// Fields of a create/update body that describe the cron itself; the rest is the run payload.
const std::set<std::string> kCronFields = {"schedule", "timezone", "end_time", "enabled", "on_run_completed"};
// What PATCH may change.
const std::set<std::string> kUpdatable = {"schedule", "timezone", "end_time", "input", "metadata", "config",
                                          "context", "webhook", "interrupt_before", "interrupt_after",
                                          "on_run_completed", "enabled", "stream_mode", "stream_subgraphs",
                                          "stream_resumable", "durability"};

Result<std::optional<std::string>> optional_string(const Json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return Error::invalid_argument(std::string("'") + field + "' must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::string> next_run(const std::string& schedule, const std::string& tz) {
  AP_ASSIGN_OR_RETURN(auto sched, CronSchedule::parse(schedule, tz));
  auto next = sched.next(std::chrono::system_clock::now());
  if (!next) return Error::invalid_argument("the cron schedule '" + schedule + "' never fires");
  return format_rfc3339(*next);
}

Json rows_to_array(const store::Rows& rows) {
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) out.push_back(Json::parse(rows.get(i, 0)));
  return out;
}

// Search/count filters: assistant_id, thread_id, enabled, metadata containment.
Result<std::string> cron_filters(const Json& body, std::vector<store::Param>& params) {
  std::string where = "tenant_id = $1";
  for (const char* f : {"assistant_id", "thread_id"}) {
    AP_ASSIGN_OR_RETURN(auto v, optional_string(body, f));
    if (!v) continue;
    if (!Uuid::parse(*v)) return Error::invalid_argument(std::string("'") + f + "' must be a UUID");
    params.emplace_back(*v);
    where += std::string(" AND ") + f + " = $" + std::to_string(params.size()) + "::uuid";
  }
  if (auto e = body.find("enabled"); e != body.end() && !e->is_null()) {
    if (!e->is_boolean()) return Error::invalid_argument("'enabled' must be true or false");
    where += e->get<bool>() ? " AND enabled" : " AND NOT enabled";
  }
  AP_ASSIGN_OR_RETURN(Json md, object_field(body, "metadata"));
  if (!md.empty()) {
    params.emplace_back(md.dump());
    where += " AND metadata @> $" + std::to_string(params.size()) + "::jsonb";
  }
  return where;
}

}  // namespace

Task<Json> Crons::create(Scope s, std::string thread_id, Json body) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  if (!body.contains("schedule") || !body["schedule"].is_string())
    co_return Error::invalid_argument("'schedule' is required: a cron expression such as \"*/5 * * * *\"");
  if (!body.contains("assistant_id") || !body["assistant_id"].is_string())
    co_return Error::invalid_argument("'assistant_id' is required");
  const std::string schedule = body["schedule"];
  AP_CO_ASSIGN_OR_RETURN(auto tz, optional_string(body, "timezone"));
  AP_CO_ASSIGN_OR_RETURN(auto end_time, optional_string(body, "end_time"));
  AP_CO_ASSIGN_OR_RETURN(std::string next, next_run(schedule, tz.value_or("")));
  bool enabled = true;
  if (auto e = body.find("enabled"); e != body.end() && !e->is_null()) {
    if (!e->is_boolean()) co_return Error::invalid_argument("'enabled' must be true or false");
    enabled = *e;
  }
  const bool stateless = thread_id.empty();
  store::Param on_completed;
  if (stateless) {
    AP_CO_ASSIGN_OR_RETURN(auto oc, optional_string(body, "on_run_completed"));
    if (oc && *oc != "delete" && *oc != "keep")
      co_return Error::invalid_argument("'on_run_completed' must be delete or keep");
    on_completed = oc.value_or("delete");
  }
  AP_CO_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  auto assistant = co_await assistants_.resolve(s, body["assistant_id"].get<std::string>());
  if (!assistant) co_return assistant.error();
  store::Param thread;
  if (!stateless) {
    AP_CO_ASSIGN_OR_RETURN(Uuid t, parse_id(thread_id, "thread"));
    thread = t.to_string();
  }
  Json payload = Json::object();
  for (const auto& [k, v] : body.items())
    if (!kCronFields.count(k)) payload[k] = v;
  payload["assistant_id"] = assistant->assistant_id.to_string();
  AP_CO_RETURN_IF_ERROR(check_run_body(payload));
  const Uuid cron_id = Uuid::v7(Clock::system().unix_ms());
  // Built outside the co_await (g++ 12 mishandles temporaries in it).
  std::vector<store::Param> params = store::params(
      s.tenant.to_string(), cron_id.to_string(), assistant->assistant_id.to_string(), thread, schedule, store::Param(tz),
      store::Param(end_time), payload.dump(), metadata.dump(), enabled ? "true" : "false", on_completed, s.actor, next);
  const std::string sql =
      std::string("INSERT INTO crons (tenant_id, cron_id, assistant_id, thread_id, schedule, timezone, end_time, "
                  "payload, metadata, enabled, on_run_completed, user_id, next_run_date) SELECT $1, $2, $3, "
                  "$4::uuid, $5, $6, $7::timestamptz, $8::jsonb, $9::jsonb, $10::boolean, $11, $12, "
                  "$13::timestamptz WHERE $4::uuid IS NULL OR EXISTS (SELECT 1 FROM threads WHERE tenant_id = $1 "
                  "AND thread_id = $4::uuid) RETURNING ") + kCronJson;
  // Inserted only if the thread exists (under the tenant's RLS): another tenant's is NotFound.
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant, sql, std::move(params)));
  if (rows.empty()) co_return Error::not_found("Thread not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<Json> Crons::update(Scope s, std::string cron_id, Json body) {
  if (!body.is_object() || body.empty()) co_return Error::invalid_argument("Request body cannot be empty");
  for (const auto& [k, v] : body.items())
    if (!kUpdatable.count(k)) co_return Error::invalid_argument("'" + k + "' cannot be changed on a cron");
  AP_CO_ASSIGN_OR_RETURN(Uuid id, parse_id(cron_id, "cron"));
  const std::string tenant = s.tenant.to_string();
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  AP_CO_ASSIGN_OR_RETURN(auto cur, co_await tx.exec("SELECT schedule, timezone, payload::text, thread_id IS NULL, enabled "
                                                    "FROM crons WHERE tenant_id = $1 AND cron_id = $2 FOR UPDATE",
                                                    store::params(tenant, id.to_string())));
  if (cur.empty()) co_return Error::not_found("cron not found");
  std::string schedule(cur.get(0, 0));
  std::optional<std::string> tz;
  if (!cur.is_null(0, 1)) tz = std::string(cur.get(0, 1));
  Json payload = Json::parse(cur.get(0, 2));
  const bool stateless = cur.get(0, 3) == "t";
  bool enabled = cur.get(0, 4) == "t";
  bool reschedule = false;
  if (body.contains("schedule")) {
    if (!body["schedule"].is_string()) co_return Error::invalid_argument("'schedule' must be a string");
    schedule = body["schedule"];
    reschedule = true;
  }
  if (body.contains("timezone")) {
    AP_CO_ASSIGN_OR_RETURN(tz, optional_string(body, "timezone"));
    reschedule = true;
  }
  if (auto e = body.find("enabled"); e != body.end()) {
    if (!e->is_boolean()) co_return Error::invalid_argument("'enabled' must be true or false");
    reschedule = reschedule || (*e && !enabled);  // re-enabled: the next time from now
    enabled = *e;
  }
  AP_CO_ASSIGN_OR_RETURN(std::string next, next_run(schedule, tz.value_or("")));
  for (const auto& [k, v] : body.items())
    if (!kCronFields.count(k)) payload[k] = v;
  AP_CO_RETURN_IF_ERROR(check_run_body(payload));
  // end_time: absent keeps it, null clears it.
  const bool set_end = body.contains("end_time");
  AP_CO_ASSIGN_OR_RETURN(auto end_time, optional_string(body, "end_time"));
  store::Param on_completed;
  if (body.contains("on_run_completed") && stateless) {
    AP_CO_ASSIGN_OR_RETURN(auto oc, optional_string(body, "on_run_completed"));
    if (oc && *oc != "delete" && *oc != "keep")
      co_return Error::invalid_argument("'on_run_completed' must be delete or keep");
    on_completed = oc.value_or("delete");
  }
  store::Param metadata;
  if (body.contains("metadata")) {
    AP_CO_ASSIGN_OR_RETURN(Json md, object_field(body, "metadata"));
    metadata = md.dump();
  }
  std::vector<store::Param> params =
      store::params(tenant, id.to_string(), schedule, store::Param(tz), payload.dump(), enabled ? "true" : "false",
                    set_end ? "true" : "false", store::Param(end_time), on_completed, metadata,
                    reschedule ? "true" : "false", next);
  const std::string sql =
      std::string("UPDATE crons SET schedule = $3, timezone = $4, payload = $5::jsonb, enabled = $6::boolean, "
                  "end_time = CASE WHEN $7::boolean THEN $8::timestamptz ELSE end_time END, "
                  "on_run_completed = coalesce($9, on_run_completed), metadata = coalesce($10::jsonb, metadata), "
                  "next_run_date = CASE WHEN $11::boolean THEN $12::timestamptz ELSE next_run_date END, "
                  "updated_at = now() WHERE tenant_id = $1 AND cron_id = $2 RETURNING ") + kCronJson;
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await tx.exec_and_commit(sql, std::move(params)));
  co_return Json::parse(rows.get(0, 0));
}

Task<void> Crons::remove(Scope s, std::string cron_id) {
  AP_CO_ASSIGN_OR_RETURN(Uuid id, parse_id(cron_id, "cron"));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant,
                                                                 "DELETE FROM crons WHERE tenant_id = $1 AND cron_id = $2",
                                                                 store::params(s.tenant.to_string(), id.to_string())));
  if (rows.affected() == 0) co_return Error::not_found("cron not found");
  co_return ok_status();
}

Task<Json> Crons::search(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::vector<store::Param> params = store::params(s.tenant.to_string());
  AP_CO_ASSIGN_OR_RETURN(std::string where, cron_filters(body, params));
  AP_CO_ASSIGN_OR_RETURN(auto page, paging(body));
  static const std::set<std::string> cols = {"cron_id", "assistant_id", "thread_id", "created_at",
                                             "updated_at", "next_run_date", "end_time"};
  AP_CO_ASSIGN_OR_RETURN(auto by_opt, optional_string(body, "sort_by"));
  AP_CO_ASSIGN_OR_RETURN(auto order_opt, optional_string(body, "sort_order"));
  const std::string by = by_opt.value_or("created_at"), order = order_opt.value_or("desc");
  if (!cols.count(by))
    co_return Error::invalid_argument("'sort_by' must be one of cron_id, assistant_id, thread_id, created_at, "
                                      "updated_at, next_run_date, end_time");
  if (order != "asc" && order != "desc") co_return Error::invalid_argument("'sort_order' must be asc or desc");
  params.emplace_back(std::to_string(page.limit));
  params.emplace_back(std::to_string(page.offset));
  std::string sql = std::string("SELECT ") + kCronJson + " FROM crons WHERE " + where + " ORDER BY " + by + " " + order +
                    ", cron_id LIMIT $" + std::to_string(params.size() - 1) + "::int OFFSET $" +
                    std::to_string(params.size()) + "::bigint";
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant, sql, std::move(params)));
  co_return project(rows_to_array(rows), body.value("select", Json()));
}

Task<int64_t> Crons::count(Scope s, Json body) {
  if (body.is_null()) body = Json::object();
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  std::vector<store::Param> params = store::params(s.tenant.to_string());
  AP_CO_ASSIGN_OR_RETURN(std::string where, cron_filters(body, params));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant, "SELECT count(*) FROM crons WHERE " + where,
                                                                 std::move(params)));
  co_return std::stoll(std::string(rows.get(0, 0)));
}

Task<int> Crons::fire_due(store::Pool& pool, int limit) {
  AP_CO_ASSIGN_OR_RETURN(auto due, co_await store::platform_query(pool, "SELECT tenant_id, cron_id FROM due_crons($1::int)",
                                                                  store::params(std::to_string(limit))));
  int fired = 0;
  for (int i = 0; i < due.size(); ++i) {
    auto r = co_await fire(pool, *TenantId::parse(due.get(i, 0)), *Uuid::parse(due.get(i, 1)));
    if (r && *r) ++fired;
    if (!r) telemetry::log_warn("cron_fire_failed", {{"cron_id", std::string(due.get(i, 1))}, {"error", r.error().message}});
  }
  co_return fired;
}

// Moves the cron to its next time under its row lock (another replica skips it), then creates
// the run. A crash between the two loses one firing rather than running it twice.
Task<bool> Crons::fire(store::Pool& pool, const TenantId& tenant, const Uuid& cron) {
  const std::string t = tenant.to_string(), c = cron.to_string();
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(pool, tenant));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await tx.exec(
                                        "SELECT schedule, coalesce(timezone, ''), payload::text, metadata::text, thread_id, "
                                        "on_run_completed, user_id FROM crons WHERE tenant_id = $1 AND cron_id = $2 AND enabled "
                                        "AND next_run_date <= now() AND (end_time IS NULL OR end_time >= now()) "
                                        "FOR UPDATE SKIP LOCKED",
                                        store::params(t, c)));
  if (rows.empty()) co_return false;
  auto next = next_run(std::string(rows.get(0, 0)), std::string(rows.get(0, 1)));
  std::vector<store::Param> params = store::params(t, c, next ? store::Param(*next) : store::Param());
  AP_CO_RETURN_IF_ERROR(co_await tx.exec_and_commit(
      "UPDATE crons SET next_run_date = coalesce($3::timestamptz, next_run_date), enabled = $3 IS NOT NULL "
      "WHERE tenant_id = $1 AND cron_id = $2",
      std::move(params)));
  Json payload = Json::parse(rows.get(0, 2));
  // As LangGraph: the run's metadata is the cron's, then the payload's.
  Json md = Json::parse(rows.get(0, 3));
  md.merge_patch(payload.value("metadata", Json::object()));
  payload["metadata"] = md;
  std::string thread;
  if (!rows.is_null(0, 4)) {
    thread = rows.get(0, 4);
    if (!payload.contains("multitask_strategy")) payload["multitask_strategy"] = "enqueue";
  } else {
    payload["on_completion"] = rows.is_null(0, 5) ? "delete" : std::string(rows.get(0, 5));
  }
  Scope scope{tenant, rows.is_null(0, 6) ? "system:cron" : std::string(rows.get(0, 6)), "", &pool};
  const Uuid run_id = Uuid::v7(Clock::system().unix_ms());
  auto created = co_await runs_.create(scope, thread, payload, run_id);
  if (!created) {
    if (created.error().code == Code::kNotFound) {
      // Its thread or assistant is gone: it would fail every time.
      (void)co_await store::tenant_query(pool, tenant, "UPDATE crons SET enabled = false WHERE tenant_id = $1 AND cron_id = $2",
                                         store::params(t, c));
    }
    co_return created.error();
  }
  telemetry::log_info("cron_fired", {{"cron_id", c}, {"run_id", created->run_id.to_string()}});
  co_return true;
}

}  // namespace ap::control
