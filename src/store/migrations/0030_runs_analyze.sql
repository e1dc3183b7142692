-- 0030: the run queue's table is analyzed after a million changed rows (plus a tenth of the
-- table), not after a tenth of it, and its JSON columns are left out of its statistics.
-- Every run inserts its row and updates it at least twice, and ended stateless runs are
-- swept ten minutes later (0021), so under load the table keeps a few tens of thousands of
-- rows and PostgreSQL's default (50 + a tenth of the table changed) had autovacuum ANALYZE it
-- at almost every round (5 s in `agentplane dev`). Each ANALYZE sorted a 30,000-row sample of
-- every column, `kwargs`, `result` and `metadata` included: 650 ms of a core each time on 2
-- cores with bench/api's load (21,000 rows), a tenth of a core spent on statistics.
-- Nothing is planned on those statistics: every statement on the table looks runs up by their
-- key or through a partial index (pending, running, active per thread, temporary ended), and no
-- statement filters on the JSON columns. Vacuums, which keep the row count, the visibility map
-- and the indexes clean, are left as migration 0022 sets them.
-- The audit log is append-only and never filtered on its bodies or hashes: those columns go
-- out of its statistics too (its ANALYZE took 330-400 ms at 500,000 rows).
-- Setting these takes no lock that blocks reads or writes.
ALTER TABLE runs SET (autovacuum_analyze_threshold = 1000000);
ALTER TABLE runs ALTER COLUMN kwargs SET STATISTICS 0, ALTER COLUMN result SET STATISTICS 0,
  ALTER COLUMN metadata SET STATISTICS 0, ALTER COLUMN watchers SET STATISTICS 0;
ALTER TABLE audit_events ALTER COLUMN body SET STATISTICS 0, ALTER COLUMN hash SET STATISTICS 0;
