#include "control/run_relay.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <thread>
#include <unordered_map>

#include "common/thread_name.h"
#include "control/run_hub.h"
#include "store/listener.h"
#include "store/pool.h"
#include "store/tx.h"
#include "telemetry/log.h"

namespace ap::control {

namespace asio = boost::asio;

namespace {

// The run's status and its logged events after $3 (at most 500): at least one row while the
// run exists.
constexpr const char* kFetch =
    "SELECT r.status, e.seq, e.event, e.data FROM runs r LEFT JOIN LATERAL (SELECT seq, event, data FROM "
    "run_events x WHERE x.tenant_id = r.tenant_id AND x.run_id = r.run_id AND x.seq > $3::bigint ORDER BY seq "
    "LIMIT 500) e ON true WHERE r.tenant_id = $1 AND r.run_id = $2 ORDER BY e.seq";
constexpr int kBatch = 500;

}  // namespace

struct RunRelay::Impl : std::enable_shared_from_this<RunRelay::Impl> {
  struct Watch {
    TenantId tenant;
    int64_t cursor = -1;  // the last event id read
    bool busy = false;    // a fetch is running
    bool again = false;   // news came during it
    bool ended = false;   // an "end" notification came
    std::chrono::steady_clock::time_point read_at = std::chrono::steady_clock::now();  // last fetch
  };
  RunHub& hub;
  std::unique_ptr<store::Pool> pool;  // outlives the io_context (see Worker::Impl)
  asio::io_context ioc{1};
  store::Listener listener;
  std::thread thread;
  std::unordered_map<Uuid, Watch, UuidHash> watched;

  Impl(RunHub& h, std::string conninfo)
      : hub(h), listener(ioc.get_executor(), conninfo, {"agentplane_run_events"}) {
    store::PoolOptions po;
    po.conninfo = std::move(conninfo);
    po.max_size = 2;
    pool = std::make_unique<store::Pool>(ioc.get_executor(), po);
  }

  void watch(const Uuid& run, const TenantId& tenant, bool on, bool catch_up) {
    if (!on) {
      watched.erase(run);
      return;
    }
    if (!watched.emplace(run, Watch{tenant}).second || !catch_up) return;
    asio::co_spawn(ioc, fetch(run), asio::detached);
  }

  void on_notify(std::string_view payload) {
    // "<tenant> <run> more|end"
    if (payload.size() < 74) return;
    auto run = Uuid::parse(payload.substr(37, 36));
    if (!run) return;
    auto it = watched.find(*run);
    if (it == watched.end()) return;
    if (payload.substr(74) == "end") it->second.ended = true;
    asio::co_spawn(ioc, fetch(*run), asio::detached);
  }

  asio::awaitable<void> fetch(Uuid run) {
    auto it = watched.find(run);
    if (it == watched.end()) co_return;
    if (it->second.busy) {
      it->second.again = true;
      co_return;
    }
    it->second.busy = true;
    it->second.read_at = std::chrono::steady_clock::now();
    const TenantId tenant = it->second.tenant;
    for (;;) {
      it = watched.find(run);
      if (it == watched.end()) co_return;  // unwatched meanwhile
      it->second.again = false;
      const bool ended = it->second.ended;
      auto rows = co_await store::tenant_query(*pool, tenant, kFetch,
                                               store::params(tenant.to_string(), run.to_string(),
                                                             std::to_string(it->second.cursor)));
      it = watched.find(run);
      if (it == watched.end()) co_return;
      if (!rows) {
        telemetry::log_warn("run_relay_read_failed", {{"run_id", run.to_string()}, {"error", rows.error().message}});
        break;  // the next notification or reconnection tries again
      }
      std::vector<RunEvent> events;
      for (int i = 0; i < rows->size(); ++i)
        if (!rows->is_null(i, 1))
          events.push_back({std::stoll(std::string(rows->get(i, 1))), std::string(rows->get(i, 2)),
                            std::string(rows->get(i, 3))});
      if (!events.empty()) {
        it->second.cursor = events.back().id;
        hub.deliver(run, events);
      }
      if (static_cast<int>(events.size()) == kBatch || it->second.again) continue;
      // The worker writes a run's last events and its end status in one transaction.
      const std::string status = rows->empty() ? "" : std::string(rows->get(0, 0));
      const bool over = rows->empty() ? ended : (status != "pending" && status != "running");
      if (over) {
        watched.erase(it);
        hub.end(run);
        co_return;
      }
      break;
    }
    it = watched.find(run);
    if (it != watched.end()) it->second.busy = false;
  }

  // Notifications can be lost (one sent after its commit can fail: store::notify_after_commit),
  // so a watched run not read for a second is read anyway.
  asio::awaitable<void> poll_loop() {
    asio::steady_timer t(ioc);
    for (;;) {
      t.expires_after(kPoll);
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      const auto due = std::chrono::steady_clock::now() - kPoll;
      for (auto& [run, w] : watched)
        if (w.read_at <= due) asio::co_spawn(ioc, fetch(run), asio::detached);
    }
  }
  static constexpr auto kPoll = std::chrono::seconds(1);
};

RunRelay::RunRelay(RunHub& hub, std::string conninfo) : impl_(std::make_shared<Impl>(hub, std::move(conninfo))) {
  std::weak_ptr<Impl> weak = impl_;
  hub.set_watcher([weak](const Uuid& run, const TenantId& tenant, bool on, bool catch_up) {
    auto i = weak.lock();
    if (!i) return;
    asio::post(i->ioc, [weak, run, tenant, on, catch_up] {
      if (auto j = weak.lock()) j->watch(run, tenant, on, catch_up);
    });
  });
}

RunRelay::~RunRelay() { stop(); }

void RunRelay::start() {
  auto& i = *impl_;
  std::weak_ptr<Impl> weak = impl_;
  auto on_notify = [weak](std::string_view, std::string_view payload) {
    if (auto j = weak.lock()) j->on_notify(payload);
  };
  auto on_ready = [weak] {
    auto j = weak.lock();
    if (!j) return;
    for (auto& [run, w] : j->watched) asio::co_spawn(j->ioc, j->fetch(run), asio::detached);
  };
  asio::co_spawn(i.ioc, i.listener.run(on_notify, on_ready), asio::detached);
  asio::co_spawn(i.ioc, i.poll_loop(), asio::detached);
  i.thread = std::thread([&i] {
    set_thread_name("ap-run-relay");
    auto guard = asio::make_work_guard(i.ioc);
    i.ioc.run();
  });
}

void RunRelay::stop() {
  auto& i = *impl_;
  if (!i.thread.joinable()) return;
  i.listener.stop();
  i.ioc.stop();
  i.thread.join();
  i.pool->close();
}

}  // namespace ap::control
