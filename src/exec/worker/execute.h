// One attempt of one run, on a runner thread: the graph engine with the tenant's checkpointer,
// its events published to the RunHub in the run's stream modes (the worker copies them to the
// run_events log when needed), its outcome for the worker to record.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/graphs.h"
#include "control/run_hub.h"
#include "control/threads.h"
#include "graph/graph.h"

namespace ap::exec {

using control::Json;

// Values of a run's stop flag.
constexpr int kCancelInterrupt = 1, kCancelRollback = 2, kLeaseLost = 3;

struct RunContext {
  TenantId tenant;
  Uuid run, thread;
  int attempt = 1;
  Json kwargs, metadata;
  control::RunHub* hub = nullptr;
  std::shared_ptr<std::atomic<int>> stop;  // set by cancel requests and lease loss
  const std::atomic<bool>* worker_stopping = nullptr;
  std::function<void()> on_publish;  // after each event (the worker's event log writer)
  // For runs with kwargs.events_on_demand: whether anyone reads the run's events now (a
  // subscriber here, or the event log for other replicas). Unset: always.
  std::function<bool()> events_wanted;
  std::shared_ptr<graph::RunScope> scope;  // for the nodes: the worker's RunServices
};

struct RunOutcome {
  enum Kind { kSuccess, kError, kCancelled, kReleased } kind = kSuccess;
  bool interrupted = false;
  bool has_state = false;  // values/interrupts are the thread's new state
  Json values = Json::object();
  Json interrupts = Json::object();
  Json result;  // what /wait answers
  Json error;   // {error, message}
  std::string cancel_action;
  std::vector<std::pair<std::string, Json>> decisions;  // decision-log events (kind, payload)
  Json cost;  // the run's model calls and their cost (null: none), set by the worker
  // `values` and `result` as JSON text, by seal() (or the engine): the thread's row, the run's
  // row and /wait all take the text, so a big state is written out once.
  std::string values_text, result_text;
  bool result_is_values = false;  // the result is the state itself (values_text stays empty)
  static RunOutcome failed(std::string error, std::string message);
};

// Fills values_text and result_text (once) and drops the Json trees they came from.
void seal(RunOutcome& out);

RunOutcome execute_run(const RunContext& rc, const control::LoadedGraph& g, const control::SaverFor& savers);
// Publishes the `error` event of a failed outcome (for failures before the engine ran).
void publish_error(const RunContext& rc, const RunOutcome& out);

}  // namespace ap::exec
