// Run webhooks: queued with the run's end, POSTed by any worker, tried again on transient failures.
#include "exec/worker/webhooks.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <atomic>
#include <unordered_map>

#include "audit/audit_log.h"
#include "common/clock.h"
#include "common/json.h"
#include "net/egress.h"
#include "net/http_client.h"
#include "store/tx.h"
#include "telemetry/log.h"
#include "telemetry/metrics.h"

namespace ap::exec {
namespace asio = boost::asio;

namespace {

// The run as LangGraph's webhook sends it: the run object, then when it ran, its values and
// (`error`: `, 'error', $7::json` for a failed run) its error. (json, not jsonb: the values go
// out as the run wrote them.)
#define AP_QUEUE_WEBHOOK(error)                                                                                 \
  "INSERT INTO webhook_deliveries (tenant_id, id, run_id, url, payload) "                                      \
  "SELECT r.tenant_id, $3::uuid, r.run_id, $4, json_build_object('run_id', r.run_id, 'thread_id', r.thread_id, " \
  "'assistant_id', r.assistant_id, 'created_at', r.created_at, 'updated_at', r.updated_at, 'status', r.status, "  \
  "'metadata', r.metadata, 'kwargs', r.kwargs, 'multitask_strategy', r.multitask_strategy, "                     \
  "'run_started_at', $5::timestamptz, 'run_ended_at', now(), 'values', $6::json" error ")::text "               \
  "FROM runs r WHERE r.tenant_id = $1 AND r.run_id = $2"
constexpr const char* kQueue = AP_QUEUE_WEBHOOK("");
constexpr const char* kQueueWithError = AP_QUEUE_WEBHOOK(", 'error', $7::json");
#undef AP_QUEUE_WEBHOOK

auto& outcomes() {
  static auto& c = telemetry::metrics().counter("agentplane_webhooks_total",
                                                "Run webhook POSTs by outcome: sent, retry (failed, to be tried "
                                                "again) or failed (given up).",
                                                {"outcome"});
  return c;
}

// How one attempt ended.
enum class Outcome { kSent, kRetry, kGiveUp };

struct Attempt {
  Outcome outcome;
  std::string error;  // for the log and the audit event: never the URL's path or query
};

}  // namespace

store::Statement queue_webhook_statement(const FinishedRun& run) {
  std::vector<store::Param> p = store::params(run.tenant, run.run_id, Uuid::random_v4().to_string(), run.url,
                                              format_rfc3339(run.started));
  p.push_back(run.values);
  if (run.error) p.push_back(run.error);
  return {run.error ? kQueueWithError : kQueue, std::move(p)};
}

struct WebhookSender::Impl : std::enable_shared_from_this<Impl> {
  asio::any_io_executor ex;
  store::Pool& pool;
  net::Egress default_egress = net::Egress::parse({}).value();
  audit::AuditLog* audit;
  WebhookOptions o;
  std::unique_ptr<net::HttpClient> http;
  asio::steady_timer wake;
  std::atomic<bool> stopping{false};
  bool wanted = false;  // poked during a claim round: look again before sleeping
  int in_flight = 0;
  std::unordered_map<TenantId, int, UuidHash> busy;  // in flight per tenant (each has at most per_tenant())

  Impl(asio::any_io_executor e, store::Pool& p, const net::Egress* egress, audit::AuditLog* a, WebhookOptions opts)
      : ex(e), pool(p), audit(a), o(opts), wake(e) {
    net::ClientOptions co;
    co.egress = egress ? egress : &default_egress;
    co.connect_timeout = o.connect_timeout;
    co.read_timeout = o.timeout;
    co.max_attempts = 1;  // retried here, durably, with the delays above
    co.user_agent = "agentplane-webhook";
    http = std::make_unique<net::HttpClient>(ex, co);
  }

  asio::awaitable<void> loop() {
    auto self = shared_from_this();
    while (!stopping) {
      wanted = false;
      int free = o.concurrency - in_flight;
      int taken = 0;
      if (free > 0) {
        std::string tenants = "{", counts = "{";
        for (const auto& [t, n] : busy) {
          tenants += (tenants.size() > 1 ? "," : "") + t.to_string();
          counts += (counts.size() > 1 ? "," : "") + std::to_string(n);
        }
        auto rows = co_await store::platform_query(
            pool, "SELECT tenant_id, id, attempts FROM claim_webhooks($1::int, $2::int, $3::int, $4::uuid[], $5::int[])",
            store::params(std::to_string(free), std::to_string(lease().count()), std::to_string(per_tenant()), tenants + "}",
                          counts + "}"));
        if (!rows) {
          telemetry::log_warn("webhook_claim_failed", {{"error", rows.error().message}});
        } else {
          for (int i = 0; i < rows->size(); ++i) {
            const TenantId tenant = *TenantId::parse(rows->get(i, 0));
            ++taken;
            ++in_flight;
            ++busy[tenant];
            asio::co_spawn(ex, deliver(tenant, std::string(rows->get(i, 1)), std::stoi(std::string(rows->get(i, 2)))),
                           asio::detached);
          }
        }
      }
      // There may be more: this round took some and slots are left (a tenant that reached its
      // share with them is passed over in the next), or a run queued one meanwhile.
      if ((taken > 0 && in_flight < o.concurrency) || wanted) continue;
      // Retries come due on their own: look every second (and at once when a run queues one).
      wake.expires_after(std::chrono::seconds(1));
      boost::system::error_code ec;
      co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // A tenant's share of this sender's slots: one tenant's slow receiver never holds up the rest.
  int per_tenant() const { return o.per_tenant > 0 ? o.per_tenant : std::max(1, o.concurrency / 4); }

  // One delivery of `tenant` fewer in flight. When that frees a slot of a full sender, or the
  // share of a tenant that had all of it, due deliveries may be waiting for it: look now.
  void done_with(const TenantId& tenant) {
    bool was_full = in_flight-- == o.concurrency;
    if (auto it = busy.find(tenant); it != busy.end()) {
      was_full = was_full || it->second == per_tenant();
      if (--it->second <= 0) busy.erase(it);
    }
    if (was_full) poke();
  }

  // Longer than an attempt can take (connect and TLS, the request, the answer's head: each
  // bounded by the client's timeouts): a sender that dies leaves its deliveries due again then.
  std::chrono::milliseconds lease() const { return 2 * o.connect_timeout + 2 * o.timeout + std::chrono::seconds(60); }

  asio::awaitable<Attempt> post(const std::string& url, const std::string& payload) {
    // webhook_sent_at goes in as it is sent (the payload is our own JSON object: `{...}`).
    std::string body = payload;
    if (body.size() >= 2 && body.back() == '}')
      body.insert(body.size() - 1, ", \"webhook_sent_at\" : \"" + format_rfc3339(std::chrono::system_clock::now()) + "\"");
    net::ClientRequest req;
    req.method = "POST";
    req.url = url;
    req.headers.emplace_back("content-type", "application/json");
    req.body = std::move(body);
    auto sent = co_await http->send(std::move(req));
    if (!sent) {
      const Error& e = sent.error();
      // Refused by the egress policy or not a usable URL: trying again changes nothing.
      const bool final = e.code == Code::kPermissionDenied || e.code == Code::kInvalidArgument;
      co_return Attempt{final ? Outcome::kGiveUp : Outcome::kRetry, e.message};
    }
    // The status is the answer; its body is not read (a receiver that drips it cannot hold the
    // delivery): the connection is closed, not kept.
    const int status = (*sent)->status();
    if (status >= 200 && status < 300) co_return Attempt{Outcome::kSent, ""};
    const bool transient = status == 429 || status >= 500;
    co_return Attempt{transient ? Outcome::kRetry : Outcome::kGiveUp, "answered HTTP " + std::to_string(status)};
  }

  // `claimed`: the attempts counted so far, this one included.
  asio::awaitable<void> deliver(TenantId tenant, std::string id, int claimed) {
    auto self = shared_from_this();
    const std::string tenant_s = tenant.to_string();
    std::string run_id, url, payload;
    Attempt a{Outcome::kGiveUp, ""};
    auto row = co_await store::tenant_query(pool, tenant,
                                            "SELECT run_id, url, payload FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2",
                                            store::params(tenant_s, id));
    if (!row || row->empty()) {  // gone meanwhile (its tenant deleted), or the database is away: due again later
      done_with(tenant);
      co_return;
    }
    run_id = row->get(0, 0);
    url = row->get(0, 1);
    payload = row->get(0, 2);
    int attempt = claimed;
    if (claimed > o.attempts) {
      a.error = "no answer within the lease";  // its sender went away during the last attempt
      attempt = o.attempts;
    } else {
      a = co_await post(url, payload);
      if (a.outcome == Outcome::kRetry && attempt >= o.attempts) a.outcome = Outcome::kGiveUp;
    }
    // Only while this attempt still holds it (a later claim counted another).
    Result<store::Rows> done = Error::internal("not run");
    if (a.outcome == Outcome::kRetry) {
      // The next try after delay * 3^(attempt - 1).
      auto delay = o.retry_delay;
      for (int i = 1; i < attempt; ++i) delay *= 3;
      done = co_await store::tenant_query(pool, tenant,
                                          "UPDATE webhook_deliveries SET next_at = now() + $3::bigint * interval "
                                          "'1 millisecond', last_error = $4 WHERE tenant_id = $1 AND id = $2 AND attempts = $5",
                                          store::params(tenant_s, id, std::to_string(delay.count()), a.error,
                                                        std::to_string(claimed)));
      // Look again when it is due (the loop's own look is once a second).
      auto t = std::make_shared<asio::steady_timer>(ex, delay + std::chrono::milliseconds(5));
      t->async_wait([self, t](boost::system::error_code ec) {
        if (!ec && !self->stopping) self->poke();
      });
    } else {
      done = co_await store::tenant_query(pool, tenant,
                                          "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2 AND attempts = $3",
                                          store::params(tenant_s, id, std::to_string(claimed)));
    }
    // (Not written: the lease runs out and the delivery is due again, POSTed once more.)
    if (!done) telemetry::log_warn("webhook_update_failed", {{"run_id", run_id}, {"error", done.error().message}});
    const auto host = net::Url::parse(url);
    const std::string host_s = host ? host->host : std::string("?");
    switch (a.outcome) {
      case Outcome::kSent:
        outcomes().with({"sent"}).inc();
        break;
      case Outcome::kRetry:
        outcomes().with({"retry"}).inc();
        telemetry::log_info("webhook_retry", {{"run_id", run_id}, {"host", host_s}, {"attempt", int64_t{attempt}},
                                              {"error", a.error}});
        break;
      case Outcome::kGiveUp:
        outcomes().with({"failed"}).inc();
        telemetry::log_warn("webhook_failed", {{"run_id", run_id}, {"host", host_s}, {"attempts", int64_t{attempt}},
                                               {"error", a.error}});
        if (audit)
          audit->record(audit::Context{tenant, "system:worker", "", &pool},
                        audit::Event{"run.webhook_failed", audit::Level::kReplay,
                                     Json{{"run_id", run_id}, {"host", host_s}, {"attempts", attempt}, {"error", a.error}}});
        break;
    }
    done_with(tenant);
  }

  void poke() {
    wanted = true;
    wake.cancel();
  }
};

WebhookSender::WebhookSender(asio::any_io_executor ex, store::Pool& pool, const net::Egress* egress,
                             audit::AuditLog* audit, WebhookOptions options)
    : impl_(std::make_shared<Impl>(ex, pool, egress, audit, options)) {}

WebhookSender::~WebhookSender() = default;

void WebhookSender::start() { asio::co_spawn(impl_->ex, impl_->loop(), asio::detached); }

void WebhookSender::poke() { impl_->poke(); }

void WebhookSender::stop() {
  impl_->stopping = true;
  asio::post(impl_->ex, [i = impl_] { i->wake.cancel(); });
}

}  // namespace ap::exec
