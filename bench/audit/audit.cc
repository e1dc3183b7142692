// Audit log benchmark (issue 5): appending ~300-byte events durably (one caller per coroutine,
// all through one shard's AuditLog, which batches per tenant), and verifying a chain of
// 1,000,000 such events with `agentplane audit verify`'s code. Against a private, durable
// PostgreSQL (initdb defaults). Prints JSON lines.
// Usage: bench_audit [seconds=10] [verify_events=1000000]
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/cli/ops.h"
#include "audit/audit_log.h"
#include "bench/common/db.h"
#include "store/pool.h"

using namespace ap;
namespace asio = boost::asio;
using Steady = std::chrono::steady_clock;

namespace {

// Appends from `producers` coroutines, spread over `tenants` tenants, for `seconds`.
void append_case(bench::Db& db, int producers, int tenants, double seconds) {
  std::vector<TenantId> ids{db.tenant};
  for (int i = 1; i < tenants; ++i) {
    TenantId t(Uuid::random_v4());
    if (!db.su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'bench')", {t.to_string()}))
      bench::die("cannot create a tenant");
    ids.push_back(t);
  }
  asio::io_context ioc;
  store::PoolOptions po;
  po.conninfo = db.app_url();
  store::Pool pool(ioc.get_executor(), po);
  audit::AuditLog log;
  long appended = 0, failed = 0;
  bool stop = false;
  std::string padding(90, 'x');  // brings the entry to about 300 bytes
  auto producer = [&](int k) -> asio::awaitable<void> {
    audit::Context ctx{ids[static_cast<size_t>(k % tenants)], "key:bench", "req-" + std::to_string(k), &pool};
    for (long i = 0; !stop; ++i) {
      audit::Event e{"tool.call", audit::Level::kReplay, nlohmann::json{{"tool", "search"}, {"n", i}, {"args", padding}}};
      auto r = co_await log.append(ctx, std::move(e));
      r ? ++appended : ++failed;
    }
  };
  for (int k = 0; k < producers; ++k) asio::co_spawn(ioc, producer(k), asio::detached);
  auto t0 = Steady::now();
  long start_count = 0;
  asio::steady_timer warm(ioc, std::chrono::seconds(1)), end(ioc, std::chrono::duration_cast<Steady::duration>(
                                                                      std::chrono::duration<double>(seconds + 1)));
  warm.async_wait([&](auto) {
    start_count = appended;
    t0 = Steady::now();
  });
  end.async_wait([&](auto) { stop = true; });
  ioc.run();
  double elapsed = std::chrono::duration<double>(Steady::now() - t0).count();
  auto size = db.su->exec("SELECT avg(length(body))::int FROM agentplane.audit_events");
  std::printf(
      "{\"case\": \"audit_append\", \"producers\": %d, \"tenants\": %d, \"events_per_s\": %.0f, \"seconds\": %.1f, "
      "\"failed\": %ld, \"mean_entry_bytes\": %s}\n",
      producers, tenants, static_cast<double>(appended - start_count) / elapsed, elapsed, failed,
      size ? std::string(size->get(0, 0)).c_str() : "null");
  std::fflush(stdout);
  pool.close();
}

void verify_case(bench::Db& db, long events) {
  TenantId t(Uuid::random_v4());
  if (!db.su->exec("INSERT INTO agentplane.tenants (id, name) VALUES ($1, 'verify')", {t.to_string()}))
    bench::die("cannot create a tenant");
  // ~300-byte canonical entries, appended server-side in batches of 10,000 through the same
  // function the server uses.
  auto app = std::move(*store::SyncConn::connect(db.app_url()));
  auto t0 = Steady::now();
  for (long done = 0; done < events; done += 10000) {
    if (!app->exec_script("BEGIN")) bench::die("begin");
    if (!app->exec("SELECT set_config('app.tenant_id', $1, true)", {t.to_string()})) bench::die("set_config");
    auto r = app->exec(
        "SELECT agentplane.audit_append($1::uuid, array_fill(0::smallint, ARRAY[10000]), array_fill('tool.call'::text, "
        "ARRAY[10000]), ARRAY(SELECT convert_to('{\"actor\":\"key:bench\",\"kind\":\"tool.call\",\"level\":\"replay\","
        "\"payload\":{\"args\":\"' || repeat('x', 100) || '\",\"n\":' || (i + $2::bigint) || ',\"tool\":\"search\"},"
        "\"tenant\":\"' || $1::text || '\",\"time\":\"2026-11-25T12:00:00.000000Z\",\"v\":1}', 'UTF8') FROM "
        "generate_series(1, 10000) AS i))",
        {t.to_string(), std::to_string(done)});
    if (!r) bench::die(r.error().message);
    if (!app->exec_script("COMMIT")) bench::die("commit");
  }
  double fill = std::chrono::duration<double>(Steady::now() - t0).count();
  std::fflush(stdout);
  t0 = Steady::now();
  int rc = app::cli::audit_verify(db.app_url(), t.to_string(), "", "");
  double verify = std::chrono::duration<double>(Steady::now() - t0).count();
  std::printf("{\"case\": \"audit_verify\", \"events\": %ld, \"verify_seconds\": %.3f, \"events_per_s\": %.0f, "
              "\"ok\": %s, \"fill_seconds\": %.1f}\n",
              events, verify, static_cast<double>(events) / verify, rc == 0 ? "true" : "false", fill);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 10;
  long events = argc > 2 ? std::atol(argv[2]) : 1000000;
  bench::Db db;
  append_case(db, 64, 1, seconds);
  append_case(db, 256, 1, seconds);
  append_case(db, 256, 16, seconds);
  verify_case(db, events);
}
