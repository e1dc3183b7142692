// Blocking PostgreSQL connections for code that runs on its own threads: command-line work
// (migrations, dev set-up, tests) and the graph engine's checkpointer, which runs inside a
// worker's thread. Blocks: never use these on a server's io_context thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/conn.h"

namespace ap::store {

// One connection. Not thread-safe.
class SyncConn {
 public:
  // Unavailable if the server cannot be reached or refuses the login.
  static Result<std::unique_ptr<SyncConn>> connect(const std::string& conninfo);
  ~SyncConn();
  // Runs one statement with text parameters (extended protocol, so one statement only).
  Result<Rows> exec(std::string_view sql, const std::vector<Param>& params = {});
  // The same with results in PostgreSQL's binary format (bytea raw, integers big-endian): for
  // bulk reads of binary columns.
  Result<Rows> exec_binary(std::string_view sql, const std::vector<Param>& params = {});
  // Runs `COPY ... TO STDOUT` and hands each data row (one CopyData message) to `row`, which
  // may stop the copy by returning false. For streaming large reads.
  Status copy_out(std::string_view copy_sql, const std::function<bool(std::string_view)>& row);
  // Runs a script of several statements (simple protocol, no parameters).
  Status exec_script(std::string_view sql);
  // Sends every statement and one Sync in a single round trip (libpq pipeline mode); statements
  // are prepared once per connection. Returns one Rows per statement, or the first failure
  // (the server skips the statements after it). A transaction the statements left open or
  // failed is rolled back before returning an error, so the connection is always reusable.
  Result<std::vector<Rows>> pipeline(std::span<const Statement> statements);
  // False once the connection is lost; a pool drops it.
  bool healthy() const;

 private:
  explicit SyncConn(pg_conn* c) : conn_(c) {}
  static constexpr size_t kMaxPrepared = 256;
  uint64_t next_name_ = 0;
  pg_conn* conn_;
  bool broken_ = false;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
};

// A fixed-size set of connections shared by threads: acquire() waits for a free one.
// Connections are opened on first need and replaced when lost. Thread-safe.
class SyncPool {
 public:
  SyncPool(std::string conninfo, size_t size);
  ~SyncPool();

  class Lease {
   public:
    Lease(SyncPool* pool, std::unique_ptr<SyncConn> c) : pool_(pool), conn_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    SyncConn* operator->() const { return conn_.get(); }
    SyncConn& operator*() const { return *conn_; }

   private:
    SyncPool* pool_;
    std::unique_ptr<SyncConn> conn_;
  };
  // A connection for the caller alone until the lease ends. Unavailable if none can be opened.
  Result<Lease> acquire();

 private:
  void release(std::unique_ptr<SyncConn> c);
  const std::string conninfo_;
  const size_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<SyncConn>> idle_;
  size_t open_ = 0;  // idle + leased
};

// Quotes `s` as a SQL string literal ('it''s'). For the few DDL statements that cannot take
// parameters (passwords in ALTER ROLE); everything else uses parameters.
std::string quote_literal(std::string_view s);

}  // namespace ap::store
