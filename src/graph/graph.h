// Graphs with LangGraph's semantics: build with StateGraph, compile (every problem listed), run
// with CompiledGraph::invoke in BSP supersteps, checkpointed through a Checkpointer.
//   StateGraph g;
//   g.channel("messages", Reducer::kMessages).node("agent", fn).edge(kStart, "agent")
//    .edge("agent", kEnd);
//   auto graph = g.compile();   // Result<std::shared_ptr<const CompiledGraph>>
// Thread-safety: a CompiledGraph is immutable and may run on many threads at once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graph/checkpoint.h"
#include "graph/node.h"

namespace ap::graph {

class CompiledGraph;

class StateGraph {
 public:
  StateGraph& channel(std::string name, Reducer reducer = Reducer::kLastValue);
  // `subgraph`: the graph that `fn` runs with NodeContext::run_subgraph, if any (get_state then
  // shows the task's subgraph and its state).
  StateGraph& node(std::string name, NodeFn fn, RetryPolicy retry = {},
                   std::shared_ptr<const CompiledGraph> subgraph = nullptr);
  StateGraph& edge(std::string from, std::string to);
  // `to` runs once every node in `from` has run (LangGraph's add_edge([a, b], c)).
  StateGraph& join(std::vector<std::string> from, std::string to);
  // After `from`, go where `router` says. `targets` lists where it may go (for validation and
  // drawing); empty: anywhere.
  StateGraph& branch(std::string from, RouterFn router, std::vector<std::string> targets = {});
  // A node that runs `child` as a subgraph (NodeContext::run_subgraph). Its input is the
  // parent's channels that the child also has; its output, the child's final values of the
  // channels the parent also has, applied through the parent's reducers (as in LangGraph: a
  // shared plain append channel gets the child's whole list appended; use messages for dedup).
  StateGraph& subgraph(std::string name, std::shared_ptr<const CompiledGraph> child);

  // Validates and freezes. InvalidArgument listing every problem (unknown node in an edge,
  // no entry, unreachable node, duplicate names, reserved names).
  Result<std::shared_ptr<const CompiledGraph>> compile() const;

 private:
  friend class CompiledGraph;
  struct NodeDef {
    std::string name;
    NodeFn fn;
    RetryPolicy retry;
    std::shared_ptr<const CompiledGraph> subgraph;
  };
  struct BranchDef {
    std::string from;
    RouterFn router;
    std::vector<std::string> targets;
  };
  std::vector<ChannelSpec> channels_;
  std::vector<NodeDef> nodes_;
  std::vector<std::pair<std::string, std::string>> edges_;
  std::vector<std::pair<std::vector<std::string>, std::string>> joins_;
  std::vector<BranchDef> branches_;
};

// What goes into a run: new input values, a Command, or nothing (continue).
struct Input {
  std::optional<Json> values;                 // {"channel": value}
  std::optional<Json> resume;                 // Command(resume=...): a value, or {interrupt_id: value}
  std::optional<Json> update;                 // Command(update=...)
  std::vector<std::string> goto_nodes;        // Command(goto=...)
  static Input of(Json values) { return Input{std::move(values), {}, {}, {}}; }
  static Input resume_with(Json v) { return Input{{}, std::move(v), {}, {}}; }
};

struct StreamEvent {
  std::string mode;  // values | updates | custom | checkpoints | tasks
  std::string node;  // for updates/custom/tasks
  Json data;
  std::string ns;  // the subgraph's checkpoint namespace ("" for the root graph)
  int step = 0;    // checkpoints: the checkpoint's step; tasks: the step the task runs in
  // updates: the task that wrote them (its id and the channels that triggered it).
  std::string task_id;
  std::vector<std::string> triggers;
};

// The task a message chunk comes from.
struct ChunkSource {
  const std::string& node;
  const std::string& ns;       // the subgraph's checkpoint namespace ("" for the root graph)
  const std::string& task_id;
  std::vector<std::string> triggers;
};

// A model's or a tool's call inside a task, for the `events` stream mode: LangChain's callback
// events (on_chat_model_start / _stream / _end, on_tool_start / _end / _error).
struct CallEvent {
  std::string_view event;    // "on_chat_model_start", ...
  const std::string& name;   // the model's class-like name ("ChatOpenAI") or the tool's name
  const std::string& run_id; // the call's own id
  Json data;                 // {input}, {chunk}, {output, input} or {error, input}
  Json metadata;             // the call's own keys (ls_provider, ls_model_name, ...), or null
};

// What the embedding program hands the nodes of one run (for agentplane: the tenant's model and
// tool access, see graph/nodes). The engine only carries it, into subgraphs too; node kinds that
// need it downcast to their own type.
class RunScope {
 public:
  virtual ~RunScope() = default;
};

struct RunOptions {
  std::string thread_id;  // empty: no checkpoints (stateless)
  std::string checkpoint_ns;
  std::string checkpoint_id;  // replay or fork from this checkpoint (empty: the latest)
  bool new_thread = false;    // the thread has no checkpoints yet: none are read at the start
  // Checkpoints of earlier steps are saved only if the run stops before this step (as durability
  // exit does for every step). For a temporary thread (a stateless run) whose input is kept with
  // the run: its input checkpoint (-1) and its __start__ step (0) rebuild from that input, so a
  // later attempt that finds none of them starts over from the input, as it would resume from
  // them. Ignored by a graph with subgraph nodes (their namespaces name tasks planned from those
  // checkpoints). -1: every checkpoint is saved.
  int first_saved_step = -1;
  int recursion_limit = 25;
  std::vector<std::string> interrupt_before, interrupt_after;
  Durability durability = Durability::kSync;
  // The embedding program commits durably to the same database right after the run returns
  // (agentplane's worker: the run's end). Then the checkpoints that hold no node's work yet (the
  // input's, the start step's) and the one the run ends with are committed without waiting for
  // their write-ahead log to reach the disk: the next durable commit (a later step's checkpoint,
  // or that end) flushes them with it, as the log is flushed in order. A run still waits for
  // every step's checkpoint before the next step starts. Not passed on to subgraphs.
  bool durable_end_follows = false;
  // The embedding program deletes the thread, with its checkpoints, in its commit right after the
  // run (agentplane's stateless runs on a temporary thread). Then the checkpoint a run that ran
  // to its end (nothing pending) would end with is not saved: it would be deleted at once. A
  // crash before that commit runs the last step again, as one before that checkpoint's commit
  // would. Not with stream_debug (a task's result is streamed once it is saved) nor in a graph
  // with subgraph nodes. Not passed on to subgraphs.
  bool thread_dropped_at_end = false;
  Json config = Json::object();
  std::function<void(const StreamEvent&)> on_event;  // called on the running thread
  // Asked before each step's `values` event: false skips it (nobody would read it; building it
  // copies the whole state). Unset: always.
  std::function<bool()> want_values;
  // A run that ends with nothing pending returns its final state as RunResult::values_text
  // only (no JSON tree: for an embedding program that only writes it out).
  bool final_values_as_text = false;
  bool stream_subgraphs = false;  // also pass on subgraphs' events (with their namespace)
  // Without stream_subgraphs, still pass on subgraphs' `tasks` events and their nodes' model and
  // tool calls (on_call_event), with their namespace: LangGraph's `events` stream mode always
  // shows what runs inside subgraphs.
  bool subgraph_tasks = false;
  // Emit `tasks` events only (no checkpoints, updates, values or custom events are built): set by
  // NodeContext::run_subgraph for a subgraph whose run streams it for subgraph_tasks alone.
  bool task_events_only = false;
  // Also emit `checkpoints` (at each step: the checkpoint, its next tasks) and `tasks` (each
  // task's start and result) events, in LangGraph's shapes (docs/agent_api.md, "SSE").
  bool stream_debug = false;
  // Runs a step's tasks concurrently when set (a step with one task always runs inline).
  std::function<void(std::vector<std::function<void()>>&)> run_parallel;
  // Extra fields for every checkpoint's metadata (run_id, graph_id, ...), a JSON object text.
  std::string checkpoint_metadata = "{}";
  // Asked before each superstep: true stops the run (Cancelled), the last checkpoint kept.
  std::function<bool()> should_stop;
  std::shared_ptr<RunScope> scope;  // for the nodes (NodeContext::scope)
  // Pieces of a message as a node produces it (model tokens), for the `messages` stream mode.
  // Called on the node's thread or on a thread it waits for (the worker's I/O thread relays a
  // model's tokens): must not block; concurrently when a step's tasks run in parallel.
  // Subgraphs' chunks only with stream_subgraphs.
  std::function<void(const ChunkSource& from, const Json& chunk)> on_message_chunk;
  // Model and tool calls as nodes make them, for the `events` stream mode. Called as
  // on_message_chunk is (a model's chunks from the thread relaying them); subgraphs' calls only
  // with stream_subgraphs or subgraph_tasks.
  std::function<void(const ChunkSource& from, const CallEvent& e)> on_call_event;
  // Set by the engine for subgraphs: namespace -> checkpoint id of each enclosing graph.
  std::vector<std::pair<std::string, std::string>> parents;
};

struct Interrupt {
  std::string id;  // stable across re-runs: resume maps are keyed by it
  Json value;
  std::string node;
  std::string task_id;  // the interrupted task (set in state snapshots)
};

struct RunResult {
  bool interrupted = false;
  std::vector<Interrupt> interrupts;
  Json values;  // the state after the run (null when values_text is set)
  std::string values_text;  // with RunOptions::final_values_as_text, for a run that ended cleanly
  CheckpointConfig checkpoint;  // the latest checkpoint (empty without a thread)
  int steps = 0;
  // A node of this (sub)graph returned Command(graph=PARENT): the run stopped there and the
  // command is for the enclosing graph (run_subgraph hands it over).
  std::optional<NodeOutput> parent_command;
};

struct StateSnapshot;

// A task planned from a snapshot's checkpoint, as LangGraph's StateSnapshot.tasks has it: with
// what it left in the checkpoint's pending writes (a task whose writes went with the next
// checkpoint, a lone task that succeeded, left none there: its result is null).
struct SnapshotTask {
  std::string id, name;
  Json path;  // LangGraph's: ["__pregel_pull", node], or ["__pregel_push", index] for a Send
  // The checkpoint namespace of its subgraph ("" if the node runs none), and with
  // get_state(..., subgraphs = true) the subgraph's own state (recursively; null if none).
  std::string ns;
  std::shared_ptr<const StateSnapshot> state;
  bool done = false;  // it finished: its writes are saved
  Json error;         // it failed: LangGraph's text of {"message", "name"}; else null
  // A finished task's writes to state channels ({channel: value}; {"$writes": [...]} for a
  // channel written more than once); else null.
  Json result;
};

// A state of a thread, as get_state returns it. The channel values are shared with the
// checkpoint (lists share their prefixes), so a long history costs no copies until values() or
// value() materialise them.
struct StateSnapshot {
  std::shared_ptr<const std::vector<std::string>> channel_names;  // the state channels
  std::vector<ValuePtr> channel_values;                           // per channel; null: empty
  // {"channel": value} for the non-empty channels (materialises: O(state)).
  Json values() const;
  // Nodes that would run next: of a thread's latest state, the tasks that have not finished
  // (the finished ones' writes are in its values, as LangGraph's get_state applies them); of
  // a past checkpoint, every task planned from it.
  std::vector<std::string> next;
  std::vector<SnapshotTask> tasks;  // every task planned from the checkpoint, in order
  CheckpointConfig config;
  std::optional<CheckpointConfig> parent_config;
  Json metadata;
  std::string created_at;
  std::vector<Interrupt> interrupts;
};

class CompiledGraph {
 public:
  // Runs until no node is triggered, an interrupt, or an error. Node errors come back with
  // their code (after retries); the recursion limit is ResourceExhausted
  // ("GRAPH_RECURSION_LIMIT"); bad input is InvalidArgument and changes nothing.
  Result<RunResult> invoke(const Input& input, const RunOptions& options,
                           Checkpointer* checkpointer = nullptr) const;

  // `subgraphs`: also read the states of the tasks' subgraphs (tasks[].state); a subgraph that
  // has not started yet has an empty state (config without a checkpoint id). The latest state
  // (no checkpoint id in `config`) has the writes of its finished tasks applied, as LangGraph's.
  Result<StateSnapshot> get_state(Checkpointer& cp, const CheckpointConfig& config, bool subgraphs = false) const;
  // Newest first, across branches (forks), with parent links.
  Result<std::vector<StateSnapshot>> get_state_history(Checkpointer& cp, const ListOptions& o) const;
  // Applies `values` as if node `as_node` wrote them (empty: the last node that ran), as a new
  // checkpoint (source "update", with `metadata_json`'s fields too). Returns its config.
  Result<CheckpointConfig> update_state(Checkpointer& cp, const CheckpointConfig& config,
                                        const Json& values, const std::string& as_node = "",
                                        const std::string& metadata_json = "{}") const;

  const std::vector<std::string>& node_names() const { return *nodes_; }
  // The graph that node `name` runs as its subgraph (null: none, or no such node).
  std::shared_ptr<const CompiledGraph> subgraph_of(std::string_view name) const;
  const std::vector<std::string>& channel_names() const { return *channels_; }
  // The state channels (channel_names() also lists internal ones).
  std::vector<std::string> state_channel_names() const;

  struct Impl;

 private:
  friend class StateGraph;
  CompiledGraph() = default;
  std::shared_ptr<const std::vector<std::string>> channels_, nodes_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ap::graph
