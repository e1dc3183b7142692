// Leases over a shared backend (limiter.h, make_leasing_backend). The state is one mutex-guarded
// map of leases by limit key, shared by all server shards; refills and returns are sent through
// the inner backend from the executor of the decision that caused them.
#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "ratelimit/limiter.h"
#include "telemetry/metrics.h"

namespace ap::ratelimit {
namespace {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

telemetry::Counter& lease_decisions(bool local) {
  static auto& family = telemetry::metrics().counter(
      "agentplane_ratelimit_lease_decisions_total",
      "Limit decisions that could be leased (token buckets and counters only), by path: local (from leases this "
      "replica holds) or shared (sent to the shared backend).",
      {"path"});
  static auto& in_process = family.with({"local"});
  static auto& shared = family.with({"shared"});
  return local ? in_process : shared;
}

// A lease on one bucket or counter (a counter's key names its period).
struct Lease {
  int64_t tokens = 0;            // held by this replica: already taken from the shared limit
  int64_t target = 0;            // the size of the last lease taken (0: none)
  int64_t known_remaining = -1;  // what the shared limit had left after the last shared decision on it
  Ask::Kind kind = Ask::Kind::kBucket;
  int64_t limit = 0;
  double per_second = 0;
  int64_t ttl_s = 0;                // counter: its expiry, as last asked
  steady::time_point resets_at{};  // counter: its period's end, as the last shared verdict said
  steady::time_point used{};
  int inflight = 0;  // shared decisions on their way that add to this lease (kept while > 0)
};

struct State {
  State(std::unique_ptr<Backend> b, LeaseOptions o) : inner(std::move(b)), opt(o) {}
  std::shared_ptr<Backend> inner;
  const LeaseOptions opt;
  std::mutex mu;
  std::unordered_map<std::string, Lease> leases;
  bool sweeping = false;  // a sweep loop runs
};

// Decisions that take from token buckets and counters only (no sliding window: a lease taken in
// one window would be spent in the next). A peek (cost 0: GET /v1/limits) asks the shared
// backend, for what is left there.
bool leasable(const std::vector<Ask>& asks) {
  if (asks.empty()) return false;
  for (const auto& a : asks)
    if (a.kind == Ask::Kind::kWindow || a.cost <= 0) return false;
  return true;
}

// Whether a lease's tokens came from the limit `a` names (same kind and size): only then may a
// decision on `a` spend them, or tokens taken for `a` join them.
bool same_limit(const Lease& l, const Ask& a) {
  return l.kind == a.kind && l.limit == a.limit && l.per_second == a.per_second;
}

// The lease a limit may hold now for decisions costing `cost` (0: none, near the limit).
int64_t lease_size(const LeaseOptions& o, const Lease& l, int64_t cost) {
  if (l.known_remaining < 0 || cost <= 0 || cost > std::numeric_limits<int64_t>::max() / o.decisions_per_lease) return 0;
  const int64_t n = std::min(cost * o.decisions_per_lease, l.known_remaining / o.share);
  return n >= cost * o.min_decisions ? n : 0;
}

// The replica's view of a limit: what the shared limit had left at its last decision there plus
// what this replica holds.
void add_held(Verdict& v, const Lease& l, steady::time_point now) {
  v.remaining = std::min(l.limit, std::max<int64_t>(0, v.remaining) + l.tokens);
  if (l.kind == Ask::Kind::kCounter)
    v.reset_s = std::max(0.0, std::chrono::duration<double>(l.resets_at - now).count());
  else if (l.per_second > 0)
    v.reset_s = static_cast<double>(l.limit - v.remaining) / l.per_second;
}

Verdict held_verdict(const Lease& l, steady::time_point now) {
  Verdict v;
  v.limit = l.limit;
  v.remaining = l.known_remaining;
  add_held(v, l, now);
  return v;
}

// What a shared decision told about a limit.
void learn(Lease& l, const Ask& a, const Verdict& v, steady::time_point now) {
  l.known_remaining = v.remaining;
  l.ttl_s = a.ttl_s;
  if (a.kind == Ask::Kind::kCounter)
    l.resets_at = now + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(v.reset_s));
}

Ask with_cost(Ask a, int64_t cost) {
  a.cost = cost;
  return a;
}

// What to start once the mutex is released (a coroutine started under it could run inline on
// this thread and take it again).
struct Later {
  std::vector<Ask> refill;  // one shared decision adding to these leases
  std::vector<Ask> back;    // handed back to the shared limits
  bool sweep = false;
};

// Ends the claim of shared decisions on their leases (Lease::inflight), also when the coroutine
// that made it is destroyed before its decision came back (its tokens are then lost: never more
// than the limit goes through).
class Inflight {
 public:
  Inflight(std::shared_ptr<State> s, std::vector<Ask> asks) : s_(std::move(s)), asks_(std::move(asks)) {}
  Inflight(const Inflight&) = delete;
  Inflight& operator=(const Inflight&) = delete;
  ~Inflight() { end(); }
  // Caller holds the mutex.
  void end_locked() {
    for (const auto& a : asks_) {
      auto it = s_->leases.find(a.key);
      if (it != s_->leases.end() && same_limit(it->second, a) && it->second.inflight > 0) --it->second.inflight;
    }
    asks_.clear();
  }

 private:
  void end() {
    if (asks_.empty()) return;
    std::lock_guard lock(s_->mu);
    end_locked();
  }
  std::shared_ptr<State> s_;
  std::vector<Ask> asks_;
};

class LeasingBackend final : public Backend {
 public:
  LeasingBackend(std::unique_ptr<Backend> inner, LeaseOptions o) : s_(std::make_shared<State>(std::move(inner), o)) {}

  // From the leases this replica holds, when they hold enough for every ask.
  std::optional<Decision> acquire_now(asio::any_io_executor ex, const std::vector<Ask>& asks) override {
    constexpr size_t kMax = 12;  // asks of one decision (a model call has at most 10 limits)
    if (!leasable(asks) || asks.size() > kMax) return std::nullopt;
    // What each ask's key needs in all (a key may be asked twice).
    std::array<int64_t, kMax> need{};
    for (size_t i = 0; i < asks.size(); ++i)
      for (const auto& b : asks)
        if (b.key == asks[i].key) need[i] += b.cost;
    std::array<Lease*, kMax> lease{};
    Decision local;
    Later later;
    {
      std::lock_guard lock(s_->mu);
      for (size_t i = 0; i < asks.size(); ++i) {
        auto it = s_->leases.find(asks[i].key);
        if (it == s_->leases.end() || !same_limit(it->second, asks[i]) || it->second.tokens < need[i]) return std::nullopt;
        lease[i] = &it->second;
      }
      const auto now = steady::now();
      local.verdicts.reserve(asks.size());
      for (size_t i = 0; i < asks.size(); ++i) {
        lease[i]->tokens -= asks[i].cost;
        lease[i]->used = now;
      }
      for (size_t i = 0; i < asks.size(); ++i) {  // after all takes: a key asked twice is seen whole
        Lease& l = *lease[i];
        local.verdicts.push_back(held_verdict(l, now));
        const int64_t size = lease_size(s_->opt, l, need[i]);
        if (l.inflight == 0 && size > 0 && l.tokens < size / 2) {  // half spent: refill in the background
          ++l.inflight;
          later.refill.push_back(with_cost(asks[i], size - l.tokens));
        }
      }
    }
    launch(s_, ex, std::move(later));
    lease_decisions(true).inc();
    return local;
  }

  asio::awaitable<Result<Decision>> acquire(asio::any_io_executor ex, std::vector<Ask> asks) override {
    if (!leasable(asks)) co_return co_await s_->inner->acquire(ex, std::move(asks));
    if (auto local = acquire_now(ex, asks)) co_return std::move(*local);
    std::vector<int64_t> extra(asks.size(), 0);
    std::vector<Ask> claimed;  // the leases this decision adds to
    Later later;
    {  // to the shared backend, with a lease on top for limits that have plenty left
      std::lock_guard lock(s_->mu);
      const auto now = steady::now();
      for (size_t i = 0; i < asks.size(); ++i) {
        Lease& l = s_->leases[asks[i].key];
        if (!same_limit(l, asks[i])) {  // new, or its limit changed: start afresh
          if (l.tokens > 0) later.back.push_back(ask_on(asks[i].key, l, -l.tokens));
          l = Lease{};
          l.kind = asks[i].kind;
          l.limit = asks[i].limit;
          l.per_second = asks[i].per_second;
        }
        l.used = now;
        if (l.inflight > 0) continue;
        const int64_t size = lease_size(s_->opt, l, asks[i].cost);
        if (size > l.tokens) {
          extra[i] = size - l.tokens;
          ++l.inflight;
          claimed.push_back(asks[i]);
        }
      }
    }
    launch(s_, ex, std::move(later));
    lease_decisions(false).inc();

    Inflight claim(s_, claimed);
    std::vector<Ask> sent = asks;
    for (size_t i = 0; i < sent.size(); ++i) sent[i].cost += extra[i];
    auto d = co_await s_->inner->acquire(ex, std::move(sent));
    if (d && !d->allowed && d->denied_index >= 0 && static_cast<size_t>(d->denied_index) < extra.size() &&
        extra[static_cast<size_t>(d->denied_index)] > 0) {
      // Refused for the lease on top: the decision alone, exactly.
      std::vector<Ask> plain = asks;
      d = co_await s_->inner->acquire(ex, std::move(plain));
      std::fill(extra.begin(), extra.end(), 0);
    }
    {
      std::lock_guard lock(s_->mu);
      claim.end_locked();
      const auto now = steady::now();
      for (size_t i = 0; d && d->allowed && i < asks.size() && i < d->verdicts.size(); ++i) {
        auto it = s_->leases.find(asks[i].key);
        if (it == s_->leases.end() || !same_limit(it->second, asks[i])) {
          // The lease went (idle) or its limit changed meanwhile: what was taken for it goes back.
          if (extra[i] > 0) later.back.push_back(with_cost(asks[i], -extra[i]));
          continue;
        }
        Lease& l = it->second;
        learn(l, asks[i], d->verdicts[i], now);
        if (extra[i] > 0) {
          l.tokens += extra[i];
          l.target = l.tokens;
        }
        add_held(d->verdicts[i], l, now);
      }
      for (size_t i = 0; d && !d->allowed && i < asks.size() && i < d->verdicts.size(); ++i) {
        auto it = s_->leases.find(asks[i].key);
        if (it != s_->leases.end() && same_limit(it->second, asks[i])) learn(it->second, asks[i], d->verdicts[i], now);
      }
      want_sweep_locked(later);
    }
    launch(s_, ex, std::move(later));
    co_return d;
  }

  // Settles on leased limits go into the lease: what a decision did not use is held again, what
  // it used beyond its reservation comes from the lease while it lasts.
  asio::awaitable<Status> adjust(asio::any_io_executor ex, std::vector<Ask> deltas) override {
    std::vector<Ask> pass;
    Later later;
    {
      std::lock_guard lock(s_->mu);
      for (auto& d : deltas) {
        if (Lease* l = settles_into(d)) {
          l->tokens -= d.cost;
          if (l->tokens > 2 * l->target) {  // settles gave back more than a lease: the rest goes home
            pass.push_back(ask_on(d.key, *l, -(l->tokens - l->target)));
            l->tokens = l->target;
          }
          continue;
        }
        pass.push_back(std::move(d));
      }
      want_sweep_locked(later);
    }
    launch(s_, ex, std::move(later));
    if (pass.empty()) co_return Status{};
    co_return co_await s_->inner->adjust(ex, std::move(pass));
  }

  // The settles that go into a lease without handing anything back (the common case: no
  // coroutine); the rest stay in `deltas` for adjust().
  void adjust_now(asio::any_io_executor ex, std::vector<Ask>& deltas) override {
    Later later;
    {
      std::lock_guard lock(s_->mu);
      std::erase_if(deltas, [&](const Ask& d) {
        Lease* l = settles_into(d);
        if (!l || l->tokens - d.cost > 2 * l->target) return false;
        l->tokens -= d.cost;
        return true;
      });
      want_sweep_locked(later);
    }
    launch(s_, ex, std::move(later));
  }

  // Everything the replica holds goes back, then whatever the shared backend still has to send.
  asio::awaitable<void> release(asio::any_io_executor ex) override {
    std::vector<Ask> back;
    {
      std::lock_guard lock(s_->mu);
      for (auto& [key, l] : s_->leases) {
        if (l.tokens > 0) back.push_back(ask_on(key, l, -l.tokens));
        l.tokens = 0;
        l.target = 0;
      }
    }
    if (!back.empty()) (void)co_await s_->inner->adjust(ex, std::move(back));
    co_await s_->inner->release(ex);
  }

  std::string name() const override { return s_->inner->name(); }

 private:
  // The lease a settle goes into, if any. Caller holds the mutex.
  Lease* settles_into(const Ask& d) {
    if (d.kind == Ask::Kind::kWindow) return nullptr;
    auto it = s_->leases.find(d.key);
    if (it == s_->leases.end() || !same_limit(it->second, d) || it->second.target <= 0) return nullptr;
    if (d.cost > 0 && it->second.tokens < d.cost) return nullptr;
    return &it->second;
  }

  // An ask on the limit `l` holds tokens of.
  static Ask ask_on(const std::string& key, const Lease& l, int64_t cost) {
    Ask a;
    a.kind = l.kind;
    a.ttl_s = l.ttl_s;
    a.key = key;
    a.limit = l.limit;
    a.per_second = l.per_second;
    a.cost = cost;
    return a;
  }

  // Starts the sweep if it does not run and there are leases (holding tokens or only what a
  // shared decision said is left: those go too once idle). Caller holds the mutex.
  void want_sweep_locked(Later& later) { start_sweep_locked(*s_, later); }
  static void start_sweep_locked(State& s, Later& later) {
    if (!s.sweeping && !s.leases.empty()) s.sweeping = later.sweep = true;
  }

  static void launch(const std::shared_ptr<State>& s, asio::any_io_executor ex, Later later) {
    if (!later.back.empty())
      asio::co_spawn(ex, s->inner->adjust(ex, std::move(later.back)), [](std::exception_ptr, Status) {});
    if (!later.refill.empty()) asio::co_spawn(ex, top_up(s, ex, std::move(later.refill)), asio::detached);
    if (later.sweep) asio::co_spawn(ex, sweep(s, ex), asio::detached);
  }

  // A background lease refill: one shared decision for all of them; refused: no lease for now.
  static asio::awaitable<void> top_up(std::shared_ptr<State> s, asio::any_io_executor ex, std::vector<Ask> asks) {
    Inflight claim(s, asks);
    auto d = co_await s->inner->acquire(ex, asks);
    Later later;
    {
      std::lock_guard lock(s->mu);
      claim.end_locked();
      const auto now = steady::now();
      for (size_t i = 0; d && i < asks.size() && i < d->verdicts.size(); ++i) {
        auto it = s->leases.find(asks[i].key);
        const bool mine = it != s->leases.end() && same_limit(it->second, asks[i]);
        if (mine) learn(it->second, asks[i], d->verdicts[i], now);
        if (!d->allowed) continue;
        if (mine) {
          it->second.tokens += asks[i].cost;
          it->second.target = it->second.tokens;
        } else {  // the lease went or its limit changed meanwhile: straight back
          later.back.push_back(with_cost(asks[i], -asks[i].cost));
        }
      }
      start_sweep_locked(*s, later);
    }
    launch(s, ex, std::move(later));
  }

  // Every `idle`: leases not used for that long go back to the shared limit and are forgotten.
  // Ends when there are none (the next shared decision or settle starts it again).
  static asio::awaitable<void> sweep(std::shared_ptr<State> s, asio::any_io_executor ex) {
    asio::steady_timer t(ex);
    while (true) {
      t.expires_after(s->opt.idle);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      Later later;
      bool any = false;
      {
        std::lock_guard lock(s->mu);
        const auto now = steady::now();
        for (auto it = s->leases.begin(); it != s->leases.end();) {
          Lease& l = it->second;
          if (now - l.used >= s->opt.idle && l.inflight == 0) {
            if (l.tokens > 0) later.back.push_back(ask_on(it->first, l, -l.tokens));
            it = s->leases.erase(it);
            continue;
          }
          ++it;
        }
        any = !s->leases.empty();
        if (!any) s->sweeping = false;
      }
      launch(s, ex, std::move(later));
      if (!any) co_return;
    }
  }

  std::shared_ptr<State> s_;
};

}  // namespace

std::unique_ptr<Backend> make_leasing_backend(std::unique_ptr<Backend> inner, LeaseOptions options) {
  return std::make_unique<LeasingBackend>(std::move(inner), options);
}

}  // namespace ap::ratelimit
