-- 0021: ended stateless runs are swept. A stateless run (POST /runs...) deletes its temporary
-- thread when it ends, but its run row stayed for ever: every stateless run left ~2 kB in
-- `runs` and its indexes, which grew without bound. The row is still kept for a while after
-- the end, as the run's event log is (p_keep, or p_keep_resumable for a resumable stream): a
-- /wait on another replica reads the result from it, and a client may join or rejoin the run
-- meanwhile. Then it goes, once its thread is gone, at most p_limit rows a call: the server
-- calls it again while it deletes that many (src/control/runs.cc), so a backlog (the rows of
-- every stateless run before this migration) goes in batches, each within the statement
-- timeout. An index holds just those rows (ended, temporary: kwargs.temporary, set for
-- on_completion=delete), so a call does not scan the table. (Building it locks `runs` against
-- writes while the migration runs: on a large backlog, migrate before starting the servers.)
CREATE INDEX runs_temporary_ended ON runs (updated_at)
  WHERE status NOT IN ('pending', 'running') AND (kwargs -> 'temporary') = 'true'::jsonb;

-- Crosses tenants because: one sweep for every tenant. Returns the rows deleted. Once the
-- batch of runs is not full (no backlog left), also the temporary threads that a run ended
-- without deleting (a run out of attempts after its workers were lost: claim_runs), when no
-- other run uses them; their runs go in a later call.
CREATE FUNCTION sweep_stateless_runs(p_keep interval, p_keep_resumable interval, p_limit int) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  n bigint;
  m bigint := 0;
BEGIN
  DELETE FROM runs x WHERE (x.tenant_id, x.run_id) IN (
    SELECT r.tenant_id, r.run_id FROM runs r
      WHERE r.status NOT IN ('pending', 'running') AND (r.kwargs -> 'temporary') = 'true'::jsonb
        AND r.updated_at < now() - p_keep  -- (the bound the index serves)
        AND r.updated_at < now() - CASE WHEN coalesce((r.kwargs->>'resumable')::boolean, false)
                                        THEN p_keep_resumable ELSE p_keep END
        AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.tenant_id = r.tenant_id AND t.thread_id = r.thread_id)
      LIMIT p_limit);
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n < p_limit THEN
    DELETE FROM threads x WHERE (x.tenant_id, x.thread_id) IN (
      SELECT r.tenant_id, r.thread_id FROM runs r
        WHERE r.status NOT IN ('pending', 'running') AND (r.kwargs -> 'temporary') = 'true'::jsonb
          AND r.updated_at < now() - p_keep
          AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant_id = r.tenant_id AND t.thread_id = r.thread_id)
          AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = r.tenant_id AND y.thread_id = r.thread_id
                          AND y.run_id <> r.run_id)
        LIMIT p_limit - n);
    GET DIAGNOSTICS m = ROW_COUNT;
  END IF;
  RETURN n + m;
END $$;
ALTER FUNCTION sweep_stateless_runs(interval, interval, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION sweep_stateless_runs(interval, interval, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sweep_stateless_runs(interval, interval, int) TO agentplane_app;
