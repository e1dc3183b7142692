-- 0008: runs across replicas (docs/agent_api.md, "Across replicas").
-- runs.watchers: the replicas with a client waiting on the run, as "<replica>:e" (its events) or
-- "<replica>:x" (its end). The worker that runs it writes its events to run_events and NOTIFYs
-- agentplane_run_events ("<tenant> <run> more|end") when a replica other than its own watches.
-- agentplane_run_ctl ("<run> cancel interrupt|rollback", "<run> watch <replica> e|x") reaches
-- the worker that runs a run at once.
ALTER TABLE runs ADD COLUMN watchers text[] NOT NULL DEFAULT '{}';

-- claim_runs now also returns how long a pending run waited (from its enqueue, or its run_after,
-- to the claim: the queue's pick-up latency, a metric), and a run failed after too many lost
-- workers ends for its watchers too.
DROP FUNCTION claim_runs(text, int, int, int);
CREATE FUNCTION claim_runs(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  r record;
  n int := 0;
  running int;
  cap int;
BEGIN
  FOR r IN SELECT x.tenant_id, x.run_id, x.thread_id, x.attempt FROM runs x
           WHERE x.status = 'running' AND x.lease_expires < now()
           ORDER BY x.lease_expires LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
    IF r.attempt >= p_max_attempts THEN
      UPDATE runs SET status = 'error', lease_owner = NULL, lease_expires = NULL, updated_at = now(),
                      result = jsonb_build_object('__error__', jsonb_build_object(
                        'error', 'RunAttemptsExceeded',
                        'message', format('the run was attempted %s times and its worker was lost each time', r.attempt)))
        WHERE runs.tenant_id = r.tenant_id AND runs.run_id = r.run_id;
      UPDATE threads SET status = CASE WHEN EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = r.tenant_id
                                                    AND y.thread_id = r.thread_id AND y.status = 'pending')
                                       THEN 'busy' ELSE 'error' END,
                         error = jsonb_build_object('error', 'RunAttemptsExceeded', 'message', 'the run''s worker was lost'),
                         updated_at = now()
        WHERE threads.tenant_id = r.tenant_id AND threads.thread_id = r.thread_id;
      PERFORM pg_notify('agentplane_run_events', r.tenant_id || ' ' || r.run_id || ' end');
      CONTINUE;
    END IF;
    UPDATE runs SET lease_owner = p_worker, lease_expires = now() + p_lease_ms * interval '1 millisecond',
                    attempt = runs.attempt + 1, updated_at = now()
      WHERE runs.tenant_id = r.tenant_id AND runs.run_id = r.run_id;
    tenant_id := r.tenant_id; run_id := r.run_id; thread_id := r.thread_id; attempt := r.attempt + 1;
    waited_ms := NULL;
    RETURN NEXT;
    n := n + 1;
  END LOOP;
  FOR r IN SELECT x.tenant_id, x.run_id, x.thread_id, x.attempt, greatest(x.created_at, x.run_after) AS due FROM runs x
           WHERE x.status = 'pending' AND x.run_after <= now()
             AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = x.tenant_id AND y.thread_id = x.thread_id
                             AND (y.status = 'running'
                                  OR (y.status = 'pending' AND y.created_at < x.created_at)))
           ORDER BY x.created_at LIMIT greatest(p_limit - n, 0) * 4 FOR UPDATE SKIP LOCKED LOOP
    EXIT WHEN n >= p_limit;
    PERFORM pg_advisory_xact_lock(hashtext('agentplane_tenant_runs'), hashtext(r.tenant_id::text));
    SELECT t.max_concurrent_runs INTO cap FROM tenants t WHERE t.id = r.tenant_id;
    SELECT count(*) INTO running FROM runs y WHERE y.tenant_id = r.tenant_id AND y.status = 'running';
    CONTINUE WHEN running >= cap;
    BEGIN
      UPDATE runs SET status = 'running', lease_owner = p_worker,
                      lease_expires = now() + p_lease_ms * interval '1 millisecond',
                      attempt = runs.attempt + 1, updated_at = now()
        WHERE runs.tenant_id = r.tenant_id AND runs.run_id = r.run_id;
    EXCEPTION WHEN unique_violation THEN
      CONTINUE;  -- another worker just started a run on this thread
    END;
    tenant_id := r.tenant_id; run_id := r.run_id; thread_id := r.thread_id; attempt := r.attempt + 1;
    waited_ms := extract(epoch FROM clock_timestamp() - r.due) * 1000;
    RETURN NEXT;
    n := n + 1;
  END LOOP;
END $$;
ALTER FUNCTION claim_runs(text, int, int, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_runs(text, int, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_runs(text, int, int, int) TO agentplane_app;

-- Crosses tenants because: one sweep for every tenant. Deletes threads past their TTL that have
-- no active run (with their checkpoints and runs), the event logs of runs that ended more than
-- p_keep ago (p_keep_resumable for resumable streams, which clients may rejoin), and expired
-- store items. Returns the rows deleted.
CREATE FUNCTION sweep_run_data(p_keep interval, p_keep_resumable interval) RETURNS bigint
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
  -- Logs whose run is gone (deleted with its thread).
  DELETE FROM run_events e WHERE e.created_at < now() - p_keep
    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = e.tenant_id AND r.run_id = e.run_id);
  GET DIAGNOSTICS n = ROW_COUNT;
  total := total + n;
  DELETE FROM store_items WHERE expires_at < now();
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN total + n;
END $$;
GRANT SELECT, DELETE ON run_events, store_items, threads, checkpoints, checkpoint_blobs TO agentplane_system;
GRANT DELETE ON runs TO agentplane_system;
ALTER FUNCTION sweep_run_data(interval, interval) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION sweep_run_data(interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sweep_run_data(interval, interval) TO agentplane_app;
