-- 0031: the index of a thread's runs leads with thread_id, so that it is never taken for a run's
-- look-up by its key.
-- runs_thread was (tenant_id, thread_id, created_at). For a tenant the statistics do not know
-- yet (one made since the last ANALYZE), the planner expects no rows for its tenant_id, and a
-- look-up by the key, tenant_id and run_id, then costs exactly as much through runs_thread (its
-- tenant_id alone, run_id as a filter) as through runs_pkey: it took runs_thread, and walked
-- every run of the tenant for one of them. Measured on one thread of 400 runs: the run's end
-- (which reads the run's created_at twice) visited 75 buffers instead of a dozen. With thread_id
-- first, a statement that names no thread cannot use the index at all; those that name one (a
-- thread's runs, in order) use it as before.
-- Building it locks `runs` against writes while the migration runs: on a large table, migrate
-- before starting the servers.
CREATE INDEX runs_thread_first ON runs (thread_id, tenant_id, created_at);
DROP INDEX runs_thread;
ALTER INDEX runs_thread_first RENAME TO runs_thread;
