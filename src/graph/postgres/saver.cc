// The PostgreSQL checkpointer: transactions, group commit and the process-wide state.
#include <algorithm>
#include <thread>

#include "graph/postgres/internal.h"

namespace ap::graph {
namespace pg {

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
      me.cv.wait(lock);
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
    // Under the lock: a member's Pending is gone once it sees `done`.
    for (auto* p : group) {
      p->done = true;
      p->cv.notify_one();
    }
    if (!gc_queue_.empty()) gc_queue_.front()->cv.notify_one();  // the next group's leader
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

}  // namespace pg

std::shared_ptr<PostgresCheckpoints> PostgresCheckpoints::open(std::string conninfo,
                                                               PostgresSaverOptions options) {
  return std::make_shared<pg::Shared>(std::move(conninfo), options);
}

}  // namespace ap::graph
