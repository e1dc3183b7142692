// An asynchronous PostgreSQL connection on Asio, in libpq's pipeline mode: a batch of statements
// and one Sync go out in a single round trip. Statements are prepared once per connection and
// reused. Not thread-safe: a Conn lives on one executor and runs one pipeline at a time.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"

struct pg_conn;
struct pg_result;

namespace ap::store {

namespace asio = boost::asio;
template <class T>
using Task = asio::awaitable<Result<T>>;

// A parameter in text format; nullopt is SQL NULL.
using Param = std::optional<std::string>;

// Builds a parameter list. Use it instead of a braced list inside co_await expressions: g++ 12
// miscompiles initializer_list temporaries in coroutines ("array used as initializer").
template <class... A>
std::vector<Param> params(A&&... a) {
  std::vector<Param> v;
  v.reserve(sizeof...(A));
  (v.emplace_back(std::forward<A>(a)), ...);
  return v;
}

struct Statement {
  std::string_view sql;
  std::vector<Param> params;
};

// The rows of one statement's result (text format). Cheap to copy (shared).
class Rows {
 public:
  Rows() = default;
  explicit Rows(pg_result* r);
  int size() const;
  bool empty() const { return size() == 0; }
  int columns() const;
  std::string_view get(int row, int col) const;
  bool is_null(int row, int col) const;
  // Rows touched by INSERT/UPDATE/DELETE.
  int64_t affected() const;

 private:
  std::shared_ptr<pg_result> res_;
};

// Parses PostgreSQL's text form of a simple text[] ("{a,b}") whose elements need no quoting.
std::vector<std::string> parse_text_array(std::string_view text);
// PostgreSQL's text form of a text[] with every element quoted (elements may be NULL).
std::string text_array(const std::vector<std::string>& items);
std::string text_array(const std::vector<Param>& items);

// Maps a failed libpq result to an Error: unique violation -> AlreadyExists, row-level security
// and privilege violations -> PermissionDenied, bad text for a type -> InvalidArgument, ...
Error error_from_result(const pg_result* r);

class Conn {
 public:
  // Connects without blocking the executor. `conninfo` is a libpq URL or key=value string.
  // Unavailable if the server cannot be reached or refuses the login.
  // `options` add libpq keywords (e.g. keepalives) to those of `conninfo`.
  static Task<std::unique_ptr<Conn>> connect(
      asio::any_io_executor ex, std::string conninfo,
      std::vector<std::pair<std::string, std::string>> options = {});
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Sends all statements and one Sync in one round trip; returns one Rows per statement, or the
  // first statement's error (later statements were then skipped by the server).
  Task<std::vector<Rows>> pipeline(std::span<const Statement> statements);

  // Waits for notifications (after a LISTEN) and calls `on_notify(channel, payload)` for each,
  // until the connection fails; returns that failure.
  Task<void> listen_loop(const std::function<void(std::string_view, std::string_view)>& on_notify);

  // Cancels a pending wait (listen_loop returns Cancelled).
  void cancel() { boost::system::error_code ec; sock_.cancel(ec); }

  bool broken() const { return broken_; }
  // True when the server says a transaction block is open (or failed) on this connection.
  bool in_transaction() const;

 private:
  Conn(asio::any_io_executor ex, pg_conn* c);
  Task<pg_result*> next_result();
  Task<void> flush();
  Error fail(std::string what);

  pg_conn* conn_;
  asio::posix::stream_descriptor sock_;
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
  };
  // sql -> statement name; looked up by string_view without allocating.
  std::unordered_map<std::string, std::string, SqlHash, std::equal_to<>> prepared_;
  uint64_t next_statement_ = 0;
  bool broken_ = false;
  bool busy_ = false;
};

}  // namespace ap::store
