// The PostgreSQL Checkpointer. Checkpoints live in tenant tables under row-level security
// (migration 0003; format in docs/checkpoint_format.md): every statement of a tenant's saver runs
// in a transaction bound to that tenant. A put() is one round trip (pipelined); a checkpoint row
// stores small values inline and refers to larger ones, which are stored once, by the checkpoint
// that first held them. Append-only lists (messages) are stored as deltas with a full copy every
// `snapshot_every` deltas, so a long conversation costs storage in proportion to what is new.
//
// Blocking: for the worker threads that run graphs, never an io_context thread. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common/ids.h"
#include "graph/checkpoint.h"

namespace ap::graph {

struct PostgresSaverOptions {
  size_t connections = 4;       // at most this many concurrent database calls
  // Group commit: at most this many write transactions run at once; writes that arrive
  // meanwhile are queued and then committed together (one round trip, one WAL flush).
  // 0: half the machine's cores (at least 1). Fewer groups make bigger ones: less work for
  // PostgreSQL per checkpoint, a little more latency per caller.
  size_t commit_groups = 0;
  size_t snapshot_every = 256;  // a delta-stored list gets a full copy after this many deltas
  size_t inline_bytes = 64;     // scalar values shorter than this (about a reference) are inlined
  // Checkpoints and values kept in memory, so that continuing a thread neither reads back what
  // this process wrote nor loses the sharing that makes deltas possible.
  size_t cache_entries = 4096;
};

// Connections and caches shared by every tenant's saver of one process.
class PostgresCheckpoints {
 public:
  // `conninfo`: the app role's database URL. Connections open on first use.
  static std::shared_ptr<PostgresCheckpoints> open(std::string conninfo,
                                                   PostgresSaverOptions options = {});
  virtual ~PostgresCheckpoints() = default;
  // The Checkpointer of one tenant (cheap; shares this object's connections and caches).
  virtual std::unique_ptr<Checkpointer> for_tenant(const TenantId& tenant) = 0;
};

}  // namespace ap::graph
