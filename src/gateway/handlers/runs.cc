// LangGraph agent API: runs (/threads/{id}/runs..., /runs...): create, stream (SSE), wait, join,
// cancel, list, get, delete. docs/agent_api.md has the SSE format.
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <set>

#include "gateway/handlers/agent_context.h"
#include "gateway/routes.h"

namespace ap::gateway {
namespace {

using Task = boost::asio::awaitable<Result<Response>>;
constexpr auto kHeartbeat = std::chrono::seconds(5);

std::string run_path(const control::CreatedRun& c) {
  return c.stateless ? "/runs/" + c.run_id.to_string()
                     : "/threads/" + c.thread_id.to_string() + "/runs/" + c.run_id.to_string();
}

// Writes a run's events as SSE until it ends (`event`, `data`, and `id` when `ids`) that pass
// `wanted` (all when empty), a heartbeat comment every few seconds. A run finished elsewhere (no
// events here) is noticed by reading its status at each heartbeat; the stream ends at the
// heartbeat after that, which leaves the run relay (polling each second) time to deliver the last
// events if their notification was lost. Unsubscribes at the end. False when the client went
// away.
boost::asio::awaitable<bool> forward_events(control::Plane* p, const control::Scope& scope,
                                            std::shared_ptr<control::Subscription> sub, Uuid run, bool ids,
                                            const std::function<bool(const std::string&)>& wanted, BodyWriter& w) {
  bool gone = false, ended = false;
  for (;;) {
    auto e = co_await sub->next(kHeartbeat);
    if (!e) {
      if (!sub->timed_out() || ended) break;
      if (!co_await w.write(": heartbeat\n\n")) {
        gone = true;
        break;
      }
      auto st = co_await p->runs.status(scope, run);
      ended = st && *st != "pending" && *st != "running";
      continue;
    }
    if (wanted && !wanted(e->event)) continue;
    std::string chunk = "event: " + e->event + "\ndata: " + e->data + "\n";
    if (ids) chunk += "id: " + std::to_string(e->id) + "\n";
    chunk += "\n";
    if (!co_await w.write(std::move(chunk))) {
      gone = true;
      break;
    }
  }
  p->hub.unsubscribe(run, sub);
  co_return !gone;
}

// One run's events as the SSE response (ids except for stateless runs).
Response sse(control::Plane* p, control::Scope scope, std::shared_ptr<control::Subscription> sub, Uuid run, bool ids,
             bool cancel_on_disconnect, std::string thread) {
  Response r;
  r.content_type = "text/event-stream";
  r.stream = [p, scope, sub, run, ids, cancel_on_disconnect, thread](BodyWriter& w) -> boost::asio::awaitable<void> {
    const bool stayed = co_await forward_events(p, scope, sub, run, ids, nullptr, w);
    if (!stayed && cancel_on_disconnect) (void)co_await p->runs.cancel(scope, thread, run.to_string(), "interrupt", false);
  };
  return r;
}

Task create_run(RequestContext& ctx, std::string thread, int mode /* 0 create, 1 stream, 2 wait */) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  Uuid run_id = Uuid::v7(Clock::system().unix_ms());
  std::shared_ptr<control::Subscription> sub;
  auto scope = audit_context(ctx);
  // A stream reads the run's events; /wait only its end.
  if (mode != 0) sub = p->hub.subscribe(run_id, scope.tenant, co_await boost::asio::this_coro::executor, -1, false, mode == 1);
  using W = control::Runs::Watch;
  auto created = co_await p->runs.create(scope, thread, body, run_id, mode == 1 ? W::kEvents : mode == 2 ? W::kEnd : W::kNone);
  if (!created) {
    if (sub) p->hub.unsubscribe(run_id, sub);
    co_return created.error();
  }
  ctx.services.audit->record(scope, audit::Event{"run.created", audit::Level::kReplay,
                                                 json{{"run_id", run_id.to_string()},
                                                      {"thread_id", created->thread_id.to_string()},
                                                      {"assistant_id", created->run["assistant_id"]}}});
  Response r;
  if (mode == 0) {
    r = Response::json(200, dump(created->run));
  } else if (mode == 1) {
    r = sse(p, scope, sub, run_id, !created->stateless, created->cancel_on_disconnect, created->thread_id.to_string());
    if (!created->stateless) r.headers.push_back({"location", run_path(*created) + "/stream"});
  } else {
    AP_CO_ASSIGN_OR_RETURN(std::string result, co_await p->runs.result(scope, run_id, sub));
    r = Response::json(200, std::move(result));
  }
  r.headers.push_back({"content-location", run_path(*created)});
  co_return r;
}

std::string tid(const RequestContext& ctx) { return std::string(ctx.param("thread_id")); }
std::string rid(const RequestContext& ctx) { return std::string(ctx.param("run_id")); }

Task thread_create(RequestContext& ctx) { co_return co_await create_run(ctx, tid(ctx), 0); }
Task thread_stream(RequestContext& ctx) { co_return co_await create_run(ctx, tid(ctx), 1); }
Task thread_wait(RequestContext& ctx) { co_return co_await create_run(ctx, tid(ctx), 2); }
Task stateless_create(RequestContext& ctx) { co_return co_await create_run(ctx, "", 0); }
Task stateless_stream(RequestContext& ctx) { co_return co_await create_run(ctx, "", 1); }
Task stateless_wait(RequestContext& ctx) { co_return co_await create_run(ctx, "", 2); }

Task batch(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  if (!body.is_array() || body.empty() || body.size() > 100) co_return Error::invalid_argument("the body must be a list of 1..100 runs");
  json out = json::array();
  for (auto& one : body) {
    AP_CO_ASSIGN_OR_RETURN(auto c, co_await p->runs.create(audit_context(ctx), "", one, Uuid::v7(Clock::system().unix_ms())));
    out.push_back(c.run);
  }
  co_return Response::json(200, dump(out));
}

Task list_runs(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  int limit = 10;
  int64_t offset = 0;
  try {
    if (auto l = ctx.request.query_param("limit")) limit = std::stoi(*l);
    if (auto o = ctx.request.query_param("offset")) offset = std::stoll(*o);
  } catch (const std::exception&) {
    co_return Error::invalid_argument("limit and offset must be integers");
  }
  if (limit < 1 || limit > 1000 || offset < 0) co_return Error::invalid_argument("limit must be 1..1000 and offset >= 0");
  AP_CO_ASSIGN_OR_RETURN(json runs, co_await p->runs.list(audit_context(ctx), tid(ctx), limit, offset,
                                                         ctx.request.query_param("status").value_or("")));
  AP_CO_ASSIGN_OR_RETURN(runs, control::project(std::move(runs), json(ctx.request.query_params("select"))));
  co_return Response::json(200, dump(runs));
}

Task get_run(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json run, co_await p->runs.get(audit_context(ctx), tid(ctx), rid(ctx)));
  co_return Response::json(200, dump(run));
}

Task delete_run(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_RETURN_IF_ERROR(co_await p->runs.remove(audit_context(ctx), tid(ctx), rid(ctx)));
  co_return no_content();
}

Task cancel_run(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto w = ctx.request.query_param("wait");
  bool wait = w && (*w == "1" || *w == "true");
  auto scope = audit_context(ctx);
  AP_CO_RETURN_IF_ERROR(co_await p->runs.cancel(scope, tid(ctx), rid(ctx),
                                                ctx.request.query_param("action").value_or("interrupt"), wait));
  ctx.services.audit->record(scope, audit::Event{"run.cancel_requested", audit::Level::kDecision,
                                                 json{{"run_id", rid(ctx)}, {"wait", wait}}});
  co_return Response{wait ? 204 : 202, "application/json", "", {}};
}

Task cancel_many(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  AP_CO_ASSIGN_OR_RETURN(json body, any_body(ctx.request));
  auto scope = audit_context(ctx);
  AP_CO_ASSIGN_OR_RETURN(int64_t n, co_await p->runs.cancel_many(scope, body, ctx.request.query_param("action").value_or("interrupt")));
  ctx.services.audit->record(scope, audit::Event{"run.cancel_requested", audit::Level::kDecision,
                                                 json{{"filter", body}, {"runs", n}}});
  co_return no_content();
}

Task join_run(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto scope = audit_context(ctx);
  AP_CO_ASSIGN_OR_RETURN(json run, co_await p->runs.get(scope, tid(ctx), rid(ctx)));
  Uuid run_id = *Uuid::parse(run["run_id"].get<std::string>());
  AP_CO_RETURN_IF_ERROR(co_await p->runs.watch(scope, run_id, control::Runs::Watch::kEnd));
  AP_CO_ASSIGN_OR_RETURN(std::string result, co_await p->runs.result(scope, run_id));
  co_return Response::json(200, std::move(result));
}

// GET .../runs/{run_id}/stream, with Last-Event-ID: replays what is kept (the event log of a
// finished resumable run; the live log of an active one, here or through the relay) after that
// id, then goes on live.
Task join_stream(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto scope = audit_context(ctx);
  AP_CO_ASSIGN_OR_RETURN(json run, co_await p->runs.get(scope, tid(ctx), rid(ctx)));
  Uuid run_id = *Uuid::parse(run["run_id"].get<std::string>());
  std::optional<int64_t> after;
  if (auto last = ctx.request.header("last-event-id"); !last.empty()) {
    try {
      after = std::stoll(std::string(last));
    } catch (const std::exception&) {
      co_return Error::invalid_argument("Last-Event-ID must be an event id");
    }
  }
  auto c = ctx.request.query_param("cancel_on_disconnect");
  bool cancel = c && (*c == "1" || *c == "true");
  auto sub = p->hub.subscribe(run_id, scope.tenant, co_await boost::asio::this_coro::executor, after, true);
  std::string status = run["status"];
  if (status != "pending" && status != "running") {
    // Finished: replay the stored log (resumable runs), then end.
    p->hub.unsubscribe(run_id, sub);
    std::string body;
    if (after) {
      AP_CO_ASSIGN_OR_RETURN(auto events, co_await p->runs.stored_events(scope, run_id, *after));
      for (const auto& e : events) body += "event: " + e.event + "\ndata: " + e.data + "\nid: " + std::to_string(e.id) + "\n\n";
    }
    Response r;
    r.content_type = "text/event-stream";
    r.body = std::move(body);
    co_return r;
  }
  if (auto st = co_await p->runs.watch(scope, run_id, control::Runs::Watch::kEvents); !st) {
    p->hub.unsubscribe(run_id, sub);
    co_return st.error();
  }
  co_return sse(p, scope, sub, run_id, true, cancel, tid(ctx));
}

// GET /threads/{thread_id}/stream: the events of the thread's runs, one run after another, in
// the modes asked for (`stream_mode`, repeatable; default all the runs publish), until the
// thread is idle again (or, joined while idle, until a run comes and goes), or the client goes
// away. Events carry no ids (they are numbered per run); `: heartbeat` every 5 s.
Task join_thread_stream(RequestContext& ctx) {
  AP_CO_ASSIGN_OR_RETURN(auto* p, plane(ctx));
  auto scope = audit_context(ctx);
  AP_CO_RETURN_IF_ERROR(co_await p->threads.get(scope, tid(ctx)));  // NotFound for another tenant's
  const Uuid thread = *Uuid::parse(tid(ctx));
  std::set<std::string> modes;
  for (auto& m : ctx.request.query_params("stream_mode")) modes.insert(m);
  // messages-tuple events are named `messages`; messages mode's are messages/partial etc.
  const bool partials = modes.count("messages") > 0;
  if (modes.count("messages-tuple")) modes.insert("messages");
  Response r;
  r.content_type = "text/event-stream";
  r.stream = [p, scope, thread, modes, partials](BodyWriter& w) -> boost::asio::awaitable<void> {
    auto ex = co_await boost::asio::this_coro::executor;
    boost::asio::steady_timer idle(ex);
    std::function<bool(const std::string&)> wanted = [&modes, partials](const std::string& event) {
      std::string mode = event.substr(0, event.find('|'));
      if (mode.starts_with("messages/")) return modes.empty() || partials;
      return modes.empty() || mode == "metadata" || mode == "error" || modes.count(mode) > 0;
    };
    bool streamed = false;
    for (;;) {
      auto run = co_await p->runs.active_run(scope, thread);
      if (run && !*run && streamed) co_return;  // idle again
      if (!run || !*run) {
        // No run now: look again in a second; a heartbeat tells whether the client is still there.
        if (!co_await w.write(": heartbeat\n\n")) co_return;
        idle.expires_after(std::chrono::seconds(1));
        boost::system::error_code ec;
        co_await idle.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        continue;
      }
      const Uuid id = **run;
      auto sub = p->hub.subscribe(id, scope.tenant, ex, -1, true);
      (void)co_await p->runs.watch(scope, id, control::Runs::Watch::kEvents);
      if (!co_await forward_events(p, scope, sub, id, false, wanted, w)) co_return;
      streamed = true;
    }
  };
  co_return r;
}

}  // namespace

void add_run_routes(Router& r) {
  const uint32_t s = auth::kScopeAgents;
  r.add({"POST", "/threads/{thread_id}/runs", AuthMode::kTenant, s, thread_create});
  r.add({"GET", "/threads/{thread_id}/runs", AuthMode::kTenant, s, list_runs});
  r.add({"POST", "/threads/{thread_id}/runs/stream", AuthMode::kTenant, s, thread_stream});
  r.add({"POST", "/threads/{thread_id}/runs/wait", AuthMode::kTenant, s, thread_wait});
  r.add({"GET", "/threads/{thread_id}/runs/{run_id}", AuthMode::kTenant, s, get_run});
  r.add({"DELETE", "/threads/{thread_id}/runs/{run_id}", AuthMode::kTenant, s, delete_run});
  r.add({"POST", "/threads/{thread_id}/runs/{run_id}/cancel", AuthMode::kTenant, s, cancel_run});
  r.add({"GET", "/threads/{thread_id}/runs/{run_id}/join", AuthMode::kTenant, s, join_run});
  r.add({"GET", "/threads/{thread_id}/runs/{run_id}/stream", AuthMode::kTenant, s, join_stream});
  r.add({"POST", "/runs", AuthMode::kTenant, s, stateless_create});
  r.add({"POST", "/runs/stream", AuthMode::kTenant, s, stateless_stream});
  r.add({"POST", "/runs/wait", AuthMode::kTenant, s, stateless_wait});
  r.add({"POST", "/runs/batch", AuthMode::kTenant, s, batch});
  r.add({"POST", "/runs/cancel", AuthMode::kTenant, s, cancel_many});
  r.add({"GET", "/threads/{thread_id}/stream", AuthMode::kTenant, s, join_thread_stream});
}

}  // namespace ap::gateway
