// The same decisions on both backends: the local one, and Redis (a real redis-server that this test
// starts on a free loopback port and stops).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <thread>

#include "ratelimit/limiter.h"
#include "ratelimit/limits.h"

namespace ap::ratelimit {
namespace {
namespace asio = boost::asio;

class RedisServer {
 public:
  RedisServer() {
    if (access("/usr/bin/redis-server", X_OK) != 0) return;
    asio::io_context ioc;
    asio::ip::tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port_ = a.local_endpoint().port();
    a.close();
    dir_ = std::filesystem::temp_directory_path() / ("ap-redis-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    pid_ = fork();
    if (pid_ == 0) {
      std::string port = std::to_string(port_);
      execl("/usr/bin/redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port.c_str(), "--save", "",
            "--appendonly", "no", "--dir", dir_.c_str(), "--logfile", "", "--daemonize", "no", nullptr);
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {  // until it accepts connections
      asio::ip::tcp::socket s(ioc);
      boost::system::error_code ec;
      s.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
      if (!ec) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~RedisServer() { stop(); }
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  bool up() const { return pid_ > 0; }
  uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::filesystem::path dir_;
};

RedisServer& redis() {
  static RedisServer r;
  return r;
}

template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> a) {
  // Runs until the result is in (a Redis connection's reader keeps the context busy for good).
  auto f = asio::co_spawn(ioc, std::move(a), asio::use_future);
  ioc.restart();
  while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) ioc.run_one();
  return f.get();
}

class Backends : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "local") {
      backend_ = make_local_backend();
    } else {
      ASSERT_TRUE(redis().up()) << "redis-server is required (scripts/install-deps.sh installs it)";
      RedisOptions o;
      o.port = std::to_string(redis().port());
      o.timeout = std::chrono::milliseconds(2000);
      o.slot_batches = GetParam() == "redis-slots";  // batches per tenant, as for Redis Cluster
      backend_ = make_redis_backend(o);
      // With leases, as servers run it: these limits are all too small to be leased, so every
      // decision must come out exactly as without.
      if (GetParam() == "redis-leases") backend_ = make_leasing_backend(std::move(backend_));
    }
    prefix_ = "{t:" + std::to_string(getpid()) + "-" + std::to_string(counter_++) + "}:";
  }
  Result<Decision> acquire(std::vector<Ask> asks) { return run(ioc_, backend_->acquire(ioc_.get_executor(), std::move(asks))); }
  Status adjust(std::vector<Ask> asks) { return run(ioc_, backend_->adjust(ioc_.get_executor(), std::move(asks))); }
  Ask bucket(const std::string& k, int64_t limit, double per_s, int64_t cost) {
    return Ask{Ask::Kind::kBucket, prefix_ + k, limit, per_s, 0, cost};
  }
  Ask counter(const std::string& k, int64_t limit, int64_t cost) { return Ask{Ask::Kind::kCounter, prefix_ + k, limit, 0, 3600, cost}; }

  asio::io_context ioc_;
  std::unique_ptr<Backend> backend_;
  std::string prefix_;
  static inline int counter_ = 0;
};

TEST_P(Backends, BucketAllowsItsCapacityThenRefusesWithRetryAfter) {
  for (int i = 0; i < 5; ++i) {
    auto d = acquire({bucket("b", 5, 0.5, 1)});
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(d->allowed) << i;
    EXPECT_EQ(d->verdicts[0].remaining, 4 - i);
  }
  auto d = acquire({bucket("b", 5, 0.5, 1)});
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_index, 0);
  EXPECT_GT(d->retry_after_s, 1.0);  // one token at 0.5/s: about 2 s
  EXPECT_LE(d->retry_after_s, 2.01);
  auto never = acquire({bucket("b", 5, 0.5, 6)});  // more than the capacity: never
  ASSERT_TRUE(never);
  EXPECT_FALSE(never->allowed);
  EXPECT_LT(never->retry_after_s, 0);
}

TEST_P(Backends, AllOrNothingAcrossAsks) {
  ASSERT_TRUE(acquire({counter("spend", 100, 90)})->allowed);
  // The bucket has room but the counter does not: neither is taken.
  auto d = acquire({bucket("rpm", 10, 1, 1), counter("spend", 100, 20)});
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->denied_index, 1);
  auto peek = acquire({bucket("rpm", 10, 1, 0), counter("spend", 100, 0)});
  ASSERT_TRUE(peek);
  EXPECT_EQ(peek->verdicts[0].remaining, 10);
  EXPECT_EQ(peek->verdicts[1].remaining, 10);
  EXPECT_TRUE(acquire({bucket("rpm", 10, 1, 1), counter("spend", 100, 10)})->allowed);
}

TEST_P(Backends, AdjustSettlesReservations) {
  ASSERT_TRUE(acquire({bucket("tpm", 1000, 1, 800), counter("spend", 1000, 700)})->allowed);
  ASSERT_TRUE(adjust({bucket("tpm", 1000, 1, -600), counter("spend", 1000, -650)}));  // used 200 tokens, 50 micro-USD
  auto d = acquire({bucket("tpm", 1000, 1, 0), counter("spend", 1000, 0)});
  ASSERT_TRUE(d);
  EXPECT_GE(d->verdicts[0].remaining, 800);
  EXPECT_LE(d->verdicts[0].remaining, 802);
  EXPECT_EQ(d->verdicts[1].remaining, 950);
}

TEST_P(Backends, CorrectionsAddUpAndReachOtherReplicasWithoutAnotherDecision) {
  // Three settles on one bucket and one on another tenant's counter, with no decision after them
  // on this replica: another replica (its own connection) sees all of them, summed.
  const std::string other_tag = "{t:other-" + std::to_string(getpid()) + "-" + std::to_string(counter_++) + "}:";
  const Ask spend{Ask::Kind::kCounter, other_tag + "spend", 1000, 0, 3600, 400};
  ASSERT_TRUE(acquire({bucket("tpm", 1000, 1e-6, 900), spend})->allowed);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(adjust({bucket("tpm", 1000, 1e-6, -100)}));
  Ask refund = spend;
  refund.cost = -150;
  ASSERT_TRUE(adjust({refund}));
  std::unique_ptr<Backend> second;
  Backend* other = backend_.get();
  if (GetParam() != "local") {
    RedisOptions o;
    o.port = std::to_string(redis().port());
    o.slot_batches = GetParam() == "redis-slots";
    second = make_redis_backend(o);
    other = second.get();
  }
  Ask peek_spend = spend;
  peek_spend.cost = 0;
  int64_t tokens = -1, spent_left = -1;
  for (int i = 0; i < 200 && !(tokens == 400 && spent_left == 750); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto d = run(ioc_, other->acquire(ioc_.get_executor(), {bucket("tpm", 1000, 1e-6, 0), peek_spend}));
    ASSERT_TRUE(d) << d.error().message;
    tokens = d->verdicts[0].remaining;
    spent_left = d->verdicts[1].remaining;
  }
  EXPECT_EQ(tokens, 400);       // 1000 - 900 + 3 x 100
  EXPECT_EQ(spent_left, 750);   // 1000 - 400 + 150
}

TEST_P(Backends, ExactUnderConcurrency) {
  // 4 threads, each its own executor (and, for Redis, its own connection), 100 tries each against
  // a limit of 150 that does not refill during the test: exactly 150 pass.
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  const Ask ask = bucket("shared", 150, 1e-6, 1);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      asio::io_context ioc;
      auto f = asio::co_spawn(
          ioc,
          [&]() -> asio::awaitable<void> {
            for (int i = 0; i < 100; ++i) {
              std::vector<Ask> asks{ask};
              auto d = co_await backend_->acquire(ioc.get_executor(), std::move(asks));
              if (d && d->allowed) ++allowed;
            }
          },
          asio::use_future);
      while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) ioc.run_one();
      f.get();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 150);
}

TEST_P(Backends, SlidingWindowAllowsTheLimitThenWaitsForTheWindowToSlide) {
  const Ask w{Ask::Kind::kWindow, prefix_ + "win", 10, 0, 60, 1};
  for (int i = 0; i < 10; ++i) {
    auto d = acquire({w});
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(d->allowed) << i;
    EXPECT_EQ(d->verdicts[0].remaining, 9 - i);
  }
  auto no = acquire({w});
  ASSERT_TRUE(no);
  EXPECT_FALSE(no->allowed);
  EXPECT_GT(no->retry_after_s, 0);
  EXPECT_LE(no->retry_after_s, 120);
  // A settle gives back what was reserved; a cost above the limit never fits.
  ASSERT_TRUE(adjust({Ask{Ask::Kind::kWindow, prefix_ + "win", 10, 0, 60, -3}}));
  auto after = acquire({Ask{Ask::Kind::kWindow, prefix_ + "win", 10, 0, 60, 3}});
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->allowed);
  auto never = acquire({Ask{Ask::Kind::kWindow, prefix_ + "win2", 10, 0, 60, 11}});
  ASSERT_TRUE(never);
  EXPECT_FALSE(never->allowed);
  EXPECT_LT(never->retry_after_s, 0);
}

TEST_P(Backends, SlidingWindowCorrectionLandsInTheWindowOfItsTakeAndNeverBelowZero) {
  // 1 s windows: take 6, let the window roll, then give back more than was taken.
  const Ask w{Ask::Kind::kWindow, prefix_ + "roll", 10, 0, 1, 6};
  auto took = acquire({w});
  ASSERT_TRUE(took) << took.error().message;
  ASSERT_TRUE(took->allowed);
  const int64_t window = took->verdicts[0].window;
  ASSERT_GE(window, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // A settle of the old window's take: into the previous window (not the new one), clamped.
  Ask refund = w;
  refund.cost = -50;
  refund.window = window;
  ASSERT_TRUE(adjust({refund}));
  Ask probe = w;
  probe.cost = 10;  // the whole limit fits only if the refund did not go negative anywhere
  auto d = acquire({probe});
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->allowed);
  EXPECT_EQ(d->verdicts[0].remaining, 0);
  // A correction for a window already out of the count changes nothing.
  refund.window = window - 5;
  ASSERT_TRUE(adjust({refund}));
  probe.cost = 1;
  auto full = acquire({probe});
  ASSERT_TRUE(full);
  EXPECT_FALSE(full->allowed);
}

TEST(WindowMath, WaitsForThePreviousWindowToSlideOut) {
  // 100 per window; the previous window had 100, this one 20, 25% gone: 75 + 20 = 95 counted.
  EXPECT_DOUBLE_EQ(WindowMath::estimate(20, 100, 0.25), 95);
  // 10 more fit once the previous window weighs at most 70: at 30% (after 0.05 of the window).
  EXPECT_NEAR(WindowMath::wait_s(100, 10, 20, 100, 0.25, 60), 0.05 * 60, 1e-9);
  // This window alone is full: wait for its end, then until it weighs at most 90 (10%).
  EXPECT_NEAR(WindowMath::wait_s(100, 10, 100, 0, 0.5, 60), (0.5 + 0.1) * 60, 1e-9);
  EXPECT_EQ(WindowMath::wait_s(100, 101, 0, 0, 0, 60), -1);
}

TEST_P(Backends, ConcurrentDecisionsOnOneExecutorAreExact) {
  // 300 decisions at once from one executor (Redis: batched into a few script runs), each taking
  // from a bucket of 100 and a counter of 250, half of them also from a second tenant's bucket
  // of 40: all-or-nothing holds inside a batch, and each decision gets its own verdicts.
  const Ask a = bucket("batch-a", 100, 1e-6, 1), c = counter("batch-c", 250, 1);
  const Ask other{Ask::Kind::kBucket, "{t:other-" + prefix_ + "}:b", 40, 1e-6, 0, 1};
  int allowed = 0, allowed_both = 0, done = 0;
  std::vector<int64_t> remaining;
  for (int i = 0; i < 300; ++i)
    asio::co_spawn(ioc_, [&, i]() -> asio::awaitable<void> {
      std::vector<Ask> asks{a, c};
      if (i % 2) asks.push_back(other);
      auto d = co_await backend_->acquire(ioc_.get_executor(), std::move(asks));
      ++done;
      if (!d || !d->allowed) co_return;
      ++allowed;
      if (i % 2) ++allowed_both;
      remaining.push_back(d->verdicts[0].remaining);
    }, asio::detached);
  ioc_.restart();
  while (done < 300) ioc_.run_one();
  EXPECT_EQ(allowed, 100);
  EXPECT_LE(allowed_both, 40);
  std::sort(remaining.begin(), remaining.end());
  for (size_t i = 0; i < remaining.size(); ++i) EXPECT_EQ(remaining[i], static_cast<int64_t>(i)) << "verdicts belong to their decision";
  auto after = acquire({counter("batch-c", 250, 0)});
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->verdicts[0].remaining, 150);  // the counter took exactly the allowed decisions
}

INSTANTIATE_TEST_SUITE_P(Ratelimit, Backends, ::testing::Values("local", "redis", "redis-slots", "redis-leases"));

// Leases, over one shared backend (the local one here; Redis in the Backends suite and in
// tests/integration/ratelimit_replicas_test.cc), counting what reaches it.
class Shared final : public Backend {
 public:
  explicit Shared(Backend& to) : to_(to) {}
  asio::awaitable<Result<Decision>> acquire(asio::any_io_executor ex, std::vector<Ask> asks) override {
    ++acquires;
    co_return co_await to_.acquire(ex, std::move(asks));
  }
  asio::awaitable<Status> adjust(asio::any_io_executor ex, std::vector<Ask> deltas) override {
    ++adjusts;
    co_return co_await to_.adjust(ex, std::move(deltas));
  }
  std::string name() const override { return "shared"; }
  inline static std::atomic<int> acquires{0}, adjusts{0};

 private:
  Backend& to_;
};

class Leases : public ::testing::Test {
 protected:
  void SetUp() override {
    Shared::acquires = 0;
    Shared::adjusts = 0;
  }
  std::unique_ptr<Backend> replica(LeaseOptions o = {}) { return make_leasing_backend(std::make_unique<Shared>(*store_), o); }
  Result<Decision> acquire(Backend& b, std::vector<Ask> asks) { return run(ioc_, b.acquire(ioc_.get_executor(), std::move(asks))); }
  Status adjust(Backend& b, std::vector<Ask> asks) { return run(ioc_, b.adjust(ioc_.get_executor(), std::move(asks))); }
  // What the shared bucket has left, asked directly.
  int64_t left(const Ask& a) {
    Ask peek = a;
    peek.cost = 0;
    return run(ioc_, store_->acquire(ioc_.get_executor(), {peek}))->verdicts[0].remaining;
  }
  void idle(std::chrono::milliseconds d) {
    run(ioc_, [d]() -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor, d);
      co_await t.async_wait(asio::use_awaitable);
    }());
  }
  static Ask bucket(const std::string& key, int64_t limit, int64_t cost) { return Ask{Ask::Kind::kBucket, key, limit, 1e-9, 0, cost}; }

  asio::io_context ioc_;
  std::unique_ptr<Backend> store_ = make_local_backend();
};

TEST_F(Leases, DecisionsOnABucketWithPlentyLeftAreDecidedInProcess) {
  auto r = replica();
  const Ask a = bucket("{t:l1}:rpm", 1'000'000, 1);
  for (int i = 0; i < 1000; ++i) {
    auto d = acquire(*r, {a});
    ASSERT_TRUE(d && d->allowed) << i;
    EXPECT_EQ(d->verdicts[0].remaining, 1'000'000 - i - 1) << "the replica's view: the shared bucket plus what it holds";
  }
  // The first decision learns what is left, the second takes a lease of 256, refilled at half:
  // a handful of shared decisions, not 1,000.
  EXPECT_LE(Shared::acquires.load(), 10);
  // Nothing is lost or made up: the bucket lacks exactly what was allowed plus what is held.
  const int64_t held = left(a);
  EXPECT_LE(held, 1'000'000 - 1000);
  EXPECT_GE(held, 1'000'000 - 1000 - 2 * 256);
}

TEST_F(Leases, NeverMoreThanTheLimitAcrossReplicasAndEveryTokenIsUsable) {
  // Two replicas, one bucket of 20,000 (large enough to lease), decisions of 3 alternating
  // between them until both are refused, then again once idle leases went back: exactly
  // floor(20,000 / 3) pass, never one more.
  LeaseOptions o;
  o.idle = std::chrono::milliseconds(20);
  auto x = replica(o), y = replica(o);
  const Ask a = bucket("{t:l2}:tpm", 20'000, 3);
  int64_t allowed = 0;
  for (int pass = 0; pass < 10; ++pass) {
    int64_t before = allowed;
    for (int i = 0; i < 20'000; i += 2) {
      auto dx = acquire(*x, {a});
      auto dy = acquire(*y, {a});
      ASSERT_TRUE(dx && dy);
      allowed += dx->allowed + dy->allowed;
      ASSERT_LE(allowed, 20'000 / 3);
      if (!dx->allowed && !dy->allowed) break;
    }
    if (pass > 0 && allowed == before) break;
    idle(std::chrono::milliseconds(80));  // what the replicas still hold goes back
  }
  EXPECT_EQ(allowed, 20'000 / 3);
  // Leased while the bucket had 64 x 16 decisions' worth left; the last ~1,000 decisions, near the
  // limit, each went to the shared bucket.
  EXPECT_LT(Shared::acquires.load(), 20'000 / 3 / 4) << "leases were used";
}

TEST_F(Leases, UnusedLeasesGoBackAndSmallLimitsAreNeverLeased) {
  LeaseOptions o;
  o.idle = std::chrono::milliseconds(500);  // long enough that a preempted test never sees a lease go back early
  auto x = replica(o), y = replica(o);
  const Ask big = bucket("{t:l3}:rpm", 100'000, 1);
  ASSERT_TRUE(acquire(*x, {big})->allowed);
  ASSERT_TRUE(acquire(*x, {big})->allowed);  // takes a lease
  EXPECT_LT(left(big), 100'000 - 2);
  idle(std::chrono::milliseconds(2000));  // x does nothing: its lease goes back
  EXPECT_EQ(left(big), 100'000 - 2);
  // A limit of 100 is never leased: y's decisions all go to the shared bucket, exactly.
  const Ask small = bucket("{t:l3}:small", 100, 1);
  Shared::acquires = 0;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(acquire(*y, {small})->allowed);
  EXPECT_EQ(Shared::acquires.load(), 50);
  EXPECT_EQ(left(small), 50);
}

TEST_F(Leases, SettlesGoIntoTheLeaseAndBudgetsAreLeasedToo) {
  LeaseOptions o;
  o.idle = std::chrono::milliseconds(500);  // long enough that a preempted test never sees a lease go back early
  auto r = replica(o);
  const Ask tpm = bucket("{t:l4}:tpm", 10'000'000, 500);
  ASSERT_TRUE(acquire(*r, {tpm})->allowed);
  ASSERT_TRUE(acquire(*r, {tpm})->allowed);  // takes a lease of 256 decisions of 500
  const int64_t before = left(tpm);
  Ask refund = tpm;
  refund.cost = -400;  // used 100 of the 500 reserved
  ASSERT_TRUE(adjust(*r, {refund}));
  EXPECT_EQ(Shared::adjusts.load(), 0) << "held by the replica, not sent";
  EXPECT_EQ(left(tpm), before);
  // A daily budget (a counter) with plenty left is leased like a bucket; what the replica still
  // holds goes back when it is idle, and the counter then shows exactly what was spent.
  const Ask spend{Ask::Kind::kCounter, "{t:l4}:spend:d:20261207", 1'000'000, 0, 3600, 10};
  const int shared_before = Shared::acquires.load();
  for (int i = 0; i < 50; ++i) {
    auto d = acquire(*r, {tpm, spend});
    ASSERT_TRUE(d && d->allowed) << i;
    EXPECT_EQ(d->verdicts[1].remaining, 1'000'000 - 10 * (i + 1));
    EXPECT_GT(d->verdicts[1].reset_s, 3000);
  }
  EXPECT_LE(Shared::acquires.load(), shared_before + 4);
  Ask peek = spend;
  peek.cost = 0;
  EXPECT_LT(left(peek), 1'000'000 - 500) << "the lease is taken from the counter";
  idle(std::chrono::milliseconds(2000));
  EXPECT_EQ(left(peek), 1'000'000 - 500);
}

TEST_F(Leases, FastPathsDecideAndSettleFromTheLeaseAtOnce) {
  LeaseOptions o;
  o.idle = std::chrono::milliseconds(500);
  auto r = replica(o);
  auto ex = ioc_.get_executor();
  const Ask a = bucket("{t:l5}:tpm", 10'000'000, 100);
  EXPECT_FALSE(r->acquire_now(ex, {a})) << "no lease yet: the shared backend decides";
  ASSERT_TRUE(acquire(*r, {a})->allowed);
  ASSERT_TRUE(acquire(*r, {a})->allowed);  // takes a lease
  const int shared = Shared::acquires.load();
  auto d = r->acquire_now(ex, {a, a});  // one key asked twice: both from the lease
  ASSERT_TRUE(d && d->allowed);
  ASSERT_EQ(d->verdicts.size(), 2u);
  EXPECT_EQ(d->verdicts[1].remaining, 10'000'000 - 4 * 100);
  EXPECT_EQ(Shared::acquires.load(), shared);
  // Too much for what the lease holds: not decided at once.
  EXPECT_FALSE(r->acquire_now(ex, {bucket("{t:l5}:tpm", 10'000'000, 1'000'000)}));
  // Settles: into the lease at once; one on a limit without a lease and one that would hand
  // tokens back stay for adjust().
  Ask used_less = a, other = bucket("{t:l5}:other", 1000, -5), too_much = a;
  used_less.cost = -40;
  too_much.cost = -1'000'000;
  std::vector<Ask> deltas{used_less, other, too_much};
  r->adjust_now(ex, deltas);
  ASSERT_EQ(deltas.size(), 2u);
  EXPECT_EQ(deltas[0].key, "{t:l5}:other");
  EXPECT_EQ(deltas[1].cost, -1'000'000);
  EXPECT_EQ(Shared::adjusts.load(), 0);
  ioc_.run_for(std::chrono::milliseconds(10));  // a refill the fast path started, if any
  // The local backend decides and settles everything at once.
  auto local = make_local_backend();
  auto ld = local->acquire_now(ex, {bucket("{t:l5}:x", 10, 4)});
  ASSERT_TRUE(ld && ld->allowed);
  EXPECT_EQ(ld->verdicts[0].remaining, 6);
  std::vector<Ask> back{bucket("{t:l5}:x", 10, -4)};
  local->adjust_now(ex, back);
  EXPECT_TRUE(back.empty());
  EXPECT_EQ(local->acquire_now(ex, {bucket("{t:l5}:x", 10, 0)})->verdicts[0].remaining, 10);
}

TEST_F(Leases, SlidingWindowsAreNeverLeased) {
  auto r = replica();
  const Ask w{Ask::Kind::kWindow, "{t:l6}:win", 1'000'000, 0, 60, 1};
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(acquire(*r, {bucket("{t:l6}:rpm", 1'000'000, 1), w})->allowed);
  EXPECT_EQ(Shared::acquires.load(), 20);
}

// A shared backend that answers after a while, so that decisions overlap.
class Slow final : public Backend {
 public:
  explicit Slow(Backend& to) : to_(to) {}
  asio::awaitable<Result<Decision>> acquire(asio::any_io_executor ex, std::vector<Ask> asks) override {
    asio::steady_timer t(ex, std::chrono::milliseconds(30));
    co_await t.async_wait(asio::use_awaitable);
    co_return co_await to_.acquire(ex, std::move(asks));
  }
  asio::awaitable<Status> adjust(asio::any_io_executor ex, std::vector<Ask> deltas) override {
    co_return co_await to_.adjust(ex, std::move(deltas));
  }
  std::string name() const override { return "slow"; }

 private:
  Backend& to_;
};

TEST_F(Leases, WhatAnOverlappedDecisionTookGoesBackToItsOwnLimit) {
  // A budget's lease is on its way when a decision with another limit on the same key resets
  // it: what the first one took for its lease goes back to the counter as a counter, and once
  // the replica is idle the counter shows exactly what the three decisions spent.
  LeaseOptions o;
  o.idle = std::chrono::milliseconds(500);  // long enough that a preempted test never sees a lease go back early
  auto r = make_leasing_backend(std::make_unique<Slow>(*store_), o);
  const Ask spend{Ask::Kind::kCounter, "{t:l7}:spend:d:20261207", 1'000'000, 0, 3600, 10};
  ASSERT_TRUE(acquire(*r, {spend})->allowed);  // learns what is left
  Ask bigger = spend;
  bigger.limit = 2'000'000;
  int done = 0, allowed = 0;
  for (const Ask& a : std::vector<Ask>{spend, bigger})
    asio::co_spawn(ioc_, [&, a]() -> asio::awaitable<void> {
      std::vector<Ask> asks{a};
      auto d = co_await r->acquire(ioc_.get_executor(), std::move(asks));
      allowed += d && d->allowed;
      ++done;
    }, asio::detached);
  ioc_.restart();
  while (done < 2) ioc_.run_one();
  EXPECT_EQ(allowed, 2);
  idle(std::chrono::milliseconds(2000));
  Ask peek = spend;
  peek.cost = 0;
  EXPECT_EQ(left(peek), 1'000'000 - 30);
}

TEST_F(Leases, ReleaseHandsBackWhatTheReplicaHolds) {
  // A server that stops gives its leases back at once (a budget's would otherwise stay spent
  // until its period ends).
  auto r = replica();
  const Ask spend{Ask::Kind::kCounter, "{t:l8}:spend:d:20261207", 1'000'000, 0, 3600, 10};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(acquire(*r, {spend})->allowed);
  Ask peek = spend;
  peek.cost = 0;
  EXPECT_LT(left(peek), 1'000'000 - 30);
  run(ioc_, r->release(ioc_.get_executor()));
  EXPECT_EQ(left(peek), 1'000'000 - 30);
}

TEST(RedisLeases, ReleaseWritesLeasesAndSettlesBeforeItReturns) {
  // Over Redis: what a replica holds and the settles it has not sent yet are in Redis when
  // release returns; Limits::release does it on its own event loop, as a stopping server does.
  ASSERT_TRUE(redis().up()) << "redis-server is required (scripts/install-deps.sh installs it)";
  RedisOptions o;
  o.port = std::to_string(redis().port());
  o.timeout = std::chrono::milliseconds(2000);
  asio::io_context ioc;
  auto leased = make_leasing_backend(make_redis_backend(o));
  Backend* b = leased.get();
  Limits limits(std::move(leased), {});
  const std::string tag = "{t:rl-" + std::to_string(getpid()) + "}:";
  const Ask spend{Ask::Kind::kCounter, tag + "spend:d:20261207", 1'000'000, 0, 3600, 10};
  const Ask tpm{Ask::Kind::kBucket, tag + "tpm", 1'000'000'000, 1e-6, 0, 1000};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(run(ioc, b->acquire(ioc.get_executor(), {spend, tpm}))->allowed);
  Ask refund = spend;
  refund.cost = 5'000;  // more than the lease holds: goes to Redis as a settle
  ASSERT_TRUE(run(ioc, b->adjust(ioc.get_executor(), {refund})));
  limits.release();
  auto raw = make_redis_backend(o);
  Ask peek = spend, peek_tpm = tpm;
  peek.cost = 0;
  peek_tpm.cost = 0;
  auto d = run(ioc, raw->acquire(ioc.get_executor(), {peek, peek_tpm}));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->verdicts[0].remaining, 1'000'000 - 30 - 5'000);
  EXPECT_EQ(d->verdicts[1].remaining, 1'000'000'000 - 3'000);
}

TEST_F(Leases, AChangedLimitIsNotDecidedFromAnOldLease) {
  auto r = replica();
  const Ask a = bucket("{t:l5}:rpm", 100'000, 1);
  ASSERT_TRUE(acquire(*r, {a})->allowed);
  ASSERT_TRUE(acquire(*r, {a})->allowed);  // a lease at the old limit
  const int shared_before = Shared::acquires.load();
  ASSERT_TRUE(acquire(*r, {bucket("{t:l5}:rpm", 50'000, 1)})->allowed);
  EXPECT_EQ(Shared::acquires.load(), shared_before + 1) << "the new limit is decided by the shared bucket";
}

TEST(Redis, UnreachableIsAnErrorNotAHang) {
  RedisOptions o;
  o.port = "1";
  o.timeout = std::chrono::milliseconds(200);
  auto b = make_redis_backend(o);
  asio::io_context ioc;
  std::vector<Ask> asks{Ask{Ask::Kind::kBucket, "{t:x}:a", 1, 1, 0, 1}};
  auto d = run(ioc, b->acquire(ioc.get_executor(), std::move(asks)));
  EXPECT_FALSE(d);
  EXPECT_EQ(d.error().code, Code::kUnavailable);
}

TEST(Redis, ParsesUrls) {
  auto o = parse_redis_url("redis://:secret@10.0.0.5:6380/2");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->host, "10.0.0.5");
  EXPECT_EQ(o->port, "6380");
  EXPECT_EQ(o->password, "secret");
  EXPECT_EQ(o->db, 2);
  EXPECT_FALSE(parse_redis_url("http://x"));
  EXPECT_EQ(parse_redis_url("redis://localhost")->port, "6379");
  EXPECT_FALSE(parse_redis_url("redis://localhost")->slot_batches);
  auto cluster = parse_redis_url("redis://proxy:7000/0?slot_batches=true&timeout_ms=50");
  ASSERT_TRUE(cluster) << cluster.error().message;
  EXPECT_EQ(cluster->host, "proxy");
  EXPECT_EQ(cluster->db, 0);
  EXPECT_TRUE(cluster->slot_batches);
  EXPECT_EQ(cluster->timeout, std::chrono::milliseconds(50));
  EXPECT_TRUE(parse_redis_url("redis://h")->leases);
  EXPECT_FALSE(parse_redis_url("redis://h?leases=false")->leases);
  EXPECT_FALSE(parse_redis_url("redis://h?leases=maybe"));
  EXPECT_FALSE(parse_redis_url("redis://h?slot_batches=yes"));
  EXPECT_FALSE(parse_redis_url("redis://h?timeout_ms=0"));
  auto unknown = parse_redis_url("redis://h?tls=1");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown option 'tls'"), std::string::npos);
}

TEST(TenantLimits, RateAlgorithm) {
  auto l = TenantLimits::parse(R"({"model_requests_per_min": 5, "rate_algorithm": "sliding_window", "concurrent_runs": 3})");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_TRUE(l->sliding_window);
  EXPECT_EQ(l->concurrent_runs, 3);
  EXPECT_NE(l->to_json().find("\"rate_algorithm\":\"sliding_window\""), std::string::npos);
  EXPECT_FALSE(TenantLimits::parse(R"({"rate_algorithm": "leaky"})"));
  EXPECT_FALSE(TenantLimits::parse(R"({"concurrent_runs": -1})"));
}

TEST(TenantLimits, ParsesAndRejects) {
  auto l = TenantLimits::parse(R"({"model_requests_per_min": 60, "budget_micro_usd_per_day": 5000000,
      "per_key": {"requests_per_min": 10}, "per_model": {"gpt-4o": {"tokens_per_min": 1000}}, "time_zone": "Europe/Paris"})");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(*l->model_requests_per_min, 60);
  EXPECT_EQ(*l->per_model.at("gpt-4o").tokens_per_min, 1000);
  auto round = TenantLimits::parse(l->to_json());
  ASSERT_TRUE(round);
  EXPECT_EQ(round->to_json(), l->to_json());
  EXPECT_FALSE(TenantLimits::parse(R"({"model_requests_per_min": -1})"));
  EXPECT_FALSE(TenantLimits::parse(R"({"requests": 5})"));
  EXPECT_FALSE(TenantLimits::parse(R"({"time_zone": "Mars/Olympus"})"));
  EXPECT_FALSE(TenantLimits::parse(R"({"per_key": {"rpm": 1}})"));
}

}  // namespace
}  // namespace ap::ratelimit
