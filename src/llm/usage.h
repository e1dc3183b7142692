// Usage records: one per model call (gateway requests and llm nodes alike), written in batches off
// the request path, with hourly per-tenant, per-model, per-key rollups kept up to date by the same
// writer (one upsert per group and flush, in a fixed order: no hot-row update per request and no
// deadlock between replicas). No prompt or response bodies are ever recorded.
// `UsageRecorder::record` is thread-safe and never waits for the database: records queue in
// memory and a writer thread flushes them every `flush_every` or `flush_at` records. A full queue
// drops the oldest records and counts them (agentplane_usage_dropped_total).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/ids.h"
#include "llm/chat.h"
#include "llm/prices.h"
#include "store/pool.h"

namespace ap::llm {

struct UsageRecord {
  TenantId tenant;
  std::chrono::system_clock::time_point at;
  std::string source = "gateway";  // gateway | run
  std::string request_id;
  std::optional<Uuid> key_id, thread_id, run_id;
  std::string model;  // the route's name, as the client asked
  std::string provider;
  std::string upstream_model;
  Usage usage;
  Cost cost;
  std::optional<double> ttft_ms;
  double duration_ms = 0;
  int status = 200;
  bool streamed = false;
  bool disconnected = false;
};

class UsageRecorder {
 public:
  struct Options {
    std::string conninfo;
    std::chrono::milliseconds flush_every{250};
    size_t flush_at = 1000;
    size_t max_queue = 200'000;
  };
  explicit UsageRecorder(Options options);
  ~UsageRecorder();  // writes what is queued (bounded wait), then stops

  void record(UsageRecord r);
  // Blocks until every record queued before the call is written or failed (tests, shutdown).
  void flush();
  uint64_t written() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct UsageQuery {
  std::string from, to;  // "YYYY-MM-DD" (days in the tenant's zone) or RFC 3339; empty: last 30 days
  std::string group_by = "model";  // model | day | key
};
// {from, to, group_by, time_zone, rows: [{group, requests, prompt_tokens, cached_tokens,
// completion_tokens, reasoning_tokens, cost_micro_usd, unpriced_requests}], total: {...}}.
// Reads the rollups (hour granularity) under the tenant's RLS. InvalidArgument for bad input.
store::Task<std::string> query_usage(store::Pool& pool, const TenantId& tenant, UsageQuery q);

// Deletes the usage records (all tenants) made before `before`, oldest first, in batches of
// `batch`, at most `max_batches` per call (a larger backlog takes more calls); the hourly
// rollups stay. Returns the records deleted. The maintenance sweep calls it with the operator's
// retention (`serve --usage-retention-days`).
store::Task<int64_t> sweep_usage_records(store::Pool& pool, std::chrono::system_clock::time_point before,
                                         int64_t batch = 10000, int64_t max_batches = 50);

}  // namespace ap::llm
