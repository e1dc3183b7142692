// The PostgreSQL checkpointer's writes: put (deltas, inline values, one statement), put_writes,
// and the thread operations (delete, copy, prune).
#include <algorithm>

#include "graph/postgres/internal.h"

namespace ap::graph::pg {
namespace {

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

}  // namespace

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
    layout_stored = s_->layouts.get(tenant_ + '\x1f' + layout) != nullptr;
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
      std::optional<std::vector<const ListNode*>> delta;
      if (ps && ps->kind == Slot::kRef && *pv && ps->depth + 1 < opt.snapshot_every)
        delta = appended(*v, **pv);
      std::string text;
      if (delta) {
        text += '[';
        for (const ListNode* n : *delta) {
          if (text.size() > 1) text += ',';
          text += n->text();
        }
        text += ']';
        slot.depth = ps->depth + 1;
        blobs.push_back({name, 2, ps->ref, std::move(text)});
      } else {
        v->dump_to(text);
        blobs.push_back({name, 1, std::nullopt, std::move(text)});
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
  if (!layout_stored) s_->layouts.put(tenant_ + '\x1f' + layout, Layout{cp.channels, cp.nodes});
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

Status TenantSaver::delete_thread(const std::string& thread_id) {
  // Checkpoints first (as migration 0023's trigger): a put committed between the two statements
  // then keeps a checkpoint, not an unreachable blob.
  std::vector<Statement> body{
      {"DELETE FROM checkpoints WHERE tenant_id = $1 AND thread_id = $2", store::params(tenant_, thread_id)},
      {"DELETE FROM checkpoint_blobs WHERE tenant_id = $1 AND thread_id = $2", store::params(tenant_, thread_id)}};
  forget_thread(thread_id);
  AP_RETURN_IF_ERROR(transact(std::move(body), Mode::kWrite));
  forget_thread(thread_id);
  return ok_status();
}

// The run's checkpoints are the newest of the thread (one run at a time), so no kept checkpoint
// refers to a value they stored first: after them, the blobs no remaining checkpoint reaches go,
// as in prune (a walk of the thread's checkpoints: a rollback is rare). Writes go with their
// checkpoints (ON DELETE CASCADE).
Status TenantSaver::delete_run(const std::string& thread_id, const std::string& run_id) {
  std::vector<Statement> body{{"DELETE FROM checkpoints WHERE tenant_id = $1 AND thread_id = $2 AND metadata->>'run_id' = $3",
                               store::params(tenant_, thread_id, run_id)},
                              {kDeleteUnreachableBlobs, store::params(tenant_, text_array(std::vector<std::string>{thread_id}))}};
  forget_thread(thread_id);
  AP_RETURN_IF_ERROR(transact(std::move(body), Mode::kWrite));
  forget_thread(thread_id);
  return ok_status();
}

Status TenantSaver::patch_metadata(const CheckpointConfig& config, const Json& patch) {
  if (!patch.is_object() || patch.contains("source") || patch.contains("step"))
    return Error::invalid_argument("metadata patch must be an object without source or step");
  // An id that is not a checkpoint id finds nothing (NotFound), like any unknown id.
  std::string id = config.checkpoint_id;
  if (!id.empty() && !Uuid::parse(id)) return Error::not_found("checkpoint not found");
  std::vector<Statement> body{
      {"UPDATE checkpoints SET metadata = coalesce(metadata, '{}'::jsonb) || $4::jsonb WHERE tenant_id = $1 AND "
       "thread_id = $2 AND checkpoint_ns = $3 AND checkpoint_id = coalesce($5::uuid, (SELECT checkpoint_id FROM "
       "checkpoints WHERE tenant_id = $1 AND thread_id = $2 AND checkpoint_ns = $3 ORDER BY checkpoint_id DESC "
       "LIMIT 1)) RETURNING 1",
       store::params(tenant_, config.thread_id, config.checkpoint_ns, patch.dump(), id.empty() ? Param() : Param(id))}};
  forget_thread(config.thread_id);
  AP_ASSIGN_OR_RETURN(auto rows, transact(std::move(body), Mode::kWrite));
  forget_thread(config.thread_id);
  if (rows.empty() || rows.back().empty()) return Error::not_found("checkpoint not found");
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
      {del_checkpoints, store::params(tenant_, to, from)},  // (checkpoints first: see delete_thread)
      {del_blobs, store::params(tenant_, to, from)},
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

}  // namespace ap::graph::pg
