// Tenants' limits: what the operator set (PUT /v1/tenants/{id}/limits, table tenant_limits), the
// deployment's defaults, and the decisions made with them on a Backend.
// Limits (all optional; absent = unlimited):
//   api_requests_per_min, model_requests_per_min, model_tokens_per_min,
//   budget_micro_usd_per_day, budget_micro_usd_per_month,
//   per_key: {requests_per_min, tokens_per_min}            (each API key of the tenant)
//   per_model: {"<model>": {requests_per_min, tokens_per_min}}
//   time_zone: IANA name for "day" and "month" (default UTC)
// plus, set by the deployment for every tenant's upstream calls, per upstream provider key.
// Model calls reserve the worst case at admission (an upper bound of the prompt's tokens plus
// max_tokens; for budgets that many tokens at the model's price) and settle the real counts after.
// If the backend is down the configured fail-open / fail-closed choice decides, logged and counted
// (agentplane_ratelimit_degraded_total). Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "ratelimit/limiter.h"
#include "store/pool.h"

namespace ap::ratelimit {

struct Rate {
  std::optional<int64_t> requests_per_min, tokens_per_min;
};

// How a tenant's code runs (the sandbox; docs/sandbox.md): caps on what a spec may ask for,
// the backend, and whether it may reach the network at all.
struct SandboxPolicy {
  std::string backend;  // empty: the deployment's default
  std::optional<int64_t> max_wall_s, max_cpu_s, max_memory_mb, max_pids, max_disk_mb;
  bool egress = false;  // the sandbox may reach the network (through its egress proxy)
  // With egress: only these destinations (host names, "*.example.com", addresses or networks),
  // within what the operator's egress policy allows anyway; empty: all that policy allows.
  std::vector<std::string> egress_hosts;
};

struct TenantLimits {
  std::optional<int64_t> api_requests_per_min, model_requests_per_min, model_tokens_per_min;
  std::optional<int64_t> budget_micro_usd_per_day, budget_micro_usd_per_month;
  // Runs of the tenant executing at once, enforced by the workers' claim in PostgreSQL
  // (claim_runs reads it from tenant_limits); absent: the deployment's default, else 16.
  std::optional<int64_t> concurrent_runs;
  // How the per-minute rates count: token buckets (default; bursts up to the limit, refilled
  // continuously) or sliding windows (at most the limit in any 60 s).
  bool sliding_window = false;
  Rate per_key;
  std::map<std::string, Rate> per_model;
  std::string time_zone = "UTC";
  // Sandbox CPU time a day (a quota: each run reserves its CPU limit, then settles what it used).
  std::optional<int64_t> sandbox_cpu_seconds_per_day;
  SandboxPolicy sandbox;

  // Validates an operator's JSON (unknown fields, negative numbers, unknown zone: InvalidArgument).
  static Result<TenantLimits> parse(const std::string& json);
  std::string to_json() const;
};

// The outcome of an admission, and what settle() needs to correct it.
struct Admission {
  bool allowed = true;
  bool budget = false;        // refused by a budget (else by a rate)
  std::string message;        // why not, naming the limit
  double retry_after_s = 0;
  // RateLimit-Limit/Remaining/Reset of the tightest limit; OpenAI's x-ratelimit-* for models.
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<Ask> token_asks;  // reserved tokens (to correct)
  std::vector<Ask> spend_asks;  // reserved micro-USD
  int64_t reserved_tokens = 0, reserved_cost = 0;
  int64_t remaining = -1;  // what the tightest limit has left after this decision (-1: no limit)
};

class Limits {
 public:
  enum class Which : uint8_t;  // the limit an ask checks (limits.cc)
  struct Options {
    TenantLimits defaults;          // for tenants without their own row
    bool fail_open = true;          // backend down: allow (true) or refuse (false)
    std::chrono::milliseconds cache_ttl{5000};
    std::optional<int64_t> upstream_key_requests_per_min;  // per upstream credential, all tenants
  };
  Limits(std::unique_ptr<Backend> backend, Options options);
  ~Limits();

  // The tenant's effective limits (cached for cache_ttl).
  store::Task<std::shared_ptr<const TenantLimits>> of(store::Pool& pool, const TenantId& tenant);
  store::Task<void> set(store::Pool& pool, const TenantId& tenant, const TenantLimits& limits);
  // The operator's row, or null when the defaults apply.
  store::Task<std::string> get_json(store::Pool& pool, const TenantId& tenant);
  // Limits with current usage per limit (GET /v1/limits).
  store::Task<std::string> status_json(store::Pool& pool, const TenantId& tenant);

  // One API request of the tenant (per-key limits are on model calls: admit_model).
  store::Task<Admission> admit_request(store::Pool& pool, const TenantId& tenant);
  // A model call: `tokens` an upper bound of prompt + completion tokens, `worst_cost` its price.
  // `upstream` names the upstream credential (tenant/credential) for the per-upstream-key limit.
  // `api_request`: also takes one from the API request limit (the gateway's model endpoints:
  // one decision for both).
  store::Task<Admission> admit_model(store::Pool& pool, const TenantId& tenant, const std::string& key_id,
                                     const std::string& model, int64_t tokens, int64_t worst_cost,
                                     const std::string& upstream, bool api_request = false);
  // Corrects a model admission with the real counts (runs detached on `ex`).
  void settle(boost::asio::any_io_executor ex, const Admission& a, int64_t tokens, int64_t cost);
  // For a server that stops, after its I/O threads: hands back the replica's leases and sends
  // the settles still waiting (Backend::release), on a private event loop, for at most
  // `deadline`.
  void release(std::chrono::milliseconds deadline = std::chrono::milliseconds(2000));
  // A sandbox run, against sandbox_cpu_seconds_per_day (admitted when the tenant has no such
  // quota): admitted while some of the day's CPU time is left, and `remaining` says how much
  // (ms; the run's CPU limit is capped to it). Settle with settle(ex, a, cpu_ms_used, 0).
  store::Task<Admission> admit_sandbox(store::Pool& pool, const TenantId& tenant);

  Backend& backend() { return *backend_; }
  const Options& options() const { return options_; }

 private:
  // `which`: per ask, the limit it checks; `model`: the model's name, for per-model limits
  // messages; `model_call`: OpenAI's x-ratelimit headers too.
  store::Task<Admission> decide(std::vector<Ask> asks, std::vector<Which> which, const std::string& model,
                                bool model_call, size_t n_token, size_t n_spend);
  Admission admission(const Decision& d, const std::vector<Ask>& asks, const std::vector<Which>& which,
                      const std::string& model, bool model_call, size_t n_token, size_t n_spend);
  std::unique_ptr<Backend> backend_;
  Options options_;
  std::mutex mu_;
  struct Cached {
    std::shared_ptr<const TenantLimits> limits;
    std::chrono::steady_clock::time_point at;
  };
  std::shared_ptr<const TenantLimits> cached(const TenantId& tenant);  // nullptr: not cached (or stale)
  std::unordered_map<TenantId, Cached, UuidHash> cache_;
};

// A model admission to settle exactly once: settle() with the real counts, or, when dropped
// unsettled (the call failed or was cancelled before it reached the model), with nothing used,
// so that no reservation is ever left standing. Move-only.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Limits* limits, boost::asio::any_io_executor ex, Admission a)
      : limits_(limits), ex_(std::move(ex)), a_(std::move(a)) {}
  Reservation(Reservation&& o) noexcept : limits_(std::exchange(o.limits_, nullptr)), ex_(std::move(o.ex_)), a_(std::move(o.a_)) {}
  Reservation& operator=(Reservation&& o) noexcept {
    if (this != &o) {
      settle(0, 0);
      limits_ = std::exchange(o.limits_, nullptr);
      ex_ = std::move(o.ex_);
      a_ = std::move(o.a_);
    }
    return *this;
  }
  ~Reservation() { settle(0, 0); }

  const Admission& admission() const { return a_; }
  // The admission's headers, moved out (for the response; settling does not need them).
  std::vector<std::pair<std::string, std::string>>&& take_headers() { return std::move(a_.headers); }
  void settle(int64_t tokens, int64_t cost) {
    if (limits_ && a_.allowed) limits_->settle(ex_, a_, tokens, cost);
    limits_ = nullptr;
  }

 private:
  Limits* limits_ = nullptr;
  boost::asio::any_io_executor ex_;
  Admission a_;
};

}  // namespace ap::ratelimit
