// The connection pool (src/store/pool.h) on a real PostgreSQL: waiters are served in order,
// except that a Priority::kFirst waiter goes ahead of every normal one (behind earlier kFirst
// ones), and a waiter whose deadline passes gets a clear error.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "store/pool.h"
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

}  // namespace
}  // namespace ap::store
