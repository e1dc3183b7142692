// RunHub: subscribers that want a run's events and subscribers that wait only for its end.
#include "control/run_hub.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace ap::control {
namespace {

namespace asio = boost::asio;

std::vector<std::string> drain(asio::io_context& ioc, const std::shared_ptr<Subscription>& s) {
  auto f = asio::co_spawn(
      ioc,
      [s]() -> asio::awaitable<std::vector<std::string>> {
        std::vector<std::string> got;
        while (auto e = co_await s->next(std::chrono::milliseconds(200))) got.push_back(e->event);
        co_return got;
      },
      asio::use_future);
  ioc.restart();
  ioc.run();
  return f.get();
}

// A run that runs on this replica (begun), and an executor for its subscribers.
class RunHubTest : public ::testing::Test {
 protected:
  void SetUp() override { hub.begin(run, tenant, 0); }
  asio::io_context ioc;
  RunHub hub{"test-replica"};
  const Uuid run = Uuid::random_v4();
  const TenantId tenant{Uuid::random_v4()};
};

TEST_F(RunHubTest, EndOnlySubscribersGetTheResultNotTheEventsAndDoNotAskForThem) {
  auto waiter = hub.subscribe(run, tenant, ioc.get_executor(), -1, false, /*events=*/false);
  EXPECT_FALSE(hub.wants_events(run));  // only a /wait: nobody reads the events
  hub.publish(run, "metadata", "{}");
  auto reader = hub.subscribe(run, tenant, ioc.get_executor(), -1);  // a join: replays what is kept
  EXPECT_TRUE(hub.wants_events(run));
  hub.publish(run, "values", "{\"a\":1}");
  hub.unsubscribe(run, reader);
  EXPECT_FALSE(hub.wants_events(run));
  hub.publish(run, "values", "{\"a\":2}");
  hub.end(run, "{\"a\":2}");
  EXPECT_TRUE(drain(ioc, waiter).empty());
  EXPECT_TRUE(waiter->ended());
  EXPECT_EQ(waiter->result(), "{\"a\":2}");
  EXPECT_FALSE(hub.wants_events(run));  // ended: no stream left
}

TEST_F(RunHubTest, EventSubscribersReplayTheKeptLogThenGoLive) {
  hub.publish(run, "metadata", "{}");
  hub.publish(run, "values", "{}");
  auto reader = hub.subscribe(run, tenant, ioc.get_executor(), 0);  // after id 0
  hub.publish(run, "updates", "{}");
  hub.end(run, "{}");
  EXPECT_EQ(drain(ioc, reader), (std::vector<std::string>{"values", "updates"}));
}

}  // namespace
}  // namespace ap::control
