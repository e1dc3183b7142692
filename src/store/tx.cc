#include "store/tx.h"

namespace ap::store {
namespace {

constexpr std::string_view kBegin = "BEGIN";
constexpr std::string_view kSetTenant = "SELECT set_config('app.tenant_id', $1, true)";
constexpr std::string_view kCommit = "COMMIT";
constexpr std::string_view kRollback = "ROLLBACK";

}  // namespace

Task<Tx> Tx::begin(Pool& pool, const TenantId& tenant) {
  AP_CO_ASSIGN_OR_RETURN(auto lease, co_await pool.acquire());
  co_return Tx(std::move(lease), tenant);
}

Task<Tx> Tx::begin_platform(Pool& pool, Pool::Priority priority) {
  AP_CO_ASSIGN_OR_RETURN(auto lease, co_await pool.acquire(priority));
  co_return Tx(std::move(lease), std::nullopt);
}

void Tx::finish() {
  done_ = true;
  lease_ = Pool::Lease();  // the connection back to the pool now, not when the Tx goes
}

Task<Rows> Tx::run(std::string_view sql, std::vector<Param> params, bool commit) {
  std::vector<Statement> one;
  one.push_back({sql, std::move(params)});
  AP_CO_ASSIGN_OR_RETURN(auto rows, co_await exec_all(std::move(one), commit));
  co_return std::move(rows.front());
}

Task<std::vector<Rows>> Tx::exec_all(std::vector<Statement> statements, bool commit) {
  if (done_) co_return Error::failed_precondition("transaction already finished");
  if (statements.empty() && !commit) co_return std::vector<Rows>{};
  std::vector<Statement> batch;
  batch.reserve(statements.size() + 3);
  if (!started_) {
    batch.push_back({kBegin, {}});
    // Isolation: transaction-local (third argument true), so the setting ends with this unit of
    // work and a pooled connection never carries one tenant into another's request.
    if (tenant_) batch.push_back({kSetTenant, {tenant_->to_string()}});
  }
  const size_t first = batch.size(), n = statements.size();
  for (auto& st : statements) batch.push_back(std::move(st));
  if (commit) batch.push_back({kCommit, {}});
  auto results = co_await lease_->pipeline(batch);
  started_ = true;
  if (!results) {
    if (!lease_->broken() && lease_->in_transaction()) {
      Statement rb{kRollback, {}};
      (void)co_await lease_->pipeline({&rb, 1});
    }
    finish();
    co_return results.error();
  }
  if (commit) finish();
  co_return std::vector<Rows>(std::make_move_iterator(results->begin() + static_cast<long>(first)),
                              std::make_move_iterator(results->begin() + static_cast<long>(first + n)));
}

Task<Rows> Tx::exec(std::string_view sql, std::vector<Param> params) {
  return run(sql, std::move(params), false);
}

Task<Rows> Tx::exec_and_commit(std::string_view sql, std::vector<Param> params) {
  return run(sql, std::move(params), true);
}

Task<void> Tx::commit() {
  if (done_) co_return Error::failed_precondition("transaction already finished");
  if (!started_) {  // nothing was sent: nothing to commit
    finish();
    co_return ok_status();
  }
  Statement c{kCommit, {}};
  auto r = co_await lease_->pipeline({&c, 1});
  finish();
  if (!r) co_return r.error();
  co_return ok_status();
}

Task<Rows> tenant_query(Pool& pool, const TenantId& tenant, std::string_view sql,
                        std::vector<Param> params) {
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await Tx::begin(pool, tenant));
  co_return co_await tx.exec_and_commit(sql, std::move(params));
}

Task<Rows> platform_query(Pool& pool, std::string_view sql, std::vector<Param> params, Pool::Priority priority) {
  AP_CO_ASSIGN_OR_RETURN(auto tx, co_await Tx::begin_platform(pool, priority));
  co_return co_await tx.exec_and_commit(sql, std::move(params));
}

Task<Rows> notify_after_commit(Pool& pool, std::string_view channel, std::vector<std::string> payloads) {
  co_return co_await platform_query(
      pool, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, p) FROM unnest($2::text[]) AS p",
      params(std::string(channel), text_array(payloads)));
}

size_t push_generic_plan(std::vector<Statement>& batch, Statement st) {
  batch.push_back({"SET LOCAL plan_cache_mode = force_generic_plan", {}});
  batch.push_back(std::move(st));
  batch.push_back({"SET LOCAL plan_cache_mode TO DEFAULT", {}});
  return batch.size() - 2;
}

}  // namespace ap::store
