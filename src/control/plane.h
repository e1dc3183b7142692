// The agent control plane in one place: graphs, assistants, threads, runs, crons and the
// in-process run hub, with the thread pool that runs blocking checkpoint work. Owned by the
// app; handlers and workers get references. Thread-safe.
#pragma once

#include <boost/asio/thread_pool.hpp>

#include "control/assistants.h"
#include "control/crons.h"
#include "control/graphs.h"
#include "control/run_hub.h"
#include "control/runs.h"
#include "control/store_items.h"
#include "control/threads.h"

namespace ap::control {

struct Plane {
  Plane(const graph::NodeKinds& kinds, SaverFor savers, int blocking_threads)
      : blocking(blocking_threads), graphs(kinds), assistants(graphs), threads(graphs, savers, blocking),
        runs(assistants, hub), crons(assistants, runs), savers(std::move(savers)) {}
  ~Plane() { blocking.join(); }
  boost::asio::thread_pool blocking;
  Graphs graphs;
  Assistants assistants;
  Threads threads;
  RunHub hub;
  Runs runs;
  Crons crons;
  StoreItems store;
  SaverFor savers;
};

}  // namespace ap::control
