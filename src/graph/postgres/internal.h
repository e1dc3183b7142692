// Internals of the PostgreSQL checkpointer, shared by its .cc files: the cache types, the
// header format, the per-tenant saver and the process-wide state (connections, group commit,
// caches). See docs/checkpoint_format.md. Not a public header.
#pragma once

#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph/postgres/postgres_saver.h"
#include "store/sync_conn.h"

namespace ap::graph::pg {

using store::Param;
using store::Rows;
using store::Statement;
using store::text_array;

// A least-recently-used map with a fixed capacity. Not thread-safe.
template <class V>
class Lru {
 public:
  explicit Lru(size_t capacity) : capacity_(capacity) {}
  const V* get(const std::string& k) {
    auto it = index_.find(k);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  void put(const std::string& k, V v) {
    if (auto it = index_.find(k); it != index_.end()) {
      it->second->second = std::move(v);
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.emplace_front(k, std::move(v));
    index_[k] = order_.begin();
    if (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }
  // Drops every entry whose key starts with `prefix` (the keys are ordered: only those are visited).
  void erase_prefix(const std::string& prefix) {
    auto it = index_.lower_bound(prefix);
    while (it != index_.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
      order_.erase(it->second);
      it = index_.erase(it);
    }
  }

 private:
  size_t capacity_;
  std::list<std::pair<std::string, V>> order_;
  std::map<std::string, typename std::list<std::pair<std::string, V>>::iterator, std::less<>> index_;
};

// How one channel of a stored checkpoint is held.
struct Slot {
  enum Kind : uint8_t { kEmpty, kInline, kRef } kind = kEmpty;
  std::string ref;     // kRef: the checkpoint id the blob is stored under
  uint32_t depth = 0;  // kRef lists: deltas since the last whole copy
};

// A checkpoint this process saved or loaded: what put() compares a child against.
struct Known {
  Checkpoint cp;
  std::vector<Slot> slots;
  std::string header;  // as stored: a row with this header holds exactly `cp`
};

struct CachedValue {
  ValuePtr value;
  uint32_t depth = 0;
};

struct Layout {
  std::shared_ptr<const std::vector<std::string>> channels, nodes;
};

// The id of a graph's names (first 8 bytes of SHA-256, hex).
std::string layout_id(const std::vector<std::string>& channels, const std::vector<std::string>& nodes);
// The items a list value gained over `parent` (in order), if it extends it by sharing.
std::optional<std::vector<const ListNode*>> appended(const ChannelValue& v, const ChannelValue& parent);
// `items` appended to the list ending at `tail`.
ValuePtr list_from(std::shared_ptr<const ListNode> tail, const Json& items);
// JSON text of a value; invalid UTF-8 (say, a model's truncated output) is replaced, not thrown.
std::string to_text(const Json& j);
bool has_control(std::string_view s);
Json parse_json(std::string_view text);
Error corrupt(const std::string& what);
// Metadata fields other than source and step, as stored in the `metadata` column (or NULL).
Param metadata_column(const CheckpointMetadata& md);
CheckpointMetadata metadata_from(std::string_view source, std::string_view step, const Rows& r, int row, int col);
// The pending writes of checkpoint row `i` (a JSON array of [task, channel, value, idx, path]).
Status writes_from(const Rows& rows, int i, const std::string& id, std::vector<PendingWrite>& out);

// A checkpoint row's header, read without building a JSON document for it (a history of
// hundreds of checkpoints parses hundreds of headers).
struct Header {
  std::string layout, ts;
  std::vector<uint64_t> versions, seen, interrupt_seen;
  std::vector<Slot> slots;             // kRef with an empty ref: this checkpoint itself
  std::vector<ValuePtr> inline_values;  // per channel, for inline slots
};

// Parses a header as put() writes it (format.cc). `seen_inline` shares the inline values of
// equal text across the headers of one read.
using InlineValues = std::unordered_map<std::string_view, ValuePtr>;
bool parse_header(std::string_view text, Header& h, InlineValues& seen_inline);

class Shared;

class TenantSaver final : public Checkpointer {
 public:
  TenantSaver(std::shared_ptr<Shared> shared, TenantId tenant)
      : s_(std::move(shared)), tenant_(tenant.to_string()) {}

  Result<std::optional<CheckpointTuple>> get_tuple(const CheckpointConfig& config) override;
  Result<std::vector<CheckpointTuple>> list(const ListOptions& options) override;
  Result<CheckpointConfig> put(const CheckpointConfig& config, const Checkpoint& checkpoint,
                               const CheckpointMetadata& metadata, Durability durability) override;
  Status put_writes(const CheckpointConfig& config, std::span<const PendingWrite> writes,
                    Durability durability) override;
  Status delete_thread(const std::string& thread_id) override;
  Status delete_run(const std::string& thread_id, const std::string& run_id) override;
  Status patch_metadata(const CheckpointConfig& config, const Json& patch) override;
  Status copy_thread(const std::string& from, const std::string& to) override;
  Status prune(std::span<const std::string> thread_ids, size_t keep_last) override;

 private:
  // Runs `body` in one transaction bound to this tenant, in one round trip. Returns the
  // results of `body`'s statements.
  // kWrite: group-committed (Shared::commit). kRead: one implicit transaction of its own.
  // kSnapshot: the statements read one consistent snapshot (REPEATABLE READ, read only).
  enum class Mode { kWrite, kRead, kSnapshot };
  Result<std::vector<Rows>> transact(std::vector<Statement> body, Mode mode,
                                     Durability d = Durability::kSync);
  // Turns checkpoint rows (kSelectColumns) into tuples, loading values that are not cached.
  // `thread_blobs`: every blob of the listed thread, read in the same snapshot, when the rows
  // are a whole thread's history (saves the round trip that reads them by reference).
  Result<std::vector<CheckpointTuple>> tuples(const Rows& rows, bool remember,
                                              const Rows* thread_blobs = nullptr);
  std::string key(const std::string& thread, const std::string& ns) const {
    return tenant_ + '\x1f' + thread + '\x1f' + ns + '\x1f';
  }
  void forget_thread(const std::string& thread);
  void thread_deleted(const std::string& thread_id) override { forget_thread(thread_id); }

  std::shared_ptr<Shared> s_;
  std::string tenant_;
};

class Shared final : public PostgresCheckpoints, public std::enable_shared_from_this<Shared> {
 public:
  Shared(std::string conninfo, PostgresSaverOptions o)
      : options(o), pool(std::move(conninfo), o.connections), known(o.cache_entries / 4 + 1),
        values(o.cache_entries), layouts(o.cache_entries / 4 + 1),
        commit_groups_(o.commit_groups ? o.commit_groups : std::max(1u, std::thread::hardware_concurrency() / 2)) {}
  std::unique_ptr<Checkpointer> for_tenant(const TenantId& tenant) override {
    return std::make_unique<TenantSaver>(shared_from_this(), tenant);
  }

  // Group commit: concurrent write transactions (of any tenants) share one round trip and one
  // commit. A caller queues its statements; while fewer than `commit_groups` groups are running,
  // it takes everything queued and runs it; otherwise it waits for its group's result, or to
  // be woken as the first queued caller when a group ends, to lead the next.
  Result<std::vector<Rows>> commit(const std::string& tenant, const std::vector<Statement>& body, Durability d);
  void clear_caches() {
    std::lock_guard lock(mu);
    known = Lru<std::shared_ptr<const Known>>(options.cache_entries / 4 + 1);
    values = Lru<CachedValue>(options.cache_entries);
    layouts = Lru<Layout>(options.cache_entries / 4 + 1);  // "stored" may not hold after a failover
  }

  const PostgresSaverOptions options;
  store::SyncPool pool;

  std::mutex mu;  // guards everything below
  Lru<std::shared_ptr<const Known>> known;  // tenant|thread|ns|checkpoint id
  Lru<CachedValue> values;                  // tenant|thread|ns|channel|ref
  Lru<Layout> layouts;                      // tenant|layout id -> names (stored)
  // Layout ids by the names' identity, so a put() hashes a graph's names once.
  std::unordered_map<const void*, std::pair<std::shared_ptr<const void>, std::string>> layout_ids;

 private:
  struct Pending {
    const std::string* tenant;
    const std::vector<Statement>* body;
    Durability durability;
    Result<std::vector<Rows>> result = Error::internal("not run");
    bool done = false;
    // Its own: a group's end wakes its members and the one waiter that leads next, not every
    // waiting thread (each needless wake-up is two context switches).
    std::condition_variable cv;
  };
  void run(const std::vector<Pending*>& group);

  std::mutex gc_mu_;
  std::deque<Pending*> gc_queue_;
  size_t gc_running_ = 0;
  const size_t commit_groups_;
};

}  // namespace ap::graph::pg
