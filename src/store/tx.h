// A unit of tenant work: one transaction that begins with
// `SELECT set_config('app.tenant_id', <tenant>, true)`, so row-level security sees only that
// tenant. BEGIN and set_config are not sent on their own: they go out pipelined with the first
// statement, and `exec_and_commit` sends the last statement with COMMIT, so a single-statement
// unit of work is one round trip. Not thread-safe; lives on its pool's executor.
#pragma once

#include <optional>
#include <string>

#include "common/ids.h"
#include "store/pool.h"

namespace ap::store {

class Tx {
 public:
  // Begins a unit of work for `tenant` (nothing is sent yet). Unavailable if no connection.
  static Task<Tx> begin(Pool& pool, const TenantId& tenant);
  // Begins a unit of platform work with no tenant set: tenant tables show nothing; only the
  // platform's SECURITY DEFINER functions cross tenants.
  static Task<Tx> begin_platform(Pool& pool, Pool::Priority priority = Pool::Priority::kNormal);

  Tx(Tx&&) = default;
  Tx& operator=(Tx&&) = default;
  // An unfinished Tx is rolled back before its connection is used again.
  ~Tx() = default;

  // Runs one statement in the transaction. On error the transaction is rolled back and done.
  Task<Rows> exec(std::string_view sql, std::vector<Param> params = {});
  // Runs the last statement and COMMIT in one round trip.
  Task<Rows> exec_and_commit(std::string_view sql, std::vector<Param> params = {});
  // Runs `statements` in order in one round trip (then COMMIT with them if `commit`); the rows
  // of each. The first one that fails rolls the transaction back, and the rest do not run.
  Task<std::vector<Rows>> exec_all(std::vector<Statement> statements, bool commit);
  Task<void> commit();

 private:
  Tx(Pool::Lease lease, std::optional<TenantId> tenant)
      : lease_(std::move(lease)), tenant_(std::move(tenant)) {}
  Task<Rows> run(std::string_view sql, std::vector<Param> params, bool commit);
  // Committed, or failed and rolled back: the connection goes back to the pool at once (the
  // caller may go on to other work that takes one).
  void finish();

  Pool::Lease lease_;
  std::optional<TenantId> tenant_;
  bool started_ = false;
  bool done_ = false;
};

// One statement as its own unit of tenant work: BEGIN, set_config, statement, COMMIT in a
// single round trip.
Task<Rows> tenant_query(Pool& pool, const TenantId& tenant, std::string_view sql,
                        std::vector<Param> params = {});
// One statement as platform work (no tenant set), in one round trip.
Task<Rows> platform_query(Pool& pool, std::string_view sql, std::vector<Param> params = {},
                          Pool::Priority priority = Pool::Priority::kNormal);
// NOTIFY `channel` once per payload, in a transaction of its own that does not wait for its WAL
// flush. Send it after the commit of what it announces: a NOTIFY inside a durable transaction
// holds a database-wide lock through that transaction's flush, so every transaction that
// notifies commits one at a time. (A lost notification is as if never sent: listeners must
// also poll.)
Task<Rows> notify_after_commit(Pool& pool, std::string_view channel, std::vector<std::string> payloads);

// Appends `st` to `batch` between a switch of the transaction to generic plans and back to the
// default, and returns its index. PostgreSQL plans a prepared statement anew on every execution
// while its generic plan's estimated cost exceeds the average of its custom plans'
// (plan_cache_mode auto), and some of ours spent more time in the planner than in execution
// that way (a thread's active runs at a run's start: 0.2 ms; the end's "thread deleted
// meanwhile?": 0.5). Only for statements whose generic plan is right whatever the statistics
// say (docs/database.md "Planner settings").
size_t push_generic_plan(std::vector<Statement>& batch, Statement st);

}  // namespace ap::store
