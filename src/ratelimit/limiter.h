// Limit decisions: token buckets and sliding windows (rates: requests or tokens per minute) and
// period counters (quotas and budgets per day or month), checked and reserved all together or
// not at all.
// Two backends behind one interface: Local (in-process, one replica) and Redis (atomic Lua
// script runs, decisions batched per shard and event-loop turn, keys hash-tagged by tenant so
// that a decision's keys share one Redis Cluster slot; exact across any number of replicas).
// Backends are thread-safe; decisions are asynchronous and never block the caller's thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace ap::ratelimit {

// One limit to check and take from.
// A sliding window counts the current fixed window plus the previous one weighted by how much
// of it still overlaps the last `ttl_s` seconds (the sliding-window-counter approximation: no
// burst at window edges, unlike a fixed window; O(1) state, unlike a log).
struct Ask {
  enum class Kind { kBucket, kCounter, kWindow };
  Kind kind = Kind::kBucket;
  std::string key;     // "{t:<tenant>}:model_rpm" (the braces: Redis Cluster's hash tag)
  int64_t limit = 0;   // bucket capacity, the counter's maximum in its period, or per window
  double per_second = 0;  // bucket refill
  int64_t ttl_s = 0;      // counter: expiry (the period's end plus slack), its key names the period;
                          // window: the window's length
  int64_t cost = 1;
  // Window, adjust only: the window number the take being corrected went into (the backend's
  // clock; Verdict::window). A correction lands in that window, or in nothing once it is out of
  // the count, and never takes a window below zero. -1: the current window.
  int64_t window = -1;
};

// The sliding-window arithmetic both backends use. `cur`/`prev`: the counts of the current and
// previous fixed windows; `f`: the fraction of the current window gone by.
struct WindowMath {
  static double estimate(double cur, double prev, double f) { return prev * (1 - f) + cur; }
  // Seconds until `cost` more fits (-1: never: cost above the limit).
  static double wait_s(double limit, double cost, double cur, double prev, double f, double window_s);
};

struct Verdict {
  int64_t limit = 0;
  int64_t remaining = 0;
  double reset_s = 0;  // bucket: until full again; counter: until the period ends
  int64_t window = -1;  // window: the number of the window taken from (for Ask::window)
};

struct Decision {
  bool allowed = true;
  double retry_after_s = 0;       // when denied: the earliest time all limits could pass
  int denied_index = -1;          // the first Ask that refused
  std::vector<Verdict> verdicts;  // per Ask, after this decision
  bool degraded = false;          // the backend was unreachable: decided by the fail-open setting
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Checks every ask; takes all their costs if all pass, none otherwise. `ex`: the caller's
  // executor (the Redis backend keeps a connection per executor).
  virtual boost::asio::awaitable<Result<Decision>> acquire(boost::asio::any_io_executor ex, std::vector<Ask> asks) = 0;
  // Corrects earlier takes: positive deltas take more (may go below zero), negative give back.
  virtual boost::asio::awaitable<Status> adjust(boost::asio::any_io_executor ex, std::vector<Ask> deltas) = 0;
  // The fast paths, tried first, without a coroutine: a decision this backend can make at once
  // (in process: leases held, the local backend), else nullopt and acquire() decides; and the
  // deltas it can apply at once, which it removes from `deltas` (the rest go to adjust()).
  // Defaults: nothing at once.
  virtual std::optional<Decision> acquire_now(boost::asio::any_io_executor ex, const std::vector<Ask>& asks);
  virtual void adjust_now(boost::asio::any_io_executor ex, std::vector<Ask>& deltas);
  // Hands back what this replica holds or still owes the shared store (leases, settles not yet
  // sent), when a server stops; waits until they are written. Default: nothing to do.
  virtual boost::asio::awaitable<void> release(boost::asio::any_io_executor ex);
  virtual std::string name() const = 0;
};

// In-process buckets and counters (one replica). Expired entries are swept as they are met.
std::unique_ptr<Backend> make_local_backend();

struct RedisOptions {
  std::string host = "127.0.0.1";
  std::string port = "6379";
  std::string password;  // AUTH when set
  int db = 0;
  std::chrono::milliseconds timeout{200};  // a decision slower than this counts as the backend down
  // Batch only decisions of the same tenant (hash tag): for Redis Cluster proxies, whose scripts
  // must keep to one slot. Default: a batch mixes tenants (one Redis node).
  bool slot_batches = false;
  // Wrap the backend in leases (make_leasing_backend) where a server builds it. Default: on.
  bool leases = true;
};
// Parses redis://[:password@]host[:port][/db][?leases=true|false&slot_batches=true|false&timeout_ms=N].
Result<RedisOptions> parse_redis_url(std::string_view url);
std::unique_ptr<Backend> make_redis_backend(RedisOptions options);

// Leases, for a shared backend (Redis): when a decision of token buckets and counters (rates,
// quotas, budgets; no sliding window) goes to the shared backend and its limits have plenty
// left, this replica takes a little more than the decision needs (a lease: enough for
// `decisions_per_lease` more decisions of that size, at most 1/`share` of what the limit had
// left) and decides the next decisions on those limits from what it holds, in process,
// refilling a lease in the background when half of it is spent. Never more than the limit goes
// through, across all replicas: what a lease holds was taken from the shared limit. Near a limit
// (less left than `min_decisions` leases' worth) there are no leases and every decision is
// exact, as without leases; what a replica holds and does not use goes back after `idle`. A
// decision with a sliding window goes to the shared backend whole. Settles go into the lease,
// not to the backend.
struct LeaseOptions {
  int64_t decisions_per_lease = 256;
  int64_t share = 64;
  int64_t min_decisions = 16;
  std::chrono::milliseconds idle{250};
};
std::unique_ptr<Backend> make_leasing_backend(std::unique_ptr<Backend> inner, LeaseOptions options = {});

}  // namespace ap::ratelimit
