-- 0021: the sweep deletes what stateless runs leave behind.
-- A stateless run (POST /runs...) deletes its temporary thread when its worker ends it, but its
-- run row stayed for ever: every stateless run left ~2 kB in `runs` and its indexes, which grew
-- without bound. And a run that ended without its worker (cancelled while still queued, or out
-- of attempts after its workers were lost) left its temporary thread too.
-- Now such a thread goes p_keep after its run ended, and the run row goes once its thread is
-- gone, kept as long as the run's event log is (p_keep, or p_keep_resumable for a resumable
-- stream): a /wait on another replica reads the result from it, and a client may join or
-- rejoin the run meanwhile. An index holds just those rows (ended, temporary: kwargs.temporary,
-- set for on_completion=delete), so the sweep does not scan the table. Otherwise as in 0008.
CREATE INDEX runs_temporary_ended ON runs (updated_at)
  WHERE status NOT IN ('pending', 'running') AND (kwargs -> 'temporary') = 'true'::jsonb;

CREATE OR REPLACE FUNCTION sweep_run_data(p_keep interval, p_keep_resumable interval) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  n bigint;
  total bigint := 0;
BEGIN
  WITH gone AS (
    DELETE FROM threads t WHERE t.expires_at < now()
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = t.tenant_id AND r.thread_id = t.thread_id
                      AND r.status IN ('pending', 'running'))
    RETURNING t.tenant_id, t.thread_id),
  cps AS (DELETE FROM checkpoints c USING gone g WHERE c.tenant_id = g.tenant_id AND c.thread_id = g.thread_id::text
          RETURNING 1),
  blobs AS (DELETE FROM checkpoint_blobs b USING gone g WHERE b.tenant_id = g.tenant_id
            AND b.thread_id = g.thread_id::text RETURNING 1),
  old_runs AS (DELETE FROM runs r USING gone g WHERE r.tenant_id = g.tenant_id AND r.thread_id = g.thread_id
               RETURNING 1)
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM cps) + (SELECT count(*) FROM blobs)
         + (SELECT count(*) FROM old_runs) INTO n;
  total := total + n;
  DELETE FROM run_events e USING runs r
    WHERE r.tenant_id = e.tenant_id AND r.run_id = e.run_id AND r.status NOT IN ('pending', 'running')
      AND r.updated_at < now() - CASE WHEN coalesce((r.kwargs->>'resumable')::boolean, false)
                                      THEN p_keep_resumable ELSE p_keep END;
  GET DIAGNOSTICS n = ROW_COUNT;
  total := total + n;
  -- Temporary threads whose run ended without deleting them (their checkpoints go with them:
  -- migration 0017's trigger).
  DELETE FROM threads t USING runs r
    WHERE r.status NOT IN ('pending', 'running') AND (r.kwargs -> 'temporary') = 'true'::jsonb
      AND r.updated_at < now() - p_keep AND t.tenant_id = r.tenant_id AND t.thread_id = r.thread_id
      AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = t.tenant_id AND y.thread_id = t.thread_id
                      AND y.status IN ('pending', 'running'));
  GET DIAGNOSTICS n = ROW_COUNT;
  total := total + n;
  -- Stateless runs that ended long enough ago and whose temporary thread is gone. (The first
  -- bound on updated_at is the one the index can serve.)
  DELETE FROM runs r
    WHERE r.status NOT IN ('pending', 'running') AND (r.kwargs -> 'temporary') = 'true'::jsonb
      AND r.updated_at < now() - p_keep
      AND r.updated_at < now() - CASE WHEN coalesce((r.kwargs->>'resumable')::boolean, false)
                                      THEN p_keep_resumable ELSE p_keep END
      AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.tenant_id = r.tenant_id AND t.thread_id = r.thread_id);
  GET DIAGNOSTICS n = ROW_COUNT;
  total := total + n;
  -- Logs whose run is gone (deleted with its thread).
  DELETE FROM run_events e WHERE e.created_at < now() - p_keep
    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = e.tenant_id AND r.run_id = e.run_id);
  GET DIAGNOSTICS n = ROW_COUNT;
  total := total + n;
  DELETE FROM store_items WHERE expires_at < now();
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN total + n;
END $$;
