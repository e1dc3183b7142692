// The PostgreSQL checkpointer's reads: get_tuple, list, and turning rows into checkpoints
// (cached values, delta chains, structural sharing).
#include <algorithm>

#include "graph/postgres/internal.h"

namespace ap::graph::pg {
namespace {

const std::string_view kSelectColumns =
    "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_id, c.source, c.step, "
    "c.metadata, c.header, (SELECT json_agg(json_build_array(w.task_id, w.channel, w.value, "
    "w.idx, w.task_path) ORDER BY w.task_path, w.task_id, w.idx) FROM checkpoint_writes w "
    "WHERE w.tenant_id = c.tenant_id AND w.thread_id = c.thread_id AND w.checkpoint_ns = "
    "c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id) FROM checkpoints c ";

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

}  // namespace

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
  InlineValues inline_values;  // inline value texts seen in these rows, parsed once
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
      if (!parse_header(rows.get(i, 7), p.h, inline_values))
        return corrupt("checkpoint " + p.id + " has no valid header");
      if (layouts.count(p.h.layout)) continue;
      if (const Layout* l = s_->layouts.get(tenant_ + '\x1f' + p.h.layout)) {
        layouts[p.h.layout] = *l;
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
      s_->layouts.put(tenant_ + '\x1f' + std::string(r[0].get(i, 0)), l);
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

}  // namespace ap::graph::pg
