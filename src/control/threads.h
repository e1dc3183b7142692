// Threads: conversations with a status (idle, busy, interrupted, error, as LangGraph derives
// it), metadata, a TTL, and their state in checkpoints: state, history, update_state, copy,
// prune. Checkpoint work is blocking and runs on the control plane's thread pool.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>

#include "control/common.h"

namespace ap::graph {
class Checkpointer;
}

namespace ap::control {

class Graphs;
using SaverFor = std::function<std::unique_ptr<graph::Checkpointer>(const TenantId&)>;

class Threads {
 public:
  Threads(Graphs& graphs, SaverFor savers, boost::asio::thread_pool& blocking)
      : graphs_(graphs), savers_(std::move(savers)), blocking_(blocking) {}

  // POST /threads: {thread_id?, metadata?, if_exists: raise|do_nothing, ttl?}.
  Task<Json> create(Scope s, Json body);
  Task<Json> get(Scope s, std::string id);
  // PATCH: {metadata (merged), ttl?}.
  Task<Json> update(Scope s, std::string id, Json body);
  // Deletes the thread, its runs (a running one is asked to stop) and its checkpoints.
  Task<void> remove(Scope s, std::string id);
  Task<Json> search(Scope s, Json body);
  Task<int64_t> count(Scope s, Json body);
  Task<Json> copy(Scope s, std::string id);
  // POST /threads/prune: {thread_ids, strategy: delete|keep_latest}.
  Task<Json> prune(Scope s, Json body);

  // GET /threads/{id}/state[/{checkpoint_id}], POST /threads/{id}/state/checkpoint. subgraphs:
  // pending subgraph tasks carry their subgraph's state (recursively). select: only these fields
  // ("values.<key>" for one state key); null: all.
  Task<Json> state(Scope s, std::string id, std::string checkpoint_id, std::string checkpoint_ns, bool subgraphs,
                   Json select = nullptr);
  // POST /threads/{id}/history: {limit, before, metadata, checkpoint, select}.
  Task<Json> history(Scope s, std::string id, Json body);
  // POST /threads/{id}/state: {values, as_node?, checkpoint?|checkpoint_id?}. FailedPrecondition
  // (409) while a run is active on the thread.
  Task<Json> update_state(Scope s, std::string id, Json body);
  // PATCH /threads/{id}/state: merges `metadata` into the latest checkpoint's metadata (or the
  // one named by `checkpoint_id` / `checkpoint`). NotFound when the thread has none.
  Task<void> patch_state(Scope s, std::string id, Json body);

 private:
  Task<Json> thread_graph(Scope s, const std::string& id, std::string* graph_id);
  Graphs& graphs_;
  SaverFor savers_;
  boost::asio::thread_pool& blocking_;
};

// Sets the thread's cached values, interrupts and status from its latest checkpoint (after a
// run or a state update). Blocking: runs on the caller's thread.
struct ThreadSummary {
  Json values = Json::object();
  Json interrupts = Json::object();  // task id -> [{value, id}]
  bool interrupted = false;
};

}  // namespace ap::control

namespace ap::graph {
struct StateSnapshot;
}

namespace ap::control {

// LangGraph's ThreadState shape of a snapshot.
Json state_json(const graph::StateSnapshot& snap);
// `paused`: the run stopped before the snapshot's next tasks (a breakpoint, or a state update
// that left tasks to run): with no interrupt() pending they are listed with empty interrupt
// lists, and the thread is interrupted, as LangGraph lists them.
ThreadSummary summarize(const graph::StateSnapshot& snap, bool paused = false);

}  // namespace ap::control
