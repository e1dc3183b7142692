#include "control/runs.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <set>

#include "control/assistants.h"
#include "control/run_hub.h"
#include "store/tx.h"
#include "telemetry/log.h"

namespace ap::control {
namespace {

constexpr const char* kRunJson =
    "jsonb_build_object('run_id', run_id, 'thread_id', thread_id, 'assistant_id', assistant_id, "
    "'created_at', created_at, 'updated_at', updated_at, 'status', status, 'metadata', metadata, "
    "'kwargs', kwargs, 'multitask_strategy', multitask_strategy)::text";

// In `tx`, what queued runs of `thread` deleted by a rollback leave: their event logs, and the
// checkpoints (with their blobs) of those that had written some before they were queued again
// (a stopping worker hands its run back). Later checkpoints are theirs too: nothing left refers
// to these blobs.
Task<void> delete_rolled_back(store::Tx& tx, const std::string& tenant, const std::string& thread,
                              const std::vector<std::string>& runs) {
  const std::string ids = store::text_array(runs);
  AP_CO_RETURN_IF_ERROR(co_await tx.exec("DELETE FROM run_events WHERE tenant_id = $1 AND run_id = ANY($2::uuid[])",
                                         store::params(tenant, ids)));
  AP_CO_RETURN_IF_ERROR(co_await tx.exec(
      "WITH c AS (DELETE FROM checkpoints WHERE tenant_id = $1 AND thread_id = $2::text AND metadata ->> 'run_id' = "
      "ANY($3::text[]) RETURNING checkpoint_ns, checkpoint_id) DELETE FROM checkpoint_blobs x USING c WHERE "
      "x.tenant_id = $1 AND x.thread_id = $2::text AND x.checkpoint_ns = c.checkpoint_ns AND x.ref = c.checkpoint_id",
      store::params(tenant, thread, ids)));
  co_return ok_status();
}

const std::set<std::string> kModes = {"values", "updates", "messages", "messages-tuple", "custom",
                                      "events", "debug", "tasks", "checkpoints"};

Result<std::string> one_of(const Json& body, const char* field, std::initializer_list<const char*> allowed,
                           const char* def) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::string(def);
  if (it->is_string())
    for (const char* a : allowed)
      if (*it == a) return it->get<std::string>();
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  return Error::invalid_argument(std::string("'") + field + "' must be one of " + list);
}

Result<Json> node_list(const Json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Json::array();
  if (it->is_string() && *it == "*") return Json("*");
  if (it->is_array() && std::all_of(it->begin(), it->end(), [](const Json& x) { return x.is_string(); })) return *it;
  return Error::invalid_argument(std::string("'") + field + "' must be \"*\" or a list of node names");
}

// A run's `webhook` (exec/worker/webhooks.h sends it): an absolute http(s) URL with a host, at
// most 4,096 characters. Where it may go is the egress policy's, checked as it is sent.
Status check_webhook(const Json& w) {
  if (!w.is_string()) return Error::invalid_argument("'webhook' must be a URL string");
  const std::string& url = w.get_ref<const std::string&>();
  if (url.size() > 4096) return Error::invalid_argument("'webhook' is longer than 4096 characters");
  const size_t scheme = url.starts_with("https://") ? 8 : url.starts_with("http://") ? 7 : 0;
  if (scheme == 0) return Error::invalid_argument("'webhook' must be an absolute http:// or https:// URL");
  for (char ch : url)
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '#')
      return Error::invalid_argument("'webhook' must not contain spaces, control characters or a fragment ('#')");
  const std::string authority = url.substr(scheme, url.find_first_of("/?", scheme) - scheme);
  if (authority.empty() || authority.front() == ':') return Error::invalid_argument("'webhook' has no host");
  if (authority.find('@') != std::string::npos)
    return Error::invalid_argument("'webhook' must not carry a user name or password (put a token in its query)");
  return ok_status();
}

// Validates the body and builds the run's kwargs.
Result<Json> kwargs_of(const Json& body, const std::string& run_id, const std::string& thread_id,
                       const AssistantRef& a, bool stateless) {
  Json k = Json::object();
  if (body.contains("input") && !body["input"].is_null()) {
    if (!body["input"].is_object()) return Error::invalid_argument("'input' must be an object of channel values");
    k["input"] = body["input"];
  } else {
    k["input"] = nullptr;
  }
  AP_ASSIGN_OR_RETURN(Json command, object_field(body, "command", Json()));
  if (!command.is_null()) {
    for (const auto& [key, v] : command.items())
      if (key != "resume" && key != "update" && key != "goto")
        return Error::invalid_argument("'command' takes resume, update and goto; not '" + key + "'");
    if (!k["input"].is_null()) return Error::invalid_argument("give either 'input' or 'command', not both");
  }
  k["command"] = command;
  AP_ASSIGN_OR_RETURN(Json config, object_field(body, "config"));
  Json merged = a.config;
  if (!merged.is_object()) merged = Json::object();
  merged.merge_patch(config);
  Json& configurable = merged["configurable"];
  if (!configurable.is_object()) configurable = Json::object();
  configurable["run_id"] = run_id;
  configurable["thread_id"] = thread_id;
  configurable["graph_id"] = a.graph_id;
  configurable["assistant_id"] = a.assistant_id.to_string();
  if (merged.contains("recursion_limit") &&
      (!merged["recursion_limit"].is_number_integer() || merged["recursion_limit"] < 1 || merged["recursion_limit"] > 10000))
    return Error::invalid_argument("'config.recursion_limit' must be an integer 1..10000");
  k["config"] = merged;
  AP_ASSIGN_OR_RETURN(Json context, object_field(body, "context"));
  Json ctx = a.context.is_object() ? a.context : Json::object();
  ctx.merge_patch(context);
  k["context"] = ctx;
  Json modes = body.value("stream_mode", Json("values"));
  if (modes.is_string()) modes = Json::array({modes});
  if (!modes.is_array()) return Error::invalid_argument("'stream_mode' must be a mode or a list of modes");
  for (const auto& m : modes)
    if (!m.is_string() || !kModes.count(m.get<std::string>()))
      return Error::invalid_argument("unknown stream mode " + m.dump() +
                                     "; use values, updates, messages, messages-tuple, custom, events, debug, tasks, checkpoints");
  k["stream_mode"] = modes;
  k["subgraphs"] = body.value("stream_subgraphs", false);
  k["resumable"] = body.value("stream_resumable", false);
  AP_ASSIGN_OR_RETURN(k["interrupt_before"], node_list(body, "interrupt_before"));
  AP_ASSIGN_OR_RETURN(k["interrupt_after"], node_list(body, "interrupt_after"));
  AP_ASSIGN_OR_RETURN(k["durability"], one_of(body, "durability", {"sync", "async", "exit"}, "async"));
  AP_ASSIGN_OR_RETURN(k["on_disconnect"], one_of(body, "on_disconnect", {"cancel", "continue"}, "continue"));
  AP_ASSIGN_OR_RETURN(std::string on_completion,
                      one_of(body, "on_completion", {"delete", "keep"}, stateless ? "delete" : "keep"));
  k["temporary"] = stateless && on_completion == "delete";
  k["new_thread"] = stateless;  // created with the run: no checkpoints to read at its start
  std::string checkpoint_id, checkpoint_ns;
  if (auto c = body.find("checkpoint"); c != body.end() && c->is_object()) {
    checkpoint_id = c->value("checkpoint_id", "");
    checkpoint_ns = c->value("checkpoint_ns", "");
  }
  if (auto c = body.find("checkpoint_id"); c != body.end() && c->is_string()) checkpoint_id = c->get<std::string>();
  k["checkpoint_id"] = checkpoint_id;
  k["checkpoint_ns"] = checkpoint_ns;
  if (auto w = body.find("webhook"); w != body.end() && !w->is_null()) {
    AP_RETURN_IF_ERROR(check_webhook(*w));
    k["webhook"] = *w;
  }
  return k;
}

// Wakes the workers (LISTEN agentplane_runs) for a run left pending, once it is committed
// (store::notify_after_commit: inside the run's own commit, NOTIFY made queued runs commit one
// at a time, through each one's WAL flush). Spawned, not awaited: the response does not wait
// for it (the pool outlives the executor's pending work). A lost wake-up costs the workers'
// 1 s poll.
boost::asio::awaitable<void> wake_workers(store::Pool& pool) {
  std::vector<std::string> one(1);  // (g++ 12: no temporaries in co_await calls)
  auto r = co_await store::notify_after_commit(pool, "agentplane_runs", std::move(one));
  if (!r) telemetry::log_warn("run_wake_failed", {{"error", r.error().message}});
}

}  // namespace

std::optional<std::string> Runs::watchers_entry(Watch w) const {
  if (w == Watch::kNone) return std::nullopt;
  return hub_.replica() + (w == Watch::kEvents ? ":e" : ":x");
}

std::string Runs::watchers_of(Watch w) const {
  auto e = watchers_entry(w);
  return e ? "{\"" + *e + "\"}" : "{}";
}

Status check_run_body(const Json& body) {
  AP_RETURN_IF_ERROR(one_of(body, "multitask_strategy", {"reject", "interrupt", "rollback", "enqueue"}, "reject"));
  AP_RETURN_IF_ERROR(kwargs_of(body, "", "", AssistantRef{}, false));
  return ok_status();
}

std::vector<std::string> stream_modes(const Json& kwargs) {
  std::vector<std::string> out;
  for (const auto& m : kwargs.value("stream_mode", Json::array({"values"}))) out.push_back(m);
  return out;
}

Task<CreatedRun> Runs::create(Scope s, std::string thread_id, Json body, Uuid run_id, Watch watch) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  if (!body.contains("assistant_id") || !body["assistant_id"].is_string())
    co_return Error::invalid_argument("'assistant_id' is required");
  const bool stateless = thread_id.empty();
  Uuid thread = Uuid::v7(Clock::system().unix_ms());
  if (!stateless) {
    AP_CO_ASSIGN_OR_RETURN(thread, parse_id(thread_id, "thread"));
  }
  AP_CO_ASSIGN_OR_RETURN(std::string strategy,
                         one_of(body, "multitask_strategy", {"reject", "interrupt", "rollback", "enqueue"}, "reject"));
  AP_CO_ASSIGN_OR_RETURN(std::string if_not_exists, one_of(body, "if_not_exists", {"reject", "create"}, "reject"));
  AP_CO_ASSIGN_OR_RETURN(Json metadata, object_field(body, "metadata"));
  auto after = body.value("after_seconds", Json(0));
  if (!after.is_number() || after.get<double>() < 0) co_return Error::invalid_argument("'after_seconds' must be >= 0");
  auto assistant = co_await assistants_.resolve(s, body["assistant_id"].get<std::string>());
  if (!assistant) {
    if (assistant.error().code == Code::kNotFound)
      co_return Error::not_found("No assistant found for \"" + body["assistant_id"].get<std::string>() +
                                 "\". Make sure the assistant ID is for a valid assistant or a valid graph ID.");
    co_return assistant.error();
  }
  AP_CO_ASSIGN_OR_RETURN(Json kwargs, kwargs_of(body, run_id.to_string(), thread.to_string(), *assistant, stateless));
  // Created by /wait: its events are produced only while someone streams them (a join), as
  // nobody else could read them; a resumable run keeps all of them.
  if (watch == Watch::kEnd && !kwargs["resumable"].get<bool>()) kwargs["events_on_demand"] = true;
  const std::string tenant = s.tenant.to_string(), tid = thread.to_string();
  Json thread_md = {{"graph_id", assistant->graph_id}, {"assistant_id", assistant->assistant_id.to_string()}};

  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  Json run_md = Json::object();
  store::Rows active;
  if (!stateless) {
    // The thread (locked: one run starts on it at a time) and its active runs, in one round trip.
    std::vector<store::Statement> reads;
    reads.push_back({"SELECT metadata::text FROM threads WHERE tenant_id = $1 AND thread_id = $2 FOR UPDATE",
                     store::params(tenant, tid)});
    const size_t active_at = store::push_generic_plan(
        reads, {"SELECT run_id, status FROM runs WHERE tenant_id = $1 AND thread_id = $2 "
                "AND status IN ('pending', 'running')",
                store::params(tenant, tid)});
    AP_CO_ASSIGN_OR_RETURN(auto read, co_await tx.exec_all(std::move(reads), false));
    const store::Rows& th = read[0];
    active = read[active_at];
    if (th.empty()) {
      if (if_not_exists != "create") co_return Error::not_found("thread not found");
      AP_CO_RETURN_IF_ERROR(co_await tx.exec("INSERT INTO threads (tenant_id, thread_id, metadata) VALUES ($1, $2, $3::jsonb)",
                                             store::params(tenant, tid, thread_md.dump())));
    } else {
      run_md = Json::parse(th.get(0, 0));
    }
  }
  if (!active.empty()) {
    if (strategy == "reject")
      co_return Error::failed_precondition(
          "Thread is already running a task. Wait for it to finish or choose a different multitask strategy.");
    if (strategy != "enqueue") {
      // Pending runs stop now (their watchers are told); the running one is asked to, wherever
      // it runs (the new run waits for it).
      AP_CO_ASSIGN_OR_RETURN(
          auto stopped,
          co_await tx.exec(strategy == "rollback"
                               ? "DELETE FROM runs WHERE tenant_id = $1 AND thread_id = $2 AND status = 'pending' RETURNING "
                                 "run_id, pg_notify('agentplane_run_events', tenant_id || ' ' || run_id || ' end')"
                               : "UPDATE runs SET status = 'interrupted', updated_at = now() WHERE tenant_id = $1 AND "
                                 "thread_id = $2 AND status = 'pending' RETURNING run_id, "
                                 "pg_notify('agentplane_run_events', tenant_id || ' ' || run_id || ' end')",
                           store::params(tenant, tid)));
      if (strategy == "rollback" && !stopped.empty()) {
        std::vector<std::string> ids;
        for (int i = 0; i < stopped.size(); ++i) ids.emplace_back(stopped.get(i, 0));
        AP_CO_RETURN_IF_ERROR(co_await delete_rolled_back(tx, tenant, tid, ids));
      }
      AP_CO_RETURN_IF_ERROR(co_await tx.exec("UPDATE runs SET cancel = $3 WHERE tenant_id = $1 AND thread_id = $2 "
                                             "AND status = 'running' RETURNING pg_notify('agentplane_run_ctl', "
                                             "run_id || ' cancel ' || $3)",
                                             store::params(tenant, tid, strategy)));
    }
  }
  // As LangGraph: the assistant's metadata, then the thread's, then the request's.
  Json merged_md = assistant->metadata.is_object() ? assistant->metadata : Json::object();
  merged_md.merge_patch(run_md);
  merged_md.merge_patch(metadata);
  merged_md.merge_patch(thread_md);
  run_md = std::move(merged_md);
  // A local worker with a free slot takes the run at once if its tenant is under its cap
  // (start_run_slot takes one of the tenant's run slots in the transaction): inserted `running`,
  // leased to that worker, started in process after the commit. Otherwise it is queued.
  LocalWorker* local = local_.load();
  struct Reservation {
    LocalWorker* worker = nullptr;
    ~Reservation() {
      if (worker) worker->unreserve();
    }
  } reserved;
  if (local && after.get<double>() == 0 && active.empty() && local->reserve()) reserved.worker = local;
  store::Param default_cap, lease_owner, lease_ms;
  if (reserved.worker) {
    if (auto cap = local->default_cap()) default_cap = std::to_string(*cap);
    lease_owner = local->lease_owner();
    lease_ms = std::to_string(local->lease_ms());
  }
  // A stateless run's thread is a fresh temporary one (a new v7 id): nothing to lock or to wait
  // for; it goes in busy, in the same statement as the run ($17: its metadata).
  const std::string insert_run =
      std::string(stateless ? "WITH t AS (INSERT INTO threads (tenant_id, thread_id, metadata, status) "
                              "VALUES ($1::uuid, $3::uuid, $17::jsonb, 'busy')), "
                            : "WITH ") +
      "d AS (SELECT CASE WHEN $13::boolean THEN agentplane.start_run_slot($1::uuid, $14::int, $2::uuid) "
                  "ELSE false END AS go) "
                  "INSERT INTO runs (tenant_id, run_id, thread_id, assistant_id, metadata, kwargs, "
                  "multitask_strategy, stateless, created_by, run_after, watchers, status, lease_owner, lease_expires, "
                  "attempt) SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::jsonb, $6::jsonb, $7::text, $8::boolean, "
                  "$9::text, now() + $10::float8 * interval '1 second', $11::text[], "
                  "CASE WHEN d.go THEN 'running' ELSE 'pending' END, CASE WHEN d.go THEN $15::text END, "
                  "CASE WHEN d.go THEN clock_timestamp() + $16::int * interval '1 millisecond' END, CASE WHEN d.go THEN 1 ELSE 0 END "
                  "FROM d RETURNING " +
      kRunJson + ", status, (SELECT g.updated_at::text FROM graphs g WHERE g.tenant_id = $1::uuid AND g.graph_id = $12::text)";
  auto run_params = store::params(tenant, run_id.to_string(), tid, assistant->assistant_id.to_string(), run_md.dump(),
                                  kwargs.dump(), strategy, stateless ? "true" : "false", s.actor,
                                  std::to_string(after.get<double>()), watchers_of(watch), assistant->graph_id,
                                  reserved.worker ? "true" : "false", default_cap, lease_owner, lease_ms);
  if (stateless) run_params.emplace_back(thread_md.dump());
  // The run, and a kept thread marked busy, with the COMMIT: one round trip.
  std::vector<store::Statement> writes;
  writes.push_back({insert_run, std::move(run_params)});
  if (!stateless)
    writes.push_back({"UPDATE threads SET status = 'busy', metadata = metadata || $3::jsonb, updated_at = now() "
                      "WHERE tenant_id = $1 AND thread_id = $2",
                      store::params(tenant, tid, thread_md.dump())});
  AP_CO_ASSIGN_OR_RETURN(auto written, co_await tx.exec_all(std::move(writes), true));
  store::Rows rows = written[0];
  if (rows.get(0, 1) == "pending")
    boost::asio::co_spawn(co_await boost::asio::this_coro::executor, wake_workers(*s.pool), boost::asio::detached);
  if (reserved.worker && rows.get(0, 1) == "running") {
    LocalWorker::Start start{s.tenant, run_id, thread, kwargs, run_md,
                             rows.is_null(0, 2) ? std::string() : std::string(rows.get(0, 2)),
                             std::chrono::steady_clock::now()};
    reserved.worker = nullptr;  // the slot is the run's now
    local->start(std::move(start));
  }
  CreatedRun out;
  out.run = Json::parse(rows.get(0, 0));
  out.run_id = run_id;
  out.thread_id = thread;
  out.stateless = stateless;
  out.resumable = kwargs["resumable"];
  out.cancel_on_disconnect = kwargs["on_disconnect"] == "cancel";
  co_return out;
}

Task<Json> Runs::get(Scope s, std::string thread_id, std::string run_id) {
  AP_CO_ASSIGN_OR_RETURN(Uuid t, parse_id(thread_id, "run"));
  AP_CO_ASSIGN_OR_RETURN(Uuid r, parse_id(run_id, "run"));
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kRunJson + " FROM runs WHERE tenant_id = $1 AND thread_id = $2 AND run_id = $3",
                                        store::params(s.tenant.to_string(), t.to_string(), r.to_string())));
  if (rows.empty()) co_return Error::not_found("run not found");
  co_return Json::parse(rows.get(0, 0));
}

Task<Json> Runs::list(Scope s, std::string thread_id, int limit, int64_t offset, std::string status) {
  AP_CO_ASSIGN_OR_RETURN(Uuid t, parse_id(thread_id, "thread"));
  store::Param st;
  if (!status.empty()) st = status;
  AP_CO_ASSIGN_OR_RETURN(auto exists, co_await store::tenant_query(*s.pool, s.tenant,
                                                                   "SELECT 1 FROM threads WHERE tenant_id = $1 AND thread_id = $2",
                                                                   store::params(s.tenant.to_string(), t.to_string())));
  if (exists.empty()) co_return Error::not_found("thread not found");
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        std::string("SELECT ") + kRunJson +
                                            " FROM runs WHERE tenant_id = $1 AND thread_id = $2 AND ($3::text IS NULL OR status = $3) "
                                            "ORDER BY created_at DESC, run_id DESC LIMIT $4::int OFFSET $5::bigint",
                                        store::params(s.tenant.to_string(), t.to_string(), st, std::to_string(limit),
                                                      std::to_string(offset))));
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) out.push_back(Json::parse(rows.get(i, 0)));
  co_return out;
}

Task<void> Runs::remove(Scope s, std::string thread_id, std::string run_id) {
  AP_CO_ASSIGN_OR_RETURN(Json run, co_await get(s, thread_id, run_id));
  if (run["status"] == "pending" || run["status"] == "running")
    co_return Error::failed_precondition("the run is active: cancel it first");
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  AP_CO_RETURN_IF_ERROR(co_await tx.exec("DELETE FROM run_events WHERE tenant_id = $1 AND run_id = $2",
                                         store::params(s.tenant.to_string(), run["run_id"].get<std::string>())));
  AP_CO_RETURN_IF_ERROR(co_await tx.exec_and_commit("DELETE FROM runs WHERE tenant_id = $1 AND run_id = $2",
                                                    store::params(s.tenant.to_string(), run["run_id"].get<std::string>())));
  co_return ok_status();
}

Task<void> Runs::cancel(Scope s, std::string thread_id, std::string run_id, std::string action, bool wait) {
  if (action != "interrupt" && action != "rollback") co_return Error::invalid_argument("'action' must be interrupt or rollback");
  AP_CO_ASSIGN_OR_RETURN(Json run, co_await get(s, thread_id, run_id));
  Uuid id = *Uuid::parse(run["run_id"].get<std::string>());
  const std::string tenant = s.tenant.to_string();
  // A pending run stops here (its watchers are told): interrupted, or with rollback deleted (as
  // a running one is once it has stopped). A running one is told wherever it runs.
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*s.pool, s.tenant));
  AP_CO_ASSIGN_OR_RETURN(auto pending, co_await tx.exec(
                                           action == "rollback"
                                               ? "DELETE FROM runs WHERE tenant_id = $1 AND run_id = $2 AND status = 'pending' "
                                                 "RETURNING thread_id, pg_notify('agentplane_run_events', tenant_id || ' ' || "
                                                 "run_id || ' end'), coalesce((kwargs->>'temporary')::boolean, false)"
                                               : "UPDATE runs SET status = 'interrupted', updated_at = now() WHERE tenant_id = $1 "
                                                 "AND run_id = $2 AND status = 'pending' RETURNING thread_id, "
                                                 "pg_notify('agentplane_run_events', tenant_id || ' ' || run_id || ' end'), "
                                                 "coalesce((kwargs->>'temporary')::boolean, false)",
                                           store::params(tenant, id.to_string())));
  if (!pending.empty() && action == "rollback") {
    const std::vector<std::string> ids(1, id.to_string());  // (g++ 12: no temporaries in co_await)
    const std::string thread(pending.get(0, 0));
    AP_CO_RETURN_IF_ERROR(co_await delete_rolled_back(tx, tenant, thread, ids));
  }
  if (!pending.empty() && pending.get(0, 2) == "t") {
    // A stateless run's temporary thread goes when the run ends, as its worker would have
    // deleted it (its checkpoints go with it: migration 0017); an interrupted run's row stays a
    // while.
    AP_CO_RETURN_IF_ERROR(co_await tx.exec("DELETE FROM threads WHERE tenant_id = $1 AND thread_id = $2",
                                           store::params(tenant, std::string(pending.get(0, 0)))));
  } else if (!pending.empty()) {
    AP_CO_RETURN_IF_ERROR(co_await tx.exec(
        // Back to what its state says (it did not change): busy while other runs are active.
        "UPDATE threads t SET status = CASE WHEN EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = t.tenant_id AND "
        "r.thread_id = t.thread_id AND r.status IN ('pending', 'running')) THEN 'busy' WHEN coalesce(t.error, "
        "'null'::jsonb) <> 'null'::jsonb THEN 'error' WHEN coalesce(t.interrupts, '{}'::jsonb) <> '{}'::jsonb THEN "
        "'interrupted' ELSE 'idle' END, updated_at = now() WHERE t.tenant_id = $1 AND t.thread_id = $2",
        store::params(tenant, std::string(pending.get(0, 0)))));
  }
  AP_CO_RETURN_IF_ERROR(co_await tx.exec_and_commit(
      "UPDATE runs SET cancel = $3 WHERE tenant_id = $1 AND run_id = $2 AND status = 'running' "
      "RETURNING pg_notify('agentplane_run_ctl', run_id || ' cancel ' || $3)",
      store::params(tenant, id.to_string(), action)));
  if (wait) {
    auto done = co_await result(s, id);
    // A rolled-back run is deleted once it has stopped.
    if (!done && !(action == "rollback" && done.error().code == Code::kNotFound)) co_return done.error();
  }
  co_return ok_status();
}

Task<int64_t> Runs::cancel_many(Scope s, Json body, std::string action) {
  if (!body.is_object()) co_return Error::invalid_argument("the body must be a JSON object");
  store::Param thread, ids;
  if (auto t = body.find("thread_id"); t != body.end() && !t->is_null()) {
    if (!t->is_string()) co_return Error::invalid_argument("'thread_id' must be a string");
    AP_CO_ASSIGN_OR_RETURN(Uuid u, parse_id(t->get<std::string>(), "thread"));
    thread = u.to_string();
  }
  if (auto r = body.find("run_ids"); r != body.end() && !r->is_null()) {
    if (!r->is_array() || r->empty() || r->size() > 1000)
      co_return Error::invalid_argument("'run_ids' must be a list of 1..1000 run ids");
    std::vector<std::string> list;
    for (const auto& id : *r) {
      if (!id.is_string() || !Uuid::parse(id.get<std::string>()))
        co_return Error::invalid_argument("'run_ids' must be a list of run ids (UUIDs)");
      list.push_back(id);
    }
    ids = store::text_array(list);
  }
  AP_CO_ASSIGN_OR_RETURN(auto st, one_of(body, "status", {"pending", "running", "all"}, ""));
  if (ids.has_value() == !st.empty()) co_return Error::invalid_argument("give either 'run_ids' or 'status'");
  if (action != "interrupt" && action != "rollback") co_return Error::invalid_argument("'action' must be interrupt or rollback");
  const std::string statuses = st == "pending" ? "{pending}" : st == "running" ? "{running}" : "{pending,running}";
  std::vector<store::Param> params = store::params(s.tenant.to_string(), thread, ids, statuses);
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        "SELECT thread_id, run_id FROM runs WHERE tenant_id = $1 AND ($2::uuid IS NULL OR "
                                        "thread_id = $2::uuid) AND ($3::uuid[] IS NULL OR run_id = ANY ($3::uuid[])) AND "
                                        "status = ANY ($4::text[]) LIMIT 10000",
                                        std::move(params)));
  int64_t n = 0;
  for (int i = 0; i < rows.size(); ++i) {
    auto r = co_await cancel(s, std::string(rows.get(i, 0)), std::string(rows.get(i, 1)), action, false);
    if (r) ++n;
  }
  co_return n;
}

Task<std::string> Runs::result(Scope s, Uuid run_id, std::shared_ptr<Subscription> early) {
  auto ex = co_await boost::asio::this_coro::executor;
  // An end-only subscription, woken by the run's end (here, or through the relay). It is made
  // before the status is read, so the end cannot slip between the two; `early` was made before
  // the run existed, so it needs no first read.
  auto sub = early ? early : hub_.subscribe(run_id, s.tenant, ex, std::nullopt, false, false);
  bool read = !early;
  for (;;) {
    if (read) {
      // An ended run with no result of its own (on a kept thread, its result was the thread's
      // state) answers the thread's values, as LangGraph's join does.
      auto rows = co_await store::tenant_query(*s.pool, s.tenant,
                                               "SELECT r.status, coalesce(r.result::text, t.\"values\"::text) FROM runs r "
                                               "LEFT JOIN threads t ON "
                                               "t.tenant_id = r.tenant_id AND t.thread_id = r.thread_id "
                                               "WHERE r.tenant_id = $1 AND r.run_id = $2",
                                               store::params(s.tenant.to_string(), run_id.to_string()));
      if (!rows || rows->empty() || (rows->get(0, 0) != "pending" && rows->get(0, 0) != "running")) {
        hub_.unsubscribe(run_id, sub);
        if (!rows) co_return rows.error();
        if (rows->empty()) co_return Error::not_found("run not found");
        co_return rows->is_null(0, 1) ? std::string("null") : std::string(rows->get(0, 1));
      }
    }
    read = true;
    // After each quiet second the status is read again (same subscription), in case a
    // notification was lost.
    while (co_await sub->next(std::chrono::milliseconds(1000))) {
    }
    if (!sub->ended()) continue;
    hub_.unsubscribe(run_id, sub);
    // A run that ended on this replica comes with its answer: no second read.
    if (std::string r = sub->result(); !r.empty()) co_return r;
    sub = hub_.subscribe(run_id, s.tenant, ex, std::nullopt, false, false);  // ended elsewhere, or handed over
  }
}

Task<void> Runs::watch(Scope s, Uuid run_id, Watch watch) {
  if (watch == Watch::kNone || hub_.local(run_id)) co_return ok_status();
  // The worker that runs it learns of the new watcher at once; one that claims it later reads it.
  AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
      *s.pool, s.tenant,
      "UPDATE runs SET watchers = array_append(watchers, $3) WHERE tenant_id = $1 AND run_id = $2 "
      "AND status IN ('pending', 'running') AND NOT ($3 = ANY (watchers)) "
      "RETURNING pg_notify('agentplane_run_ctl', run_id || ' watch ' || $4)",
      store::params(s.tenant.to_string(), run_id.to_string(), *watchers_entry(watch),
                    hub_.replica() + (watch == Watch::kEvents ? " e" : " x"))));
  co_return ok_status();
}

Task<std::optional<Uuid>> Runs::active_run(Scope s, Uuid thread_id) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        "SELECT run_id FROM runs WHERE tenant_id = $1 AND thread_id = $2 AND status IN "
                                        "('pending', 'running') ORDER BY status = 'running' DESC, created_at LIMIT 1",
                                        store::params(s.tenant.to_string(), thread_id.to_string())));
  if (rows.empty()) co_return std::optional<Uuid>();
  co_return Uuid::parse(rows.get(0, 0));
}

Task<std::string> Runs::status(Scope s, Uuid run_id) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(*s.pool, s.tenant,
                                                                 "SELECT status FROM runs WHERE tenant_id = $1 AND run_id = $2",
                                                                 store::params(s.tenant.to_string(), run_id.to_string())));
  co_return rows.empty() ? std::string() : std::string(rows.get(0, 0));
}

Task<int64_t> sweep_run_data(store::Pool& pool) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::platform_query(pool, "SELECT sweep_run_data(interval '10 minutes', interval '1 day') + sweep_running_runs()"));
  int64_t deleted = std::stoll(std::string(rows.get(0, 0)));
  // Ended stateless runs in batches, each a statement of its own (a backlog takes several
  // sweeps when it is larger than kBatches * kBatch).
  constexpr int64_t kBatch = 10000, kBatches = 50;
  for (int64_t i = 0; i < kBatches; ++i) {
    AP_CO_ASSIGN_OR_RETURN(auto batch, co_await store::platform_query(pool,
                                           "SELECT sweep_stateless_runs(interval '10 minutes', interval '1 day', " +
                                               std::to_string(kBatch) + ")"));
    const int64_t n = std::stoll(std::string(batch.get(0, 0)));
    deleted += n;
    if (n < kBatch) break;
  }
  co_return deleted;
}

Task<std::vector<RunEvent>> Runs::stored_events(Scope s, Uuid run_id, int64_t after) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(
                                        *s.pool, s.tenant,
                                        "SELECT seq, event, data FROM run_events WHERE tenant_id = $1 AND run_id = $2 "
                                        "AND seq > $3::bigint ORDER BY seq",
                                        store::params(s.tenant.to_string(), run_id.to_string(), std::to_string(after))));
  std::vector<RunEvent> out;
  for (int i = 0; i < rows.size(); ++i)
    out.push_back({std::stoll(std::string(rows.get(i, 0))), std::string(rows.get(i, 1)), std::string(rows.get(i, 2))});
  co_return out;
}

}  // namespace ap::control
