-- 0020: a pending run no longer wakes the workers from a trigger inside the transaction that
-- inserts it. NOTIFY serialises the commits of the transactions that send one (a lock held
-- until after each commit's WAL flush), so with many runs queuing at once every insert waited
-- for the previous one's flush. The API now sends the NOTIFY after the commit, in a transaction
-- of its own that does not wait for its flush (src/control/runs.cc, wake_workers).
DROP TRIGGER runs_pending_notify ON runs;
DROP FUNCTION notify_run_pending();
