#include "llm/usage.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <tuple>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/thread_name.h"
#include "store/tx.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::llm {
namespace asio = boost::asio;

namespace {

// One statement per tenant and flush: the records, and the hourly rollups the writer summed
// itself, each column as one array (no JSON for PostgreSQL to parse), unnested side by side in
// the select list (streamed; unnest() in FROM would first copy every row into a tuplestore). The rollup upserts run
// one per (hour, model, key) group in key order: concurrent writers on other replicas lock rows
// in the same order, so they wait for each other but never deadlock. The tenant is checked once
// for the whole statement (not per row by a foreign key: migration 0019): the records of a
// tenant deleted meanwhile are dropped, and the statement returns whether it was live.
constexpr const char* kWrite = R"(
WITH live AS (SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1::uuid AND deleted_at IS NULL) AS yes),
ins AS (
  INSERT INTO usage_records (tenant_id, id, created_at, source, request_id, key_id, thread_id, run_id, model, provider,
    upstream_model, prompt_tokens, cached_tokens, cache_creation_tokens, completion_tokens, reasoning_tokens,
    cost_micro_usd, price_version, unpriced, estimated, ttft_ms, duration_ms, status, streamed, disconnected)
  SELECT $1::uuid, unnest($2::uuid[]), unnest($3::timestamptz[]), unnest($4::text[]), unnest($5::text[]),
    unnest($6::uuid[]), unnest($7::uuid[]), unnest($8::uuid[]), unnest($9::text[]), unnest($10::text[]),
    unnest($11::text[]), unnest($12::bigint[]), unnest($13::bigint[]), unnest($14::bigint[]), unnest($15::bigint[]),
    unnest($16::bigint[]), unnest($17::bigint[]), unnest($18::text[]), unnest($19::boolean[]), unnest($20::boolean[]),
    unnest($21::float8[]), unnest($22::float8[]), unnest($23::int[]), unnest($24::boolean[]), unnest($25::boolean[])
  WHERE (SELECT yes FROM live)),
up AS (
  INSERT INTO usage_hourly AS h (tenant_id, hour, model, key_id, requests, prompt_tokens, cached_tokens,
    completion_tokens, reasoning_tokens, cost_micro_usd, unpriced_requests)
  SELECT $1::uuid, * FROM unnest($26::timestamptz[], $27::text[], $28::text[], $29::bigint[], $30::bigint[],
    $31::bigint[], $32::bigint[], $33::bigint[], $34::bigint[], $35::bigint[])
  WHERE (SELECT yes FROM live)
  ORDER BY 2, 3, 4
  ON CONFLICT (tenant_id, hour, model, key_id) DO UPDATE SET
    requests = h.requests + excluded.requests, prompt_tokens = h.prompt_tokens + excluded.prompt_tokens,
    cached_tokens = h.cached_tokens + excluded.cached_tokens,
    completion_tokens = h.completion_tokens + excluded.completion_tokens,
    reasoning_tokens = h.reasoning_tokens + excluded.reasoning_tokens,
    cost_micro_usd = h.cost_micro_usd + excluded.cost_micro_usd,
    unpriced_requests = h.unpriced_requests + excluded.unpriced_requests)
SELECT yes FROM live)";

// PostgreSQL's text form of one array column, built element by element.
class Column {
 public:
  void add(std::string_view text) {  // quoted: any text
    sep();
    out_ += '"';
    for (char c : text) {
      if (c == '"' || c == '\\') out_ += '\\';
      out_ += c;
    }
    out_ += '"';
  }
  void add_plain(std::string_view text) {  // numbers, booleans, uuids: never need quotes
    sep();
    out_ += text;
  }
  void add(int64_t v) { add_plain(std::to_string(v)); }
  void add(bool v) { add_plain(v ? "t" : "f"); }
  void add(double v) {
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
    add_plain(std::string_view(buf, static_cast<size_t>(n)));
  }
  void add(const std::optional<Uuid>& u) { u ? add_plain(u->to_string()) : add_plain("NULL"); }
  void add_or_null(const std::string& text) { text.empty() ? add_plain("NULL") : add(text); }
  std::string done() { return std::move(out_) + '}'; }

 private:
  void sep() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_ = "{";
};

// One tenant's records as the statement's parameters: $1 the tenant, $2-$25 the records'
// columns, $26-$35 the hourly groups.
std::vector<store::Param> write_params(const TenantId& tenant, const std::vector<const UsageRecord*>& recs) {
  std::array<Column, 24> c;
  struct Sum {
    int64_t requests = 0, prompt = 0, cached = 0, completion = 0, reasoning = 0, cost = 0, unpriced = 0;
  };
  std::map<std::tuple<int64_t, std::string, std::string>, Sum> groups;  // (hour, model, key)
  for (const UsageRecord* r : recs) {
    const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(r->at.time_since_epoch()).count();
    c[0].add_plain(Uuid::v7(ms).to_string());
    c[1].add(format_rfc3339(r->at));
    c[2].add(r->source);
    c[3].add_or_null(r->request_id);
    c[4].add(r->key_id);
    c[5].add(r->thread_id);
    c[6].add(r->run_id);
    c[7].add(r->model);
    c[8].add(r->provider);
    c[9].add(r->upstream_model);
    c[10].add(r->usage.prompt_tokens);
    c[11].add(r->usage.cached_tokens);
    c[12].add(r->usage.cache_creation_tokens);
    c[13].add(r->usage.completion_tokens);
    c[14].add(r->usage.reasoning_tokens);
    c[15].add(r->cost.micro_usd);
    c[16].add(r->cost.price_version);
    c[17].add(r->cost.unpriced);
    c[18].add(r->usage.estimated);
    r->ttft_ms ? c[19].add(*r->ttft_ms) : c[19].add_plain("NULL");
    c[20].add(r->duration_ms);
    c[21].add(static_cast<int64_t>(r->status));
    c[22].add(r->streamed);
    c[23].add(r->disconnected);
    const int64_t hour_s = ms / 3'600'000 * 3600;  // its hour in UTC (whole-hour zones agree)
    Sum& g = groups[{hour_s, r->model, r->key_id ? r->key_id->to_string() : std::string()}];
    g.requests += 1;
    g.prompt += r->usage.prompt_tokens;
    g.cached += r->usage.cached_tokens;
    g.completion += r->usage.completion_tokens;
    g.reasoning += r->usage.reasoning_tokens;
    g.cost += r->cost.micro_usd;
    g.unpriced += r->cost.unpriced ? 1 : 0;
  }
  std::array<Column, 10> h;
  for (const auto& [k, g] : groups) {
    h[0].add(format_rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(std::get<0>(k)))));
    h[1].add(std::get<1>(k));
    h[2].add(std::get<2>(k));
    for (size_t i = 0; int64_t v : {g.requests, g.prompt, g.cached, g.completion, g.reasoning, g.cost, g.unpriced})
      h[3 + i++].add(v);
  }
  std::vector<store::Param> params;
  params.reserve(35);
  params.emplace_back(tenant.to_string());
  for (auto& col : c) params.emplace_back(col.done());
  for (auto& col : h) params.emplace_back(col.done());
  return params;
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
                                               "Usage records dropped: the queue was full, the database refused them, or their tenant "
                                               "was deleted.")
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
      auto params = write_params(recs.front()->tenant, recs);  // (g++ 12: no temporaries in co_await calls)
      auto live = co_await write_tenant(recs.front()->tenant, std::move(params));
      std::lock_guard lock(mu);
      if (live && *live) {
        written += recs.size();
        written_c.inc(static_cast<double>(recs.size()));
      } else {
        dropped_c.inc(static_cast<double>(recs.size()));
        const std::string why = live ? "the tenant is deleted" : live.error().message;
        telemetry::log_warn("usage_write_failed", {{"tenant_id", tenant}, {"records", std::to_string(recs.size())},
                                                   {"error", why}});
      }
      settled_total += recs.size();
    }
    cv.notify_all();
  }

  // Whether the tenant was live (its records written) or deleted (its records dropped).
  store::Task<bool> write_tenant(const TenantId& tenant, std::vector<store::Param> params) {
    AP_CO_ASSIGN_OR_RETURN(auto tx, co_await store::Tx::begin(*pool, tenant));
    AP_CO_ASSIGN_OR_RETURN(auto rows, co_await tx.exec_and_commit(kWrite, std::move(params)));
    co_return rows.size() == 1 && rows.get(0, 0) == "t";
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

store::Task<int64_t> sweep_usage_records(store::Pool& pool, std::chrono::system_clock::time_point before,
                                         int64_t batch, int64_t max_batches) {
  const std::string at = format_rfc3339(before);
  int64_t deleted = 0;
  for (int64_t i = 0; i < max_batches; ++i) {  // each batch a statement (and transaction) of its own
    AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::platform_query(pool, "SELECT sweep_usage_records($1::timestamptz, $2::int)",
                                                                      store::params(at, std::to_string(batch))));
    const int64_t n = std::stoll(std::string(rows.get(0, 0)));
    deleted += n;
    if (n < batch) break;
  }
  co_return deleted;
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
