// The usage writer (src/llm/usage.h) on a real PostgreSQL: every field of a record survives the
// batch statement as written (quotes, backslashes, NULLs), and the hourly rollups it sums itself
// match the records, adding up across flushes; the retention sweep deletes old records and keeps
// the rollups.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <csignal>
#include <sys/wait.h>

#include "llm/usage.h"
#include "store/sync_conn.h"
#include "tests/integration/fixture.h"

namespace ap::llm {
namespace {

using ap::testing::Database;
using std::chrono::system_clock;

system_clock::time_point at(int64_t unix_s, int ms = 0) {
  return system_clock::time_point(std::chrono::seconds(unix_s)) + std::chrono::milliseconds(ms);
}

UsageRecord record(const TenantId& t, system_clock::time_point when, std::string model, int64_t prompt, int64_t completion) {
  UsageRecord r;
  r.tenant = t;
  r.at = when;
  r.model = std::move(model);
  r.provider = "openai";
  r.upstream_model = "up";
  r.usage.prompt_tokens = prompt;
  r.usage.completion_tokens = completion;
  r.cost.micro_usd = prompt + 2 * completion;
  r.cost.price_version = "test-1";
  r.duration_ms = 1.5;
  r.status = 200;
  return r;
}

TEST(UsageWriter, RecordsKeepEveryFieldAndRollupsSumByHourModelAndKey) {
  auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  const TenantId tenant(Uuid::random_v4());
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'usage-writer')", {tenant.to_string()}));
  const Uuid key = Uuid::random_v4(), thread = Uuid::random_v4(), run = Uuid::random_v4();
  const int64_t ten = 1'796'551'200;  // 2026-12-06T10:00:00Z
  const std::string odd = "we\"ird\\model, {x}";

  UsageRecorder::Options o;
  o.conninfo = Database::get().app_url();
  o.flush_every = std::chrono::milliseconds(20);
  UsageRecorder w(o);
  auto a = record(tenant, at(ten + 15 * 60, 250), odd, 10, 5);
  a.key_id = key;
  a.request_id = "req-\"1\"";
  a.ttft_ms = 0.125;
  a.usage.cached_tokens = 3;
  auto b = record(tenant, at(ten + 45 * 60), odd, 7, 1);  // no key, request id or ttft: NULLs
  b.source = "run";
  b.thread_id = thread;
  b.run_id = run;
  auto c = record(tenant, at(ten + 65 * 60), "gpt", 100, 0);  // the next hour
  c.key_id = key;
  c.cost.unpriced = true;
  c.usage.estimated = true;
  c.usage.reasoning_tokens = 9;
  c.streamed = c.disconnected = true;
  c.status = 502;
  w.record(a);
  w.record(b);
  w.record(c);
  w.flush();
  w.record(record(tenant, at(ten + 20 * 60), odd, 1, 1));  // into b's group (no key), in a second flush
  auto d = record(tenant, at(ten + 30 * 60), odd, 2, 2);
  d.key_id = key;
  w.record(d);
  w.flush();
  EXPECT_EQ(w.written(), 5u);

  auto rows = su->exec(
      "SELECT model, source, request_id, key_id::text, thread_id::text, run_id::text, cached_tokens, ttft_ms, "
      "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), unpriced, estimated, streamed, "
      "disconnected, status, reasoning_tokens, price_version, duration_ms "
      "FROM agentplane.usage_records WHERE tenant_id = $1 ORDER BY created_at",
      {tenant.to_string()});
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 5);
  EXPECT_EQ(rows->get(0, 0), odd);
  EXPECT_EQ(rows->get(0, 2), "req-\"1\"");
  EXPECT_EQ(rows->get(0, 3), key.to_string());
  EXPECT_TRUE(rows->is_null(0, 4));
  EXPECT_EQ(rows->get(0, 6), "3");
  EXPECT_EQ(rows->get(0, 7), "0.125");
  EXPECT_EQ(rows->get(0, 8), "2026-12-06T10:15:00.250");
  EXPECT_EQ(rows->get(0, 15), "test-1");
  EXPECT_EQ(rows->get(0, 16), "1.5");
  // b, written third in time order (10:45)
  EXPECT_EQ(rows->get(3, 1), "run");
  EXPECT_TRUE(rows->is_null(3, 2));
  EXPECT_TRUE(rows->is_null(3, 3));
  EXPECT_EQ(rows->get(3, 4), thread.to_string());
  EXPECT_EQ(rows->get(3, 5), run.to_string());
  EXPECT_TRUE(rows->is_null(3, 7));
  // c
  EXPECT_EQ(rows->get(4, 0), "gpt");
  EXPECT_EQ(rows->get(4, 9), "t");
  EXPECT_EQ(rows->get(4, 10), "t");
  EXPECT_EQ(rows->get(4, 11), "t");
  EXPECT_EQ(rows->get(4, 12), "t");
  EXPECT_EQ(rows->get(4, 13), "502");
  EXPECT_EQ(rows->get(4, 14), "9");

  auto hourly = su->exec(
      "SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24'), model, key_id, requests, prompt_tokens, cached_tokens, "
      "completion_tokens, reasoning_tokens, cost_micro_usd, unpriced_requests "
      "FROM agentplane.usage_hourly WHERE tenant_id = $1 ORDER BY hour, model, key_id",
      {tenant.to_string()});
  ASSERT_TRUE(hourly) << hourly.error().message;
  ASSERT_EQ(hourly->size(), 3);
  auto row = [&](int i) {
    std::string s;
    for (int col = 0; col < hourly->columns(); ++col) s += std::string(col ? "|" : "") + std::string(hourly->get(i, col));
    return s;
  };
  // 10:00, the odd model, no key: b (7+1) and the second flush's (1+1).
  EXPECT_EQ(row(0), "10|" + odd + "||2|8|0|2|0|12|0");
  // 10:00, the odd model, the key: a (10+5, 3 cached) and d (2+2), across two flushes.
  EXPECT_EQ(row(1), "10|" + odd + "|" + key.to_string() + "|2|12|3|7|0|26|0");
  EXPECT_EQ(row(2), "11|gpt|" + key.to_string() + "|1|100|0|0|9|100|1");
}

TEST(UsageWriter, RecordsOfADeletedTenantAreDroppedAndOtherTenantsStillWritten) {
  auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  const TenantId live(Uuid::random_v4()), gone(Uuid::random_v4()), never(Uuid::random_v4());
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'usage-live')", {live.to_string()}));
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name, deleted_at, audit_retain_until) "
                       "VALUES ($1, 'usage-gone', now(), now() + interval '1 day')",
                       {gone.to_string()}));
  UsageRecorder::Options o;
  o.conninfo = Database::get().app_url();
  o.flush_every = std::chrono::milliseconds(20);
  UsageRecorder w(o);
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(system_clock::now().time_since_epoch()).count();
  w.record(record(gone, at(now_s), "m", 1, 1));
  w.record(record(never, at(now_s), "m", 1, 1));  // no such tenant at all
  w.record(record(live, at(now_s), "m", 1, 1));
  w.flush();
  EXPECT_EQ(w.written(), 1u);
  for (const TenantId* t : {&live, &gone, &never}) {
    auto n = su->exec("SELECT (SELECT count(*) FROM agentplane.usage_records WHERE tenant_id = $1) + "
                      "(SELECT count(*) FROM agentplane.usage_hourly WHERE tenant_id = $1)",
                      {t->to_string()});
    ASSERT_TRUE(n);
    EXPECT_EQ(n->get(0, 0), t == &live ? "2" : "0") << t->to_string();
  }
}

// The retention sweep (serve --usage-retention-days) on the app role's pool, as a shard runs it.
int64_t sweep(system_clock::time_point before, int64_t batch, int64_t max_batches) {
  boost::asio::io_context ioc;
  store::PoolOptions po;
  po.conninfo = Database::get().app_url();
  store::Pool pool(ioc.get_executor(), po);
  std::optional<Result<int64_t>> out;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { out = co_await sweep_usage_records(pool, before, batch, max_batches); },
      boost::asio::detached);
  ioc.run();
  pool.close();
  EXPECT_TRUE(out && *out) << (out ? out->error().message : "did not run");
  return out && *out ? **out : -1;
}

TEST(UsageWriter, RetentionSweepDeletesOldRecordsOfEveryTenantAndKeepsTheRollups) {
  auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  const TenantId a(Uuid::random_v4()), b(Uuid::random_v4());
  for (const TenantId* t : {&a, &b})
    ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'usage-retention')", {t->to_string()}));
  UsageRecorder::Options o;
  o.conninfo = Database::get().app_url();
  o.flush_every = std::chrono::milliseconds(20);
  UsageRecorder w(o);
  // Long ago (no other test writes records this old): the cut is 2001-06-01.
  const int64_t jan = 978'307'200, jul = 993'945'600, cut = 991'353'600;
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(system_clock::now().time_since_epoch()).count();
  for (int i = 0; i < 3; ++i) w.record(record(a, at(jan + i * 60), "m", 1, 1));
  w.record(record(a, at(jul), "m", 1, 1));
  for (int i = 0; i < 2; ++i) w.record(record(b, at(jan + 86400 * 31 + i), "m", 1, 1));
  w.record(record(b, at(now_s), "m", 1, 1));
  w.flush();
  ASSERT_EQ(w.written(), 7u);
  auto count = [&](const TenantId& t, const char* table) {
    auto n = su->exec(std::string("SELECT coalesce(") + (std::string(table) == "usage_records" ? "count(*)" : "sum(requests)") +
                          ", 0) FROM agentplane." + table + " WHERE tenant_id = $1",
                      {t.to_string()});
    return n ? std::stoll(std::string(n->get(0, 0))) : -1;
  };
  // Batches of 2: the oldest first, a batch going on into the next tenant, until one comes short.
  EXPECT_EQ(sweep(at(cut), 2, 50), 5);
  EXPECT_EQ(count(a, "usage_records"), 1);
  EXPECT_EQ(count(b, "usage_records"), 1);
  auto left = su->exec("SELECT created_at = to_timestamp($2) FROM agentplane.usage_records WHERE tenant_id = $1",
                       {a.to_string(), std::to_string(jul)});
  ASSERT_TRUE(left && left->size() == 1);
  EXPECT_EQ(left->get(0, 0), "t");  // the newer record stayed
  // The rollups (what GET /v1/usage reports) still count every call.
  EXPECT_EQ(count(a, "usage_hourly"), 4);
  EXPECT_EQ(count(b, "usage_hourly"), 3);
  // A sweep stops after max_batches; the next one goes on.
  for (int i = 0; i < 3; ++i) w.record(record(a, at(jan + 3600 + i), "m", 1, 1));
  w.flush();
  EXPECT_EQ(sweep(at(cut), 1, 2), 2);
  EXPECT_EQ(sweep(at(cut), 1, 2), 1);
  EXPECT_EQ(sweep(at(cut), 1, 2), 0);
  EXPECT_EQ(count(a, "usage_records"), 1);
  // The app role itself still cannot delete records (only through the sweep).
  auto app = std::move(*store::SyncConn::connect(Database::get().app_url()));
  EXPECT_FALSE(app->exec("DELETE FROM agentplane.usage_records WHERE tenant_id = $1", {a.to_string()}));
}

// `serve --usage-retention-days`: an API replica sweeps at start-up (then hourly).
TEST(UsageWriter, AServerWithARetentionDeletesOlderRecords) {
  auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  const TenantId t(Uuid::random_v4());
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'usage-retention-server')", {t.to_string()}));
  UsageRecorder::Options o;
  o.conninfo = Database::get().app_url();
  UsageRecorder w(o);
  const auto now = system_clock::now();
  w.record(record(t, now - std::chrono::hours(24 * 3), "m", 1, 1));  // older than 2 days
  w.record(record(t, now - std::chrono::hours(24 * 3) - std::chrono::minutes(5), "m", 1, 1));
  w.record(record(t, now - std::chrono::hours(24), "m", 1, 1));  // within them
  w.flush();
  ASSERT_EQ(w.written(), 3u);
  const std::string log = Database::get().temp_dir() + "/usage-retention-serve.log";
  pid_t p = ap::testing::spawn_agentplane({"serve", "--role", "api", "--database-url", Database::get().app_url(), "--listen",
                                           "127.0.0.1:0", "--threads", "1", "--purge-interval", "0",
                                           "--usage-retention-days", "2"},
                                          log);
  ASSERT_GT(p, 0);
  auto left = [&] {
    auto n = su->exec("SELECT count(*) FROM agentplane.usage_records WHERE tenant_id = $1", {t.to_string()});
    return n ? std::stoll(std::string(n->get(0, 0))) : -1;
  };
  EXPECT_TRUE(ap::testing::eventually([&] { return left() == 1; }, std::chrono::seconds(20))) << left();
  ::kill(p, SIGTERM);
  int status = 0;
  waitpid(p, &status, 0);
  auto hourly = su->exec("SELECT sum(requests) FROM agentplane.usage_hourly WHERE tenant_id = $1", {t.to_string()});
  ASSERT_TRUE(hourly);
  EXPECT_EQ(hourly->get(0, 0), "3");
}

// Migration 0028: the table of usage records is not analyzed every time a tenth of it is new
// (under the gateway's load, every few seconds, 14-33 us of CPU per model call), only after a
// million more rows. The records written here are over both PostgreSQL's default analyze
// threshold (50 + a tenth of the table) and its insert-vacuum one (1,000 + a fifth): once
// autovacuum is done with the table, it has vacuumed it and not analyzed it.
TEST(UsageWriter, NewRecordsTriggerVacuumsButNotAnalyzes) {
  auto su = std::move(*store::SyncConn::connect(Database::get().superuser_url()));
  auto opts = su->exec("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'agentplane.usage_records'::regclass");
  ASSERT_TRUE(opts);
  EXPECT_NE(std::string(opts->get(0, 0)).find("autovacuum_analyze_threshold=1000000"), std::string::npos) << opts->get(0, 0);
  auto counts = [&] {
    auto r = su->exec("SELECT autovacuum_count, autoanalyze_count FROM pg_stat_all_tables "
                      "WHERE relid = 'agentplane.usage_records'::regclass");
    EXPECT_TRUE(r);
    return std::pair(std::stoll(std::string(r->get(0, 0))), std::stoll(std::string(r->get(0, 1))));
  };
  // (a worker that both vacuums and analyzes a table reports the vacuum first)
  auto busy = [&] {
    auto r = su->exec("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                      "AND query LIKE '%usage_records%'");
    return !r || r->get(0, 0) != "0";
  };
  ASSERT_TRUE(ap::testing::eventually([&] { return !busy(); }, std::chrono::seconds(30)));
  const auto [vacuums, analyzes] = counts();
  auto rows = su->exec("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'agentplane.usage_records'::regclass");
  ASSERT_TRUE(rows);
  const int64_t n = std::max<int64_t>(3000, 1500 + std::stoll(std::string(rows->get(0, 0))) / 5);
  const TenantId t(Uuid::random_v4());
  ASSERT_TRUE(su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'usage-analyze')", {t.to_string()}));
  UsageRecorder::Options o;
  o.conninfo = Database::get().app_url();
  UsageRecorder w(o);
  const auto now = system_clock::now();
  for (int64_t i = 0; i < n; ++i) w.record(record(t, now, "m", 1, 1));
  w.flush();
  ASSERT_EQ(w.written(), static_cast<uint64_t>(n));
  // Done with the table: vacuumed since, and no autovacuum worker on it any more.
  EXPECT_TRUE(ap::testing::eventually([&] { return counts().first > vacuums && !busy(); }, std::chrono::seconds(30)))
      << "usage_records was not vacuumed within 30 s of " << n << " new rows";
  EXPECT_EQ(counts().second, analyzes);
}

}  // namespace
}  // namespace ap::llm
