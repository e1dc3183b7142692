#include "store/pool.h"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "telemetry/metrics.h"

namespace ap::store {

Pool::Lease& Pool::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    if (pool_ && conn_) pool_->release(std::move(conn_));
    pool_ = o.pool_;
    conn_ = std::move(o.conn_);
  }
  return *this;
}

Pool::Lease::~Lease() {
  if (pool_ && conn_) pool_->release(std::move(conn_));
}

Pool::Pool(asio::any_io_executor ex, PoolOptions options)
    : ex_(std::move(ex)), options_(std::move(options)) {}

Pool::~Pool() {
  for (auto& w : waiters_) w->timer.cancel();
}

void Pool::close() {
  closed_ = true;
  open_ -= idle_.size();
  idle_.clear();
  for (auto& w : waiters_) w->timer.cancel();
  waiters_.clear();
}

void Pool::wake_one_for_slot() {
  if (waiters_.empty()) return;
  auto w = std::move(waiters_.front());
  waiters_.pop_front();
  w->slot_freed = true;
  w->timer.cancel();
}

asio::awaitable<bool> Pool::ready(Conn& conn) {
  if (conn.broken()) co_return false;
  if (conn.in_transaction()) {
    // Isolation: a unit of work that ended without COMMIT must not leak into the next one
    // (its transaction, and with it app.tenant_id).
    static const Statement kRollback{"ROLLBACK", {}};
    auto r = co_await conn.pipeline({&kRollback, 1});
    if (!r || conn.in_transaction()) co_return false;
  }
  co_return true;
}

asio::awaitable<void> Pool::rollback_then_release(std::unique_ptr<Conn> conn) {
  bool ok = co_await ready(*conn);
  if (ok) {
    release(std::move(conn));
  } else {
    --open_;
    wake_one_for_slot();
  }
  co_return;
}

void Pool::release(std::unique_ptr<Conn> conn) {
  if (closed_) {  // shutting down: close it now, while its io_context still exists
    --open_;
    return;
  }
  if (conn->broken()) {
    --open_;
    wake_one_for_slot();
    return;
  }
  if (conn->in_transaction()) {
    // A unit of work that ended early (an error return) must not hold its row locks until the
    // connection happens to be used again: roll it back now.
    asio::co_spawn(ex_, rollback_then_release(std::move(conn)), asio::detached);
    return;
  }
  if (!waiters_.empty()) {
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->conn = std::move(conn);
    w->timer.cancel();
    return;
  }
  idle_.push_back(std::move(conn));
}

Task<Pool::Lease> Pool::acquire(Priority priority) {
  auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
  for (;;) {
    if (closed_) co_return Error::unavailable("the server is shutting down");
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (!co_await ready(*conn)) {
        --open_;
        wake_one_for_slot();
        continue;
      }
      co_return Lease(this, std::move(conn));
    }
    if (open_ < options_.max_size) {
      ++open_;
      std::vector<std::pair<std::string, std::string>> extra;
      if (options_.statement_timeout.count() > 0)
        extra.emplace_back("options", "-c statement_timeout=" +
                                          std::to_string(options_.statement_timeout.count()));
      auto conn = co_await Conn::connect(ex_, options_.conninfo, std::move(extra));
      if (!conn) {
        --open_;
        co_return conn.error();
      }
      co_return Lease(this, std::move(*conn));
    }
    auto w = std::make_shared<Waiter>(ex_);
    w->timer.expires_at(deadline);
    w->first = priority == Priority::kFirst;
    if (w->first) {
      auto after = std::find_if(waiters_.begin(), waiters_.end(), [](const auto& o) { return !o->first; });
      waiters_.insert(after, w);
    } else {
      waiters_.push_back(w);
    }
    co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (w->conn) {
      // Handed over by release(): healthy, but possibly left inside a transaction.
      auto conn = std::move(w->conn);
      if (co_await ready(*conn)) co_return Lease(this, std::move(conn));
      --open_;
      wake_one_for_slot();
      continue;
    }
    if (!w->slot_freed) {  // the deadline passed, not a hand-over
      std::erase(waiters_, w);
      co_return Error::unavailable("all database connections are busy");
    }
  }
}

}  // namespace ap::store
