#include "graph/memory_saver.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace ap::graph {
namespace {

bool metadata_matches(const CheckpointMetadata& md,
                      const std::vector<std::pair<std::string, std::string>>& filter) {
  if (filter.empty()) return true;
  Json j = md.to_json();
  for (const auto& [k, text] : filter) {
    Json want = Json::parse(text, nullptr, false);
    auto it = j.find(k);
    if (it == j.end() || *it != want) return false;
  }
  return true;
}

void sort_writes(std::vector<PendingWrite>& w) {
  std::stable_sort(w.begin(), w.end(), [](const PendingWrite& a, const PendingWrite& b) {
    return std::tie(a.task_path, a.task_id, a.idx) < std::tie(b.task_path, b.task_id, b.idx);
  });
}

}  // namespace

CheckpointTuple MemorySaver::tuple(const std::string& thread, const std::string& ns,
                                   const Entry& e) const {
  CheckpointTuple t;
  t.config = {thread, ns, e.checkpoint.id};
  t.checkpoint = e.checkpoint;
  t.metadata = e.metadata;
  if (!e.parent_id.empty()) t.parent = CheckpointConfig{thread, ns, e.parent_id};
  t.pending_writes = e.writes;
  sort_writes(t.pending_writes);
  return t;
}

Result<std::optional<CheckpointTuple>> MemorySaver::get_tuple(const CheckpointConfig& c) {
  std::lock_guard lock(mu_);
  auto t = threads_.find(c.thread_id);
  if (t == threads_.end()) return std::optional<CheckpointTuple>();
  auto n = t->second.find(c.checkpoint_ns);
  if (n == t->second.end() || n->second.empty()) return std::optional<CheckpointTuple>();
  if (c.checkpoint_id.empty())
    return std::optional<CheckpointTuple>(tuple(c.thread_id, c.checkpoint_ns, n->second.rbegin()->second));
  auto e = n->second.find(c.checkpoint_id);
  if (e == n->second.end()) return std::optional<CheckpointTuple>();
  return std::optional<CheckpointTuple>(tuple(c.thread_id, c.checkpoint_ns, e->second));
}

Result<std::vector<CheckpointTuple>> MemorySaver::list(const ListOptions& o) {
  std::lock_guard lock(mu_);
  std::vector<CheckpointTuple> out;
  for (const auto& [tid, thread] : threads_) {
    if (o.thread_id && *o.thread_id != tid) continue;
    for (const auto& [ns, entries] : thread) {
      if (o.checkpoint_ns && *o.checkpoint_ns != ns) continue;
      for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
        if (o.before && it->first >= *o.before) continue;
        if (!metadata_matches(it->second.metadata, o.filter)) continue;
        out.push_back(tuple(tid, ns, it->second));
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const CheckpointTuple& a, const CheckpointTuple& b) {
    return a.checkpoint.id > b.checkpoint.id;
  });
  if (o.limit && out.size() > *o.limit) out.resize(*o.limit);
  return out;
}

Result<CheckpointConfig> MemorySaver::put(const CheckpointConfig& c, const Checkpoint& cp,
                                          const CheckpointMetadata& md, Durability) {
  if (c.thread_id.empty()) return Error::invalid_argument("a checkpoint needs a thread_id");
  std::lock_guard lock(mu_);
  auto& entry = threads_[c.thread_id][c.checkpoint_ns][cp.id];
  entry.checkpoint = cp;
  entry.metadata = md;
  entry.parent_id = c.checkpoint_id;
  return CheckpointConfig{c.thread_id, c.checkpoint_ns, cp.id};
}

Status MemorySaver::put_writes(const CheckpointConfig& c, std::span<const PendingWrite> writes,
                               Durability) {
  std::lock_guard lock(mu_);
  auto t = threads_.find(c.thread_id);
  if (t == threads_.end()) return Error::not_found("no such thread");
  auto n = t->second.find(c.checkpoint_ns);
  if (n == t->second.end()) return Error::not_found("no such checkpoint namespace");
  auto e = n->second.find(c.checkpoint_id);
  if (e == n->second.end()) return Error::not_found("no such checkpoint");
  auto& stored = e->second.writes;
  for (const auto& w : writes) {
    // Idempotent per (task, idx): an ordinary write keeps its first value, a special one
    // (idx < 0) is replaced.
    auto same = std::find_if(stored.begin(), stored.end(), [&](const PendingWrite& s) {
      return s.task_id == w.task_id && s.idx == w.idx;
    });
    if (same != stored.end()) {
      if (w.idx < 0) *same = w;
    } else {
      stored.push_back(w);
    }
  }
  return ok_status();
}

Status MemorySaver::delete_thread(const std::string& thread_id) {
  std::lock_guard lock(mu_);
  threads_.erase(thread_id);
  return ok_status();
}

Status MemorySaver::delete_run(const std::string& thread_id, const std::string& run_id) {
  std::lock_guard lock(mu_);
  auto t = threads_.find(thread_id);
  if (t == threads_.end()) return ok_status();
  for (auto& [ns, entries] : t->second)
    std::erase_if(entries, [&](const auto& kv) {
      auto extra = Json::parse(kv.second.metadata.extra_json, nullptr, false);
      return extra.is_object() && extra.value("run_id", "") == run_id;
    });
  return ok_status();
}

Status MemorySaver::patch_metadata(const CheckpointConfig& config, const Json& patch) {
  if (!patch.is_object() || patch.contains("source") || patch.contains("step"))
    return Error::invalid_argument("metadata patch must be an object without source or step");
  std::lock_guard lock(mu_);
  auto t = threads_.find(config.thread_id);
  if (t == threads_.end()) return Error::not_found("checkpoint not found");
  auto ns = t->second.find(config.checkpoint_ns);
  if (ns == t->second.end() || ns->second.empty()) return Error::not_found("checkpoint not found");
  auto e = config.checkpoint_id.empty() ? std::prev(ns->second.end()) : ns->second.find(config.checkpoint_id);
  if (e == ns->second.end()) return Error::not_found("checkpoint not found");
  Json extra = Json::parse(e->second.metadata.extra_json, nullptr, false);
  if (!extra.is_object()) extra = Json::object();
  extra.merge_patch(patch);
  e->second.metadata.extra_json = extra.dump();
  return ok_status();
}

Status MemorySaver::copy_thread(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto t = threads_.find(from);
  if (t == threads_.end()) return Error::not_found("no such thread");
  threads_[to] = t->second;
  return ok_status();
}

Status MemorySaver::prune(std::span<const std::string> thread_ids, size_t keep_last) {
  if (keep_last == 0) return Error::invalid_argument("keep_last must be at least 1");
  std::lock_guard lock(mu_);
  for (const auto& id : thread_ids) {
    auto t = threads_.find(id);
    if (t == threads_.end()) continue;
    for (auto& [ns, entries] : t->second) {
      // The newest checkpoints (and the pending writes a resume needs, stored with them) stay.
      while (entries.size() > keep_last) entries.erase(entries.begin());
    }
  }
  return ok_status();
}

size_t MemorySaver::thread_count() const {
  std::lock_guard lock(mu_);
  return threads_.size();
}

}  // namespace ap::graph
