// Runs: one execution of an assistant on a thread, queued in PostgreSQL (the `runs` table) and
// executed by a worker (src/exec/worker). Creating a run applies the double-texting strategy
// under the thread row's lock: reject (409), interrupt or rollback (the active run is asked to
// stop; the new one waits for it), enqueue. A stateless run gets a temporary thread. Cancel
// requests reach the worker by NOTIFY (agentplane_run_ctl), whichever replica runs the run.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>

#include "control/common.h"

namespace ap::control {

class Assistants;
class RunHub;
class Subscription;
struct RunEvent;

struct CreatedRun {
  Json run;
  Uuid run_id;
  Uuid thread_id;
  bool stateless = false;
  bool resumable = false;
  bool cancel_on_disconnect = false;
};

// InvalidArgument when `body` is not a valid run body (crons check their payload with it).
Status check_run_body(const Json& body);
// The run's stream modes, from its kwargs (["values"] by default).
std::vector<std::string> stream_modes(const Json& kwargs);

// A worker in this process (serve --role all) that takes a new run at once: the run is inserted
// `running`, leased to it, and handed over in process, with no queue round (no NOTIFY, no
// claim). Only when a slot is free, the worker has no queue backlog (queued runs go first),
// the run is due now, its thread has no active run and its tenant is under its cap.
class LocalWorker {
 public:
  virtual ~LocalWorker() = default;
  // Holds a slot for a run about to be created; false: busy, or runs are queued.
  virtual bool reserve() = 0;
  // Gives back a reserved slot (the run went to the queue, or was not created).
  virtual void unreserve() = 0;
  struct Start {
    TenantId tenant;
    Uuid run, thread;
    Json kwargs, metadata;
    std::string graph_version;  // the graph's updated_at when the run was created
    std::chrono::steady_clock::time_point committed;
  };
  // The run was committed `running` under lease_owner() in a reserved slot: run it.
  virtual void start(Start run) = 0;
  virtual const std::string& lease_owner() const = 0;
  virtual int64_t lease_ms() const = 0;
  virtual std::optional<int64_t> default_cap() const = 0;  // as claim_runs' p_default_cap
};

class Runs {
 public:
  Runs(Assistants& assistants, RunHub& hub) : assistants_(assistants), hub_(hub) {}

  // The worker that may take new runs directly (null: none; every run is queued). Set before
  // serving and cleared before the worker stops.
  void set_local_worker(LocalWorker* worker) { local_.store(worker); }

  // What a client on this replica waits for: nothing, the run's events (a stream) or its end.
  enum class Watch { kNone, kEvents, kEnd };

  // POST /threads/{thread_id}/runs[/stream|/wait], or /runs[...] when `thread_id` is empty.
  // `run_id`: the id to use (a stream subscribes to it before the run exists). `watch`: what
  // the caller will wait for (the worker sends it through the relay when it runs elsewhere).
  Task<CreatedRun> create(Scope s, std::string thread_id, Json body, Uuid run_id, Watch watch = Watch::kNone);
  Task<Json> get(Scope s, std::string thread_id, std::string run_id);
  Task<Json> list(Scope s, std::string thread_id, int limit, int64_t offset, std::string status);
  // 409 while it is pending or running.
  Task<void> remove(Scope s, std::string thread_id, std::string run_id);
  // Asks the run to stop (action interrupt|rollback); a pending run stops at once. With `wait`,
  // returns once it has stopped.
  Task<void> cancel(Scope s, std::string thread_id, std::string run_id, std::string action, bool wait);
  // POST /runs/cancel: cancels the tenant's runs named by `run_ids` (optionally within
  // `thread_id`), or those with `status` pending|running|all (optionally within `thread_id`).
  // Returns how many were asked to stop.
  Task<int64_t> cancel_many(Scope s, Json body, std::string action);
  // Waits for the run to end and returns what /wait answers, as JSON text (passed through as the
  // worker or the database wrote it): the final values (with `__interrupt__` when paused,
  // `__error__` on failure). `early`: a subscription to the run made
  // before it was created (it saves a read); it is unsubscribed.
  Task<std::string> result(Scope s, Uuid run_id, std::shared_ptr<Subscription> early = nullptr);
  // Tells the worker of an active run that a client on this replica waits for its events or its
  // end (nothing to do when it runs here). Call after subscribing to the hub.
  Task<void> watch(Scope s, Uuid run_id, Watch watch);
  // The thread's active run (the running one, else the oldest pending one), if any.
  Task<std::optional<Uuid>> active_run(Scope s, Uuid thread_id);
  // The run's status ("" when it does not exist).
  Task<std::string> status(Scope s, Uuid run_id);
  // The stored events of a resumable run after event id `after`.
  Task<std::vector<RunEvent>> stored_events(Scope s, Uuid run_id, int64_t after);

 private:
  std::optional<std::string> watchers_entry(Watch w) const;
  std::string watchers_of(Watch w) const;  // as a text[] literal
  Assistants& assistants_;
  RunHub& hub_;
  std::atomic<LocalWorker*> local_{nullptr};
};

// Deletes threads past their TTL with no active run (their checkpoints and runs too), the event
// logs of runs that ended (10 minutes on; a day for resumable streams) and expired store
// items, for every tenant. Returns the rows deleted.
Task<int64_t> sweep_run_data(store::Pool& pool);

}  // namespace ap::control
