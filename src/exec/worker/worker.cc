#include "exec/worker/worker.h"

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <future>
#include <optional>
#include <thread>
#include <unordered_map>

#include "audit/audit_log.h"
#include "common/thread_name.h"
#include "common/thread_priority.h"
#include "control/blocking.h"
#include "control/graphs.h"
#include "control/run_hub.h"
#include "control/runs.h"
#include "exec/worker/execute.h"
#include "exec/worker/webhooks.h"
#include "graph/checkpoint.h"
#include "llm/models.h"
#include "llm/upstream.h"
#include "store/conn.h"
#include "store/listener.h"
#include "store/pool.h"
#include "store/tx.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::exec {

namespace asio = boost::asio;
using control::Json;

struct Claim {
  TenantId tenant;
  Uuid run;
  Uuid thread;
  int attempt = 1;
  // A run handed over by the API in this process: its row as created (no read needed).
  std::optional<control::LocalWorker::Start> given;
};

// A run in progress here.
struct Slot {
  TenantId tenant;
  std::shared_ptr<std::atomic<int>> stop = std::make_shared<std::atomic<int>>(0);  // cancel / lease lost
  // Its events go to the run_events log (resumable, or a client on another replica streams
  // them); then `written` is the last id in the log.
  std::atomic<bool> log_events{false};
  bool notify_end = false;  // a client on another replica waits for its end
  int64_t written = -1;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();  // this attempt's
  bool thread_waiting = false;  // its end left another run waiting on its thread (finish)
  // When its lease was last set (at its claim or start, or a renewal's request): renew_loop.
  std::chrono::steady_clock::time_point leased = std::chrono::steady_clock::now();
};

struct Worker::Impl {
  WorkerOptions o;
  control::Graphs& graphs;
  control::RunHub& hub;
  control::SaverFor savers;
  audit::AuditLog* audit;
  // The pool outlives the io_context: destroying the io_context destroys suspended coroutines
  // (a claim in flight when the worker stopped), whose leases then go back to the closed pool.
  std::unique_ptr<store::Pool> pool;
  asio::io_context ioc{1};
  std::unique_ptr<asio::thread_pool> runners;
  std::unique_ptr<llm::UpstreamClient> http;  // model calls and http tools, on ioc
  std::unique_ptr<WebhookSender> webhooks;     // on ioc
  std::thread thread;
  asio::steady_timer wake{ioc};
  bool claim_wanted = false;
  std::chrono::steady_clock::time_point last_reclaim{};  // claim_loop: expired leases last looked for
  // Runs may be waiting for a free slot (a round found none, or filled up): the API then queues
  // new runs too, so that queued ones go first.
  std::atomic<bool> backlog{false};
  // After the last claim round no run was still due in the queue. Only then does the API start
  // new runs here directly (queued runs go first).
  std::atomic<bool> queue_quiet{false};
  // Runs in progress plus slots the API reserved for runs it is creating (LocalWorker).
  std::atomic<int> slots{0};
  // Watch requests for runs not (yet) here, in case one is a run the API is handing over
  // (kept a few seconds: runs of other workers' come by too).
  std::unordered_map<Uuid, std::vector<std::string>, UuidHash> early_watches;
  std::deque<std::pair<std::chrono::steady_clock::time_point, Uuid>> early_order;
  std::unique_ptr<control::LocalWorker> local;
  asio::steady_timer flush_wake{ioc, asio::steady_timer::time_point::max()};
  std::atomic<bool> flush_wanted{false};
  std::unique_ptr<store::Listener> listener;
  std::atomic<bool> stopping{false};
  int active = 0;
  std::unordered_map<Uuid, std::shared_ptr<Slot>, UuidHash> running;

  Impl(WorkerOptions opts, control::Graphs& g, control::RunHub& h, control::SaverFor s, audit::AuditLog* a)
      : o(std::move(opts)), graphs(g), hub(h), savers(std::move(s)), audit(a) {}

  control::Scope scope(const TenantId& tenant) { return {tenant, "system:worker", "", pool.get()}; }

  void on_notify(std::string_view channel, std::string_view payload);
  void request_flush();
  // Asks claim_loop for another round now (a run is pending, or a slot came free). A poke
  // during a round is kept for the next one, not lost.
  void poke() {
    claim_wanted = true;
    wake.cancel();
  }
  asio::awaitable<void> claim_loop();
  void start_given(control::LocalWorker::Start run);
  asio::awaitable<void> renew_loop();
  asio::awaitable<void> flush_loop();
  asio::awaitable<void> flush_events();
  asio::awaitable<void> execute(Claim c, std::shared_ptr<Slot> slot);
  asio::awaitable<void> execute_claimed(Claim c, std::shared_ptr<Slot> slot);
  asio::awaitable<Status> finish(const Claim& c, Slot& slot, const RunOutcome& out, const Json& kwargs);
  // Appends the events after `slot.written` to the run's log in `tx`; `end` with the run's
  // end. The payload of the NOTIFY that tells the replicas, to send once `tx` is committed
  // (`announce`), goes to `wake`. Returns the last id appended (`slot.written` when none); the
  // caller moves `slot.written` once its transaction committed.
  asio::awaitable<Result<int64_t>> append_events(store::Tx& tx, const Claim& c, const Slot& slot, bool end,
                                                 std::vector<std::string>& wake);
  // Sends `wake` (store::notify_after_commit), spawned on its own: nobody waits for it. A failure
  // only delays the listeners to their poll (the run relay reads its runs each second).
  asio::awaitable<void> announce(std::vector<std::string> wake);
};

// The API's side of this worker (control::LocalWorker): slots are reserved from any thread;
// the run starts on the worker's.
class LocalStarts final : public control::LocalWorker {
 public:
  explicit LocalStarts(Worker::Impl& w) : w_(w) {}
  bool reserve() override {
    if (w_.stopping || w_.backlog || !w_.queue_quiet) return false;
    int n = w_.slots.load();
    while (n < w_.o.concurrency)
      if (w_.slots.compare_exchange_weak(n, n + 1)) return true;
    return false;
  }
  void unreserve() override {
    --w_.slots;
    if (w_.backlog || !w_.queue_quiet) asio::post(w_.ioc, [&w = w_] { w.poke(); });
  }
  void start(Start run) override {
    asio::post(w_.ioc, [&w = w_, run = std::move(run)]() mutable { w.start_given(std::move(run)); });
  }
  const std::string& lease_owner() const override { return w_.o.id; }
  int64_t lease_ms() const override { return w_.o.lease.count(); }
  std::optional<int64_t> default_cap() const override { return w_.o.default_concurrent_runs; }

 private:
  Worker::Impl& w_;
};

// agentplane_runs: a run is pending. agentplane_run_ctl: "<run> cancel interrupt|rollback" or
// "<run> watch <replica> e|x" (a client on that replica waits for the run's events or its end).
void Worker::Impl::on_notify(std::string_view channel, std::string_view payload) {
  if (channel == "agentplane_runs") {
    poke();
    return;
  }
  if (payload.size() < 38) return;
  auto run = Uuid::parse(payload.substr(0, 36));
  if (!run) return;
  std::string_view rest = payload.substr(37);
  auto it = running.find(*run);
  if (it == running.end()) {
    if (rest.starts_with("watch ")) {
      const auto now = std::chrono::steady_clock::now();
      while (!early_order.empty() && (now - early_order.front().first > std::chrono::seconds(5) ||
                                      early_order.size() > 100000)) {
        early_watches.erase(early_order.front().second);
        early_order.pop_front();
      }
      auto& list = early_watches[*run];
      if (list.empty()) early_order.emplace_back(now, *run);
      list.emplace_back(rest);
    }
    return;
  }
  Slot& slot = *it->second;
  if (rest == "cancel interrupt") {
    slot.stop->store(kCancelInterrupt);
  } else if (rest == "cancel rollback") {
    slot.stop->store(kCancelRollback);
  } else if (rest.starts_with("watch ") && rest.size() > 8) {
    std::string_view who = rest.substr(6, rest.size() - 8);
    if (who == hub.replica()) return;  // this process's hub has the events already
    slot.notify_end = true;
    if (rest.back() == 'e' && !slot.log_events.exchange(true)) request_flush();  // from event 0
  }
}

void Worker::Impl::request_flush() {
  if (!flush_wanted.exchange(true)) asio::post(ioc, [this] { flush_wake.cancel(); });
}

asio::awaitable<void> Worker::Impl::flush_loop() {
  while (!stopping) {
    if (!flush_wanted.exchange(false)) {
      boost::system::error_code ec;
      flush_wake.expires_at(asio::steady_timer::time_point::max());
      co_await flush_wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    co_await flush_events();
  }
}

// One transaction per run with news: its new events. Events published meanwhile wait for the
// next round, so a busy run's events go out in batches. Then one NOTIFY per run, all sent
// together once those transactions are committed.
asio::awaitable<void> Worker::Impl::flush_events() {
  std::vector<std::pair<Uuid, std::shared_ptr<Slot>>> slots;
  for (const auto& [id, slot] : running)
    if (slot->log_events) slots.emplace_back(id, slot);
  std::vector<std::string> wake;
  for (auto& [id, slot] : slots) {
    auto tx = co_await store::Tx::begin(*pool, slot->tenant);
    if (!tx) continue;
    Claim c{slot->tenant, id, {}, 0};
    std::vector<std::string> announces;
    auto last = co_await append_events(*tx, c, *slot, false, announces);
    Status st = last ? co_await tx->commit() : Status(last.error());
    if (!st) {
      telemetry::log_warn("run_events_write_failed", {{"run_id", id.to_string()}, {"error", st.error().message}});
      continue;
    }
    wake.insert(wake.end(), announces.begin(), announces.end());
    // Only now: the finishing transaction of the run re-appends anything not yet committed (a
    // duplicate waits for this one and is skipped), so the log is whole when the run ends.
    slot->written = std::max(slot->written, *last);
    if (!hub.events_after(id, slot->written, 1).empty()) request_flush();  // more than one batch
  }
  if (!wake.empty()) asio::co_spawn(ioc, announce(std::move(wake)), asio::detached);
}

asio::awaitable<void> Worker::Impl::announce(std::vector<std::string> wake) {
  auto r = co_await store::notify_after_commit(*pool, "agentplane_run_events", std::move(wake));
  if (!r) telemetry::log_warn("run_events_notify_failed", {{"error", r.error().message}});
}

asio::awaitable<Result<int64_t>> Worker::Impl::append_events(store::Tx& tx, const Claim& c, const Slot& slot,
                                                              bool end, std::vector<std::string>& wake) {
  std::vector<control::RunEvent> events;
  if (slot.log_events) events = hub.events_after(c.run, slot.written, end ? SIZE_MAX : 2000);
  int64_t last = slot.written;
  if (events.empty() && !end) co_return last;
  std::vector<std::string> seqs, names, datas;
  for (auto& e : events) {
    seqs.push_back(std::to_string(e.id));
    names.push_back(std::move(e.event));
    datas.push_back(std::move(e.data));
  }
  const std::string payload = c.tenant.to_string() + " " + c.run.to_string() + (end ? " end" : " more");
  if (!events.empty()) {
    last = std::stoll(seqs.back());
    AP_CO_RETURN_IF_ERROR(co_await tx.exec(
        "INSERT INTO run_events (tenant_id, run_id, seq, event, data) SELECT $1, $2, s, e, d FROM "
        "unnest($3::bigint[], $4::text[], $5::text[]) AS x(s, e, d) ON CONFLICT DO NOTHING",
        store::params(c.tenant.to_string(), c.run.to_string(), store::text_array(seqs), store::text_array(names),
                      store::text_array(datas))));
  }
  if (!events.empty() || slot.notify_end) wake.push_back(payload);
  co_return last;
}

namespace {
auto& pickup_seconds() {
  static auto& pickup = telemetry::metrics()
                            .histogram("agentplane_run_pickup_seconds",
                                       "From a run's enqueue (or run_after) to its claim by a worker; for a run the API "
                                       "handed over in process, from its commit to its start.",
                                       {},
                                       {0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1, 2, 3, 5})
                            .with({});
  return pickup;
}
}  // namespace

asio::awaitable<void> Worker::Impl::claim_loop() {
  static auto& claimed = telemetry::metrics().counter("agentplane_runs_claimed_total", "Runs claimed by this worker.").with({});
  auto& pickup = pickup_seconds();
  bool poked = true;  // the first round looks for everything
  while (!stopping) {
    claim_wanted = false;
    // The round holds the free slots while it claims (the API cannot reserve them meanwhile);
    // what it does not claim goes back. The once-a-second round on a quiet queue (nothing due at
    // the last round, no NOTIFY since) holds one: it mostly finds nothing, and while it holds
    // them all, the API's new runs cannot start here at once and queue (about 1% of them, with
    // the round taking ~10 ms under load). What it finds makes the next round a full one.
    const bool probe = queue_quiet && !backlog && !poked;
    const int want = probe ? 1 : o.concurrency;
    int free = 0;
    for (int n = slots.load(); n < o.concurrency;)
      if (slots.compare_exchange_weak(n, n + std::min(want, o.concurrency - n))) {
        free = std::min(want, o.concurrency - n);
        break;
      }
    backlog = free <= 0;
    if (free > 0) {
      store::Param default_cap;  // NULL: tenants.max_concurrent_runs
      if (o.default_concurrent_runs) default_cap = std::to_string(*o.default_concurrent_runs);
      // Runs whose worker's lease expired are looked for about once a second (a lease is many
      // seconds; looking every round would cost each round a visit to every finished run's
      // index entry).
      const auto now = std::chrono::steady_clock::now();
      const bool reclaim = now - last_reclaim >= std::chrono::seconds(1);
      if (reclaim) last_reclaim = now;
      // The claims, then one row saying whether runs are still due in the queue.
      auto rows = co_await store::platform_query(
          *pool,
          "SELECT tenant_id, run_id, thread_id, attempt, waited_ms, due FROM claim_runs_then_due($1, $2::int, $3::int, "
          "$4::int, $5::int, $6::boolean)",
          store::params(o.id, std::to_string(o.lease.count()), std::to_string(free), std::to_string(o.max_attempts),
                        default_cap, reclaim ? "true" : "false"));
      int n = 0;
      if (!rows) {
        telemetry::log_warn("claim_failed", {{"error", rows.error().message}});
      } else {
        bool due = true;
        for (int i = 0; i < rows->size(); ++i) {
          if (rows->is_null(i, 1)) {
            if (!rows->is_null(i, 5)) due = rows->get(i, 5) == "t";
            continue;
          }
          ++n;
          Claim c{*TenantId::parse(rows->get(i, 0)), *Uuid::parse(rows->get(i, 1)), *Uuid::parse(rows->get(i, 2)),
                  std::stoi(std::string(rows->get(i, 3)))};
          claimed.inc();
          if (!rows->is_null(i, 4)) pickup.observe(std::stod(std::string(rows->get(i, 4))) / 1000.0);
          ++active;  // its slot was held for the round
          // In the map before any notification about it can be handled.
          auto slot = std::make_shared<Slot>();
          slot->tenant = c.tenant;
          running[c.run] = slot;
          asio::co_spawn(ioc, execute_claimed(c, slot), asio::detached);
        }
        // Runs still due (more than the free slots, or waiting for their tenant's cap or their
        // thread) keep the queue from being quiet: new runs queue behind them.
        queue_quiet = !due;
      }
      slots -= free - n;
      if (probe && (n == free || !queue_quiet)) {  // it found runs (due, or leases expired): all of them now
        last_reclaim = {};
        poked = true;
        continue;
      }
      if (n == free) {  // there may be more
        backlog = true;
        continue;
      }
    }
    if ((poked = claim_wanted)) continue;
    wake.expires_after(std::chrono::seconds(1));
    boost::system::error_code ec;
    co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    poked = claim_wanted || ec == asio::error::operation_aborted;
  }
}

asio::awaitable<void> Worker::Impl::renew_loop() {
  asio::steady_timer t(ioc);
  while (!stopping) {
    t.expires_after(o.renew_every);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    // Runs whose lease is a third of its length old (two renewals at least before it ends): a
    // younger one needs none yet. Most runs end before that, and a renewal updates every row it
    // renews (a non-HOT update, with its row lock held against the run's own end). Only the runs
    // asked about can have lost their leases: one that starts while the renewal is on its way is
    // not in its answer, and judged by it, would be stopped and handed back to the queue as lost.
    const auto sent = std::chrono::steady_clock::now();
    std::vector<std::pair<Uuid, std::shared_ptr<Slot>>> asked;
    for (const auto& [id, slot] : running)
      if (sent - slot->leased >= o.lease / 3) asked.emplace_back(id, slot);
    if (asked.empty()) continue;
    std::string ids = "{";
    for (const auto& [id, _] : asked) ids += (ids.size() > 1 ? "," : "") + id.to_string();
    ids += "}";
    // First in line for a connection: the runs' own queries must not make them lose their leases.
    auto rows = co_await store::platform_query(*pool, "SELECT run_id, cancel FROM renew_leases($1, $2::uuid[], $3::int)",
                                               store::params(o.id, ids, std::to_string(o.lease.count())),
                                               store::Pool::Priority::kFirst);
    if (!rows) continue;
    std::unordered_map<Uuid, std::string, UuidHash> held;
    for (int i = 0; i < rows->size(); ++i) held[*Uuid::parse(rows->get(i, 0))] = rows->is_null(i, 1) ? "" : std::string(rows->get(i, 1));
    // Cancel requests come by NOTIFY at once; this catches any sent while not listening (to a
    // run old enough to be asked about).
    for (auto& [id, slot] : asked) {
      auto h = held.find(id);
      if (h == held.end()) {
        slot->stop->store(kLeaseLost);  // another worker has it now, or it is gone
        continue;
      }
      slot->leased = sent;
      if (h->second == "interrupt") slot->stop->store(kCancelInterrupt);
      else if (h->second == "rollback") slot->stop->store(kCancelRollback);
    }
  }
}

// Whatever happens to the run, its slot is freed and its lease no longer renewed (an unfinished
// run is then claimed again when the lease expires).
asio::awaitable<void> Worker::Impl::execute_claimed(Claim c, std::shared_ptr<Slot> slot) {
  try {
    co_await execute(c, slot);
  } catch (const std::exception& e) {
    telemetry::log_error("run_worker_exception", {{"run_id", c.run.to_string()}, {"error", e.what()}});
    hub.end(c.run);
  }
  running.erase(c.run);
  --active;
  --slots;
  // A free slot matters only if runs may be waiting; new ones announce themselves by NOTIFY.
  if (backlog || !queue_quiet || slot->thread_waiting) poke();
}

// On the worker's thread: a run the API created `running` for this worker, in a slot it
// reserved.
void Worker::Impl::start_given(control::LocalWorker::Start run) {
  static auto& started = telemetry::metrics()
                             .counter("agentplane_runs_started_locally_total",
                                      "Runs the API handed to this process's worker at creation (no queue round).")
                             .with({});
  started.inc();
  pickup_seconds().observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - run.committed).count());
  Claim c{run.tenant, run.run, run.thread, 1, std::move(run)};
  ++active;
  auto slot = std::make_shared<Slot>();
  slot->tenant = c.tenant;
  running[c.run] = slot;
  if (auto w = early_watches.find(c.run); w != early_watches.end()) {
    const std::vector<std::string> watches = std::move(w->second);
    early_watches.erase(w);  // (its early_order entry goes when it is old)
    for (const auto& watch : watches) on_notify("agentplane_run_ctl", c.run.to_string() + " " + watch);
  }
  asio::co_spawn(ioc, execute_claimed(std::move(c), slot), asio::detached);
}

asio::awaitable<void> Worker::Impl::execute(Claim c, std::shared_ptr<Slot> slot) {
  const std::string tenant = c.tenant.to_string(), run_id = c.run.to_string();
  auto s = scope(c.tenant);
  Json kwargs, metadata;
  std::string version;  // the spec's version came with the run: a cached graph costs no read
  std::vector<std::string> watchers;
  if (c.given) {
    // From this process's API: as created; only this replica watches it yet (others that
    // ask later come by NOTIFY).
    kwargs = std::move(c.given->kwargs);
    metadata = std::move(c.given->metadata);
    version = std::move(c.given->graph_version);
  } else {
    auto row = co_await store::tenant_query(*pool, c.tenant,
                                            "SELECT r.kwargs::text, r.metadata::text, r.watchers::text, g.updated_at::text FROM runs r "
                                            "LEFT JOIN graphs g ON g.tenant_id = r.tenant_id AND g.graph_id = "
                                            "r.kwargs->'config'->'configurable'->>'graph_id' "
                                            "WHERE r.tenant_id = $1 AND r.run_id = $2",
                                            store::params(tenant, run_id));
    if (!row || row->empty()) co_return;
    kwargs = Json::parse(row->get(0, 0));
    metadata = Json::parse(row->get(0, 1));
    version = row->is_null(0, 3) ? "" : std::string(row->get(0, 3));
    watchers = store::parse_text_array(row->get(0, 2));
  }
  std::string graph_id = kwargs["config"]["configurable"].value("graph_id", "");
  RunOutcome out;
  auto loaded = co_await graphs.load(s, graph_id, version);
  // Clients on other replicas (runs.watchers: "<replica>:e" wants events, ":x" the end).
  bool log_events = kwargs.value("resumable", false) || slot->log_events;
  for (const auto& w : watchers) {
    if (w.size() < 3 || std::string_view(w).substr(0, w.size() - 2) == hub.replica()) continue;
    slot->notify_end = true;
    if (w.back() == 'e') log_events = true;
  }
  // A later attempt keeps numbering after the events an earlier one logged.
  int64_t next_id = 0;
  if (c.attempt > 1 || log_events) {
    auto last = co_await store::tenant_query(*pool, c.tenant,
                                             "SELECT coalesce(max(seq) + 1, 0) FROM run_events WHERE tenant_id = $1 AND run_id = $2",
                                             store::params(tenant, run_id));
    if (last) next_id = std::stoll(std::string(last->get(0, 0)));
  }
  slot->written = next_id - 1;
  hub.begin(c.run, c.tenant, next_id);
  slot->log_events = log_events;
  auto on_publish = [this, slot] {
    if (slot->log_events) request_flush();
  };
  auto services = std::make_shared<WorkerRunServices>(o.models, WorkerRunServices::Where{ioc.get_executor(), &ioc, pool.get(), http.get()},
                                                      c.tenant, c.thread, c.run, slot->stop, &stopping);
  RunContext rc{c.tenant, c.run, c.thread, c.attempt, kwargs, metadata, &hub, slot->stop, &stopping, on_publish, {}, services};
  rc.events_wanted = [this, slot, run = c.run] { return slot->log_events.load() || hub.wants_events(run); };
  if (audit)
    audit->record(s, audit::Event{"run.started", audit::Level::kReplay,
                                  Json{{"run_id", run_id}, {"thread_id", c.thread.to_string()}, {"graph_id", graph_id},
                                       {"attempt", c.attempt}}});
  if (!loaded) {
    out = RunOutcome::failed("GraphError", loaded.error().message);
    publish_error(rc, out);
  } else {
    auto saver_for = savers;
    auto graph = *loaded;
    auto run_graph = [rc, graph, saver_for]() {
      try {
        auto out = execute_run(rc, graph, saver_for);
        seal(out);  // here, not on the worker's thread: a big state's text and its tree's release
        return out;
      } catch (const std::exception& e) {
        // A bug, not the user's graph: the run fails with a message; the worker goes on.
        telemetry::log_error("run_exception", {{"run_id", rc.run.to_string()}, {"error", e.what()}});
        return RunOutcome::failed("InternalError", "the run failed inside the engine");
      }
    };  // (g++ 12: no lambda temporaries in co_await)
    out = co_await control::run_blocking(*runners, run_graph);
  }
  if (auto t = services->totals(); t.calls > 0 || t.sandbox_runs > 0) {
    // What the run's model calls and sandbox runs cost, for the audit log (the usage records
    // have each model call; "code.executed" events each sandbox run).
    out.cost = Json{{"run_id", run_id}, {"thread_id", c.thread.to_string()}, {"model_calls", t.calls},
                    {"prompt_tokens", t.prompt_tokens}, {"completion_tokens", t.completion_tokens},
                    {"cost_micro_usd", t.cost_micro_usd}, {"unpriced_calls", t.unpriced_calls},
                    {"sandbox_runs", t.sandbox_runs}, {"sandbox_cpu_ms", t.sandbox_cpu_ms}};
  }
  seal(out);  // (a no-op when the runner sealed it)
  auto st = co_await finish(c, *slot, out, kwargs);
  if (!st) telemetry::log_error("run_finish_failed", {{"run_id", run_id}, {"error", st.error().message}});
  const bool rolled_back = out.kind == RunOutcome::kCancelled && out.cancel_action == "rollback";
  if (out.kind == RunOutcome::kReleased) hub.release(c.run);
  else hub.end(c.run, st && !rolled_back ? out.result_text : "");
}

asio::awaitable<Status> Worker::Impl::finish(const Claim& c, Slot& slot, const RunOutcome& out, const Json& kwargs) {
  const std::string tenant = c.tenant.to_string(), run_id = c.run.to_string(), thread = c.thread.to_string();
  if (out.kind == RunOutcome::kReleased) {
    // This worker is stopping or lost its lease: leave the run to the queue.
    AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
        *pool, c.tenant,
        "UPDATE runs SET status = 'pending', lease_owner = NULL, lease_expires = NULL, updated_at = now() "
        "WHERE tenant_id = $1 AND run_id = $2 AND lease_owner = $3 AND status = 'running'",
        store::params(tenant, run_id, o.id)));
    co_return ok_status();
  }
  std::string run_status, thread_status;
  switch (out.kind) {
    case RunOutcome::kSuccess: run_status = "success"; thread_status = out.interrupted ? "interrupted" : "idle"; break;
    case RunOutcome::kError: run_status = "error"; thread_status = "error"; break;
    case RunOutcome::kCancelled: run_status = "interrupted"; thread_status = "idle"; break;
    default: run_status = "error"; thread_status = "error";
  }
  store::Param values, interrupts, error;
  if (out.has_state) {
    values = out.values_text;
    interrupts = out.interrupts.dump();
  }
  if (out.kind == RunOutcome::kError) error = out.error.dump();
  const bool temporary = kwargs.value("temporary", false);
  // A run on a kept thread whose result is the thread's new state stores that state once, in
  // the thread: its run row keeps no copy (a state that grows with the conversation would be
  // stored again by every run), and join reads the thread's values, as LangGraph's does for a
  // run that has ended. A run on a temporary thread keeps its result in its row.
  store::Param run_result = out.result_text;
  if (!temporary && out.has_state && out.result_is_values) {
    values = std::move(run_result);
    run_result.reset();
  }
  // The run's and the thread's rows in one round trip (with the COMMIT when no events are to go
  // with them).
  std::vector<store::Statement> batch;
  std::optional<size_t> gone_at;  // the statement that says whether the thread was deleted
  std::optional<size_t> waiting_at;  // the one that says whether a run waits on the thread
  batch.push_back({"UPDATE runs SET status = $3, result = $4::jsonb, cancel = NULL, lease_owner = NULL, "
                   "lease_expires = NULL, updated_at = now() WHERE tenant_id = $1 AND run_id = $2",
                   store::params(tenant, run_id, run_status, run_result)});
  // Its webhook goes out once this commits (webhooks.h). A rolled-back run has no values, as
  // LangGraph's.
  const auto w = kwargs.find("webhook");
  const std::string hook = w != kwargs.end() && w->is_string() ? w->get<std::string>() : "";
  const bool rolled_back = out.kind == RunOutcome::kCancelled && out.cancel_action == "rollback";
  if (!hook.empty()) {
    FinishedRun f{tenant, run_id, hook, slot.started, rolled_back ? store::Param() : values, std::nullopt};
    if (out.kind == RunOutcome::kError) f.error = out.error.dump();
    batch.push_back(queue_webhook_statement(f));
  }
  if (temporary) {
    // Its checkpoints go with it (migration 0017's trigger).
    batch.push_back({"DELETE FROM threads WHERE tenant_id = $1 AND thread_id = $2", store::params(tenant, thread)});
  } else {
    // Another run waiting on the thread keeps it busy (and this worker claims it next). A thread
    // of the same id made after the run's was deleted is another thread: the run's state is not
    // its.
    waiting_at = batch.size();
    batch.push_back({"UPDATE threads t SET status = CASE WHEN $3 <> 'error' AND EXISTS (SELECT 1 FROM runs r WHERE "
                     "r.tenant_id = t.tenant_id AND r.thread_id = t.thread_id AND r.status = 'pending') THEN 'busy' "
                     "ELSE $3 END, \"values\" = coalesce($4::json, t.\"values\"), interrupts = coalesce($5::jsonb, "
                     "t.interrupts), error = $6::jsonb, updated_at = now() WHERE t.tenant_id = $1 AND t.thread_id = $2 "
                     "AND t.created_at <= (SELECT r.created_at FROM runs r WHERE r.tenant_id = $1 AND r.run_id = $7) "
                     "RETURNING EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = t.tenant_id AND r.thread_id = "
                     "t.thread_id AND r.status = 'pending')",
                     store::params(tenant, thread, thread_status, values, interrupts, error, run_id)});
    // A thread deleted while the run ran (Threads::remove cancels it) takes the run with it, and
    // the checkpoints (and their blobs) the run wrote after the delete; a thread of the same id
    // made since keeps its own. Each delete is behind `gone` (a one-time filter): the blobs' join
    // would otherwise walk every blob of the thread to find none, on every run. Planned once
    // (generic): the custom plans it got cost 0.5 ms each, ten times its execution, and its
    // generic plan does what they do (key look-ups, the deletes behind that filter).
    gone_at = store::push_generic_plan(
        batch, {"WITH gone AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM threads t WHERE t.tenant_id = $1 AND "
                "t.thread_id = $3 AND t.created_at <= (SELECT r.created_at FROM runs r WHERE r.tenant_id = $1 AND "
                "r.run_id = $2))), r AS (DELETE FROM runs WHERE tenant_id = $1 AND run_id = $2 AND "
                "EXISTS (SELECT 1 FROM gone)), c AS (DELETE FROM checkpoints WHERE tenant_id = $1 AND "
                "thread_id = $3::text AND metadata ->> 'run_id' = $2::text AND EXISTS (SELECT 1 FROM gone) "
                "RETURNING checkpoint_ns, checkpoint_id), b AS (DELETE FROM checkpoint_blobs x USING c "
                "WHERE x.tenant_id = $1 AND x.thread_id = $3::text AND x.checkpoint_ns = c.checkpoint_ns AND "
                "x.ref = c.checkpoint_id AND EXISTS (SELECT 1 FROM gone)) SELECT count(*) FROM gone",
                store::params(tenant, run_id, thread)});
  }
  if (rolled_back) {
    batch.push_back({"DELETE FROM runs WHERE tenant_id = $1 AND run_id = $2", store::params(tenant, run_id)});
    batch.push_back({"DELETE FROM run_events WHERE tenant_id = $1 AND run_id = $2", store::params(tenant, run_id)});
    slot.log_events = false;
  }
  // The last events and the end in the same transaction as the status, and the NOTIFY after
  // its commit, so a replica that reads the status after the NOTIFY has every event.
  const bool events = slot.log_events || slot.notify_end;
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*pool, c.tenant));
  AP_CO_ASSIGN_OR_RETURN(auto done, co_await tx.exec_all(std::move(batch), !events));
  const bool thread_gone = temporary || (gone_at && done[*gone_at].get(0, 0) != "0");
  // A run queued behind this one on its thread is not "due" to the claims (migration 0034): it
  // can start now, and this worker claims it once this run's slot is free (execute_claimed).
  slot.thread_waiting = waiting_at && !done[*waiting_at].empty() && done[*waiting_at].get(0, 0) == "t";
  if (events) {
    std::vector<std::string> wake;
    AP_CO_RETURN_IF_ERROR(co_await append_events(tx, c, slot, true, wake));
    AP_CO_RETURN_IF_ERROR(co_await tx.commit());
    if (!wake.empty()) asio::co_spawn(ioc, announce(std::move(wake)), asio::detached);  // not waited for
  }
  if (thread_gone) savers(c.tenant)->thread_deleted(thread);
  if (!hook.empty() && webhooks) webhooks->poke();
  if (audit) {
    Json payload{{"run_id", run_id}, {"thread_id", thread}, {"status", run_status}, {"attempt", c.attempt}};
    if (out.interrupted) payload["interrupted"] = true;
    if (out.kind == RunOutcome::kError) payload["error"] = out.error;
    audit->record(scope(c.tenant), audit::Event{"run.finished", audit::Level::kReplay, payload});
    for (const auto& d : out.decisions) audit->record(scope(c.tenant), audit::Event{d.first, audit::Level::kDecision, d.second});
    if (!out.cost.is_null()) audit->record(scope(c.tenant), audit::Event{"run.cost", audit::Level::kReplay, out.cost});
  }
  co_return ok_status();
}

Worker::Worker(WorkerOptions options, control::Graphs& graphs, control::RunHub& hub, control::SaverFor savers,
               audit::AuditLog* audit)
    : impl_(std::make_unique<Impl>(std::move(options), graphs, hub, std::move(savers), audit)) {
  impl_->local = std::make_unique<LocalStarts>(*impl_);
  auto& o = impl_->o;
  if (o.concurrency <= 0) o.concurrency = std::max(16, 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (o.id.empty()) {
    char host[128] = {0};
    gethostname(host, sizeof(host) - 1);
    o.id = std::string(host) + ":" + std::to_string(getpid()) + ":" + Uuid::random_v4().to_string().substr(0, 8);
  }
}

Worker::~Worker() { stop(); }

const std::string& Worker::id() const { return impl_->o.id; }

control::LocalWorker* Worker::local() { return impl_->local.get(); }

Status Worker::start() {
  auto& i = *impl_;
  store::PoolOptions po;
  po.conninfo = i.o.conninfo;
  po.max_size = 4;
  i.pool = std::make_unique<store::Pool>(i.ioc.get_executor(), po);
  i.runners = std::make_unique<asio::thread_pool>(i.o.concurrency);
  if (i.o.models.models) {
    llm::UpstreamOptions co;
    co.egress = &i.o.models.models->egress;
    i.http = std::make_unique<llm::UpstreamClient>(i.ioc.get_executor(), co);
  }
  i.listener = std::make_unique<store::Listener>(i.ioc.get_executor(), i.o.conninfo,
                                                 std::vector<std::string>{"agentplane_runs", "agentplane_run_ctl"});
  auto on_notify = [&i](std::string_view channel, std::string_view payload) { i.on_notify(channel, payload); };
  // Anything queued while we were not listening.
  auto on_ready = [&i] { i.poke(); };
  asio::co_spawn(i.ioc, i.listener->run(on_notify, on_ready), asio::detached);
  asio::co_spawn(i.ioc, i.flush_loop(), asio::detached);
  asio::co_spawn(i.ioc, i.claim_loop(), asio::detached);
  asio::co_spawn(i.ioc, i.renew_loop(), asio::detached);
  i.webhooks = std::make_unique<WebhookSender>(i.ioc.get_executor(), *i.pool,
                                               i.o.models.models ? &i.o.models.models->egress : nullptr, i.audit,
                                               i.o.webhooks);
  i.webhooks->start();
  i.thread = std::thread([&i] {
    set_thread_name("ap-worker");
    if (i.o.thread_nice != 0) {
      const int nice = std::clamp(process_nice() + i.o.thread_nice, -20, 19);
      if (const int err = set_thread_nice(nice))
        telemetry::log_info("worker.priority_unchanged",
                            {{"nice", nice}, {"reason", std::string_view(std::strerror(err))}});
    }
    auto guard = asio::make_work_guard(i.ioc);
    i.ioc.run();
  });
  return ok_status();
}

void Worker::stop() {
  auto& i = *impl_;
  if (!i.thread.joinable()) return;
  i.stopping = true;
  i.listener->stop();
  i.webhooks->stop();
  asio::post(i.ioc, [&i] {
    i.wake.cancel();
    i.flush_wake.cancel();
  });
  // Runs in progress see `stopping` at their next superstep and are handed back to the queue.
  for (int n = 0; n < 500; ++n) {
    auto p = std::make_shared<std::promise<int>>();
    auto f = p->get_future();
    asio::post(i.ioc, [&i, p] { p->set_value(i.slots.load()); });  // runs, and slots the API reserved
    if (f.wait_for(std::chrono::seconds(1)) != std::future_status::ready || f.get() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::vector<store::Pool*> pools(1, i.pool.get());
  if (i.audit) i.audit->drain(pools, std::chrono::seconds(2));  // the runs' last events, still gathering
  i.ioc.stop();
  i.thread.join();
  i.http.reset();
  i.runners->join();
  if (i.audit) i.audit->forget(pools);
  i.pool->close();
}

}  // namespace ap::exec
