// Limiter decisions per second on one replica against a real Redis (issue 7's goal: >= 100,000/s,
// exact under contention), next to the local backend. Starts its own redis-server (no
// persistence) on a free loopback port. One I/O thread drives the decisions, as one server
// shard does; Redis gets the other core.
//   bench_ratelimit [seconds=5] [concurrency=256]
// Prints one JSON line per case: decisions/s, latency p50/p99, and for the contention case how
// many of N decisions on one limit of L were allowed (must be exactly L).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ratelimit/limiter.h"

namespace asio = boost::asio;
using namespace ap::ratelimit;
using steady = std::chrono::steady_clock;

namespace {

int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(s);
  return port;
}

bool can_connect(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(s);
  return ok;
}

// The asks of one gateway model call: model requests/min, model tokens/min, daily budget.
std::vector<Ask> model_call(int tenant) {
  const std::string t = "{t:" + std::to_string(tenant) + "}";
  return {Ask{Ask::Kind::kBucket, t + ":model_rpm", 1'000'000'000, 1e9 / 60, 0, 1},
          Ask{Ask::Kind::kBucket, t + ":model_tpm", 1'000'000'000'000, 1e12 / 60, 0, 500},
          Ask{Ask::Kind::kCounter, t + ":budget:d:20261205", 1'000'000'000'000, 0, 86400, 20}};
}

struct Stats {
  int64_t done = 0, allowed = 0, errors = 0;
  std::vector<double> lat_us;
};

Stats drive(Backend& b, int seconds, int concurrency, int tenants, bool three_asks, int64_t max_decisions = 0,
            std::vector<Ask> fixed = {}) {
  asio::io_context ioc(1);
  Stats st;
  const auto end = steady::now() + std::chrono::seconds(seconds);
  int running = concurrency;
  auto worker = [&](int id) -> asio::awaitable<void> {
    std::mt19937 rng(id);
    while (steady::now() < end && (max_decisions == 0 || st.done < max_decisions)) {
      std::vector<Ask> asks = !fixed.empty() ? fixed
                              : three_asks  ? model_call(static_cast<int>(rng() % tenants))
                                            : std::vector<Ask>{model_call(static_cast<int>(rng() % tenants))[0]};
      auto t0 = steady::now();
      auto d = co_await b.acquire(ioc.get_executor(), std::move(asks));
      ++st.done;
      if (!d) ++st.errors;
      else if (d->allowed) ++st.allowed;
      if (st.lat_us.size() < 2'000'000)
        st.lat_us.push_back(std::chrono::duration<double, std::micro>(steady::now() - t0).count());
    }
    if (--running == 0) ioc.stop();  // the backend's connection reader would keep it running
  };
  for (int i = 0; i < concurrency; ++i) asio::co_spawn(ioc, worker(i), asio::detached);
  ioc.run();
  return st;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

void report(const char* backend, const char* name, const Stats& s, double seconds, int conc) {
  std::printf("{\"backend\": \"%s\", \"case\": \"%s\", \"concurrency\": %d, \"decisions_per_s\": %.0f, "
              "\"p50_us\": %.1f, \"p99_us\": %.1f, \"errors\": %lld}\n",
              backend, name, conc, s.done / seconds, pct(s.lat_us, 0.5), pct(s.lat_us, 0.99),
              static_cast<long long>(s.errors));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int conc = argc > 2 ? std::atoi(argv[2]) : 256;
  const int port = free_port();
  const std::string dir = "/tmp/bench-redis-" + std::to_string(getpid());
  std::system(("mkdir -p " + dir).c_str());
  pid_t redis = fork();
  if (redis == 0) {
    const std::string p = std::to_string(port);
    execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", p.c_str(), "--save", "",
           "--appendonly", "no", "--dir", dir.c_str(), "--logfile", (dir + "/redis.log").c_str(), nullptr);
    _exit(127);
  }
  for (int i = 0; i < 100 && !can_connect(port); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  RedisOptions ro;
  ro.port = std::to_string(port);
  ro.timeout = std::chrono::seconds(2);
  auto rb = make_redis_backend(ro);
  auto lb = make_local_backend();
  auto leased = make_leasing_backend(make_redis_backend(ro));  // as servers run Redis
  drive(*rb, 1, 16, 1000, true);  // warm up: connect, load the script
  drive(*leased, 1, 16, 1000, true);
  for (bool three : {false, true}) {
    const char* name = three ? "model_call_3_limits" : "one_bucket";
    report("redis", name, drive(*rb, seconds, conc, 1000, three), seconds, conc);
    report("redis+leases", name, drive(*leased, seconds, conc, 1000, three), seconds, conc);
    report("local", name, drive(*lb, seconds, conc, 1000, three), seconds, conc);
  }
  // Exactness under contention: one bucket of 10,000 with no refill, 50,000 decisions at once
  // (with leases: leased until the bucket runs low, then exact one by one).
  const Ask hot{Ask::Kind::kBucket, "{t:hot}:model_rpm", 10'000, 0, 0, 1};
  const Ask hot2{Ask::Kind::kBucket, "{t:hot2}:model_rpm", 10'000, 0, 0, 1};
  for (auto [b, name, ask] : {std::tuple{rb.get(), "redis", hot}, std::tuple{leased.get(), "redis+leases", hot2}}) {
    auto c = drive(*b, 60, conc, 1, false, 50'000, {ask});
    std::printf("{\"backend\": \"%s\", \"case\": \"contention\", \"limit\": 10000, \"decisions\": %lld, "
                "\"allowed\": %lld, \"exact\": %s}\n",
                name, static_cast<long long>(c.done), static_cast<long long>(c.allowed), c.allowed == 10'000 ? "true" : "false");
  }
  kill(redis, SIGTERM);
  waitpid(redis, nullptr, 0);
  std::system(("rm -rf " + dir).c_str());
  return 0;
}
