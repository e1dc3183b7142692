// Crons: runs created on a schedule (LangGraph's /runs/crons API). A cron belongs to an
// assistant and optionally a thread; each time it fires it creates a run from its stored
// payload: on its thread (multitask strategy enqueue unless the payload says otherwise), or, for
// a stateless cron, on a new thread that is deleted afterwards unless on_run_completed is
// "keep". Schedules are cron expressions in an IANA time zone (control/cron_schedule.h). Any
// API replica may fire due crons; a row lock (FOR UPDATE SKIP LOCKED) makes each firing happen
// once. Thread-safe (stateless; each call uses its scope's pool).
#pragma once

#include "control/common.h"

namespace ap::store {
class Pool;
}

namespace ap::control {

class Assistants;
class Runs;

class Crons {
 public:
  Crons(Assistants& assistants, Runs& runs) : assistants_(assistants), runs_(runs) {}

  // POST /runs/crons (thread_id empty) and /threads/{thread_id}/runs/crons.
  Task<Json> create(Scope s, std::string thread_id, Json body);
  // PATCH /runs/crons/{cron_id}: InvalidArgument for an empty body; NotFound.
  Task<Json> update(Scope s, std::string cron_id, Json body);
  Task<void> remove(Scope s, std::string cron_id);
  Task<Json> search(Scope s, Json body);
  Task<int64_t> count(Scope s, Json body);

  // Fires every due cron of every tenant (at most `limit`); returns how many runs it created.
  // Failures are logged: a cron whose thread or assistant is gone is disabled.
  Task<int> fire_due(store::Pool& pool, int limit = 50);

 private:
  Task<bool> fire(store::Pool& pool, const TenantId& tenant, const Uuid& cron);
  Assistants& assistants_;
  Runs& runs_;
};

}  // namespace ap::control
