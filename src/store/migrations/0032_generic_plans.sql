-- 0032: statements that ran on every run are planned once per connection, not on every call.
-- PostgreSQL plans a prepared statement (and each statement of a PL/pgSQL function) anew on
-- every execution while its generic plan's estimated cost exceeds its custom plans' average.
-- These did (counted with pg_stat_statements.track_planning on bench/api's rig), spending more
-- in the planner than in execution:
--  * the thread's checkpoints' and blobs' deletes of drop_thread_checkpoints (0.10 and 0.04 ms
--    of planning per run on bench/api's 3-node graph). Where a few long threads hold most
--    checkpoints (4 in the bench), ANALYZE counts that few distinct thread_ids, and the generic
--    plan expects a quarter of the table per thread: a sequential scan (715 buffers to delete
--    nothing), where the custom plan of a temporary thread's id takes the index.
--  * audit_append's insert from generate_series(1, n): 1,000 rows to a generic plan, n to a
--    custom one (0.08 ms per call).
--  * claim_runs' expired-lease walk and claim_runs_then_due's "anything due?" (0.12 and 0.21 ms
--    per claim; at 100 connections most runs wait in the queue and are claimed): p_reclaim
--    false folds a custom plan to nothing, which no generic plan beats. Their generic plans are
--    the custom ones with p_reclaim as a one-time filter.
-- A thread's checkpoints and blobs are now 50 per thread to the planner, whatever ANALYZE
-- counts (n_distinct, as migration 0030 does for runs): every thread-scoped statement's generic
-- plan takes the index, and these functions use generic plans only.
ALTER TABLE checkpoints ALTER COLUMN thread_id SET (n_distinct = -0.02);
ALTER TABLE checkpoint_blobs ALTER COLUMN thread_id SET (n_distinct = -0.02);
ALTER FUNCTION drop_thread_checkpoints() SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION audit_append(uuid, smallint[], text[], bytea[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION claim_runs(text, int, int, int, int, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION claim_runs_then_due(text, int, int, int, int, boolean) SET plan_cache_mode = force_generic_plan;
ANALYZE checkpoints;
ANALYZE checkpoint_blobs;
