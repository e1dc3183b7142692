// The connection pool (src/store/pool.h) on a real PostgreSQL: waiters are served in order,
// except that a Priority::kFirst waiter goes ahead of every normal one (behind earlier kFirst
// ones), and a waiter whose deadline passes gets a clear error. A transaction's statement pushed
// with push_generic_plan is planned once per connection.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "store/pool.h"
#include "store/tx.h"
#include "tests/integration/fixture.h"

namespace ap::store {
namespace {

using ap::testing::Database;

TEST(Pool, FirstPriorityWaitersAreServedBeforeNormalOnesAndEachInOrder) {
  asio::io_context ioc;
  PoolOptions po;
  po.conninfo = Database::get().app_url();
  po.max_size = 1;
  Pool pool(ioc.get_executor(), po);
  std::vector<std::string> served;
  auto waiter = [&](std::string name, Pool::Priority p) -> asio::awaitable<void> {
    auto lease = co_await pool.acquire(p);
    EXPECT_TRUE(lease) << name;
    served.push_back(name);
  };
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    auto held = co_await pool.acquire();
    EXPECT_TRUE(held);
    // Queue behind the only connection, in this order.
    asio::co_spawn(ioc, waiter("normal-1", Pool::Priority::kNormal), asio::detached);
    asio::co_spawn(ioc, waiter("first-1", Pool::Priority::kFirst), asio::detached);
    asio::co_spawn(ioc, waiter("normal-2", Pool::Priority::kNormal), asio::detached);
    asio::co_spawn(ioc, waiter("first-2", Pool::Priority::kFirst), asio::detached);
    asio::steady_timer t(ioc, std::chrono::milliseconds(50));
    co_await t.async_wait(asio::use_awaitable);
    EXPECT_TRUE(served.empty());
  }, asio::detached);  // `held` goes back here
  ioc.run();
  EXPECT_EQ(served, (std::vector<std::string>{"first-1", "first-2", "normal-1", "normal-2"}));
  pool.close();
}

TEST(Pool, AWaiterPastItsDeadlineIsToldAllConnectionsAreBusy) {
  asio::io_context ioc;
  PoolOptions po;
  po.conninfo = Database::get().app_url();
  po.max_size = 1;
  po.acquire_timeout = std::chrono::milliseconds(100);
  Pool pool(ioc.get_executor(), po);
  std::optional<Error> refused;
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    auto held = co_await pool.acquire();
    EXPECT_TRUE(held);
    auto second = co_await pool.acquire(Pool::Priority::kFirst);
    if (!second) refused = second.error();
  }, asio::detached);
  ioc.run();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->message, "all database connections are busy");
  pool.close();
}

// PostgreSQL plans a prepared statement anew on every execution while its generic plan looks
// costlier than its custom plans: a generate_series of a parameter is 1,000 rows to a generic
// plan and the parameter's value to a custom one. Pushed with push_generic_plan, the same
// statement is planned once, and the transaction's later statements have the setting back.
TEST(Tx, AStatementPushedForAGenericPlanIsPlannedOnce) {
  asio::io_context ioc;
  PoolOptions po;
  po.conninfo = Database::get().app_url();
  po.max_size = 1;
  Pool pool(ioc.get_executor(), po);
  constexpr std::string_view kPlain = "SELECT count(*) FROM generate_series(1, $1::int) AS plain";
  constexpr std::string_view kGeneric = "SELECT count(*) FROM generate_series(1, $1::int) AS generic";
  std::vector<std::string> plans;
  asio::co_spawn(ioc, [&]() -> asio::awaitable<void> {
    auto tx = co_await Tx::begin_platform(pool);
    EXPECT_TRUE(tx);
    if (!tx) co_return;
    for (int i = 1; i <= 8; ++i) {
      std::vector<Statement> batch;
      batch.push_back({kPlain, params(std::to_string(i))});
      const size_t at = push_generic_plan(batch, {kGeneric, params(std::to_string(i))});
      batch.push_back({"SELECT current_setting('plan_cache_mode')", {}});
      auto rows = co_await tx->exec_all(std::move(batch), false);
      EXPECT_TRUE(rows);
      if (!rows) co_return;
      EXPECT_EQ((*rows)[0].get(0, 0), std::to_string(i));
      EXPECT_EQ((*rows)[at].get(0, 0), std::to_string(i));
      EXPECT_EQ(rows->back().get(0, 0), "auto");
    }
    auto seen = co_await tx->exec(
        "SELECT substring(statement FROM 'AS (\\w+)') || ' ' || generic_plans || ' ' || custom_plans "
        "FROM pg_prepared_statements WHERE statement LIKE 'SELECT count(*) FROM generate_series%' ORDER BY 1");
    EXPECT_TRUE(seen);
    if (seen)
      for (int r = 0; r < seen->size(); ++r) plans.emplace_back(seen->get(r, 0));
  }, asio::detached);
  ioc.run();
  EXPECT_EQ(plans, (std::vector<std::string>{"generic 8 0", "plain 0 8"}));
  pool.close();
}

}  // namespace
}  // namespace ap::store
