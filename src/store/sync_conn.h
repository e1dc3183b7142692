// A blocking PostgreSQL connection for command-line work (migrations, dev set-up, tests).
// Blocks. Never use it on a server's io_context thread. Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/conn.h"

namespace ap::store {

class SyncConn {
 public:
  // Unavailable if the server cannot be reached or refuses the login.
  static Result<std::unique_ptr<SyncConn>> connect(const std::string& conninfo);
  ~SyncConn();
  // Runs one statement with text parameters (extended protocol, so one statement only).
  Result<Rows> exec(std::string_view sql, const std::vector<Param>& params = {});
  // Runs a script of several statements (simple protocol, no parameters).
  Status exec_script(std::string_view sql);

 private:
  explicit SyncConn(pg_conn* c) : conn_(c) {}
  pg_conn* conn_;
};

// Quotes `s` as a SQL string literal ('it''s'). For the few DDL statements that cannot take
// parameters (passwords in ALTER ROLE); everything else uses parameters.
std::string quote_literal(std::string_view s);

}  // namespace ap::store
