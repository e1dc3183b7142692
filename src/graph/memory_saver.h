// The in-memory Checkpointer: checkpoints share channel values by pointer, so a thread of N
// steps costs memory for what each step changed. For tests, dev and library users.
// Thread-safe (one mutex).
#pragma once

#include <map>
#include <mutex>

#include "graph/checkpoint.h"

namespace ap::graph {

class MemorySaver final : public Checkpointer {
 public:
  Result<std::optional<CheckpointTuple>> get_tuple(const CheckpointConfig& config) override;
  Result<std::vector<CheckpointTuple>> list(const ListOptions& options) override;
  Result<CheckpointConfig> put(const CheckpointConfig& config, const Checkpoint& checkpoint,
                               const CheckpointMetadata& metadata,
                               Durability durability = Durability::kSync) override;
  Status put_writes(const CheckpointConfig& config, std::span<const PendingWrite> writes,
                    Durability durability = Durability::kSync) override;
  Status delete_thread(const std::string& thread_id) override;
  void thread_deleted(const std::string& thread_id) override { (void)delete_thread(thread_id); }
  Status delete_run(const std::string& thread_id, const std::string& run_id) override;
  Status patch_metadata(const CheckpointConfig& config, const Json& patch) override;
  Status copy_thread(const std::string& from, const std::string& to) override;
  Status prune(std::span<const std::string> thread_ids, size_t keep_last) override;

  size_t thread_count() const;

 private:
  struct Entry {
    Checkpoint checkpoint;
    CheckpointMetadata metadata;
    std::string parent_id;
    std::vector<PendingWrite> writes;
  };
  using Namespace = std::map<std::string, Entry>;  // by checkpoint id (time-ordered)
  using Thread = std::map<std::string, Namespace>;  // by namespace

  CheckpointTuple tuple(const std::string& thread, const std::string& ns, const Entry& e) const;

  mutable std::mutex mu_;
  std::map<std::string, Thread> threads_;
};

}  // namespace ap::graph
