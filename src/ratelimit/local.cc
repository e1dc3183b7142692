// The in-process backend: one mutex-guarded map of buckets and counters.
#include <chrono>
#include <cmath>
#include <mutex>
#include <unordered_map>

#include "ratelimit/limiter.h"

namespace ap::ratelimit {
namespace {

using steady = std::chrono::steady_clock;

class LocalBackend final : public Backend {
 public:
  boost::asio::awaitable<Result<Decision>> acquire(boost::asio::any_io_executor, std::vector<Ask> asks) override {
    co_return decide(asks);
  }
  std::optional<Decision> acquire_now(boost::asio::any_io_executor, const std::vector<Ask>& asks) override {
    return decide(asks);
  }

  boost::asio::awaitable<Status> adjust(boost::asio::any_io_executor ex, std::vector<Ask> deltas) override {
    adjust_now(ex, deltas);
    co_return Status{};
  }
  void adjust_now(boost::asio::any_io_executor, std::vector<Ask>& deltas) override {
    std::lock_guard lock(mu_);
    const auto now = steady::now();
    for (const auto& a : deltas) {
      auto& e = entry(a, now);
      const double c = static_cast<double>(a.cost);
      if (a.kind == Ask::Kind::kBucket) {
        e.value = std::min<double>(static_cast<double>(a.limit), e.value - c);
      } else if (a.kind == Ask::Kind::kWindow) {  // into the window of the take, never below zero
        if (a.window < 0 || a.window == e.window) e.value = std::max(0.0, e.value + c);
        else if (a.window == e.window - 1) e.prev = std::max(0.0, e.prev + c);
      } else {
        e.value += c;
      }
    }
    deltas.clear();
  }

  std::string name() const override { return "local"; }

 private:
  struct Entry {
    double value = 0;  // bucket: tokens left; counter: used; window: the current window's count
    steady::time_point at{};       // bucket: last refill; window: last use
    steady::time_point expires{};  // counter: period end (+ slack)
    double prev = 0;               // window: the previous window's count
    int64_t window = 0;            // window: the current window's number (wall-clock aligned)
    double f = 0;                  // window: the fraction of it gone by, at `at`
  };

  // The entry brought up to `now` (refilled, or a new period).
  Entry& entry(const Ask& a, steady::time_point now) {
    auto [it, fresh] = m_.try_emplace(a.key);
    Entry& e = it->second;
    if (a.kind == Ask::Kind::kBucket) {
      if (fresh) {
        e.value = static_cast<double>(a.limit);
      } else {
        double dt = std::chrono::duration<double>(now - e.at).count();
        e.value = std::min(static_cast<double>(a.limit), e.value + dt * a.per_second);
      }
      e.at = now;
    } else if (a.kind == Ask::Kind::kWindow) {
      const int64_t w_ms = std::max<int64_t>(a.ttl_s, 1) * 1000;
      const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
      const int64_t idx = now_ms / w_ms;
      if (fresh || idx > e.window + 1) {
        e.prev = 0;
        e.value = 0;
      } else if (idx == e.window + 1) {
        e.prev = e.value;
        e.value = 0;
      }
      e.window = idx;
      e.f = static_cast<double>(now_ms % w_ms) / static_cast<double>(w_ms);
      e.at = now;
    } else if (fresh || now >= e.expires) {
      e.value = 0;
      e.expires = now + std::chrono::seconds(a.ttl_s + 3600);
    }
    return e;
  }

  // What a decision compares with the limit: tokens left (bucket) or used (counter, window).
  static double used(const Ask& a, const Entry& e) {
    return a.kind == Ask::Kind::kWindow ? WindowMath::estimate(e.value, e.prev, e.f) : e.value;
  }

  Decision decide(const std::vector<Ask>& asks) {
    std::lock_guard lock(mu_);
    const auto now = steady::now();
    if (++ops_ % 65536 == 0) sweep(now);
    Decision d;
    d.verdicts.reserve(asks.size());
    std::vector<Entry*> entries;
    entries.reserve(asks.size());
    for (size_t i = 0; i < asks.size(); ++i) {
      const Ask& a = asks[i];
      Entry& e = entry(a, now);
      entries.push_back(&e);
      const double cost = static_cast<double>(a.cost);
      if (a.kind == Ask::Kind::kBucket ? e.value < cost : used(a, e) + cost > static_cast<double>(a.limit)) {
        if (d.allowed) d.denied_index = static_cast<int>(i);
        d.allowed = false;
        double wait = a.kind == Ask::Kind::kBucket
                          ? (a.cost > a.limit || a.per_second <= 0 ? -1 : (cost - e.value) / a.per_second)
                      : a.kind == Ask::Kind::kWindow
                          ? WindowMath::wait_s(static_cast<double>(a.limit), cost, e.value, e.prev, e.f, static_cast<double>(a.ttl_s))
                          : static_cast<double>(a.ttl_s);
        if (wait < 0 || d.retry_after_s < 0) d.retry_after_s = -1;
        else d.retry_after_s = std::max(d.retry_after_s, wait);
      }
    }
    for (size_t i = 0; i < asks.size(); ++i) {
      const Ask& a = asks[i];
      Entry& e = *entries[i];
      if (d.allowed) e.value += a.kind == Ask::Kind::kBucket ? -static_cast<double>(a.cost) : static_cast<double>(a.cost);
      Verdict v;
      v.limit = a.limit;
      if (a.kind == Ask::Kind::kBucket) {
        v.remaining = static_cast<int64_t>(std::floor(std::max(e.value, 0.0)));
        v.reset_s = a.per_second > 0 ? (static_cast<double>(a.limit) - e.value) / a.per_second : 0;
      } else if (a.kind == Ask::Kind::kWindow) {
        v.remaining = static_cast<int64_t>(std::floor(std::max(static_cast<double>(a.limit) - used(a, e), 0.0)));
        v.reset_s = (1 - e.f) * static_cast<double>(a.ttl_s);
        v.window = e.window;
      } else {
        v.remaining = std::max<int64_t>(a.limit - static_cast<int64_t>(e.value), 0);
        v.reset_s = static_cast<double>(a.ttl_s);
      }
      d.verdicts.push_back(v);
    }
    return d;
  }

  // Forgets full buckets and ended periods (they read the same as absent ones).
  void sweep(steady::time_point now) {
    for (auto it = m_.begin(); it != m_.end();) {
      const Entry& e = it->second;
      bool idle = e.expires != steady::time_point{} ? now >= e.expires : now - e.at > std::chrono::hours(1);
      it = idle ? m_.erase(it) : std::next(it);
    }
  }

  std::mutex mu_;
  std::unordered_map<std::string, Entry> m_;
  uint64_t ops_ = 0;
};

}  // namespace

double WindowMath::wait_s(double limit, double cost, double cur, double prev, double f, double window_s) {
  if (cost > limit) return -1;
  const double room = limit - cur - cost;
  if (room >= 0) {  // fits in this window once enough of the previous one has slid out
    if (prev <= 0) return 0;
    return std::max(0.0, (1 - room / prev) - f) * window_s;
  }
  // Only in the next window, once enough of this one has slid out.
  const double g = cur > 0 ? std::max(0.0, 1 - (limit - cost) / cur) : 0;
  return ((1 - f) + g) * window_s;
}

boost::asio::awaitable<void> Backend::release(boost::asio::any_io_executor) { co_return; }
std::optional<Decision> Backend::acquire_now(boost::asio::any_io_executor, const std::vector<Ask>&) { return std::nullopt; }
void Backend::adjust_now(boost::asio::any_io_executor, std::vector<Ask>&) {}

std::unique_ptr<Backend> make_local_backend() { return std::make_unique<LocalBackend>(); }

}  // namespace ap::ratelimit
