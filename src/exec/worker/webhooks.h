// Run webhooks: a run created with `webhook` (an http(s) URL) has its end POSTed there as JSON,
// as LangGraph's server does: the run (run_id, thread_id, assistant_id, created_at, updated_at,
// status, metadata, kwargs, multitask_strategy) with run_started_at, run_ended_at, values, error
// (on failure) and webhook_sent_at.
//
// The worker's finishing transaction queues the delivery (webhook_deliveries, migration 0024; for
// a run its claim fails after its workers were lost, a trigger does: migration 0025), so
// it goes out exactly when the end is committed, and also when that worker dies right after: any
// worker's sender takes due deliveries (claim_webhooks: ids, with a lease longer than an attempt
// can take; the URL and payload read under the tenant's RLS). A POST answered 2xx is done (the
// body is not read); 429, 5xx, a timeout or an unreachable host is tried again after a growing
// delay (delay, 3x, 9x, ...) up to `attempts`; any other answer, a URL the egress policy refuses,
// or the last failed attempt gives up: logged (the host only: a URL may carry a token), counted,
// and audited as "run.webhook_failed". An attempt updates its row only while it still holds it
// (`attempts` unchanged). At least once: a sender that dies mid-POST leaves it to the next claim.
// A webhook never changes its run.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/ids.h"
#include "common/result.h"
#include "store/conn.h"
#include "store/pool.h"

namespace ap::audit {
class AuditLog;
}
namespace ap::net {
class Egress;
}

namespace ap::exec {

struct WebhookOptions {
  int attempts = 5;
  std::chrono::milliseconds retry_delay{10'000};  // after the first failure; then x3 each time
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds timeout{30'000};  // the longest wait for the answer's next bytes
  int concurrency = 16;                        // POSTs in flight per worker
  int per_tenant = 0;  // of those, at most this many per tenant (0: a quarter of them, at least 1)
};

// The statement, for the run's finishing transaction (after the UPDATE of its status), that
// queues the POST of its end. `values`: the state's JSON text (null: none); `error`: the error
// object's JSON text, for a failed run.
struct FinishedRun {
  std::string tenant, run_id, url;
  std::chrono::system_clock::time_point started;
  std::optional<std::string> values, error;
};
store::Statement queue_webhook_statement(const FinishedRun& run);

class WebhookSender {
 public:
  // `egress`: where POSTs may go (null: public addresses only). Runs on `ex` (the worker's thread).
  WebhookSender(boost::asio::any_io_executor ex, store::Pool& pool, const net::Egress* egress, audit::AuditLog* audit,
                WebhookOptions options);
  ~WebhookSender();
  void start();
  // Look for due deliveries now (a run just queued one). Call on the executor's thread.
  void poke();
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ap::exec
