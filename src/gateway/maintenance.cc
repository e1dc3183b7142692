#include "gateway/maintenance.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "audit/audit_log.h"
#include "auth/records.h"
#include "control/plane.h"
#include "llm/usage.h"
#include "telemetry/log.h"
#include "vault/credentials.h"

namespace ap::gateway {
namespace {

constexpr std::chrono::seconds kFlushEvery{10};
constexpr std::chrono::seconds kSweepEvery{300};
constexpr std::chrono::seconds kUsageSweepEvery{3600};

boost::asio::awaitable<void> sweep(store::Pool& pool, Upkeep& state) {
  auto r = co_await control::sweep_run_data(pool);
  state.sweeping = false;
  if (!r) telemetry::log_error("run_data_sweep_failed", {{"error", r.error().message}});
  else if (*r > 0) telemetry::log_info("run_data_sweep", {{"deleted_rows", *r}});
}

boost::asio::awaitable<void> sweep_usage(store::Pool& pool, Upkeep& state) {
  const auto before = std::chrono::system_clock::now() - state.usage_retention;
  auto r = co_await llm::sweep_usage_records(pool, before);
  state.sweeping_usage = false;
  if (!r) telemetry::log_error("usage_sweep_failed", {{"error", r.error().message}});
  else if (*r > 0) telemetry::log_info("usage_sweep", {{"deleted_records", *r}});
}

boost::asio::awaitable<void> purge(store::Pool& pool, Upkeep& state) {
  auto r = co_await auth::purge_tenants(pool);
  state.purging = false;
  if (!r) {
    telemetry::log_error("tenant_purge_failed", {{"error", r.error().message}});
  } else if (r->swept_rows > 0 || r->purged_tenants > 0) {
    telemetry::log_info("tenant_purge", {{"swept_rows", r->swept_rows},
                                         {"purged_tenants", int64_t{r->purged_tenants}},
                                         {"purged_events", r->purged_events}});
  }
}

boost::asio::awaitable<void> fire_crons(store::Pool& pool, control::Crons& crons, Upkeep& state) {
  auto r = co_await crons.fire_due(pool);
  state.firing = false;
  if (!r) telemetry::log_warn("cron_scan_failed", {{"error", r.error().message}});
}

}  // namespace

void run_upkeep(store::Pool& pool, const Services& services, bool first_shard, Upkeep& state) {
  const auto now = std::chrono::steady_clock::now();
  if (services.credentials && now >= state.next_flush) {
    state.next_flush = now + kFlushEvery;
    services.credentials->flush_uses(pool, kFlushEvery);
  }
  if (services.audit && now >= state.next_costs) {
    state.next_costs = now + kFlushEvery;
    for (auto& [tenant, payload] : state.costs.take())
      if (auto t = TenantId::parse(tenant))
        services.audit->record(audit::Context{*t, "system:gateway", "", &pool},
                               audit::Event{"model.cost", audit::Level::kReplay, std::move(payload)});
  }
  if (first_shard && services.agents && !state.firing && now >= state.next_crons) {
    state.next_crons = now + std::chrono::seconds(1);
    state.firing = true;
    boost::asio::co_spawn(pool.executor(), fire_crons(pool, services.agents->crons, state), boost::asio::detached);
  }
  if (first_shard && services.agents && !state.sweeping && now >= state.next_sweep) {
    state.next_sweep = now + kSweepEvery;
    state.sweeping = true;
    boost::asio::co_spawn(pool.executor(), sweep(pool, state), boost::asio::detached);
  }
  if (first_shard && state.usage_retention.count() > 0 && !state.sweeping_usage && now >= state.next_usage_sweep) {
    state.next_usage_sweep = now + kUsageSweepEvery;
    state.sweeping_usage = true;
    boost::asio::co_spawn(pool.executor(), sweep_usage(pool, state), boost::asio::detached);
  }
  if (first_shard && state.purge_interval.count() > 0 && !state.purging) {
    if (state.next_purge == std::chrono::steady_clock::time_point{}) {
      // Not at start-up (replicas starting together would all sweep at once): one interval on.
      state.next_purge = now + state.purge_interval;
    } else if (now >= state.next_purge) {
      state.next_purge = now + state.purge_interval;
      state.purging = true;
      boost::asio::co_spawn(pool.executor(), purge(pool, state), boost::asio::detached);
    }
  }
}

}  // namespace ap::gateway
