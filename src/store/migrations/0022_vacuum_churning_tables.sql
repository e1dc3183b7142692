-- 0022: the tables that every run, checkpoint and model call rewrites are vacuumed as they
-- churn, not when a fifth of them is dead (PostgreSQL's default scale factor).
-- Each run inserts and deletes a row of running_runs and updates its row of runs twice; a
-- stateless run also inserts and deletes a thread with its checkpoints; audit_heads and
-- usage_hourly take an update per batch on a handful of rows. Until a vacuum, every dead
-- version stays in the indexes, and the slot checks of take_run_slot, the thread lookups and
-- the checkpoint reads visit them again and again (in profiles: heap_hot_search_buffer,
-- _bt_killitems, heap_page_prune_opt). With the defaults, after a 15 s load on one tenant the
-- next runs cost up to twice the database CPU (docs/database.md, "Vacuum").
-- Tables of a few rows per tenant are vacuumed after 500 dead rows, the others after 2% of
-- their rows (plus PostgreSQL's base threshold of 50). The queue's own tables (small, or kept
-- small by the sweeps) skip the cost-based delay: their vacuums are short and frequent. The
-- checkpoint and event tables, which grow with the conversations, keep it: a vacuum of a large
-- table scans its indexes in full and is better throttled. How often autovacuum looks is the server's
-- autovacuum_naptime (`dev` sets 5 s; docs/database.md says what to set in production).
-- Setting these takes no lock that blocks reads or writes.
ALTER TABLE running_runs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
                              autovacuum_vacuum_cost_delay = 0);
ALTER TABLE audit_heads SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
                             autovacuum_vacuum_cost_delay = 0);
ALTER TABLE usage_hourly SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE runs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE run_events SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE threads SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE checkpoints SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE checkpoint_blobs SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE checkpoint_writes SET (autovacuum_vacuum_scale_factor = 0.02);
