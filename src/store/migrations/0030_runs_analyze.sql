-- 0030: the planner is told that a thread has many runs, `runs` is analyzed after 20,000 changed
-- rows (plus a tenth of the table) instead of 50, and its JSON columns are left out of its
-- statistics, as the audit log's bodies and hashes are.
--
-- A run's start looks for its thread's active runs (tenant_id, thread_id, status pending or
-- running), which the partial index runs_thread_active answers from a few entries. Its
-- statistics say how many runs a thread has; where most runs are stateless (one run on a
-- temporary thread), ANALYZE finds thread ids all but unique, and under load the planner took
-- runs_thread instead, walking every run the thread ever had: on bench/api's thread runs
-- (3-node graph, 10 connections) 80-151 buffers and 0.20-0.29 ms a start, against 3-5 buffers and
-- 0.02 ms with the setting below (PostgreSQL's CPU per run 4.0 → 3.6-3.9 ms). n_distinct = -0.05
-- says 20 runs per thread whatever ANALYZE finds (the server's statements are prepared, and their
-- generic plans go by it). The statements that look up a thread's runs still go through
-- runs_thread; the others go by key or through a partial index.
--
-- Every run inserts its row and updates it at least twice, and ended stateless runs are swept
-- ten minutes later (0021), so under load the table keeps a few tens of thousands of rows, and
-- PostgreSQL's default analyze threshold (50 + a tenth of the table changed) had autovacuum
-- ANALYZE it at almost every round (5 s in `agentplane dev`). Each ANALYZE sorted a 30,000-row
-- sample of every column, the JSON ones included: 650 ms of a core each time at 21,000 rows under
-- bench/api's load, 180 ms without the JSON columns, which no statement filters on. Vacuums, which
-- keep the row count, the visibility map and the indexes clean, stay as migration 0022 sets them.
-- The audit log is append-only and never filtered on its bodies or hashes (its ANALYZE took
-- 330-400 ms at 500,000 rows).
-- Setting these takes no lock that blocks reads or writes.
ALTER TABLE runs ALTER COLUMN thread_id SET (n_distinct = -0.05);
-- A thread belongs to one tenant: without this, the planner multiplies the selectivities of
-- tenant_id and thread_id, and with a few tens of tenants expects a tenant's thread to have
-- less than one run again.
CREATE STATISTICS runs_tenant_thread (dependencies) ON tenant_id, thread_id FROM runs;
ALTER TABLE runs SET (autovacuum_analyze_threshold = 20000);
ALTER TABLE runs ALTER COLUMN kwargs SET STATISTICS 0, ALTER COLUMN result SET STATISTICS 0,
  ALTER COLUMN metadata SET STATISTICS 0, ALTER COLUMN watchers SET STATISTICS 0;
ALTER TABLE audit_events ALTER COLUMN body SET STATISTICS 0, ALTER COLUMN hash SET STATISTICS 0;
-- The statistics that the settings above change, made now rather than at the next autovacuum
-- ANALYZE (under the new threshold, long after on a quiet deployment).
ANALYZE runs;
