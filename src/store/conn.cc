#include "store/conn.h"

#include <libpq-fe.h>

#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <cstring>

#include "telemetry/log.h"

namespace ap::store {
namespace {

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

struct BusyGuard {
  bool& b;
  explicit BusyGuard(bool& x) : b(x) { b = true; }
  ~BusyGuard() { b = false; }
};

}  // namespace

Rows::Rows(pg_result* r) : res_(r, PQclear) {}
int Rows::size() const { return res_ ? PQntuples(res_.get()) : 0; }
int Rows::columns() const { return res_ ? PQnfields(res_.get()) : 0; }
std::string_view Rows::get(int row, int col) const {
  return {PQgetvalue(res_.get(), row, col),
          static_cast<size_t>(PQgetlength(res_.get(), row, col))};
}
bool Rows::is_null(int row, int col) const { return PQgetisnull(res_.get(), row, col); }
int64_t Rows::affected() const {
  if (!res_) return 0;
  const char* n = PQcmdTuples(res_.get());
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}

std::vector<std::string> parse_text_array(std::string_view s) {
  std::vector<std::string> out;
  if (s.size() < 2) return out;
  s = s.substr(1, s.size() - 2);
  while (!s.empty()) {
    auto comma = s.find(',');
    out.emplace_back(s.substr(0, comma));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

namespace {

void append_quoted(std::string& out, std::string_view item) {
  out += '"';
  for (char c : item) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

}  // namespace

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    append_quoted(out, items[i]);
  }
  return out + '}';
}

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

Error error_from_result(const pg_result* r) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  std::string msg = primary ? primary : "database error";
  std::string_view s = state ? state : "";
  if (s == "23505") return Error::already_exists(msg);
  if (s == "42501") return Error::permission_denied(msg);
  // 22P05: a string with U+0000 into jsonb.
  if (s == "22P02" || s == "22P05" || s == "22007" || s == "22008" || s == "22001" || s == "22023" || s == "23514" ||
      s == "23502")
    return Error::invalid_argument(msg);
  if (s == "23503") return Error::failed_precondition(msg);
  if (s == "40001" || s == "40P01") return Error::aborted(msg);
  if (s == "57014") return Error::deadline_exceeded(msg);
  if (s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03")
    return Error::unavailable(msg);
  return Error::internal(msg + (state ? std::string(" (SQLSTATE ") + state + ")" : ""));
}

Conn::Conn(asio::any_io_executor ex, pg_conn* c) : conn_(c), sock_(ex) {}

Conn::~Conn() {
  // The socket belongs to libpq: release it from Asio so that only PQfinish closes it.
  if (sock_.is_open()) sock_.release();
  PQfinish(conn_);
}

bool Conn::in_transaction() const {
  auto st = PQtransactionStatus(conn_);
  return st == PQTRANS_INTRANS || st == PQTRANS_INERROR || st == PQTRANS_ACTIVE;
}

Error Conn::fail(std::string what) {
  broken_ = true;
  std::string msg = std::move(what);
  if (const char* e = PQerrorMessage(conn_); e && *e) {
    msg += ": ";
    msg += e;
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  }
  return Error::unavailable(msg);
}

Task<std::unique_ptr<Conn>> Conn::connect(asio::any_io_executor ex, std::string conninfo,
                                           std::vector<std::pair<std::string, std::string>> options) {
  // conninfo (URL or key=value) goes in as an expandable dbname; options come after it.
  std::vector<const char*> keys = {"dbname"}, values = {conninfo.c_str()};
  for (const auto& [k, v] : options) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  pg_conn* c = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (!c) co_return Error::unavailable("out of memory creating a database connection");
  std::unique_ptr<Conn> conn(new Conn(ex, c));
  if (PQstatus(c) == CONNECTION_BAD) co_return conn->fail("cannot connect to PostgreSQL");
  auto poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) co_return conn->fail("cannot connect to PostgreSQL");
    // libpq may switch sockets between attempts (several hosts): re-wrap each time.
    if (conn->sock_.is_open()) conn->sock_.release();
    boost::system::error_code ec;
    conn->sock_.assign(PQsocket(c), ec);
    if (ec) co_return conn->fail("cannot watch the database socket");
    auto wait = poll == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                              : asio::posix::stream_descriptor::wait_write;
    auto [werr] = co_await conn->sock_.async_wait(wait, kUse);
    if (werr) co_return conn->fail("database socket error");
    poll = PQconnectPoll(c);
  }
  if (PQsetnonblocking(c, 1) != 0 || PQenterPipelineMode(c) != 1)
    co_return conn->fail("cannot enter pipeline mode");
  co_return conn;
}

Task<void> Conn::flush() {
  for (;;) {
    int r = PQflush(conn_);
    if (r == 0) co_return ok_status();
    if (r < 0) co_return fail("cannot send to PostgreSQL");
    auto [ec] = co_await sock_.async_wait(asio::posix::stream_descriptor::wait_write, kUse);
    if (ec) co_return fail("database socket error");
    // The server may be waiting for us to read before it reads more: drain input too.
    if (!PQconsumeInput(conn_)) co_return fail("cannot read from PostgreSQL");
  }
}

Task<pg_result*> Conn::next_result() {
  while (PQisBusy(conn_)) {
    auto [ec] = co_await sock_.async_wait(asio::posix::stream_descriptor::wait_read, kUse);
    if (ec) co_return fail("database socket error");
    if (!PQconsumeInput(conn_)) co_return fail("connection to PostgreSQL lost");
  }
  co_return PQgetResult(conn_);
}

Task<std::vector<Rows>> Conn::pipeline(std::span<const Statement> statements) {
  if (broken_) co_return Error::unavailable("database connection is broken");
  if (busy_) co_return Error::internal("concurrent use of one database connection");
  BusyGuard guard(busy_);
  // What each queued command is: a Prepare of statement i (prep=true) or its execution.
  struct Sent {
    size_t index;
    bool prep;
  };
  std::vector<Sent> sent;
  std::unordered_map<std::string_view, std::string> new_names;  // prepared in this pipeline
  std::vector<const char*> values;
  for (size_t i = 0; i < statements.size(); ++i) {
    const auto& st = statements[i];
    const std::string* name;
    if (auto it = prepared_.find(st.sql); it != prepared_.end()) {
      name = &it->second;
    } else if (auto nit = new_names.find(st.sql); nit != new_names.end()) {
      name = &nit->second;
    } else {
      auto& n = new_names[st.sql];
      n = "ap" + std::to_string(next_statement_++);
      name = &n;
      std::string sql(st.sql);
      if (!PQsendPrepare(conn_, n.c_str(), sql.c_str(), static_cast<int>(st.params.size()),
                         nullptr))
        co_return fail("cannot queue a statement");
      sent.push_back({i, true});
    }
    values.clear();
    for (const auto& p : st.params) values.push_back(p ? p->c_str() : nullptr);
    if (!PQsendQueryPrepared(conn_, name->c_str(), static_cast<int>(values.size()),
                             values.data(), nullptr, nullptr, 0))
      co_return fail("cannot queue a statement");
    sent.push_back({i, false});
  }
  if (!PQpipelineSync(conn_)) co_return fail("cannot queue a sync");
  AP_CO_RETURN_IF_ERROR(co_await flush());

  std::vector<Rows> out(statements.size());
  std::optional<Error> first_error;
  for (const auto& s : sent) {
    AP_CO_ASSIGN_OR_RETURN(pg_result * r, co_await next_result());
    if (!r) co_return fail("PostgreSQL ended a result early");
    auto status = PQresultStatus(r);
    if (status == PGRES_FATAL_ERROR) {
      if (!first_error) first_error = error_from_result(r);
      PQclear(r);
    } else if (status == PGRES_PIPELINE_ABORTED) {
      PQclear(r);
    } else if (s.prep) {
      auto sql = statements[s.index].sql;
      prepared_.emplace(std::string(sql), new_names[sql]);
      PQclear(r);
    } else {
      out[s.index] = Rows(r);
    }
    // Each command's results end with a null result.
    AP_CO_ASSIGN_OR_RETURN(pg_result * end, co_await next_result());
    if (end) {
      PQclear(end);
      co_return fail("unexpected extra result from PostgreSQL");
    }
  }
  AP_CO_ASSIGN_OR_RETURN(pg_result * sync, co_await next_result());
  bool sync_ok = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  if (sync) PQclear(sync);
  if (!sync_ok) co_return fail("PostgreSQL pipeline lost its sync");
  if (first_error) co_return *first_error;
  co_return out;
}

Task<void> Conn::listen_loop(
    const std::function<void(std::string_view, std::string_view)>& on_notify) {
  for (;;) {
    auto [ec] = co_await sock_.async_wait(asio::posix::stream_descriptor::wait_read, kUse);
    if (ec == asio::error::operation_aborted) co_return Error::cancelled("listener stopped");
    if (ec) co_return fail("database socket error");
    if (!PQconsumeInput(conn_)) co_return fail("connection to PostgreSQL lost");
    while (PGnotify* n = PQnotifies(conn_)) {
      on_notify(n->relname, n->extra ? n->extra : "");
      PQfreemem(n);
    }
  }
}

}  // namespace ap::store
