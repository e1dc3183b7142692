#include "store/sync_conn.h"

#include <libpq-fe.h>

#include <optional>

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

Result<Rows> SyncConn::exec_binary(std::string_view sql, const std::vector<Param>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  std::string q(sql);
  return checked(conn_, PQexecParams(conn_, q.c_str(), static_cast<int>(values.size()), nullptr,
                                     values.data(), nullptr, nullptr, 1));
}

Status SyncConn::copy_out(std::string_view copy_sql, const std::function<bool(std::string_view)>& row) {
  std::string q(copy_sql);
  pg_result* r = PQexec(conn_, q.c_str());
  if (!r || PQresultStatus(r) != PGRES_COPY_OUT) {
    auto e = checked(conn_, r);
    return e ? Status(Error::internal("not a COPY TO STDOUT statement")) : Status(e.error());
  }
  PQclear(r);
  bool wanted = true;
  for (;;) {
    char* buf = nullptr;
    int n = PQgetCopyData(conn_, &buf, 0);
    if (n == -1) break;  // done
    if (n == -2) {
      broken_ = true;
      return Error::unavailable("COPY failed: " + one_line(PQerrorMessage(conn_)));
    }
    if (wanted) wanted = row(std::string_view(buf, static_cast<size_t>(n)));
    PQfreemem(buf);
  }
  AP_RETURN_IF_ERROR(checked(conn_, PQgetResult(conn_)));
  while (pg_result* extra = PQgetResult(conn_)) PQclear(extra);
  return ok_status();
}

Status SyncConn::exec_script(std::string_view sql) {
  std::string q(sql);
  AP_RETURN_IF_ERROR(checked(conn_, PQexec(conn_, q.c_str())));
  return ok_status();
}

bool SyncConn::healthy() const { return !broken_ && PQstatus(conn_) == CONNECTION_OK; }

Result<std::vector<Rows>> SyncConn::pipeline(std::span<const Statement> statements) {
  // After a protocol failure the connection's state is unknown: it is never reused.
  auto lost = [&](const char* what) -> Error {
    broken_ = true;
    return Error::unavailable(std::string(what) + ": " + one_line(PQerrorMessage(conn_)));
  };
  // Statements built from request shapes (list filters) could grow the cache without end.
  if (prepared_.size() >= kMaxPrepared) {
    PQclear(PQexec(conn_, "DEALLOCATE ALL"));
    prepared_.clear();
  }
  if (!PQenterPipelineMode(conn_)) return lost("cannot enter pipeline mode");
  struct Sent {
    size_t index;
    bool prep;
  };
  std::vector<Sent> sent;
  std::unordered_map<std::string_view, std::string> new_names;  // prepared in this pipeline
  std::vector<const char*> values;
  bool queued = true;
  for (size_t i = 0; i < statements.size() && queued; ++i) {
    const auto& st = statements[i];
    const std::string* name;
    std::string sql(st.sql);
    if (auto it = prepared_.find(sql); it != prepared_.end()) {
      name = &it->second;
    } else if (auto nit = new_names.find(st.sql); nit != new_names.end()) {
      name = &nit->second;
    } else {
      auto& n = new_names[st.sql];
      n = "aps" + std::to_string(next_name_++);
      name = &n;
      queued = PQsendPrepare(conn_, n.c_str(), sql.c_str(), static_cast<int>(st.params.size()),
                             nullptr) != 0;
      if (queued) sent.push_back({i, true});
    }
    values.clear();
    for (const auto& p : st.params) values.push_back(p ? p->c_str() : nullptr);
    queued = queued && PQsendQueryPrepared(conn_, name->c_str(), static_cast<int>(values.size()),
                                           values.data(), nullptr, nullptr, 0) != 0;
    if (queued) sent.push_back({i, false});
  }
  if (!queued || !PQpipelineSync(conn_) || PQflush(conn_) != 0) {
    return lost("cannot send to PostgreSQL");
  }
  std::vector<Rows> out(statements.size());
  std::optional<Error> first_error;
  for (const auto& s : sent) {
    pg_result* r = PQgetResult(conn_);
    if (!r) return lost("PostgreSQL ended a result early");
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
    if (pg_result* end = PQgetResult(conn_)) {  // each command's results end with a null
      PQclear(end);
      return lost("unexpected extra result from PostgreSQL");
    }
  }
  pg_result* sync = PQgetResult(conn_);
  bool sync_ok = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  if (sync) PQclear(sync);
  if (!sync_ok) return lost("PostgreSQL pipeline lost its sync");
  if (!PQexitPipelineMode(conn_)) return lost("cannot leave pipeline mode");
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PQclear(PQexec(conn_, "ROLLBACK"));
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) broken_ = true;
    if (!first_error) first_error = Error::internal("a pipeline left its transaction open");
  }
  if (first_error) return *first_error;
  return out;
}

SyncPool::SyncPool(std::string conninfo, size_t size)
    : conninfo_(std::move(conninfo)), size_(size == 0 ? 1 : size) {}

SyncPool::~SyncPool() = default;

SyncPool::Lease::~Lease() {
  if (conn_) pool_->release(std::move(conn_));
}

Result<SyncPool::Lease> SyncPool::acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
  if (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(c));
  }
  ++open_;
  lock.unlock();
  auto c = SyncConn::connect(conninfo_);
  if (!c) {
    lock.lock();
    --open_;
    cv_.notify_one();
    return c.error();
  }
  return Lease(this, std::move(*c));
}

void SyncPool::release(std::unique_ptr<SyncConn> c) {
  std::lock_guard lock(mu_);
  if (c->healthy()) {
    idle_.push_back(std::move(c));
  } else {
    --open_;
  }
  cv_.notify_one();
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
