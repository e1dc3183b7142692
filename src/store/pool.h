// A pool of PostgreSQL connections for one executor (one server shard). Connections are made
// lazily up to `max_size`; callers wait (with a deadline) when all are in use. Not thread-safe:
// use one Pool per executor, from coroutines running on that executor.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "store/conn.h"

namespace ap::store {

struct PoolOptions {
  std::string conninfo;
  size_t max_size = 4;  // per shard: more only adds contention on a small machine (bench/http)
  std::chrono::milliseconds acquire_timeout{5000};
  // Server-side cap on each statement (libpq `options=-c statement_timeout=...`; it replaces an
  // `options` given in the conninfo). 0: none.
  std::chrono::milliseconds statement_timeout{30000};
};

class Pool {
 public:
  // A connection on loan; returns to the pool when destroyed.
  class Lease {
   public:
    Lease() = default;
    Lease(Pool* pool, std::unique_ptr<Conn> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&& o) noexcept;
    ~Lease();
    Conn* operator->() const { return conn_.get(); }
    Conn& operator*() const { return *conn_; }

   private:
    Pool* pool_ = nullptr;
    std::unique_ptr<Conn> conn_;
  };

  Pool(asio::any_io_executor ex, PoolOptions options);
  ~Pool();

  // Who is served first when all connections are in use: work that keeps other work alive (a
  // worker renewing its runs' leases) must not queue behind the work it protects.
  enum class Priority { kNormal, kFirst };

  // A healthy connection with no transaction open. Unavailable if none can be made, or if none
  // is free within the acquire timeout.
  Task<Lease> acquire(Priority priority = Priority::kNormal);

  asio::any_io_executor executor() const { return ex_; }
  // Drops idle connections; connections returned later are closed instead of pooled. Call
  // before the executor's io_context is destroyed (its pending coroutines may still hold leases).
  void close();
  size_t open_connections() const { return open_; }

 private:
  void release(std::unique_ptr<Conn> conn);
  asio::awaitable<void> rollback_then_release(std::unique_ptr<Conn> conn);
  // Makes a connection fit for a new unit of work: rolls back a transaction left open.
  // False if it had to be dropped.
  asio::awaitable<bool> ready(Conn& conn);
  void wake_one_for_slot();
  bool closed_ = false;

  asio::any_io_executor ex_;
  PoolOptions options_;
  std::vector<std::unique_ptr<Conn>> idle_;
  // Waiters are served in order: a released connection goes straight to the first one, so a
  // newcomer can never barge ahead of a caller that has been waiting (except a kFirst one, which
  // queues behind earlier kFirst waiters only).
  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::unique_ptr<Conn> conn;
    bool slot_freed = false;  // a connection was dropped: the waiter may open a new one
    bool first = false;       // Priority::kFirst
  };
  std::deque<std::shared_ptr<Waiter>> waiters_;
  size_t open_ = 0;  // idle + leased + connecting
};

}  // namespace ap::store
