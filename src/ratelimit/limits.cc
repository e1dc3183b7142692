#include "ratelimit/limits.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/this_coro.hpp>
#include <cmath>
#include <date/tz.h>
#include <nlohmann/json.hpp>

#include "net/egress.h"
#include "store/tx.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::ratelimit {
namespace asio = boost::asio;
using Json = nlohmann::json;

namespace {

Result<std::optional<int64_t>> opt_count(const Json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer() || it->get<int64_t>() < 0)
    return Error::invalid_argument(std::string(field) + " must be a non-negative integer");
  return std::optional<int64_t>(it->get<int64_t>());
}

Result<Rate> parse_rate(const Json& j, const std::string& where) {
  if (!j.is_object()) return Error::invalid_argument(where + " must be an object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "requests_per_min" && it.key() != "tokens_per_min")
      return Error::invalid_argument(where + ": unknown field '" + it.key() + "' (known: requests_per_min, tokens_per_min)");
  Rate r;
  AP_ASSIGN_OR_RETURN(r.requests_per_min, opt_count(j, "requests_per_min"));
  AP_ASSIGN_OR_RETURN(r.tokens_per_min, opt_count(j, "tokens_per_min"));
  return r;
}

Json rate_json(const Rate& r) {
  Json j = Json::object();
  if (r.requests_per_min) j["requests_per_min"] = *r.requests_per_min;
  if (r.tokens_per_min) j["tokens_per_min"] = *r.tokens_per_min;
  return j;
}

Ask bucket(std::string key, int64_t per_min, int64_t cost) {
  return Ask{Ask::Kind::kBucket, std::move(key), per_min, static_cast<double>(per_min) / 60.0, 0, cost};
}

// A tenant's per-minute rate as its limits count them (windows have keys of their own, so that a
// change of algorithm starts afresh instead of reading the other's state).
Ask rate(const TenantLimits& l, std::string key, int64_t per_min, int64_t cost) {
  if (l.sliding_window) return Ask{Ask::Kind::kWindow, std::move(key) + ":w", per_min, 0, 60, cost};
  return bucket(std::move(key), per_min, cost);
}

// The current day and month in the tenant's zone, and the seconds until each ends.
struct Periods {
  std::string day, month;
  int64_t day_left_s = 86400, month_left_s = 86400 * 31;
};

Periods periods(const std::string& tz_name) {
  Periods p;
  const date::time_zone* tz = nullptr;
  try {
    tz = date::locate_zone(tz_name.empty() ? "UTC" : tz_name);
  } catch (...) {
    tz = date::locate_zone("UTC");
  }
  const auto now = std::chrono::system_clock::now();
  auto local = tz->to_local(now);
  auto day = date::floor<date::days>(local);
  date::year_month_day ymd{day};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()));
  p.day = buf;
  p.month = p.day.substr(0, 7);
  auto next_day = date::local_days{day + date::days{1}};
  auto ym_next = date::year_month{ymd.year(), ymd.month()} + date::months{1};
  auto next_month = date::local_days{ym_next / 1};
  auto end_of = [&](date::local_days ld) {
    auto sys = tz->to_sys(ld, date::choose::earliest);
    return std::max<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(sys - now).count(), 1);
  };
  p.day_left_s = end_of(next_day);
  p.month_left_s = end_of(next_month);
  return p;
}

std::string tag(const TenantId& t) { return "{t:" + t.to_string() + "}:"; }

std::string reset_text(double s) {  // OpenAI's x-ratelimit-reset-* style: "1s", "6m0s", "20ms"
  if (s < 1) return std::to_string(static_cast<int64_t>(std::ceil(s * 1000))) + "ms";
  int64_t secs = static_cast<int64_t>(std::ceil(s));
  if (secs < 60) return std::to_string(secs) + "s";
  return std::to_string(secs / 60) + "m" + std::to_string(secs % 60) + "s";
}

}  // namespace

// The limit an ask checks, for messages (named only when one refuses) and the x-ratelimit headers.
enum class Limits::Which : uint8_t {
  kApiRequests, kModelRequests, kModelTokens, kKeyRequests, kKeyTokens, kPerModelRequests, kPerModelTokens,
  kDaySpend, kMonthSpend, kUpstreamRequests, kSandboxCpu
};

namespace {

std::string name_of(Limits::Which w, const std::string& model) {
  using W = Limits::Which;
  switch (w) {
    case W::kApiRequests: return "API requests per minute";
    case W::kModelRequests: return "model requests per minute";
    case W::kModelTokens: return "model tokens per minute";
    case W::kKeyRequests: return "model requests per minute for this key";
    case W::kKeyTokens: return "model tokens per minute for this key";
    case W::kPerModelRequests: return "requests per minute for model " + model;
    case W::kPerModelTokens: return "tokens per minute for model " + model;
    case W::kDaySpend: return "daily spend in micro-USD";
    case W::kMonthSpend: return "monthly spend in micro-USD";
    case W::kUpstreamRequests: return "requests per minute on the upstream provider key";
    case W::kSandboxCpu: return "sandbox CPU milliseconds per day";
  }
  return "limit";
}

telemetry::Counter& decisions(const std::string& outcome) {
  static auto& family = telemetry::metrics().counter(
      "agentplane_ratelimit_decisions_total", "Limit decisions by outcome (allowed, denied, degraded).", {"outcome"});
  static auto& allowed = family.with({"allowed"});  // every request's: resolved once
  return outcome == "allowed" ? allowed : family.with({outcome});
}

}  // namespace

Result<TenantLimits> TenantLimits::parse(const std::string& text) {
  auto j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error::invalid_argument("limits must be a JSON object");
  static const std::vector<std::string> known = {"api_requests_per_min", "model_requests_per_min", "model_tokens_per_min",
                                                 "budget_micro_usd_per_day", "budget_micro_usd_per_month",
                                                 "concurrent_runs", "rate_algorithm", "per_key", "per_model",
                                                 "time_zone", "sandbox_cpu_seconds_per_day", "sandbox"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      return Error::invalid_argument("unknown field '" + it.key() +
                                     "' (known: api_requests_per_min, model_requests_per_min, model_tokens_per_min, "
                                     "budget_micro_usd_per_day, budget_micro_usd_per_month, concurrent_runs, rate_algorithm, "
                                     "per_key, per_model, time_zone, sandbox_cpu_seconds_per_day, sandbox)");
  TenantLimits l;
  AP_ASSIGN_OR_RETURN(l.api_requests_per_min, opt_count(j, "api_requests_per_min"));
  AP_ASSIGN_OR_RETURN(l.model_requests_per_min, opt_count(j, "model_requests_per_min"));
  AP_ASSIGN_OR_RETURN(l.model_tokens_per_min, opt_count(j, "model_tokens_per_min"));
  AP_ASSIGN_OR_RETURN(l.budget_micro_usd_per_day, opt_count(j, "budget_micro_usd_per_day"));
  AP_ASSIGN_OR_RETURN(l.budget_micro_usd_per_month, opt_count(j, "budget_micro_usd_per_month"));
  AP_ASSIGN_OR_RETURN(l.concurrent_runs, opt_count(j, "concurrent_runs"));
  if (l.concurrent_runs && *l.concurrent_runs > 100000) return Error::invalid_argument("concurrent_runs must be at most 100000");
  if (j.contains("rate_algorithm") && !j["rate_algorithm"].is_null()) {
    const Json& ra = j["rate_algorithm"];
    if (ra != "token_bucket" && ra != "sliding_window")
      return Error::invalid_argument("rate_algorithm must be token_bucket or sliding_window");
    l.sliding_window = ra == "sliding_window";
  }
  if (j.contains("per_key") && !j["per_key"].is_null()) {
    AP_ASSIGN_OR_RETURN(l.per_key, parse_rate(j["per_key"], "per_key"));
  }
  if (j.contains("per_model") && !j["per_model"].is_null()) {
    if (!j["per_model"].is_object()) return Error::invalid_argument("per_model must be an object of model -> rate");
    for (auto it = j["per_model"].begin(); it != j["per_model"].end(); ++it) {
      AP_ASSIGN_OR_RETURN(auto r, parse_rate(*it, "per_model." + it.key()));
      l.per_model[it.key()] = r;
    }
  }
  AP_ASSIGN_OR_RETURN(l.sandbox_cpu_seconds_per_day, opt_count(j, "sandbox_cpu_seconds_per_day"));
  if (j.contains("sandbox") && !j["sandbox"].is_null()) {
    const Json& sb = j["sandbox"];
    if (!sb.is_object()) return Error::invalid_argument("sandbox must be an object");
    static const std::vector<std::string> sb_known = {"backend", "max_wall_s", "max_cpu_s", "max_memory_mb", "max_pids",
                                                      "max_disk_mb", "egress", "egress_hosts"};
    for (auto it = sb.begin(); it != sb.end(); ++it)
      if (std::find(sb_known.begin(), sb_known.end(), it.key()) == sb_known.end())
        return Error::invalid_argument("unknown field 'sandbox." + it.key() +
                                       "' (known: backend, max_wall_s, max_cpu_s, max_memory_mb, max_pids, max_disk_mb, egress, egress_hosts)");
    if (sb.contains("backend") && !sb["backend"].is_null()) {
      if (sb["backend"] != "native" && sb["backend"] != "gvisor" && sb["backend"] != "microvm")
        return Error::invalid_argument("sandbox.backend must be native, gvisor or microvm");
      l.sandbox.backend = sb["backend"].get<std::string>();
    }
    AP_ASSIGN_OR_RETURN(l.sandbox.max_wall_s, opt_count(sb, "max_wall_s"));
    AP_ASSIGN_OR_RETURN(l.sandbox.max_cpu_s, opt_count(sb, "max_cpu_s"));
    AP_ASSIGN_OR_RETURN(l.sandbox.max_memory_mb, opt_count(sb, "max_memory_mb"));
    AP_ASSIGN_OR_RETURN(l.sandbox.max_pids, opt_count(sb, "max_pids"));
    AP_ASSIGN_OR_RETURN(l.sandbox.max_disk_mb, opt_count(sb, "max_disk_mb"));
    for (const auto* v : {&l.sandbox.max_wall_s, &l.sandbox.max_cpu_s, &l.sandbox.max_memory_mb, &l.sandbox.max_pids,
                          &l.sandbox.max_disk_mb})
      if (*v && **v < 1) return Error::invalid_argument("sandbox limits must be at least 1");
    if (sb.contains("egress") && !sb["egress"].is_null()) {
      if (!sb["egress"].is_boolean()) return Error::invalid_argument("sandbox.egress must be true or false");
      l.sandbox.egress = sb["egress"].get<bool>();
    }
    if (sb.contains("egress_hosts") && !sb["egress_hosts"].is_null()) {
      const Json& hosts = sb["egress_hosts"];
      if (!hosts.is_array() || hosts.size() > 256) return Error::invalid_argument("sandbox.egress_hosts must be a list of at most 256 hosts or networks");
      for (const auto& h : hosts) {
        if (!h.is_string()) return Error::invalid_argument("sandbox.egress_hosts must hold strings");
        l.sandbox.egress_hosts.push_back(h.get<std::string>());
      }
      if (auto e = net::Egress::parse(l.sandbox.egress_hosts, false); !e)
        return Error::invalid_argument("sandbox.egress_hosts: " + e.error().message);
    }
  }
  if (j.contains("time_zone") && !j["time_zone"].is_null()) {
    if (!j["time_zone"].is_string()) return Error::invalid_argument("time_zone must be an IANA zone name");
    l.time_zone = j["time_zone"].get<std::string>();
    try {
      date::locate_zone(l.time_zone);
    } catch (...) {
      return Error::invalid_argument("time_zone '" + l.time_zone + "' is not a known IANA zone");
    }
  }
  return l;
}

std::string TenantLimits::to_json() const {
  Json j = Json::object();
  auto put = [&](const char* k, const std::optional<int64_t>& v) {
    if (v) j[k] = *v;
  };
  put("api_requests_per_min", api_requests_per_min);
  put("model_requests_per_min", model_requests_per_min);
  put("model_tokens_per_min", model_tokens_per_min);
  put("budget_micro_usd_per_day", budget_micro_usd_per_day);
  put("budget_micro_usd_per_month", budget_micro_usd_per_month);
  put("concurrent_runs", concurrent_runs);
  j["rate_algorithm"] = sliding_window ? "sliding_window" : "token_bucket";
  if (per_key.requests_per_min || per_key.tokens_per_min) j["per_key"] = rate_json(per_key);
  if (!per_model.empty()) {
    Json pm = Json::object();
    for (const auto& [m, r] : per_model) pm[m] = rate_json(r);
    j["per_model"] = pm;
  }
  j["time_zone"] = time_zone;
  put("sandbox_cpu_seconds_per_day", sandbox_cpu_seconds_per_day);
  Json sb = Json::object();
  if (!sandbox.backend.empty()) sb["backend"] = sandbox.backend;
  auto put_sb = [&](const char* k, const std::optional<int64_t>& v) {
    if (v) sb[k] = *v;
  };
  put_sb("max_wall_s", sandbox.max_wall_s);
  put_sb("max_cpu_s", sandbox.max_cpu_s);
  put_sb("max_memory_mb", sandbox.max_memory_mb);
  put_sb("max_pids", sandbox.max_pids);
  put_sb("max_disk_mb", sandbox.max_disk_mb);
  sb["egress"] = sandbox.egress;
  if (!sandbox.egress_hosts.empty()) sb["egress_hosts"] = sandbox.egress_hosts;
  j["sandbox"] = sb;
  return j.dump();
}

Limits::Limits(std::unique_ptr<Backend> backend, Options options) : backend_(std::move(backend)), options_(std::move(options)) {}
Limits::~Limits() = default;

std::shared_ptr<const TenantLimits> Limits::cached(const TenantId& tenant) {
  std::lock_guard lock(mu_);
  auto it = cache_.find(tenant);
  if (it != cache_.end() && std::chrono::steady_clock::now() - it->second.at < options_.cache_ttl) return it->second.limits;
  return nullptr;
}

store::Task<std::shared_ptr<const TenantLimits>> Limits::of(store::Pool& pool, const TenantId& tenant) {
  if (auto l = cached(tenant)) co_return l;
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant, "SELECT limits::text, time_zone FROM tenant_limits"));
  std::shared_ptr<const TenantLimits> limits;
  if (rows.empty()) {
    limits = std::make_shared<const TenantLimits>(options_.defaults);
  } else {
    auto parsed = TenantLimits::parse(std::string(rows.get(0, 0)));
    limits = std::make_shared<const TenantLimits>(parsed ? *parsed : options_.defaults);
  }
  std::lock_guard lock(mu_);
  if (cache_.size() > 100000) cache_.clear();
  cache_[tenant] = Cached{limits, std::chrono::steady_clock::now()};
  co_return limits;
}

store::Task<void> Limits::set(store::Pool& pool, const TenantId& tenant, const TenantLimits& limits) {
  auto p = store::params(tenant.to_string(), limits.to_json(), limits.time_zone);
  AP_CO_RETURN_IF_ERROR(co_await store::tenant_query(
      pool, tenant,
      "INSERT INTO tenant_limits (tenant_id, limits, time_zone) VALUES ($1, $2::jsonb, $3) ON CONFLICT (tenant_id) "
      "DO UPDATE SET limits = excluded.limits, time_zone = excluded.time_zone, updated_at = now()",
      std::move(p)));
  std::lock_guard lock(mu_);
  cache_.erase(tenant);
  co_return Status{};
}

store::Task<std::string> Limits::get_json(store::Pool& pool, const TenantId& tenant) {
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await store::tenant_query(pool, tenant, "SELECT limits::text FROM tenant_limits"));
  co_return rows.empty() ? std::string("null") : std::string(rows.get(0, 0));
}

store::Task<Admission> Limits::decide(std::vector<Ask> asks, std::vector<Which> which, const std::string& model,
                                      bool model_call, size_t n_token, size_t n_spend) {
  if (asks.empty()) co_return Admission{};
  auto ex = co_await asio::this_coro::executor;
  if (auto d = backend_->acquire_now(ex, asks)) co_return admission(*d, asks, which, model, model_call, n_token, n_spend);
  const std::vector<Ask> kept = asks;
  auto d = co_await backend_->acquire(ex, std::move(asks));
  if (!d) {
    Admission a;
    decisions("degraded").inc();
    static std::atomic<int64_t> last_log{0};
    const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    if (last_log.exchange(now_s) != now_s)  // at most one line a second
      telemetry::log_warn("ratelimit_backend_down", {{"backend", backend_->name()}, {"error", d.error().message},
                                                     {"policy", options_.fail_open ? "fail-open" : "fail-closed"}});
    if (options_.fail_open) co_return a;
    a.allowed = false;
    a.message = "limits cannot be checked right now (the limit store is unreachable); try again shortly";
    a.retry_after_s = 1;
    a.headers.emplace_back("retry-after", "1");
    co_return a;
  }
  co_return admission(*d, kept, which, model, model_call, n_token, n_spend);
}

Admission Limits::admission(const Decision& d, const std::vector<Ask>& asks, const std::vector<Which>& which,
                            const std::string& model, bool model_call, size_t n_token, size_t n_spend) {
  Admission a;
  a.allowed = d.allowed;
  a.headers.reserve(model_call ? 9 : 3);
  decisions(a.allowed ? "allowed" : "denied").inc();
  // The tightest limit for the standard headers.
  size_t tight = 0;
  double best = 2;
  for (size_t i = 0; i < d.verdicts.size(); ++i) {
    const auto& v = d.verdicts[i];
    double ratio = v.limit > 0 ? static_cast<double>(v.remaining) / static_cast<double>(v.limit) : 0;
    if (ratio < best) {
      best = ratio;
      tight = i;
    }
  }
  const auto& tv = d.verdicts[tight];
  a.remaining = tv.remaining;
  a.headers.emplace_back("ratelimit-limit", std::to_string(tv.limit));
  a.headers.emplace_back("ratelimit-remaining", std::to_string(tv.remaining));
  a.headers.emplace_back("ratelimit-reset", std::to_string(static_cast<int64_t>(std::ceil(tv.reset_s))));
  if (model_call) {
    for (size_t i = 0; i < which.size(); ++i) {
      const char* kind = which[i] == Which::kModelRequests ? "requests" : which[i] == Which::kModelTokens ? "tokens" : nullptr;
      if (!kind) continue;
      a.headers.emplace_back(std::string("x-ratelimit-limit-") + kind, std::to_string(d.verdicts[i].limit));
      a.headers.emplace_back(std::string("x-ratelimit-remaining-") + kind, std::to_string(d.verdicts[i].remaining));
      a.headers.emplace_back(std::string("x-ratelimit-reset-") + kind, reset_text(d.verdicts[i].reset_s));
    }
  }
  if (!a.allowed) {
    const int i = std::max(d.denied_index, 0);
    const Ask& ask = asks[static_cast<size_t>(i)];
    a.budget = ask.kind == Ask::Kind::kCounter;
    if (d.retry_after_s < 0) {
      a.message = "the request needs more than the whole " + name_of(which[static_cast<size_t>(i)], model) + " limit (" +
                  std::to_string(ask.limit) + "); lower max_tokens or the prompt";
      a.retry_after_s = 0;
    } else {
      a.retry_after_s = d.retry_after_s;
      a.message = (a.budget ? "budget exhausted: " : "rate limit reached: ") + name_of(which[static_cast<size_t>(i)], model) + " (limit " +
                  std::to_string(ask.limit) + "); retry after " +
                  std::to_string(static_cast<int64_t>(std::ceil(a.retry_after_s))) + " s";
      a.headers.emplace_back("retry-after", std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(a.retry_after_s)))));
    }
    return a;
  }
  a.token_asks.assign(asks.begin(), asks.begin() + static_cast<long>(n_token));
  a.spend_asks.assign(asks.begin() + static_cast<long>(n_token), asks.begin() + static_cast<long>(n_token + n_spend));
  for (size_t i = 0; i < n_token; ++i) a.token_asks[i].window = d.verdicts[i].window;
  return a;
}

store::Task<Admission> Limits::admit_request(store::Pool& pool, const TenantId& tenant) {
  auto l = cached(tenant);
  if (!l) {
    AP_CO_ASSIGN_OR_RETURN(l, co_await of(pool, tenant));
  }
  std::vector<Ask> asks;
  std::vector<Which> which;
  if (l->api_requests_per_min) {
    asks.push_back(rate(*l, tag(tenant) + "api", *l->api_requests_per_min, 1));
    which.push_back(Which::kApiRequests);
  }
  co_return co_await decide(std::move(asks), std::move(which), std::string(), false, 0, 0);
}

store::Task<Admission> Limits::admit_model(store::Pool& pool, const TenantId& tenant, const std::string& key_id,
                                           const std::string& model, int64_t tokens, int64_t worst_cost,
                                           const std::string& upstream, bool api_request) {
  auto l = cached(tenant);
  if (!l) {
    AP_CO_ASSIGN_OR_RETURN(l, co_await of(pool, tenant));
  }
  const std::string t = tag(tenant);
  // Token asks first (settle corrects them), then spend asks, then plain request counts.
  std::vector<Ask> asks;
  std::vector<Which> which;
  asks.reserve(10);
  which.reserve(10);
  if (l->model_tokens_per_min) {
    asks.push_back(rate(*l, t + "mtpm", *l->model_tokens_per_min, tokens));
    which.push_back(Which::kModelTokens);
  }
  if (l->per_key.tokens_per_min && !key_id.empty()) {
    asks.push_back(rate(*l, t + "k:" + key_id + ":tpm", *l->per_key.tokens_per_min, tokens));
    which.push_back(Which::kKeyTokens);
  }
  auto pm = l->per_model.find(model);
  if (pm != l->per_model.end() && pm->second.tokens_per_min) {
    asks.push_back(rate(*l, t + "m:" + model + ":tpm", *pm->second.tokens_per_min, tokens));
    which.push_back(Which::kPerModelTokens);
  }
  const size_t n_token = asks.size();
  if (l->budget_micro_usd_per_day || l->budget_micro_usd_per_month) {
    const Periods p = periods(l->time_zone);
    if (l->budget_micro_usd_per_day) {
      asks.push_back(Ask{Ask::Kind::kCounter, t + "spend:d:" + p.day, *l->budget_micro_usd_per_day, 0, p.day_left_s, worst_cost});
      which.push_back(Which::kDaySpend);
    }
    if (l->budget_micro_usd_per_month) {
      asks.push_back(Ask{Ask::Kind::kCounter, t + "spend:m:" + p.month, *l->budget_micro_usd_per_month, 0, p.month_left_s, worst_cost});
      which.push_back(Which::kMonthSpend);
    }
  }
  const size_t n_spend = asks.size() - n_token;
  if (l->model_requests_per_min) {
    asks.push_back(rate(*l, t + "mrpm", *l->model_requests_per_min, 1));
    which.push_back(Which::kModelRequests);
  }
  if (l->per_key.requests_per_min && !key_id.empty()) {
    asks.push_back(rate(*l, t + "k:" + key_id + ":rpm", *l->per_key.requests_per_min, 1));
    which.push_back(Which::kKeyRequests);
  }
  if (pm != l->per_model.end() && pm->second.requests_per_min) {
    asks.push_back(rate(*l, t + "m:" + model + ":rpm", *pm->second.requests_per_min, 1));
    which.push_back(Which::kPerModelRequests);
  }
  if (api_request && l->api_requests_per_min) {
    asks.push_back(rate(*l, t + "api", *l->api_requests_per_min, 1));
    which.push_back(Which::kApiRequests);
  }
  if (options_.upstream_key_requests_per_min && !upstream.empty()) {
    asks.push_back(bucket(t + "u:" + upstream + ":rpm", *options_.upstream_key_requests_per_min, 1));
    which.push_back(Which::kUpstreamRequests);
  }
  auto a = co_await decide(std::move(asks), std::move(which), model, true, n_token, n_spend);
  if (a) {
    a->reserved_tokens = tokens;
    a->reserved_cost = worst_cost;
  }
  co_return a;
}

void Limits::release(std::chrono::milliseconds deadline) {
  asio::io_context ioc(1);
  auto done = asio::co_spawn(ioc, backend_->release(ioc.get_executor()), asio::use_future);
  const auto until = std::chrono::steady_clock::now() + deadline;
  // Not run(): a Redis connection's reader keeps the loop busy for good.
  while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready && std::chrono::steady_clock::now() < until)
    ioc.run_one_for(std::chrono::milliseconds(50));
  if (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    telemetry::log_warn("ratelimit_release_timeout", {{"backend", backend_->name()}});
}

void Limits::settle(asio::any_io_executor ex, const Admission& a, int64_t tokens, int64_t cost) {
  std::vector<Ask> deltas;
  for (Ask ask : a.token_asks) {
    ask.cost = tokens - a.reserved_tokens;
    if (ask.cost != 0) deltas.push_back(std::move(ask));
  }
  for (Ask ask : a.spend_asks) {
    ask.cost = cost - a.reserved_cost;
    if (ask.cost != 0) deltas.push_back(std::move(ask));
  }
  backend_->adjust_now(ex, deltas);  // leases: at once
  if (deltas.empty()) return;
  asio::co_spawn(
      ex,
      [this, ex, deltas = std::move(deltas)]() mutable -> asio::awaitable<void> {
        auto st = co_await backend_->adjust(ex, std::move(deltas));
        if (!st) decisions("settle_failed").inc();
      },
      asio::detached);
}

store::Task<Admission> Limits::admit_sandbox(store::Pool& pool, const TenantId& tenant) {
  AP_CO_ASSIGN_OR_RETURN(auto l, co_await of(pool, tenant));
  std::vector<Ask> asks;
  std::vector<Which> which;
  if (l->sandbox_cpu_seconds_per_day) {
    const Periods p = periods(l->time_zone);
    asks.push_back(Ask{Ask::Kind::kCounter, tag(tenant) + "sbcpu:d:" + p.day, *l->sandbox_cpu_seconds_per_day * 1000, 0,
                       p.day_left_s, 1});
    which.push_back(Which::kSandboxCpu);
  }
  // 1 ms reserved, corrected with what the run used like a model call's tokens.
  const size_t n_token = asks.size();
  auto a = co_await decide(std::move(asks), std::move(which), std::string(), false, n_token, 0);
  if (a) a->reserved_tokens = 1;
  co_return a;
}

store::Task<std::string> Limits::status_json(store::Pool& pool, const TenantId& tenant) {
  AP_CO_ASSIGN_OR_RETURN(auto l, co_await of(pool, tenant));
  const std::string t = tag(tenant);
  std::vector<Ask> asks;
  std::vector<std::string> names;
  auto add = [&](const std::optional<int64_t>& v, Ask ask, const char* name) {
    if (!v) return;
    ask.cost = 0;  // read only: a zero-cost take passes and reports what is left
    asks.push_back(std::move(ask));
    names.push_back(name);
  };
  const Periods p = periods(l->time_zone);
  add(l->api_requests_per_min, rate(*l, t + "api", l->api_requests_per_min.value_or(0), 0), "api_requests_per_min");
  add(l->model_requests_per_min, rate(*l, t + "mrpm", l->model_requests_per_min.value_or(0), 0), "model_requests_per_min");
  add(l->model_tokens_per_min, rate(*l, t + "mtpm", l->model_tokens_per_min.value_or(0), 0), "model_tokens_per_min");
  add(l->budget_micro_usd_per_day,
      Ask{Ask::Kind::kCounter, t + "spend:d:" + p.day, l->budget_micro_usd_per_day.value_or(0), 0, p.day_left_s, 0},
      "budget_micro_usd_per_day");
  add(l->budget_micro_usd_per_month,
      Ask{Ask::Kind::kCounter, t + "spend:m:" + p.month, l->budget_micro_usd_per_month.value_or(0), 0, p.month_left_s, 0},
      "budget_micro_usd_per_month");
  add(l->sandbox_cpu_seconds_per_day,
      Ask{Ask::Kind::kCounter, t + "sbcpu:d:" + p.day, l->sandbox_cpu_seconds_per_day.value_or(0) * 1000, 0, p.day_left_s, 0},
      "sandbox_cpu_ms_per_day");
  Json usage = Json::object();
  if (!asks.empty()) {
    auto ex = co_await asio::this_coro::executor;
    auto d = co_await backend_->acquire(ex, asks);
    if (d) {
      for (size_t i = 0; i < names.size(); ++i) {
        const auto& v = d->verdicts[i];
        usage[names[i]] = {{"limit", v.limit}, {"remaining", v.remaining}, {"used", v.limit - v.remaining},
                           {"reset_seconds", std::ceil(v.reset_s)}};
      }
    }
  }
  Json out = {{"limits", Json::parse(l->to_json())}, {"usage", usage}, {"backend", backend_->name()}};
  co_return out.dump();
}

}  // namespace ap::ratelimit
