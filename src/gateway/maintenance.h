// Background upkeep, driven by each shard's sweeper on its own executor: writes the credential
// cache's use counts to the audit log every few seconds (every shard), and on the first shard
// runs the deleted-tenant sweep (auth::purge_tenants) every `purge_interval` and the run data
// sweep (control::sweep_run_data: expired threads, old run event logs, expired store items)
// every few minutes, and, with a usage retention, deletes older usage records every hour
// (llm::sweep_usage_records); it also fires due crons every second (control::Crons::fire_due; replicas share them safely); every
// shard writes its model calls' cost events (CostMeter) every few seconds.
#pragma once

#include <chrono>

#include "gateway/cost_meter.h"
#include "gateway/router.h"

namespace ap::gateway {

struct Upkeep {
  std::chrono::seconds purge_interval{3600};  // 0: never (another replica or cron does it)
  std::chrono::days usage_retention{0};       // 0: usage records are kept
  std::chrono::steady_clock::time_point next_flush{};
  std::chrono::steady_clock::time_point next_purge{};
  std::chrono::steady_clock::time_point next_sweep{};
  std::chrono::steady_clock::time_point next_crons{};
  std::chrono::steady_clock::time_point next_costs{};
  std::chrono::steady_clock::time_point next_usage_sweep{};
  CostMeter costs;
  bool purging = false;
  bool sweeping = false;
  bool firing = false;
  bool sweeping_usage = false;
};

// Cheap when nothing is due; starts the purge as its own coroutine on `pool`'s executor.
void run_upkeep(store::Pool& pool, const Services& services, bool first_shard, Upkeep& state);

}  // namespace ap::gateway
