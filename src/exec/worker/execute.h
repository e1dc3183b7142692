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
  static RunOutcome failed(std::string error, std::string message);
};

RunOutcome execute_run(const RunContext& rc, const control::LoadedGraph& g, const control::SaverFor& savers);
// Publishes the `error` event of a failed outcome (for failures before the engine ran).
void publish_error(const RunContext& rc, const RunOutcome& out);

}  // namespace ap::exec
