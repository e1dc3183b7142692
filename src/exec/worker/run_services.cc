#include "exec/worker/run_services.h"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cmath>
#include <functional>
#include <future>

#include "llm/models.h"
#include "llm/upstream.h"
#include "ratelimit/limits.h"
#include "telemetry/log.h"
#include "vault/credentials.h"
#include "audit/audit_log.h"
#include "common/crypto.h"
#include "exec/sandbox/sandbox.h"

namespace ap::exec {
namespace {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

// Runs `work` on `ex` and waits for it on this (node) thread. While waiting, a stop of the run
// (cancel, lease lost, worker stopping) or the deadline cancels the work: its pending I/O ends.
// If the I/O thread is gone (the worker stopped hard) the wait ends 5 s after the cancel.
template <class T>
Result<T> wait_for(asio::any_io_executor ex, const asio::io_context* io, asio::awaitable<Result<T>> work,
                   const std::function<bool()>& stop,
                   steady::time_point deadline = steady::time_point::max()) {
  auto done = std::make_shared<std::promise<Result<T>>>();
  auto f = done->get_future();
  auto signal = std::make_shared<asio::cancellation_signal>();
  asio::co_spawn(ex, std::move(work),
                 asio::bind_cancellation_slot(signal->slot(), [done](std::exception_ptr e, Result<T> r) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       done->set_value(Error::internal(std::string("the call failed: ") + x.what()));
                     }
                     return;
                   }
                   done->set_value(std::move(r));
                 }));
  bool stopped = false, late = false;
  steady::time_point gave_up_at = steady::time_point::max();
  while (f.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    if (stopped || late) {
      // Only when the I/O thread is gone for good: its coroutines are then never resumed, so
      // nothing touches this frame after we leave.
      if (steady::now() >= gave_up_at && io && io->stopped())
        return Error::cancelled("the run was stopped during a model or tool call");
      continue;
    }
    stopped = stop();
    late = steady::now() >= deadline;
    if (stopped || late) {
      gave_up_at = steady::now() + std::chrono::seconds(5);
      asio::post(ex, [signal] { signal->emit(asio::cancellation_type::terminal); });
    }
  }
  auto r = f.get();
  if (stopped && !r) return Error::cancelled("the run was stopped during a model or tool call");
  if (late && !r) return Error::deadline_exceeded("no answer within the tool's timeout");
  return r;
}

}  // namespace

struct WorkerRunServices::Call {
  const ModelAccess& access;
  const WorkerRunServices::Where& where;
  TenantId tenant;
  Uuid thread, run;
  std::string request_id;
  std::string model;
  llm::ChatCall call;
  const llm::OnDelta& on_delta;
  steady::time_point start = steady::now();
  std::optional<double> ttft_ms;

  asio::awaitable<Result<llm::ChatResult>> run_it(Totals& totals, std::mutex& mu) {
    auto* models = access.models;
    if (!models) co_return Error::failed_precondition("model calls are not configured on this worker");
    auto route = co_await models->routes.find(*where.pool, tenant, model);
    if (!route) {
      if (route.error().code == Code::kNotFound)
        co_return Error::not_found("model '" + model + "' is not one of the tenant's model routes (PUT /v1/model-routes/" + model + ")");
      co_return route.error();
    }
    const auto& r = **route;
    ratelimit::Reservation reservation;  // settled below, or with nothing used on an early return
    if (models->limits) {
      const int64_t max_out = call.max_tokens.value_or(4096);
      llm::Usage worst;
      worst.prompt_tokens = llm::upper_bound_prompt_tokens(call);
      worst.completion_tokens = max_out;
      const int64_t worst_cost = llm::cost_of(worst, models->price_of(r), "").micro_usd;
      const std::string upstream = r.credential.empty() ? "" : tenant.to_string() + "/" + r.credential;
      const int64_t tokens = worst.prompt_tokens + max_out;
      const std::string no_key;
      auto a = co_await models->limits->admit_model(*where.pool, tenant, no_key, model, tokens, worst_cost, upstream);
      if (!a) co_return a.error();
      if (!a->allowed)
        co_return Error::resource_exhausted(a->message + (a->budget ? "" : " (retry in " + std::to_string(static_cast<int>(a->retry_after_s + 0.999)) + " s)"));
      reservation = ratelimit::Reservation(models->limits, where.ex, std::move(*a));
    }
    llm::Endpoint endpoint;
    endpoint.provider = r.provider;
    endpoint.base_url = r.base_url;
    endpoint.script = r.script;
    if (!r.credential.empty()) {
      if (!access.credentials) co_return Error::failed_precondition("the credential vault is not configured");
      audit::Context ctx{tenant, "run:" + run.to_string(), request_id, where.pool};
      const std::string purpose = "run " + run.to_string() + ": model " + model;
      auto url = llm::UpstreamUrl::parse(llm::effective_base_url(r.provider, r.base_url));
      if (!url) co_return url.error();
      vault::Destination to{url->host, false};
      auto key = co_await access.credentials->use(ctx, r.credential, purpose, to);
      if (!key) {
        if (key.error().code == Code::kNotFound)
          co_return Error::failed_precondition("model '" + model + "' uses credential '" + r.credential +
                                               "', which is not in the tenant's vault");
        co_return key.error();
      }
      endpoint.key = std::move(*key);
    }
    auto provider = llm::make_provider(std::move(endpoint));
    if (!provider) co_return provider.error();
    call.model = r.upstream_model;
    llm::OnDelta timed = [this](std::string_view text) {
      if (!ttft_ms) ttft_ms = std::chrono::duration<double, std::milli>(steady::now() - start).count();
      on_delta(text);
    };
    Result<llm::ChatResult> result = Error::internal("the model call did not run");
    try {
      result = co_await (*provider)->chat(*where.http, call, timed);
    } catch (const std::exception& e) {  // an aborted operation that threw: still recorded below
      result = Error::cancelled(std::string("the model call ended: ") + e.what());
    }
    // One usage record per call, failed ones too (tokens estimated when the provider sent none).
    llm::Usage usage;
    int status = 200;
    if (result) {
      usage = result->usage;
    } else {
      usage.prompt_tokens = llm::estimate_prompt_tokens(call);
      usage.estimated = true;
      status = result.error().code == Code::kCancelled ? 499 : result.error().code == Code::kResourceExhausted ? 429 : 502;
    }
    auto cost = llm::cost_of(usage, models->price_of(r), models->price_version(r));
    reservation.settle(usage.prompt_tokens + usage.completion_tokens, cost.micro_usd);
    {
      std::lock_guard lock(mu);
      ++totals.calls;
      totals.prompt_tokens += usage.prompt_tokens;
      totals.completion_tokens += usage.completion_tokens;
      totals.cost_micro_usd += cost.micro_usd;
      if (cost.unpriced) ++totals.unpriced_calls;
    }
    if (models->usage) {
      llm::UsageRecord rec;
      rec.tenant = tenant;
      rec.at = std::chrono::system_clock::now();
      rec.source = "run";
      rec.request_id = request_id;
      rec.thread_id = thread;
      rec.run_id = run;
      rec.model = model;
      rec.provider = r.provider;
      rec.upstream_model = r.upstream_model;
      rec.usage = usage;
      rec.cost = std::move(cost);
      rec.ttft_ms = ttft_ms;
      rec.duration_ms = std::chrono::duration<double, std::milli>(steady::now() - start).count();
      rec.status = status;
      rec.streamed = true;
      rec.disconnected = status == 499;
      models->usage->record(std::move(rec));
    }
    co_return result;
  }
};

WorkerRunServices::WorkerRunServices(ModelAccess access, Where where, TenantId tenant, Uuid thread, Uuid run,
                                     std::shared_ptr<std::atomic<int>> stop, const std::atomic<bool>* worker_stopping)
    : access_(access),
      where_(std::move(where)),
      tenant_(tenant),
      thread_(thread),
      run_(run),
      stop_(std::move(stop)),
      worker_stopping_(worker_stopping) {}

bool WorkerRunServices::stopping() const {
  return stop_->load() != 0 || (worker_stopping_ && worker_stopping_->load());
}

Result<graph::nodes::ModelInfo> WorkerRunServices::model_info(const std::string& model) {
  auto work = [](const WorkerRunServices* self, std::string model) -> asio::awaitable<Result<graph::nodes::ModelInfo>> {
    auto* models = self->access_.models;
    if (!models) co_return Error::failed_precondition("model calls are not configured on this worker");
    auto route = co_await models->routes.find(*self->where_.pool, self->tenant_, model);
    if (!route) co_return route.error();
    co_return graph::nodes::ModelInfo{(*route)->provider, (*route)->upstream_model};
  };
  return wait_for<graph::nodes::ModelInfo>(where_.ex, where_.io, work(this, model), [this] { return stopping(); });
}

Result<llm::ChatResult> WorkerRunServices::chat(const std::string& model, llm::ChatCall call, const llm::OnDelta& on_delta) {
  int64_t n;
  {
    std::lock_guard lock(mu_);
    n = ++seq_;
  }
  Call c{access_, where_, tenant_, thread_, run_, run_.to_string() + ":" + std::to_string(n), model, std::move(call), on_delta};
  return wait_for<llm::ChatResult>(where_.ex, where_.io, c.run_it(totals_, mu_), [this] { return stopping(); });
}

Result<graph::nodes::HttpReply> WorkerRunServices::http(graph::nodes::HttpCall call) {
  auto work = [](const WorkerRunServices* self, graph::nodes::HttpCall call) -> asio::awaitable<Result<graph::nodes::HttpReply>> {
    llm::UpstreamRequest req;
    req.method = call.method;
    req.url = call.url;
    req.body = call.body;
    for (auto& h : call.headers) req.headers.push_back(std::move(h));
    if (!call.credential.empty()) {
      if (!self->access_.credentials) co_return Error::failed_precondition("the credential vault is not configured");
      audit::Context ctx{self->tenant_, "run:" + self->run_.to_string(), self->run_.to_string(), self->where_.pool};
      const std::string purpose = "run " + self->run_.to_string() + ": http tool";
      auto url = llm::UpstreamUrl::parse(call.url);
      if (!url) co_return url.error();
      vault::Destination to{url->host, true};
      auto value = co_await self->access_.credentials->use(ctx, call.credential, purpose, to);
      if (!value) {
        if (value.error().code == Code::kNotFound)
          co_return Error::failed_precondition("credential '" + call.credential + "' is not in the tenant's vault");
        co_return value.error();
      }
      req.headers.emplace_back(call.credential_header, call.credential_prefix + std::string(value->reveal()));
    }
    auto sent = co_await self->where_.http->send(std::move(req));
    if (!sent) co_return sent.error();
    auto& resp = *sent;
    auto body = co_await resp->read_all(call.max_response_bytes);
    if (!body) co_return body.error();
    co_return graph::nodes::HttpReply{resp->status(), resp->header("content-type"), std::move(*body)};
  };
  const auto deadline = steady::now() + call.timeout;
  return wait_for<graph::nodes::HttpReply>(where_.ex, where_.io, work(this, std::move(call)), [this] { return stopping(); }, deadline);
}

Result<sandbox::RunResult> WorkerRunServices::code(sandbox::Spec spec) {
  auto work = [](WorkerRunServices* self, sandbox::Spec spec) -> asio::awaitable<Result<sandbox::RunResult>> {
    auto* sb = self->access_.sandbox;
    if (!sb) co_return Error::failed_precondition("code execution is not configured on this worker (no sandbox backend)");
    auto* limits = self->access_.models ? self->access_.models->limits : nullptr;
    if (spec.network && !limits) co_return Error::permission_denied("network for code needs a sandbox policy (no limits are configured)");
    ratelimit::Reservation reservation;  // the CPU-seconds quota: settled with what the run used
    if (limits) {
      auto l = co_await limits->of(*self->where_.pool, self->tenant_);
      if (!l) co_return l.error();
      const ratelimit::SandboxPolicy& policy = (*l)->sandbox;
      if (!policy.backend.empty() && policy.backend != sb->name())
        co_return Error::failed_precondition("the tenant's sandbox backend '" + policy.backend +
                                             "' is not available on this worker (it runs '" + sb->name() + "')");
      if (spec.network) {
        if (!policy.egress) co_return Error::permission_denied("the tenant's sandbox policy allows no network");
        // The operator's egress policy, and within it the tenant's own list if it has one.
        const net::Egress* operator_policy = &self->access_.models->egress;
        std::shared_ptr<const net::Egress> tenant_list;
        if (!policy.egress_hosts.empty()) {
          auto t = net::Egress::parse(policy.egress_hosts, false);
          if (!t) co_return Error::invalid_argument("the tenant's sandbox.egress_hosts: " + t.error().message);
          tenant_list = std::make_shared<const net::Egress>(std::move(*t));
        }
        spec.egress_check = [operator_policy, tenant_list](std::string_view host, const asio::ip::address& a) -> Status {
          if (tenant_list)
            if (auto ok = tenant_list->check(host, a); !ok)
              return Error::permission_denied(std::string(host) + " is not in the tenant's sandbox.egress_hosts");
          return operator_policy->check(host, a);
        };
      }
      auto cap = [](auto& value, const std::optional<int64_t>& max, auto unit) {
        if (max && value > unit * *max) value = unit * *max;
      };
      cap(spec.limits.wall, policy.max_wall_s, std::chrono::milliseconds(1000));
      cap(spec.limits.cpu, policy.max_cpu_s, std::chrono::milliseconds(1000));
      cap(spec.limits.memory_bytes, policy.max_memory_mb, int64_t{1} << 20);
      cap(spec.limits.pids, policy.max_pids, int64_t{1});
      cap(spec.limits.disk_bytes, policy.max_disk_mb, int64_t{1} << 20);
      auto a = co_await limits->admit_sandbox(*self->where_.pool, self->tenant_);
      if (!a) co_return a.error();
      if (!a->allowed) co_return Error::resource_exhausted(a->message);
      if (a->remaining >= 0)  // no more CPU time than the day's quota has left
        spec.limits.cpu = std::min(spec.limits.cpu, std::chrono::milliseconds(a->remaining + 1));
      reservation = ratelimit::Reservation(limits, self->where_.ex, std::move(*a));
    }
    spec.tenant = self->tenant_.to_string();
    spec.run = self->run_.to_string();
    std::string sources;
    for (const auto& f : spec.files) sources += f.path + '\0' + f.content + '\0';
    const auto digest = sha256(sources);
    const std::string command = spec.argv.empty() ? "" : spec.argv[0];
    const bool network = spec.network;
    auto r = co_await sb->run(std::move(spec));
    if (!r) co_return r.error();
    const int64_t cpu_ms = static_cast<int64_t>(std::llround(r->usage.cpu_s * 1000));
    reservation.settle(cpu_ms, 0);
    {
      std::lock_guard lock(self->mu_);
      ++self->totals_.sandbox_runs;
      self->totals_.sandbox_cpu_ms += cpu_ms;
    }
    if (self->access_.audit) {
      nlohmann::json payload{{"run_id", self->run_.to_string()},
                   {"thread_id", self->thread_.to_string()},
                   {"backend", sb->name()},
                   {"command", command},
                   {"source_sha256", hex_encode(digest.data(), digest.size())},
                   {"outcome", std::string(sandbox::outcome_name(r->outcome))},
                   {"exit_code", r->exit_code},
                   {"signal", r->signal},
                   {"cpu_ms", cpu_ms},
                   {"wall_ms", static_cast<int64_t>(r->usage.wall_s * 1000)},
                   {"peak_memory_bytes", r->usage.peak_memory_bytes}};
      if (network) {  // where the code went through its egress proxy (hosts, never paths)
        auto list = nlohmann::json::array();
        for (const auto& e : r->egress)
          list.push_back({{"host", e.host}, {"port", e.port}, {"address", e.address}, {"allowed", e.allowed},
                          {"reason", e.reason}, {"bytes_out", e.bytes_out}, {"bytes_in", e.bytes_in}});
        payload["egress"] = std::move(list);
        if (r->egress_dropped > 0) payload["egress_not_recorded"] = r->egress_dropped;
      }
      audit::Context ctx{self->tenant_, "run:" + self->run_.to_string(), self->run_.to_string(), self->where_.pool};
      self->access_.audit->record(ctx, audit::Event{"code.executed", audit::Level::kReplay, std::move(payload)});
    }
    // Settled and audited first: a cancel does not make the CPU time free.
    if (r->outcome == sandbox::Outcome::kCancelled) co_return Error::cancelled("the run was stopped while its code ran");
    co_return r;
  };
  return wait_for<sandbox::RunResult>(where_.ex, where_.io, work(this, std::move(spec)), [this] { return stopping(); });
}

WorkerRunServices::Totals WorkerRunServices::totals() const {
  std::lock_guard lock(mu_);
  return totals_;
}

}  // namespace ap::exec
