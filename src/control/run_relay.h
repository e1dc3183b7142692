// Brings the events of runs that run on other replicas to this replica's RunHub. The hub tells
// the relay which runs have subscribers here but do not run here (its watcher); the relay
// LISTENs on `agentplane_run_events` (payload "<tenant> <run> more|end", sent by the workers
// when they append to the run_events log or finish) and reads the log after the last event it
// delivered, under the tenant's row-level security. It reads a watched run's log when a join
// starts watching it, and every watched run's again after a reconnection, so nothing sent
// while it was not listening is missed. Owns one thread. docs/agent_api.md, "Across replicas".
#pragma once

#include <memory>
#include <string>

#include "common/result.h"

namespace ap::control {

class RunHub;

class RunRelay {
 public:
  // `conninfo`: the app role. Registers itself as `hub`'s watcher; `hub` must outlive it.
  RunRelay(RunHub& hub, std::string conninfo);
  ~RunRelay();
  void start();
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ap::control
