// A worker: claims runs from the PostgreSQL queue (claim_runs: FOR UPDATE SKIP LOCKED, a lease
// it renews, per-tenant concurrency caps), woken at once by LISTEN agentplane_runs (and a 1 s
// poll for delayed runs and expired leases), and executes each on a thread pool with the
// graph engine and the PostgreSQL checkpointer. A run whose worker died is claimed again once
// its lease expires and resumes from its last checkpoint. Events go to the RunHub (in process)
// and, for resumable runs, to the run_events log. Owns one thread for its I/O.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "control/threads.h"
#include "exec/worker/run_services.h"
#include "exec/worker/webhooks.h"

namespace ap::audit {
class AuditLog;
}
namespace ap::control {
class Graphs;
class LocalWorker;
class RunHub;
}  // namespace ap::control

namespace ap::exec {

struct WorkerOptions {
  std::string id;                      // empty: host:pid:random
  std::string conninfo;                // the app role
  int concurrency = 0;                 // runs at once; 0: 4 per core, at least 16 (runs wait on I/O)
  std::chrono::milliseconds lease{15000};
  std::chrono::milliseconds renew_every{2000};
  int max_attempts = 3;
  ModelAccess models;  // for llm nodes and tools (null members: not configured)
  // Runs per tenant at once for tenants whose limits do not say (serve --default-limits'
  // concurrent_runs); absent: tenants.max_concurrent_runs (16).
  std::optional<int64_t> default_concurrent_runs;
  WebhookOptions webhooks;  // runs' webhooks (webhooks.h)
  // The nice value of the worker's thread, which starts every run and handles its I/O, relative
  // to the process's (-5: five steps more urgent): a run handed to this worker waits for that
  // thread to be scheduled, and on a machine whose cores the database keeps busy that wait is
  // the pick-up's tail. Raising a priority needs CAP_SYS_NICE (root usually has it; containers
  // often do not): when refused the thread keeps the process's (logged). 0: leave it. Threads
  // and processes started from that thread inherit it: sandboxes take the process's back
  // (sandbox/native.cc, gvisor.cc), as does the egress proxies' resolver thread; Asio's own
  // resolver threads, which wait in getaddrinfo, keep it.
  int thread_nice = -5;
};

class Worker {
 public:
  Worker(WorkerOptions options, control::Graphs& graphs, control::RunHub& hub, control::SaverFor savers,
         audit::AuditLog* audit);
  ~Worker();
  Status start();
  // Stops claiming; runs in progress are left to their leases (another worker resumes them).
  // Clear the API's Runs::set_local_worker first.
  void stop();
  const std::string& id() const;
  // For the API in this process (Runs::set_local_worker): new runs start here at once when a
  // slot is free. Lives as long as the worker.
  control::LocalWorker* local();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ap::exec
