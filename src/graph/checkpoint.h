// LangGraph's checkpoint contract (v4) and the Checkpointer interface, with an in-memory
// implementation in memory_saver.h. A checkpoint holds channel values by pointer (see
// channel.h), so saving one costs in proportion to the channels that changed.
// Thread-safety: values are plain data; each Checkpointer says its own.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "graph/channel.h"

namespace ap::graph {

// Special channels of pending writes (LangGraph's names).
inline constexpr const char* kErrorChannel = "__error__";
inline constexpr const char* kInterruptChannel = "__interrupt__";
inline constexpr const char* kResumeChannel = "__resume__";
inline constexpr const char* kTasksChannel = "__pregel_tasks";
inline constexpr const char* kNoWritesChannel = "__no_writes__";
inline constexpr const char* kNullTaskId = "00000000-0000-0000-0000-000000000000";

// How long a save waits (LangGraph's durability): kSync until the checkpoint is durable;
// kAsync until it is ordered (a crash may lose the newest checkpoints, never corrupt older
// ones); kExit saves only when the run stops (the engine defers; savers see kSync).
enum class Durability { kSync, kAsync, kExit };

struct Checkpoint {
  int v = 4;
  std::string id;  // time-ordered UUID (v7): sortable
  std::string ts;  // RFC 3339
  // Channel and node names, shared by every checkpoint of one graph.
  std::shared_ptr<const std::vector<std::string>> channels;
  std::shared_ptr<const std::vector<std::string>> nodes;
  std::vector<ValuePtr> values;     // per channel; null: empty
  std::vector<uint64_t> versions;   // per channel; 0: never written
  std::vector<uint64_t> seen;       // per node x channel: versions_seen
  std::vector<uint64_t> interrupt_seen;  // versions at the last interrupt_before/after

  uint64_t seen_at(size_t node, size_t channel) const {
    return seen[node * channels->size() + channel];
  }
  // {v, id, ts, channel_values, channel_versions, versions_seen} as LangGraph writes it.
  Json to_json() const;
};

struct CheckpointMetadata {
  std::string source;  // input | loop | update | fork
  int step = -1;
  std::vector<std::pair<std::string, std::string>> parents;  // namespace -> checkpoint id
  std::string extra_json = "{}";  // further fields (run_id, writes, ...) as a JSON object text
  Json to_json() const;
};

struct CheckpointConfig {
  std::string thread_id;
  std::string checkpoint_ns;
  std::string checkpoint_id;  // empty: the latest
};

struct PendingWrite {
  std::string task_id;
  std::string channel;
  std::shared_ptr<const Json> value;
  int idx = 0;
  std::string task_path;
};

struct CheckpointTuple {
  CheckpointConfig config;
  Checkpoint checkpoint;
  CheckpointMetadata metadata;
  std::optional<CheckpointConfig> parent;
  std::vector<PendingWrite> pending_writes;  // sorted by (task_path, task_id, idx)
};

struct ListOptions {
  std::optional<std::string> thread_id;
  std::optional<std::string> checkpoint_ns;  // nullopt: every namespace
  std::optional<std::string> before;         // checkpoint id: only older ones
  std::optional<size_t> limit;
  // Metadata filter: every key must equal (source, step, or extra fields).
  std::vector<std::pair<std::string, std::string>> filter;  // key -> JSON text of the value
};

class Checkpointer {
 public:
  virtual ~Checkpointer() = default;
  // The checkpoint named by `config` (its id), or the latest of (thread, ns). nullopt if none.
  virtual Result<std::optional<CheckpointTuple>> get_tuple(const CheckpointConfig& config) = 0;
  // Newest first.
  virtual Result<std::vector<CheckpointTuple>> list(const ListOptions& options) = 0;
  // Saves `checkpoint` as a child of `config` (its checkpoint_id is the parent, may be empty).
  // Returns the config naming the saved checkpoint.
  // Saving a checkpoint again under its own id replaces it.
  virtual Result<CheckpointConfig> put(const CheckpointConfig& config, const Checkpoint& checkpoint,
                                       const CheckpointMetadata& metadata,
                                       Durability durability = Durability::kSync) = 0;
  // Stores a task's writes against the checkpoint in `config` (NotFound if there is none).
  // Idempotent per (task, idx): a retry never duplicates. As in LangGraph, an ordinary write
  // keeps its first value; special writes (idx < 0: errors, interrupts, resumes) are replaced.
  virtual Status put_writes(const CheckpointConfig& config, std::span<const PendingWrite> writes,
                            Durability durability = Durability::kSync) = 0;
  virtual Status delete_thread(const std::string& thread_id) = 0;
  // The thread was deleted, and with it its stored checkpoints (the PostgreSQL checkpointer's
  // rows go with the thread's row, in its transaction): drops what this process still holds of
  // it. A checkpointer whose storage does not go with the thread deletes it here.
  virtual void thread_deleted(const std::string& thread_id) = 0;
  // Deletes the checkpoints of one thread whose metadata names `run_id` (every namespace), with
  // their writes: a run rolled back. The thread's latest checkpoint is then the one before it.
  virtual Status delete_run(const std::string& thread_id, const std::string& run_id) = 0;
  // Merges `patch` (an object; not `source` or `step`) into the metadata of the checkpoint in
  // `config` (empty id: the namespace's latest). NotFound if there is none.
  virtual Status patch_metadata(const CheckpointConfig& config, const Json& patch) = 0;
  virtual Status copy_thread(const std::string& from, const std::string& to) = 0;
  // Keeps the newest `keep_last` checkpoints per namespace of each thread; never drops a
  // checkpoint that a kept one still needs (its pending writes for a resume).
  virtual Status prune(std::span<const std::string> thread_ids, size_t keep_last) = 0;
};

// Time-ordered, strictly increasing checkpoint ids (UUIDv7 text). Thread-safe.
std::string next_checkpoint_id();

}  // namespace ap::graph
