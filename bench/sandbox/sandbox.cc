// Sandbox start-up: cold start of /bin/true and of `python3 -c pass` per backend (median and p90
// over N runs, including cgroup setup and teardown), the host's bare fork+exec in the same run,
// bubblewrap's (the anchor, when installed) and sandboxes started per second with several in
// flight. Usage:
//   bench_sandbox [--runs 100] [--backends native,gvisor] [--concurrency 8] [--throughput-runs 300]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "exec/sandbox/sandbox.h"

extern char** environ;

namespace {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

struct Stats {
  double median_ms = 0, p90_ms = 0;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 9 / 10)]};
}

Stats host_fork_exec(int runs, std::vector<const char*> argv) {
  argv.push_back(nullptr);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = clock_type::now();
    pid_t pid;
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, const_cast<char* const*>(argv.data()), environ) != 0) return {};
    int st;
    waitpid(pid, &st, 0);
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
  }
  return stats(ms);
}

// Each run until its teardown is done (the measure), and until its answer (what a caller
// waits for: a native run's clean-up goes on behind the answer).
struct Timed {
  Stats with_teardown, answered;
};

Timed sandboxed(ap::sandbox::Sandbox& sb, int runs, std::vector<std::string> argv, bool* ok) {
  std::vector<double> ms, answer_ms;
  asio::io_context ioc;
  for (int i = 0; i < runs; ++i) {
    ap::sandbox::Spec spec;
    spec.argv = argv;
    auto t0 = clock_type::now();
    clock_type::time_point t1;
    ap::Result<ap::sandbox::RunResult> r = ap::Error::internal("not run");
    auto one = [&](ap::sandbox::Spec s) -> asio::awaitable<void> {
      r = co_await sb.run(std::move(s));
      t1 = clock_type::now();
    };
    asio::co_spawn(ioc, one(std::move(spec)), asio::detached);
    ioc.restart();
    ioc.run();
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    answer_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    if (!r || !r->ok()) {
      std::fprintf(stderr, "run failed: %s\n", r ? r->summary().c_str() : r.error().message.c_str());
      *ok = false;
      return {};
    }
  }
  return {stats(ms), stats(answer_ms)};
}

// `total` runs of /bin/true, `concurrency` at a time, on `threads` event-loop threads.
double per_second(ap::sandbox::Sandbox& sb, int total, int concurrency, int threads) {
  asio::io_context ioc;
  std::atomic<int> started{0}, failed{0};
  auto worker = [&]() -> asio::awaitable<void> {
    while (started.fetch_add(1) < total) {
      ap::sandbox::Spec spec;
      spec.argv = {"/bin/true"};
      auto r = co_await sb.run(std::move(spec));
      if (!r || !r->ok()) ++failed;
    }
  };
  auto t0 = clock_type::now();
  for (int i = 0; i < concurrency; ++i) asio::co_spawn(ioc, worker(), asio::detached);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  for (auto& t : pool) t.join();
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (failed) std::fprintf(stderr, "%d runs failed\n", failed.load());
  return total / s;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 100, concurrency = 8, throughput_runs = 300;
  std::string backends = "native";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--runs") runs = std::atoi(argv[i + 1]);
    else if (a == "--backends") backends = argv[i + 1];
    else if (a == "--concurrency") concurrency = std::atoi(argv[i + 1]);
    else if (a == "--throughput-runs") throughput_runs = std::atoi(argv[i + 1]);
  }
  std::printf("%-10s %-22s %10s %10s\n", "backend", "command", "median ms", "p90 ms");
  auto host_true = host_fork_exec(runs, {"/bin/true"});
  auto host_py = host_fork_exec(std::max(10, runs / 5), {"/usr/bin/python3", "-c", "pass"});
  std::printf("%-10s %-22s %10.2f %10.2f\n", "host", "/bin/true", host_true.median_ms, host_true.p90_ms);
  std::printf("%-10s %-22s %10.2f %10.2f\n", "host", "python3 -c pass", host_py.median_ms, host_py.p90_ms);
  // The anchor in the same run, when installed: bubblewrap with the same kind of sandbox (every
  // namespace, a tmpfs root with /usr bound read-only, fresh /proc, minimal /dev, tmpfs /tmp).
  if (access("/usr/bin/bwrap", X_OK) == 0) {
    std::vector<const char*> bw = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--new-session",
                                   "--tmpfs", "/", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                                   "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                                   "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/work",
                                   "--chdir", "/work", "--cap-drop", "ALL"};
    auto with = [&](std::vector<const char*> cmd) {
      auto v = bw;
      v.insert(v.end(), cmd.begin(), cmd.end());
      return v;
    };
    auto bt = host_fork_exec(runs, with({"/bin/true"}));
    auto bp = host_fork_exec(std::max(10, runs / 5), with({"/usr/bin/python3", "-c", "pass"}));
    std::printf("%-10s %-22s %10.2f %10.2f\n", "bwrap", "/bin/true", bt.median_ms, bt.p90_ms);
    std::printf("%-10s %-22s %10.2f %10.2f\n", "bwrap", "python3 -c pass", bp.median_ms, bp.p90_ms);
  }
  std::stringstream list(backends);
  std::string name;
  while (std::getline(list, name, ',')) {
    auto sb = ap::sandbox::make_sandbox(name);
    if (!sb) {
      std::printf("%-10s unavailable: %s\n", name.c_str(), sb.error().message.c_str());
      continue;
    }
    bool ok = true;
    const int n = name == "native" ? runs : std::max(10, runs / 5);
    auto t = sandboxed(**sb, n, {"/bin/true"}, &ok);
    auto p = sandboxed(**sb, n, {"python3", "-c", "pass"}, &ok);
    if (!ok) continue;
    std::printf("%-10s %-22s %10.2f %10.2f   (answered: %.2f)\n", name.c_str(), "/bin/true", t.with_teardown.median_ms,
                t.with_teardown.p90_ms, t.answered.median_ms);
    std::printf("%-10s %-22s %10.2f %10.2f   (answered: %.2f)\n", name.c_str(), "python3 -c pass", p.with_teardown.median_ms,
                p.with_teardown.p90_ms, p.answered.median_ms);
    {  // the warm pool: a run takes a started sandbox of its tenant (the refill behind it not counted)
      ap::sandbox::Options wo;
      wo.warm_pool = 1;
      auto pooled = ap::sandbox::make_sandbox(name, wo);
      std::vector<double> warm_ms;
      asio::io_context ioc;
      for (int i = 0; i < (name == "native" ? runs : std::max(10, runs / 5)) + 1; ++i) {
        ap::sandbox::Spec spec;
        spec.argv = {"/bin/true"};
        spec.tenant = "bench";
        auto t0 = clock_type::now();
        clock_type::time_point t1;
        bool warm = false;
        auto* box = pooled->get();
        auto one = [&, box](ap::sandbox::Spec s) -> asio::awaitable<void> {
          auto r = co_await box->run(std::move(s));
          t1 = clock_type::now();  // the run's own end (the refill behind it goes on)
          warm = r && r->warm;
        };
        asio::co_spawn(ioc, one(std::move(spec)), asio::detached);
        ioc.restart();
        ioc.run();  // also waits for the refill: the next run finds a started sandbox
        std::this_thread::sleep_for(std::chrono::milliseconds(8));  // idle time: its setup done
        if (warm) warm_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      if (!warm_ms.empty()) {
        auto w = stats(warm_ms);
        std::printf("%-10s %-22s %10.2f %10.2f   (warm pool: %s)\n", name.c_str(), "/bin/true warm", w.median_ms, w.p90_ms,
                    name == "gvisor" ? "runsc exec into a started sandbox" : "a started sandbox's init runs it, used once");
      }
    }
    const int tr = name == "native" ? throughput_runs : std::max(20, throughput_runs / 10);
    std::printf("%-10s sandboxes started per second (/bin/true, %d in flight, 2 threads): %.0f\n", name.c_str(), concurrency,
                per_second(**sb, tr, concurrency, 2));
  }
  return 0;
}
