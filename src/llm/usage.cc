#include "llm/usage.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/thread_name.h"
#include "store/tx.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::llm {
namespace asio = boost::asio;

namespace {

constexpr const char* kInsert = R"(
INSERT INTO usage_records (tenant_id, id, created_at, source, request_id, key_id, thread_id, run_id, model, provider,
  upstream_model, prompt_tokens, cached_tokens, cache_creation_tokens, completion_tokens, reasoning_tokens,
  cost_micro_usd, price_version, unpriced, estimated, ttft_ms, duration_ms, status, streamed, disconnected)
SELECT $1::uuid, r.id, r.created_at, r.source, r.request_id, r.key_id, r.thread_id, r.run_id, r.model, r.provider,
  r.upstream_model, r.prompt_tokens, r.cached_tokens, r.cache_creation_tokens, r.completion_tokens, r.reasoning_tokens,
  r.cost_micro_usd, r.price_version, r.unpriced, r.estimated, r.ttft_ms, r.duration_ms, r.status, r.streamed, r.disconnected
FROM jsonb_to_recordset($2::jsonb) AS r(id uuid, created_at timestamptz, source text, request_id text, key_id uuid,
  thread_id uuid, run_id uuid, model text, provider text, upstream_model text, prompt_tokens bigint,
  cached_tokens bigint, cache_creation_tokens bigint, completion_tokens bigint, reasoning_tokens bigint,
  cost_micro_usd bigint, price_version text, unpriced boolean, estimated boolean, ttft_ms double precision,
  duration_ms double precision, status int, streamed boolean, disconnected boolean)
ON CONFLICT DO NOTHING)";

// One upsert per (hour, model, key) group, in key order: concurrent writers on other replicas
// lock rows in the same order, so they wait for each other but never deadlock.
constexpr const char* kRollup = R"(
INSERT INTO usage_hourly AS h (tenant_id, hour, model, key_id, requests, prompt_tokens, cached_tokens,
  completion_tokens, reasoning_tokens, cost_micro_usd, unpriced_requests)
SELECT $1::uuid, date_trunc('hour', r.created_at), r.model, coalesce(r.key_id::text, ''), count(*),
  sum(r.prompt_tokens), sum(r.cached_tokens), sum(r.completion_tokens), sum(r.reasoning_tokens),
  sum(r.cost_micro_usd), count(*) FILTER (WHERE r.unpriced)
FROM jsonb_to_recordset($2::jsonb) AS r(created_at timestamptz, model text, key_id uuid, prompt_tokens bigint,
  cached_tokens bigint, completion_tokens bigint, reasoning_tokens bigint, cost_micro_usd bigint, unpriced boolean)
GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
ON CONFLICT (tenant_id, hour, model, key_id) DO UPDATE SET
  requests = h.requests + excluded.requests, prompt_tokens = h.prompt_tokens + excluded.prompt_tokens,
  cached_tokens = h.cached_tokens + excluded.cached_tokens,
  completion_tokens = h.completion_tokens + excluded.completion_tokens,
  reasoning_tokens = h.reasoning_tokens + excluded.reasoning_tokens,
  cost_micro_usd = h.cost_micro_usd + excluded.cost_micro_usd,
  unpriced_requests = h.unpriced_requests + excluded.unpriced_requests)";

Json to_json(const UsageRecord& r) {
  auto opt = [](const std::optional<Uuid>& u) { return u ? Json(u->to_string()) : Json(nullptr); };
  return Json{{"id", Uuid::v7(std::chrono::duration_cast<std::chrono::milliseconds>(r.at.time_since_epoch()).count()).to_string()},
              {"created_at", format_rfc3339(r.at)},
              {"source", r.source},
              {"request_id", r.request_id.empty() ? Json(nullptr) : Json(r.request_id)},
              {"key_id", opt(r.key_id)},
              {"thread_id", opt(r.thread_id)},
              {"run_id", opt(r.run_id)},
              {"model", r.model},
              {"provider", r.provider},
              {"upstream_model", r.upstream_model},
              {"prompt_tokens", r.usage.prompt_tokens},
              {"cached_tokens", r.usage.cached_tokens},
              {"cache_creation_tokens", r.usage.cache_creation_tokens},
              {"completion_tokens", r.usage.completion_tokens},
              {"reasoning_tokens", r.usage.reasoning_tokens},
              {"cost_micro_usd", r.cost.micro_usd},
              {"price_version", r.cost.price_version},
              {"unpriced", r.cost.unpriced},
              {"estimated", r.usage.estimated},
              {"ttft_ms", r.ttft_ms ? Json(*r.ttft_ms) : Json(nullptr)},
              {"duration_ms", r.duration_ms},
              {"status", r.status},
              {"streamed", r.streamed},
              {"disconnected", r.disconnected}};
}

}  // namespace

struct UsageRecorder::Impl {
  Options options;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<UsageRecord> queue;
  uint64_t queued_total = 0;   // records ever queued
  uint64_t settled_total = 0;  // records written, failed or dropped
  uint64_t written = 0;
  bool stopping = false;
  asio::io_context ioc{1};
  std::unique_ptr<store::Pool> pool;
  std::unique_ptr<asio::steady_timer> timer;
  std::thread thread;
  telemetry::Counter& written_c =
      telemetry::metrics().counter("agentplane_usage_records_written_total", "Usage records written to the database.").with({});
  telemetry::Counter& dropped_c = telemetry::metrics()
                                      .counter("agentplane_usage_dropped_total",
                                               "Usage records dropped: the queue was full or the database refused them.")
                                      .with({});

  asio::awaitable<void> loop() {
    while (true) {
      timer->expires_after(options.flush_every);
      co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
      std::vector<UsageRecord> batch;
      bool stop;
      {
        std::lock_guard lock(mu);
        stop = stopping;
        size_t n = std::min(queue.size(), options.flush_at * 4);
        batch.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      if (!batch.empty()) co_await write(std::move(batch));
      if (stop) {
        std::lock_guard lock(mu);
        if (queue.empty()) break;
      }
    }
    pool->close();
  }

  asio::awaitable<void> write(std::vector<UsageRecord> batch) {
    std::map<std::string, std::vector<const UsageRecord*>> by_tenant;
    for (const auto& r : batch) by_tenant[r.tenant.to_string()].push_back(&r);
    for (const auto& [tenant, recs] : by_tenant) {
      Json rows = Json::array();
      for (const auto* r : recs) rows.push_back(to_json(*r));
      const std::string data = rows.dump();
      Status st = co_await write_tenant(recs.front()->tenant, data);
      std::lock_guard lock(mu);
      if (st) {
        written += recs.size();
        written_c.inc(static_cast<double>(recs.size()));
      } else {
        dropped_c.inc(static_cast<double>(recs.size()));
        telemetry::log_warn("usage_write_failed", {{"tenant_id", tenant}, {"records", std::to_string(recs.size())},
                                                   {"error", st.error().message}});
      }
      settled_total += recs.size();
    }
    cv.notify_all();
  }

  store::Task<void> write_tenant(const TenantId& tenant, const std::string& data) {
    AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*pool, tenant));
    auto p1 = store::params(tenant.to_string(), data);
    AP_CO_RETURN_IF_ERROR(co_await tx.exec(kInsert, p1));
    auto p2 = store::params(tenant.to_string(), data);
    AP_CO_RETURN_IF_ERROR(co_await tx.exec_and_commit(kRollup, std::move(p2)));
    co_return Status{};
  }
};

UsageRecorder::UsageRecorder(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  store::PoolOptions po;
  po.conninfo = impl_->options.conninfo;
  po.max_size = 2;
  impl_->pool = std::make_unique<store::Pool>(impl_->ioc.get_executor(), po);
  impl_->timer = std::make_unique<asio::steady_timer>(impl_->ioc);
  asio::co_spawn(impl_->ioc, impl_->loop(), asio::detached);
  impl_->thread = std::thread([this] {
    set_thread_name("ap-usage");
    impl_->ioc.run();
  });
}

UsageRecorder::~UsageRecorder() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  asio::post(impl_->ioc, [this] { impl_->timer->cancel(); });
  // The writer drains the queue and returns; bounded by the pool's statement timeout.
  impl_->thread.join();
}

void UsageRecorder::record(UsageRecord r) {
  bool wake = false;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->queue.size() >= impl_->options.max_queue) {
      impl_->queue.pop_front();
      ++impl_->settled_total;
      impl_->dropped_c.inc();
    }
    impl_->queue.push_back(std::move(r));
    ++impl_->queued_total;
    wake = impl_->queue.size() == impl_->options.flush_at;
  }
  if (wake) asio::post(impl_->ioc, [this] { impl_->timer->cancel(); });
}

void UsageRecorder::flush() {
  std::unique_lock lock(impl_->mu);
  const uint64_t target = impl_->queued_total;
  asio::post(impl_->ioc, [this] { impl_->timer->cancel(); });
  impl_->cv.wait_for(lock, std::chrono::seconds(30), [&] { return impl_->settled_total >= target; });
}

uint64_t UsageRecorder::written() const {
  std::lock_guard lock(impl_->mu);
  return impl_->written;
}

// ---- reading ----

namespace {

bool is_day(const std::string& s) {
  return s.size() == 10 && s[4] == '-' && s[7] == '-' &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '-'; });
}

}  // namespace

store::Task<std::string> query_usage(store::Pool& pool, const TenantId& tenant, UsageQuery q) {
  std::string group_expr;
  if (q.group_by == "model") group_expr = "model";
  else if (q.group_by == "key") group_expr = "key_id";
  else if (q.group_by == "day") group_expr = "to_char((hour AT TIME ZONE tz.name)::date, 'YYYY-MM-DD')";
  else co_return Error::invalid_argument("group_by must be model, day or key");
  // A bound is a day in the tenant's zone ("to" includes its whole day) or an RFC 3339 instant.
  auto bound = [](const std::string& v, int param, bool upper) -> Result<std::string> {
    const std::string p = "$" + std::to_string(param);
    if (v.empty())
      return upper ? std::string("now() + interval '1 hour'") : std::string("now() - interval '30 days'");
    if (is_day(v))
      return "((" + p + "::date + " + (upper ? "1" : "0") + ")::timestamp AT TIME ZONE tz.name)";
    if (v.size() >= 20 && v[10] == 'T') return p + "::timestamptz";
    return Error::invalid_argument("from and to must be YYYY-MM-DD or RFC 3339 timestamps (got '" + v + "')");
  };
  AP_CO_ASSIGN_OR_RETURN(std::string lo, bound(q.from, 1, false));
  AP_CO_ASSIGN_OR_RETURN(std::string hi, bound(q.to, 2, true));
  const std::string sql =
      "WITH tz AS (SELECT coalesce((SELECT time_zone FROM tenant_limits), 'UTC') AS name), "
      "b AS (SELECT " + lo + " AS lo, " + hi + " AS hi, tz.name, $1::text AS p1, $2::text AS p2 FROM tz), "
      "g AS (SELECT " + group_expr + " AS grp, sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, "
      "sum(cached_tokens) AS cached_tokens, sum(completion_tokens) AS completion_tokens, "
      "sum(reasoning_tokens) AS reasoning_tokens, sum(cost_micro_usd) AS cost_micro_usd, "
      "sum(unpriced_requests) AS unpriced_requests FROM usage_hourly, b AS tz "
      "WHERE hour >= tz.lo AND hour < tz.hi GROUP BY 1) "
      "SELECT json_build_object('from', to_json(b.lo), 'to', to_json(b.hi), 'time_zone', b.name, "
      "'rows', coalesce((SELECT json_agg(json_build_object('group', grp, 'requests', requests, "
      "'prompt_tokens', prompt_tokens, 'cached_tokens', cached_tokens, 'completion_tokens', completion_tokens, "
      "'reasoning_tokens', reasoning_tokens, 'cost_micro_usd', cost_micro_usd, 'unpriced_requests', "
      "unpriced_requests) ORDER BY grp) FROM g), '[]'), "
      "'total', (SELECT json_build_object('requests', coalesce(sum(requests), 0), "
      "'prompt_tokens', coalesce(sum(prompt_tokens), 0), 'cached_tokens', coalesce(sum(cached_tokens), 0), "
      "'completion_tokens', coalesce(sum(completion_tokens), 0), 'reasoning_tokens', coalesce(sum(reasoning_tokens), 0), "
      "'cost_micro_usd', coalesce(sum(cost_micro_usd), 0), 'unpriced_requests', coalesce(sum(unpriced_requests), 0)) FROM g)) "
      "FROM b";
  std::vector<store::Param> params{q.from.empty() ? store::Param() : store::Param(q.from),
                                   q.to.empty() ? store::Param() : store::Param(q.to)};
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant, sql, std::move(params)));
  auto j = Json::parse(rows.get(0, 0));
  j["group_by"] = q.group_by;
  // The API's numbers are integers (PostgreSQL's sum(bigint) is numeric, sent as e.g. 12).
  co_return j.dump();
}

}  // namespace ap::llm
