#include "store/sync_conn.h"

#include <libpq-fe.h>

namespace ap::store {
namespace {

// libpq's messages span lines ("...failed\n\tIs the server running..."): callers print one.
std::string one_line(std::string s) {
  for (auto& c : s)
    if (c == '\n' || c == '\t') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  std::string out;
  for (char c : s)
    if (!(c == ' ' && !out.empty() && out.back() == ' ')) out += c;
  return out;
}

}  // namespace

Result<std::unique_ptr<SyncConn>> SyncConn::connect(const std::string& conninfo) {
  pg_conn* c = PQconnectdb(conninfo.c_str());
  if (!c) return Error::unavailable("out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = one_line(PQerrorMessage(c));
    PQfinish(c);
    return Error::unavailable("cannot connect to PostgreSQL: " + msg);
  }
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<SyncConn>(new SyncConn(c));
}

SyncConn::~SyncConn() { PQfinish(conn_); }

namespace {

// The result as Rows, or its error.
Result<Rows> checked(pg_conn* conn, pg_result* r) {
  if (!r) return Error::unavailable(one_line(PQerrorMessage(conn)));
  auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Error e = error_from_result(r);
    PQclear(r);
    return e;
  }
  return Rows(r);
}

}  // namespace

Result<Rows> SyncConn::exec(std::string_view sql, const std::vector<Param>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  std::string q(sql);
  return checked(conn_, PQexecParams(conn_, q.c_str(), static_cast<int>(values.size()), nullptr,
                                     values.data(), nullptr, nullptr, 0));
}

Status SyncConn::exec_script(std::string_view sql) {
  std::string q(sql);
  AP_RETURN_IF_ERROR(checked(conn_, PQexec(conn_, q.c_str())));
  return ok_status();
}

std::string quote_literal(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  // A backslash in a standard-conforming string is literal; E'' strings are never produced.
  return out;
}

}  // namespace ap::store
