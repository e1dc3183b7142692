#include "graph/postgres/postgres_saver.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <list>
#include <thread>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/crypto.h"
#include "store/sync_conn.h"

namespace ap::graph {
namespace {

using store::Param;
using store::Rows;
using store::Statement;

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
  // Drops every entry whose key starts with `prefix`.
  void erase_prefix(const std::string& prefix) {
    for (auto it = order_.begin(); it != order_.end();) {
      if (it->first.compare(0, prefix.size(), prefix) == 0) {
        index_.erase(it->first);
        it = order_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  size_t capacity_;
  std::list<std::pair<std::string, V>> order_;
  std::unordered_map<std::string, typename std::list<std::pair<std::string, V>>::iterator> index_;
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

// An element of PostgreSQL's text form of an array, quoted.
void append_quoted(std::string& out, std::string_view item) {
  out += '"';
  for (char c : item) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

// PostgreSQL's text form of a text[] (every element quoted).
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    append_quoted(out, items[i]);
  }
  return out + '}';
}

// The same for elements that may be NULL.
std::string text_array(const std::vector<Param>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    if (items[i]) {
      append_quoted(out, *items[i]);
    } else {
      out += "NULL";
    }
  }
  return out + '}';
}

std::string layout_id(const std::vector<std::string>& channels, const std::vector<std::string>& nodes) {
  std::string all;
  for (const auto& c : channels) all += c + '\0';
  all += '\1';
  for (const auto& n : nodes) all += n + '\0';
  auto d = sha256(all);
  return hex_encode(d.data(), 8);
}

// The items a list value gained over `parent` (in order), if it extends it by sharing.
std::optional<std::vector<const Json*>> appended(const ChannelValue& v, const ChannelValue& parent) {
  if (!v.is_list() || !parent.is_list() || v.size() <= parent.size()) return std::nullopt;
  std::vector<const Json*> items;
  const ListNode* n = v.tail().get();
  while (n && n->size > parent.size()) {
    items.push_back(&n->item);
    n = n->prev.get();
  }
  if (n != parent.tail().get()) return std::nullopt;
  std::reverse(items.begin(), items.end());
  return items;
}

ValuePtr list_from(std::shared_ptr<const ListNode> tail, const Json& items) {
  uint32_t size = tail ? tail->size : 0;
  for (const auto& item : items)
    tail = std::make_shared<const ListNode>(ListNode{std::move(tail), item, ++size});
  return ChannelValue::list(std::move(tail));
}

// JSON text of a value; invalid UTF-8 (say, a model's truncated output) is replaced, not thrown.
std::string to_text(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
}

Json parse_json(std::string_view text) { return Json::parse(text.begin(), text.end(), nullptr, false); }

Error corrupt(const std::string& what) { return Error::internal("stored checkpoint is damaged: " + what); }

// Metadata fields other than source and step, as stored in the `metadata` column (or NULL).
Param metadata_column(const CheckpointMetadata& md) {
  Json j = parse_json(md.extra_json);
  if (!j.is_object()) j = Json::object();
  j.erase("source");
  j.erase("step");
  j.erase("parents");
  if (!md.parents.empty()) {
    Json p = Json::object();
    for (const auto& [ns, id] : md.parents) p[ns] = id;
    j["parents"] = std::move(p);
  }
  if (j.empty()) return std::nullopt;
  return to_text(j);
}

CheckpointMetadata metadata_from(std::string_view source, std::string_view step, const Rows& r, int row,
                                 int col) {
  CheckpointMetadata md;
  md.source = std::string(source);
  md.step = std::stoi(std::string(step));
  if (!r.is_null(row, col)) {
    Json j = parse_json(r.get(row, col));
    if (auto p = j.find("parents"); p != j.end() && p->is_object()) {
      for (auto it = p->begin(); it != p->end(); ++it)
        if (it->is_string()) md.parents.emplace_back(it.key(), it->get<std::string>());
      j.erase("parents");
    }
    md.extra_json = j.is_object() ? to_text(j) : "{}";
  }
  return md;
}

const std::string_view kSelectColumns =
    "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_id, c.source, c.step, "
    "c.metadata, c.header, (SELECT json_agg(json_build_array(w.task_id, w.channel, w.value, "
    "w.idx, w.task_path) ORDER BY w.task_path, w.task_id, w.idx) FROM checkpoint_writes w "
    "WHERE w.tenant_id = c.tenant_id AND w.thread_id = c.thread_id AND w.checkpoint_ns = "
    "c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id) FROM checkpoints c ";

// A checkpoint row, and with it (one statement, one executor start) the blobs it stores first.
#define AP_CHECKPOINT_ROW                                                                   \
  "INSERT INTO checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, parent_id, " \
  "source, step, metadata, header) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
#define AP_CHECKPOINT_REPLACE                                                              \
  " ON CONFLICT (tenant_id, thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "        \
  "parent_id = EXCLUDED.parent_id, source = EXCLUDED.source, step = EXCLUDED.step, "        \
  "metadata = EXCLUDED.metadata, header = EXCLUDED.header"
#define AP_WITH_BLOBS                                                                      \
  "WITH b AS (INSERT INTO checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, channel, "   \
  "ref, kind, base, data) SELECT $1, $2, $3, x.channel, $4, x.kind, x.base, x.data FROM "     \
  "unnest($10::text[], $11::smallint[], $12::uuid[], $13::text[]) AS x(channel, kind, base, data)) "
constexpr std::string_view kInsertCheckpoint = AP_CHECKPOINT_ROW;
constexpr std::string_view kUpsertCheckpoint = AP_CHECKPOINT_ROW AP_CHECKPOINT_REPLACE;
constexpr std::string_view kInsertCheckpointWithBlobs = AP_WITH_BLOBS AP_CHECKPOINT_ROW;
constexpr std::string_view kUpsertCheckpointWithBlobs = AP_WITH_BLOBS AP_CHECKPOINT_ROW AP_CHECKPOINT_REPLACE;
#undef AP_CHECKPOINT_ROW
#undef AP_CHECKPOINT_REPLACE
#undef AP_WITH_BLOBS

// The same columns without the pending writes (read separately for a whole thread).
const std::string_view kSelectHeaders =
    "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_id, c.source, c.step, "
    "c.metadata, c.header, NULL FROM checkpoints c ";

// Blobs named by (thread, ns, channel, ref), with every delta's chain down to a whole copy.
// UNION (not ALL) stops a walk where it meets a chain already read. LATERAL makes each step a primary-key probe whatever the table's statistics say (a thread
// written a moment ago has none yet, and a misestimate turns the walk quadratic).
constexpr std::string_view kSelectBlobs = R"(WITH RECURSIVE
chain(thread_id, checkpoint_ns, channel, ref, kind, base, data) AS (
  SELECT b.* FROM unnest($2::text[], $3::text[], $4::text[], $5::uuid[])
    AS w(thread_id, checkpoint_ns, channel, ref)
  CROSS JOIN LATERAL (SELECT thread_id, checkpoint_ns, channel, ref, kind, base, data
    FROM checkpoint_blobs WHERE tenant_id = $1 AND thread_id = w.thread_id
     AND checkpoint_ns = w.checkpoint_ns AND channel = w.channel AND ref = w.ref) b
  UNION
  SELECT b.* FROM chain c
  CROSS JOIN LATERAL (SELECT thread_id, checkpoint_ns, channel, ref, kind, base, data
    FROM checkpoint_blobs WHERE tenant_id = $1 AND thread_id = c.thread_id
     AND checkpoint_ns = c.checkpoint_ns AND channel = c.channel AND ref = c.base) b
  WHERE c.base IS NOT NULL)
SELECT * FROM chain)";

// Blobs no checkpoint of the threads still reaches (directly or through a delta's base).
constexpr std::string_view kDeleteUnreachableBlobs = R"(WITH RECURSIVE
roots AS (
  SELECT c.thread_id, c.checkpoint_ns, l.channels[s.ord] AS channel,
         CASE WHEN s.slot = '1'::jsonb THEN c.checkpoint_id ELSE (s.slot #>> '{}')::uuid END AS ref
  FROM checkpoints c
  JOIN checkpoint_layouts l ON l.tenant_id = c.tenant_id AND l.id = c.header::jsonb ->> 'l'
  CROSS JOIN LATERAL jsonb_array_elements(c.header::jsonb -> 'c') WITH ORDINALITY AS s(slot, ord)
  WHERE c.tenant_id = $1 AND c.thread_id = ANY ($2::text[])
    AND (s.slot = '1'::jsonb OR jsonb_typeof(s.slot) = 'string')),
reach(thread_id, checkpoint_ns, channel, ref) AS (
  SELECT * FROM roots
  UNION
  SELECT b.thread_id, b.checkpoint_ns, b.channel, b.base FROM checkpoint_blobs b
  JOIN reach r ON b.thread_id = r.thread_id AND b.checkpoint_ns = r.checkpoint_ns
   AND b.channel = r.channel AND b.ref = r.ref
  WHERE b.tenant_id = $1 AND b.base IS NOT NULL)
DELETE FROM checkpoint_blobs b WHERE b.tenant_id = $1 AND b.thread_id = ANY ($2::text[])
  AND NOT EXISTS (SELECT 1 FROM reach r WHERE r.thread_id = b.thread_id
    AND r.checkpoint_ns = b.checkpoint_ns AND r.channel = b.channel AND r.ref = b.ref))";

// A checkpoint row's header, read without building a JSON document for it (a history of
// hundreds of checkpoints parses hundreds of headers).
struct Header {
  std::string layout, ts;
  std::vector<uint64_t> versions, seen, interrupt_seen;
  std::vector<Slot> slots;             // kRef with an empty ref: this checkpoint itself
  std::vector<ValuePtr> inline_values;  // per channel, for inline slots
};

// Reads {"l": s, "t": s, "v": [n], "s": [n], "i": [n], "c": [0 | 1 | "ref" | {"v": json} |
// {"b": [s]}]} as put() writes it, by hand: a general JSON parser costs ~30k instructions per
// header, and a history reads hundreds. Inline values are parsed once per distinct text.
class HeaderParser {
 public:
  using Inline = std::unordered_map<std::string_view, ValuePtr>;
  HeaderParser(std::string_view text, Header& h, Inline& seen_inline) : s_(text), h_(h), inline_(seen_inline) {}

  bool parse() {
    if (!eat('{')) return false;
    if (eat('}')) return false;
    do {
      std::string key;
      if (!string(key) || !eat(':')) return false;
      bool ok = key == "l"   ? string(h_.layout)
                : key == "t" ? string(h_.ts)
                : key == "v" ? numbers(h_.versions)
                : key == "s" ? numbers(h_.seen)
                : key == "i" ? numbers(h_.interrupt_seen)
                : key == "c" ? slots()
                             : skip_value().has_value();
      if (!ok) return false;
    } while (eat(','));
    return eat('}') && !h_.layout.empty() && h_.inline_values.size() == h_.slots.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) return (++i_, true);
    return false;
  }
  bool peek(char c) {
    ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  bool string(std::string& out) {
    auto span = skip_value();
    if (!span || span->empty() || (*span)[0] != '"') return false;
    if (span->find('\\') == std::string_view::npos) {
      out.assign(span->substr(1, span->size() - 2));
      return true;
    }
    Json j = Json::parse(span->begin(), span->end(), nullptr, false);
    if (!j.is_string()) return false;
    out = j.get<std::string>();
    return true;
  }
  bool number(uint64_t& v) {
    ws();
    auto [p, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), v);
    if (ec != std::errc()) return false;
    i_ = static_cast<size_t>(p - s_.data());
    return true;
  }
  bool numbers(std::vector<uint64_t>& out) {
    if (!eat('[')) return false;
    if (eat(']')) return true;
    do {
      uint64_t v;
      if (!number(v)) return false;
      out.push_back(v);
    } while (eat(','));
    return eat(']');
  }
  bool slots() {
    if (!eat('[')) return false;
    if (eat(']')) return true;
    do {
      if (peek('"')) {
        Slot slot{Slot::kRef, {}, 0};
        if (!string(slot.ref)) return false;
        h_.slots.push_back(std::move(slot));
        h_.inline_values.emplace_back();
      } else if (peek('{')) {
        auto whole = skip_value();  // {"v": json} or {"b": [names]}, shared by text
        if (!whole) return false;
        ValuePtr& v = inline_[*whole];
        if (!v) {
          Json j = Json::parse(whole->begin(), whole->end(), nullptr, false);
          if (j.is_object() && j.size() == 1 && j.contains("v")) {
            v = ChannelValue::scalar(std::move(j["v"]));
          } else if (j.is_object() && j.size() == 1 && j.contains("b") && j["b"].is_array()) {
            std::vector<std::string> names;
            for (const auto& n : j["b"])
              if (n.is_string()) names.push_back(n.get<std::string>());
            v = ChannelValue::barrier(std::move(names));
          } else {
            return false;
          }
        }
        h_.slots.push_back({Slot::kInline, {}, 0});
        h_.inline_values.push_back(v);
      } else {
        uint64_t n;
        if (!number(n) || n > 1) return false;
        h_.slots.push_back({n == 1 ? Slot::kRef : Slot::kEmpty, {}, 0});
        h_.inline_values.emplace_back();
      }
    } while (eat(','));
    return eat(']');
  }
  // The text of the JSON value at the cursor (strings, numbers, nested objects and arrays).
  std::optional<std::string_view> skip_value() {
    ws();
    size_t start = i_, depth = 0;
    bool in_string = false;
    for (; i_ < s_.size(); ++i_) {
      char c = s_[i_];
      if (in_string) {
        if (c == '\\') {
          ++i_;
        } else if (c == '"') {
          in_string = false;
          if (depth == 0) return s_.substr(start, ++i_ - start);
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        if (--depth == 0) return s_.substr(start, ++i_ - start);
      } else if (depth == 0 && (c == ',' || c == ' ')) {
        break;
      }
    }
    if (depth != 0 || in_string || i_ == start) return std::nullopt;
    return s_.substr(start, i_ - start);  // a number, true, false or null
  }

  std::string_view s_;
  size_t i_ = 0;
  Header& h_;
  Inline& inline_;
};

class Shared;

// The pending writes of checkpoint row `i` (a JSON array of [task, channel, value, idx, path]).
Status writes_from(const Rows& rows, int i, const std::string& id, std::vector<PendingWrite>& out) {
  if (rows.is_null(i, 8)) return ok_status();
  Json w = parse_json(rows.get(i, 8));
  if (!w.is_array()) return corrupt("checkpoint " + id + " has bad pending writes");
  for (auto& e : w) {
    if (!e.is_array() || e.size() != 5 || !e[0].is_string() || !e[1].is_string() ||
        !e[3].is_number_integer() || !e[4].is_string())
      return corrupt("checkpoint " + id + " has a bad write");
    out.push_back({e[0].get<std::string>(), e[1].get<std::string>(),
                   e[2].is_null() ? nullptr : std::make_shared<const Json>(std::move(e[2])),
                   e[3].get<int>(), e[4].get<std::string>()});
  }
  return ok_status();
}

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

  std::shared_ptr<Shared> s_;
  std::string tenant_;
};

class Shared final : public PostgresCheckpoints, public std::enable_shared_from_this<Shared> {
 public:
  Shared(std::string conninfo, PostgresSaverOptions o)
      : options(o), pool(std::move(conninfo), o.connections), known(o.cache_entries / 4 + 1),
        values(o.cache_entries),
        commit_groups_(o.commit_groups ? o.commit_groups : std::max(1u, std::thread::hardware_concurrency() / 2)) {}
  std::unique_ptr<Checkpointer> for_tenant(const TenantId& tenant) override {
    return std::make_unique<TenantSaver>(shared_from_this(), tenant);
  }

  // Group commit: concurrent write transactions (of any tenants) share one round trip and one
  // commit. A caller queues its statements; while fewer than `commit_groups` groups are running,
  // it takes everything queued and runs it; otherwise it waits for its group's result.
  Result<std::vector<Rows>> commit(const std::string& tenant, const std::vector<Statement>& body, Durability d);
  void clear_caches() {
    std::lock_guard lock(mu);
    known = Lru<std::shared_ptr<const Known>>(options.cache_entries / 4 + 1);
    values = Lru<CachedValue>(options.cache_entries);
  }

  const PostgresSaverOptions options;
  store::SyncPool pool;

  std::mutex mu;  // guards everything below
  Lru<std::shared_ptr<const Known>> known;  // tenant|thread|ns|checkpoint id
  Lru<CachedValue> values;                  // tenant|thread|ns|channel|ref
  std::unordered_map<std::string, Layout> layouts;  // tenant|layout id -> names (stored)
  // Layout ids by the names' identity, so a put() hashes a graph's names once.
  std::unordered_map<const void*, std::pair<std::shared_ptr<const void>, std::string>> layout_ids;

 private:
  struct Pending {
    const std::string* tenant;
    const std::vector<Statement>* body;
    Durability durability;
    Result<std::vector<Rows>> result = Error::internal("not run");
    bool done = false;
  };
  void run(const std::vector<Pending*>& group);

  std::mutex gc_mu_;
  std::condition_variable gc_cv_;
  std::deque<Pending*> gc_queue_;
  size_t gc_running_ = 0;
  const size_t commit_groups_;
};

Result<std::vector<Rows>> TenantSaver::transact(std::vector<Statement> body, Mode mode, Durability d) {
  Result<std::vector<Rows>> out = Error::internal("not run");
  if (mode == Mode::kWrite) {
    out = s_->commit(tenant_, body, d);
  } else {
    const bool snapshot = mode == Mode::kSnapshot;
    std::vector<Statement> all;
    all.reserve(body.size() + 3);
    if (snapshot) all.push_back({"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}});
    all.push_back({"SELECT set_config('app.tenant_id', $1, true)", store::params(tenant_)});
    const size_t first = all.size();
    for (auto& st : body) all.push_back(std::move(st));
    if (snapshot) all.push_back({"COMMIT", {}});
    auto lease = s_->pool.acquire();
    auto rows = lease ? (*lease)->pipeline(all) : Result<std::vector<Rows>>(lease.error());
    if (rows) {
      out = std::vector<Rows>(rows->begin() + static_cast<long>(first),
                              rows->begin() + static_cast<long>(first + body.size()));
    } else {
      out = rows.error();
    }
  }
  // A lost connection may mean a restarted or failed-over database, which can lack what
  // asynchronous commits had not yet flushed: nothing cached may be built on any more.
  if (!out && out.error().code == Code::kUnavailable) s_->clear_caches();
  return out;
}

Result<std::vector<Rows>> Shared::commit(const std::string& tenant, const std::vector<Statement>& body,
                                         Durability d) {
  Pending me{&tenant, &body, d};
  std::unique_lock lock(gc_mu_);
  gc_queue_.push_back(&me);
  while (!me.done) {
    if (gc_running_ >= commit_groups_ || gc_queue_.empty()) {
      gc_cv_.wait(lock);
      continue;
    }
    // Lead a group: every transaction queued by now, in one round trip and one commit.
    std::vector<Pending*> group;
    while (!gc_queue_.empty() && group.size() < 64) {
      group.push_back(gc_queue_.front());
      gc_queue_.pop_front();
    }
    ++gc_running_;
    lock.unlock();
    try {
      run(group);
    } catch (const std::exception& e) {
      for (auto* p : group) p->result = Error::internal(e.what());
    }
    lock.lock();
    --gc_running_;
    for (auto* p : group) p->done = true;
    gc_cv_.notify_all();
  }
  return std::move(me.result);
}

void Shared::run(const std::vector<Pending*>& group) {
  // Statements up to a pipeline's Sync run in one implicit transaction, committed at the Sync:
  // no BEGIN or COMMIT, and set_config(..., true) holds until the next set_config or that commit.
  // Each member's statements follow its own tenant's set_config, so row-level security checks
  // every row against the tenant it was written for.
  std::vector<Statement> all;
  std::vector<size_t> first;
  // Asynchronous durability only when no member asked for a durable commit: the commit returns
  // before its WAL is flushed; a crash may lose the newest checkpoints, never damage one.
  bool async = std::all_of(group.begin(), group.end(), [](const Pending* p) { return p->durability == Durability::kAsync; });
  if (async) all.push_back({"SELECT set_config('synchronous_commit', 'off', true)", {}});
  for (const auto* p : group) {
    all.push_back({"SELECT set_config('app.tenant_id', $1, true)", store::params(*p->tenant)});
    first.push_back(all.size());
    all.insert(all.end(), p->body->begin(), p->body->end());
  }
  Result<std::vector<Rows>> rows = Error::internal("not run");
  {
    auto lease = pool.acquire();
    rows = lease ? (*lease)->pipeline(all) : Result<std::vector<Rows>>(lease.error());
  }
  if (!rows && group.size() > 1 && rows.error().code != Code::kUnavailable) {
    // A member's statement failed and the group's transaction rolled back: each member again
    // on its own, so that every one gets its own result. (The savers avoid statements that
    // fail in normal use: this is for bad input and bugs.)
    for (auto* p : group) run({p});
    return;
  }
  for (size_t i = 0; i < group.size(); ++i) {
    if (!rows) {
      group[i]->result = rows.error();
    } else {
      auto begin = rows->begin() + static_cast<long>(first[i]);
      group[i]->result = std::vector<Rows>(begin, begin + static_cast<long>(group[i]->body->size()));
    }
  }
}

void TenantSaver::forget_thread(const std::string& thread) {
  std::lock_guard lock(s_->mu);
  s_->known.erase_prefix(tenant_ + '\x1f' + thread + '\x1f');
  s_->values.erase_prefix(tenant_ + '\x1f' + thread + '\x1f');
}

Result<CheckpointConfig> TenantSaver::put(const CheckpointConfig& config, const Checkpoint& cp,
                                          const CheckpointMetadata& md, Durability durability) {
  if (config.thread_id.empty()) return Error::invalid_argument("a checkpoint needs a thread_id");
  if (has_control(config.thread_id) || has_control(config.checkpoint_ns))
    return Error::invalid_argument("thread ids and checkpoint namespaces may not contain control characters");
  if (!Uuid::parse(cp.id)) return Error::invalid_argument("checkpoint id must be a UUID");
  if (!config.checkpoint_id.empty() && !Uuid::parse(config.checkpoint_id))
    return Error::invalid_argument("parent checkpoint id must be a UUID");
  if (!cp.channels || !cp.nodes || cp.values.size() != cp.channels->size() ||
      cp.versions.size() != cp.channels->size() ||
      cp.seen.size() != cp.channels->size() * cp.nodes->size())
    return Error::invalid_argument("checkpoint does not match its channel and node names");
  const std::string prefix = key(config.thread_id, config.checkpoint_ns);
  const PostgresSaverOptions& opt = s_->options;

  std::shared_ptr<const Known> parent;
  std::string layout;
  bool layout_stored = false;
  bool resave = false;  // this process saved this checkpoint before (interrupt bookkeeping)
  {
    std::lock_guard lock(s_->mu);
    resave = s_->known.get(prefix + cp.id) != nullptr;
    if (!config.checkpoint_id.empty())
      if (auto p = s_->known.get(prefix + config.checkpoint_id)) parent = *p;
    auto& id = s_->layout_ids[cp.channels.get()];
    if (id.second.empty()) id = {cp.channels, layout_id(*cp.channels, *cp.nodes)};
    layout = id.second;
    if (s_->layout_ids.size() > 1024) s_->layout_ids.clear();  // graphs come and go: stay bounded
    layout_stored = s_->layouts.count(tenant_ + '\x1f' + layout) > 0;
  }
  if (parent && parent->cp.channels != cp.channels && *parent->cp.channels != *cp.channels)
    parent.reset();  // another graph's checkpoint: nothing to share

  auto known = std::make_shared<Known>();
  known->cp = cp;
  known->slots.resize(cp.values.size());
  Json slots = Json::array();
  std::vector<Statement> body;
  // Parameter storage must outlive the statements: strings live in the vectors below.
  struct BlobRow {
    std::string channel;
    int kind;
    Param base;
    std::string data;
  };
  std::vector<BlobRow> blobs;
  for (size_t c = 0; c < cp.values.size(); ++c) {
    const ValuePtr& v = cp.values[c];
    Slot& slot = known->slots[c];
    const std::string& name = (*cp.channels)[c];
    if (!v) {
      slots.push_back(0);
      continue;
    }
    const Slot* ps = parent ? &parent->slots[c] : nullptr;
    const ValuePtr* pv = parent ? &parent->cp.values[c] : nullptr;
    if (ps && ps->kind == Slot::kRef && *pv == v) {  // unchanged: refer to where it is stored
      slot = *ps;
      slots.push_back(slot.ref == cp.id ? Json(1) : Json(slot.ref));
      continue;
    }
    if (v->is_barrier()) {
      slot.kind = Slot::kInline;
      slots.push_back(Json{{"b", v->seen()}});
      continue;
    }
    if (v->is_list()) {
      slot.kind = Slot::kRef;
      slot.ref = cp.id;
      std::optional<std::vector<const Json*>> delta;
      if (ps && ps->kind == Slot::kRef && *pv && ps->depth + 1 < opt.snapshot_every)
        delta = appended(*v, **pv);
      if (delta) {
        Json items = Json::array();
        for (const Json* item : *delta) items.push_back(*item);
        slot.depth = ps->depth + 1;
        blobs.push_back({name, 2, ps->ref, to_text(items)});
      } else {
        blobs.push_back({name, 1, std::nullopt, to_text(v->to_json())});
      }
      slots.push_back(1);
      continue;
    }
    std::string text = to_text(v->value());
    if (text.size() < opt.inline_bytes) {
      slot.kind = Slot::kInline;
      slots.push_back(Json{{"v", v->value()}});
    } else {
      slot.kind = Slot::kRef;
      slot.ref = cp.id;
      blobs.push_back({name, 0, std::nullopt, std::move(text)});
      slots.push_back(1);
    }
  }
  Json header{{"l", layout}, {"t", cp.ts}, {"v", cp.versions}, {"s", cp.seen}, {"c", std::move(slots)}};
  if (!cp.interrupt_seen.empty()) header["i"] = cp.interrupt_seen;
  known->header = to_text(header);

  if (!layout_stored)
    body.push_back({"INSERT INTO checkpoint_layouts (tenant_id, id, channels, nodes) VALUES "
                    "($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    store::params(tenant_, layout, text_array(*cp.channels), text_array(*cp.nodes))});
  Param parent_id = config.checkpoint_id.empty() ? Param() : Param(config.checkpoint_id);
  std::vector<Param> params = store::params(tenant_, config.thread_id, config.checkpoint_ns, cp.id, parent_id,
                                            md.source, std::to_string(md.step), metadata_column(md), known->header);
  if (!blobs.empty()) {
    std::vector<Param> channels, kinds, bases, data;
    for (auto& b : blobs) {
      channels.emplace_back(std::move(b.channel));
      kinds.emplace_back(std::to_string(b.kind));
      bases.push_back(std::move(b.base));
      data.emplace_back(std::move(b.data));
    }
    params.emplace_back(text_array(channels));
    params.emplace_back(text_array(kinds));
    params.emplace_back(text_array(bases));
    params.emplace_back(text_array(data));
  }
  // A checkpoint is new, except when the engine saves one again (interrupt bookkeeping): then
  // its row is updated and its own blobs rewritten, keeping the pending writes stored against it.
  auto statements = [&](bool again) {
    std::vector<Statement> st = body;
    if (again)
      st.push_back({"DELETE FROM checkpoint_blobs WHERE tenant_id = $1 AND thread_id = $2 AND "
                    "checkpoint_ns = $3 AND ref = $4",
                    store::params(tenant_, config.thread_id, config.checkpoint_ns, cp.id)});
    st.push_back({blobs.empty() ? (again ? kUpsertCheckpoint : kInsertCheckpoint)
                                : (again ? kUpsertCheckpointWithBlobs : kInsertCheckpointWithBlobs),
                  params});
    return st;
  };
  auto saved = transact(statements(resave), Mode::kWrite, durability);
  if (!saved && saved.error().code == Code::kAlreadyExists) saved = transact(statements(true), Mode::kWrite, durability);
  if (!saved) return saved.error();

  std::lock_guard lock(s_->mu);
  if (!layout_stored) s_->layouts[tenant_ + '\x1f' + layout] = {cp.channels, cp.nodes};
  for (size_t c = 0; c < cp.values.size(); ++c)
    if (known->slots[c].kind == Slot::kRef && known->slots[c].ref == cp.id)
      s_->values.put(prefix + (*cp.channels)[c] + '\x1f' + cp.id, {cp.values[c], known->slots[c].depth});
  s_->known.put(prefix + cp.id, std::move(known));
  return CheckpointConfig{config.thread_id, config.checkpoint_ns, cp.id};
}

Status TenantSaver::put_writes(const CheckpointConfig& config, std::span<const PendingWrite> writes,
                               Durability durability) {
  if (writes.empty()) return ok_status();
  if (!Uuid::parse(config.checkpoint_id)) return Error::not_found("no such checkpoint");
  std::vector<Statement> body;
  for (const auto& w : writes) {
    Param value = w.value ? Param(to_text(*w.value)) : Param();
    body.push_back(
        {w.idx < 0 ? std::string_view(
                         "INSERT INTO checkpoint_writes (tenant_id, thread_id, checkpoint_ns, "
                         "checkpoint_id, task_id, idx, task_path, channel, value) VALUES ($1, $2, "
                         "$3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, thread_id, "
                         "checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET task_path = "
                         "EXCLUDED.task_path, channel = EXCLUDED.channel, value = EXCLUDED.value")
                   : std::string_view(
                         "INSERT INTO checkpoint_writes (tenant_id, thread_id, checkpoint_ns, "
                         "checkpoint_id, task_id, idx, task_path, channel, value) VALUES ($1, $2, "
                         "$3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"),
         store::params(tenant_, config.thread_id, config.checkpoint_ns, config.checkpoint_id,
                       w.task_id, std::to_string(w.idx), w.task_path, w.channel, std::move(value))});
  }
  auto r = transact(std::move(body), Mode::kWrite, durability);
  if (!r && r.error().code == Code::kFailedPrecondition) return Error::not_found("no such checkpoint");
  if (!r) return r.error();
  return ok_status();
}

Result<std::optional<CheckpointTuple>> TenantSaver::get_tuple(const CheckpointConfig& c) {
  std::vector<Statement> body;
  if (c.checkpoint_id.empty()) {
    static const std::string sql = std::string(kSelectColumns) +
                                   "WHERE c.tenant_id = $1 AND c.thread_id = $2 AND c.checkpoint_ns "
                                   "= $3 ORDER BY c.checkpoint_id DESC LIMIT 1";
    body.push_back({sql, store::params(tenant_, c.thread_id, c.checkpoint_ns)});
  } else {
    if (!Uuid::parse(c.checkpoint_id)) return std::optional<CheckpointTuple>();
    static const std::string sql = std::string(kSelectColumns) +
                                   "WHERE c.tenant_id = $1 AND c.thread_id = $2 AND c.checkpoint_ns "
                                   "= $3 AND c.checkpoint_id = $4";
    body.push_back({sql, store::params(tenant_, c.thread_id, c.checkpoint_ns, c.checkpoint_id)});
  }
  AP_ASSIGN_OR_RETURN(auto rows, transact(std::move(body), Mode::kRead));
  AP_ASSIGN_OR_RETURN(auto t, tuples(rows[0], true));
  if (t.empty()) return std::optional<CheckpointTuple>();
  return std::optional<CheckpointTuple>(std::move(t[0]));
}

Result<std::vector<CheckpointTuple>> TenantSaver::list(const ListOptions& o) {
  // A whole thread's history needs (nearly) all of its blobs and all of its pending writes: read
  // them in the same round trip and snapshot, by range scans, instead of row by row.
  const bool whole_thread = o.thread_id && !o.before && !o.limit && o.filter.empty();
  std::string sql(whole_thread ? kSelectHeaders : kSelectColumns);
  sql += "WHERE c.tenant_id = $1";
  std::vector<Param> params{tenant_};
  auto arg = [&](Param p) {
    params.push_back(std::move(p));
    return "$" + std::to_string(params.size());
  };
  if (o.thread_id) sql += " AND c.thread_id = " + arg(*o.thread_id);
  if (o.checkpoint_ns) sql += " AND c.checkpoint_ns = " + arg(*o.checkpoint_ns);
  if (o.before) {
    if (!Uuid::parse(*o.before)) return Error::invalid_argument("before must be a checkpoint id");
    sql += " AND c.checkpoint_id < " + arg(*o.before) + "::uuid";
  }
  for (const auto& [k, text] : o.filter) {
    Json want = parse_json(text);
    if (want.is_discarded()) return Error::invalid_argument("metadata filter '" + k + "' is not JSON");
    if (k == "source") {
      sql += want.is_string() ? " AND c.source = " + arg(want.get<std::string>()) : " AND false";
    } else if (k == "step") {
      bool in_range = want.is_number_integer() && want.get<int64_t>() >= INT32_MIN && want.get<int64_t>() <= INT32_MAX;
      sql += in_range ? " AND c.step = " + arg(std::to_string(want.get<int64_t>())) + "::int" : " AND false";
    } else if (k == "parents") {
      sql += " AND coalesce(c.metadata -> 'parents', '{}') = " + arg(want.dump()) + "::jsonb";
    } else {
      sql += " AND c.metadata -> " + arg(k) + " = " + arg(want.dump()) + "::jsonb";
    }
  }
  sql += " ORDER BY c.checkpoint_id DESC";
  if (o.limit) sql += " LIMIT " + arg(std::to_string(*o.limit)) + "::bigint";
  std::vector<Statement> body{{sql, params}};
  if (whole_thread) {
    body.push_back({"SELECT thread_id, checkpoint_ns, channel, ref, kind, base, data FROM checkpoint_blobs "
                    "WHERE tenant_id = $1 AND thread_id = $2",
                    store::params(tenant_, *o.thread_id)});
    body.push_back({"SELECT checkpoint_ns, checkpoint_id, task_id, channel, value, idx, task_path FROM "
                    "checkpoint_writes WHERE tenant_id = $1 AND thread_id = $2 "
                    "ORDER BY checkpoint_ns, checkpoint_id, task_path, task_id, idx",
                    store::params(tenant_, *o.thread_id)});
  }
  AP_ASSIGN_OR_RETURN(auto rows, transact(std::move(body), whole_thread ? Mode::kSnapshot : Mode::kRead));
  if (!whole_thread) return tuples(rows[0], false);
  // Attach the thread's writes to their checkpoints (rows are ordered by checkpoint).
  std::unordered_map<std::string, std::vector<PendingWrite>> writes;
  const Rows& w = rows[2];
  for (int i = 0; i < w.size(); ++i) {
    auto& list = writes[std::string(w.get(i, 0)) + '\x1f' + std::string(w.get(i, 1))];
    list.push_back({std::string(w.get(i, 2)), std::string(w.get(i, 3)),
                    w.is_null(i, 4) ? nullptr : std::make_shared<const Json>(parse_json(w.get(i, 4))),
                    std::stoi(std::string(w.get(i, 5))), std::string(w.get(i, 6))});
  }
  AP_ASSIGN_OR_RETURN(auto out, tuples(rows[0], false, &rows[1]));
  if (!writes.empty())
    for (auto& t : out)
      if (auto it = writes.find(t.config.checkpoint_ns + '\x1f' + t.config.checkpoint_id); it != writes.end())
        t.pending_writes = std::move(it->second);
  return out;
}

Result<std::vector<CheckpointTuple>> TenantSaver::tuples(const Rows& rows, bool remember,
                                                        const Rows* thread_blobs) {
  struct Parsed {
    Header h;
    std::string thread, ns, id;
    const Layout* layout = nullptr;
    std::shared_ptr<const Known> cached;  // this process saved or loaded exactly this row
  };
  const int n = rows.size();
  std::vector<Parsed> parsed(static_cast<size_t>(n));
  std::unordered_map<std::string, Layout> layouts;  // layout id -> names
  std::vector<std::string> want_layouts;
  HeaderParser::Inline inline_values;  // inline value texts seen in these rows, parsed once
  {
    std::lock_guard lock(s_->mu);
    for (int i = 0; i < n; ++i) {
      auto& p = parsed[static_cast<size_t>(i)];
      p.thread = rows.get(i, 0);
      p.ns = rows.get(i, 1);
      p.id = rows.get(i, 2);
      if (auto k = s_->known.get(key(p.thread, p.ns) + p.id); k && (*k)->header == rows.get(i, 7)) {
        p.cached = *k;
        continue;
      }
      if (!HeaderParser(rows.get(i, 7), p.h, inline_values).parse())
        return corrupt("checkpoint " + p.id + " has no valid header");
      if (layouts.count(p.h.layout)) continue;
      if (auto it = s_->layouts.find(tenant_ + '\x1f' + p.h.layout); it != s_->layouts.end()) {
        layouts[p.h.layout] = it->second;
      } else if (std::find(want_layouts.begin(), want_layouts.end(), p.h.layout) == want_layouts.end()) {
        want_layouts.push_back(p.h.layout);
      }
    }
  }
  if (!want_layouts.empty()) {
    std::vector<Statement> body{{"SELECT id, array_to_json(channels), array_to_json(nodes) FROM "
                                 "checkpoint_layouts WHERE tenant_id = $1 AND id = ANY ($2::text[])",
                                 store::params(tenant_, text_array(want_layouts))}};
    AP_ASSIGN_OR_RETURN(auto r, transact(std::move(body), Mode::kRead));
    std::lock_guard lock(s_->mu);
    for (int i = 0; i < r[0].size(); ++i) {
      Json channels = parse_json(r[0].get(i, 1)), nodes = parse_json(r[0].get(i, 2));
      if (!channels.is_array() || !nodes.is_array()) return corrupt("a layout is not readable");
      Layout l{std::make_shared<const std::vector<std::string>>(channels.get<std::vector<std::string>>()),
               std::make_shared<const std::vector<std::string>>(nodes.get<std::vector<std::string>>())};
      layouts[std::string(r[0].get(i, 0))] = l;
      s_->layouts[tenant_ + '\x1f' + std::string(r[0].get(i, 0))] = l;
    }
  }

  // The values the rows refer to: cached, or read (with their delta chains) from the database.
  std::unordered_map<std::string, CachedValue> found;  // thread|ns|channel|ref (no tenant)
  std::vector<std::string> want_thread, want_ns, want_channel, want_ref;
  {
    std::lock_guard lock(s_->mu);
    for (auto& p : parsed) {
      if (p.cached) continue;
      auto l = layouts.find(p.h.layout);
      if (l == layouts.end()) return corrupt("checkpoint " + p.id + " names an unknown layout");
      p.layout = &l->second;
      const size_t nc = l->second.channels->size();
      if (p.h.slots.size() != nc || p.h.versions.size() != nc || p.h.seen.size() != nc * l->second.nodes->size())
        return corrupt("checkpoint " + p.id + " does not match its layout");
      for (size_t c = 0; c < nc; ++c) {
        auto& slot = p.h.slots[c];
        if (slot.kind != Slot::kRef) continue;
        if (slot.ref.empty()) slot.ref = p.id;
        std::string k = p.thread + '\x1f' + p.ns + '\x1f' + (*l->second.channels)[c] + '\x1f' + slot.ref;
        if (found.count(k)) continue;
        if (auto v = s_->values.get(tenant_ + '\x1f' + k)) {
          found[k] = *v;
        } else {
          found[k] = {};
          want_thread.push_back(p.thread);
          want_ns.push_back(p.ns);
          want_channel.push_back((*l->second.channels)[c]);
          want_ref.push_back(slot.ref);
        }
      }
    }
  }
  if (!want_ref.empty()) {
    Rows fetched;
    const Rows* b = thread_blobs;
    if (!b) {
      std::vector<Statement> body{{kSelectBlobs, store::params(tenant_, text_array(want_thread), text_array(want_ns),
                                                                text_array(want_channel), text_array(want_ref))}};
      AP_ASSIGN_OR_RETURN(auto r, transact(std::move(body), Mode::kRead));
      fetched = r[0];
      b = &fetched;
    }
    struct Row {
      int kind;
      int index;
    };
    std::unordered_map<std::string, Row> by_key;
    by_key.reserve(static_cast<size_t>(b->size()));
    for (int i = 0; i < b->size(); ++i) {
      std::string k = std::string(b->get(i, 0)) + '\x1f' + std::string(b->get(i, 1)) + '\x1f' +
                      std::string(b->get(i, 2)) + '\x1f' + std::string(b->get(i, 3));
      by_key[std::move(k)] = {b->get(i, 4)[0] - '0', i};
    }
    // Materialises (thread|ns|channel|ref): a delta builds on its base's list, so every version
    // of a list shares the items of the versions before it. Iterative: chains can be long.
    auto load = [&](const std::string& want, const std::string& prefix) -> Status {
      std::vector<std::pair<std::string, int>> todo;  // deltas whose base is not loaded yet
      std::string k = want;
      for (;;) {
        if (auto it = found.find(k); it != found.end() && it->second.value) break;
        auto row = by_key.find(k);
        if (row == by_key.end()) return corrupt("a stored value is missing");
        if (row->second.kind != 2) {
          Json data = parse_json(b->get(row->second.index, 6));
          if (data.is_discarded()) return corrupt("a stored value is not JSON");
          if (row->second.kind == 1 && !data.is_array()) return corrupt("a stored list is not a list");
          found[k] = {row->second.kind == 0 ? ChannelValue::scalar(std::move(data)) : list_from(nullptr, data), 0};
          break;
        }
        todo.emplace_back(k, row->second.index);
        k = prefix + std::string(b->get(row->second.index, 5));
      }
      for (auto it = todo.rbegin(); it != todo.rend(); ++it) {
        const CachedValue& base = found[k];
        if (!base.value->is_list()) return corrupt("a delta's base is not a list");
        Json data = parse_json(b->get(it->second, 6));
        if (!data.is_array()) return corrupt("a stored delta is not a list");
        found[it->first] = {list_from(base.value->tail(), data), base.depth + 1};
        k = it->first;
      }
      return ok_status();
    };
    for (size_t i = 0; i < want_ref.size(); ++i) {
      std::string prefix = want_thread[i] + '\x1f' + want_ns[i] + '\x1f' + want_channel[i] + '\x1f';
      AP_RETURN_IF_ERROR(load(prefix + want_ref[i], prefix));
    }
    std::lock_guard lock(s_->mu);
    for (const auto& [k, v] : found)
      if (v.value) s_->values.put(tenant_ + '\x1f' + k, v);
  }

  std::vector<CheckpointTuple> out;
  out.reserve(parsed.size());
  for (int i = 0; i < n; ++i) {
    auto& p = parsed[static_cast<size_t>(i)];
    CheckpointTuple t;
    t.config = {p.thread, p.ns, p.id};
    if (!rows.is_null(i, 3)) t.parent = CheckpointConfig{p.thread, p.ns, std::string(rows.get(i, 3))};
    t.metadata = metadata_from(rows.get(i, 4), rows.get(i, 5), rows, i, 6);
    AP_RETURN_IF_ERROR(writes_from(rows, i, p.id, t.pending_writes));
    if (p.cached) {
      t.checkpoint = p.cached->cp;
      out.push_back(std::move(t));
      continue;
    }
    const Layout& l = *p.layout;
    Checkpoint& cp = t.checkpoint;
    cp.id = p.id;
    cp.ts = std::move(p.h.ts);
    cp.channels = l.channels;
    cp.nodes = l.nodes;
    cp.versions = std::move(p.h.versions);
    cp.seen = std::move(p.h.seen);
    cp.interrupt_seen = std::move(p.h.interrupt_seen);
    cp.values.resize(l.channels->size());
    for (size_t c = 0; c < cp.values.size(); ++c) {
      auto& slot = p.h.slots[c];
      if (slot.kind == Slot::kRef) {
        const auto& v = found[p.thread + '\x1f' + p.ns + '\x1f' + (*l.channels)[c] + '\x1f' + slot.ref];
        cp.values[c] = v.value;
        slot.depth = v.depth;
      } else {
        cp.values[c] = std::move(p.h.inline_values[c]);
      }
    }
    if (remember) {
      auto known = std::make_shared<Known>();
      known->cp = cp;
      known->slots = std::move(p.h.slots);
      known->header = std::string(rows.get(i, 7));
      std::lock_guard lock(s_->mu);
      s_->known.put(key(p.thread, p.ns) + p.id, std::move(known));
    }
    out.push_back(std::move(t));
  }
  return out;
}

Status TenantSaver::delete_thread(const std::string& thread_id) {
  std::vector<Statement> body{
      {"DELETE FROM checkpoint_blobs WHERE tenant_id = $1 AND thread_id = $2", store::params(tenant_, thread_id)},
      {"DELETE FROM checkpoints WHERE tenant_id = $1 AND thread_id = $2", store::params(tenant_, thread_id)}};
  forget_thread(thread_id);
  AP_RETURN_IF_ERROR(transact(std::move(body), Mode::kWrite));
  forget_thread(thread_id);
  return ok_status();
}

Status TenantSaver::copy_thread(const std::string& from, const std::string& to) {
  if (from == to) return ok_status();
  // Everything is guarded by `from` existing, so a missing source changes nothing.
  static const std::string exists =
      " AND EXISTS (SELECT 1 FROM checkpoints s WHERE s.tenant_id = $1 AND s.thread_id = $3)";
  static const std::string del_blobs = "DELETE FROM checkpoint_blobs WHERE tenant_id = $1 AND thread_id = $2" + exists;
  static const std::string del_checkpoints = "DELETE FROM checkpoints WHERE tenant_id = $1 AND thread_id = $2" + exists;
  std::vector<Statement> body{
      {del_blobs, store::params(tenant_, to, from)},
      {del_checkpoints, store::params(tenant_, to, from)},
      {"INSERT INTO checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id, parent_id, source, "
       "step, metadata, header) SELECT tenant_id, $3, checkpoint_ns, checkpoint_id, parent_id, source, "
       "step, metadata, header FROM checkpoints WHERE tenant_id = $1 AND thread_id = $2",
       store::params(tenant_, from, to)},
      {"INSERT INTO checkpoint_blobs (tenant_id, thread_id, checkpoint_ns, channel, ref, kind, base, "
       "data) SELECT tenant_id, $3, checkpoint_ns, channel, ref, kind, base, data FROM "
       "checkpoint_blobs WHERE tenant_id = $1 AND thread_id = $2",
       store::params(tenant_, from, to)},
      {"INSERT INTO checkpoint_writes (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, "
       "idx, task_path, channel, value) SELECT tenant_id, $3, checkpoint_ns, checkpoint_id, task_id, "
       "idx, task_path, channel, value FROM checkpoint_writes WHERE tenant_id = $1 AND thread_id = $2",
       store::params(tenant_, from, to)}};
  forget_thread(to);
  AP_ASSIGN_OR_RETURN(auto r, transact(std::move(body), Mode::kWrite));
  forget_thread(to);
  if (r[2].affected() == 0) return Error::not_found("no such thread");
  return ok_status();
}

Status TenantSaver::prune(std::span<const std::string> thread_ids, size_t keep_last) {
  if (keep_last == 0) return Error::invalid_argument("keep_last must be at least 1");
  if (thread_ids.empty()) return ok_status();
  std::string threads = text_array(std::vector<std::string>(thread_ids.begin(), thread_ids.end()));
  std::vector<Statement> body{
      {"DELETE FROM checkpoints c USING (SELECT thread_id, checkpoint_ns, checkpoint_id, row_number() "
       "OVER (PARTITION BY thread_id, checkpoint_ns ORDER BY checkpoint_id DESC) AS n FROM "
       "checkpoints WHERE tenant_id = $1 AND thread_id = ANY ($2::text[])) old WHERE c.tenant_id = $1 "
       "AND c.thread_id = old.thread_id AND c.checkpoint_ns = old.checkpoint_ns AND c.checkpoint_id = "
       "old.checkpoint_id AND old.n > $3::bigint",
       store::params(tenant_, threads, std::to_string(keep_last))},
      {kDeleteUnreachableBlobs, store::params(tenant_, threads)}};
  for (const auto& t : thread_ids) forget_thread(t);
  AP_RETURN_IF_ERROR(transact(std::move(body), Mode::kWrite));
  for (const auto& t : thread_ids) forget_thread(t);
  return ok_status();
}

}  // namespace

std::shared_ptr<PostgresCheckpoints> PostgresCheckpoints::open(std::string conninfo,
                                                               PostgresSaverOptions options) {
  return std::make_shared<Shared>(std::move(conninfo), options);
}

}  // namespace ap::graph
