-- 0033: a claim round passes over the queued runs of tenants at their concurrency cap without
-- locking them or asking for a slot for each.
-- Before, claim_runs locked up to 4x its free slots of the oldest due runs (FOR UPDATE in the
-- walk itself) and called take_run_slot for each, so a tenant with a backlog over its cap cost
-- every round a row lock (a heap write and a WAL record) and a count of its running runs per
-- queued run, and filled the round's window: the runs of other tenants queued behind that
-- backlog were not reached. On bench/api's rig at 100 connections (one tenant, cap 16, 84 runs
-- queued), a round took 7.6 ms, 82 of its slot requests refused.
-- Now the round walks the due runs without locking them and locks each one it is about to start
-- (SKIP LOCKED: one another worker holds, or no longer due, is passed over). A tenant whose slot
-- request is refused is at its cap: the rest of its runs are passed over, and when the walk ends
-- with free slots left and such a tenant found, it is walked again without that tenant's runs, so
-- the round reaches what is queued behind its backlog (four walks at most: each one sorts the
-- due runs; what a round leaves, the next takes). (Listing the tenants at their cap first cost
-- every round 0.3 ms, a walk of running_runs and its dead rows.)

-- As in 0015 (and 0032's generic plans), with the tenants at their cap left out of the walk of
-- due runs, and each run locked only when it is to start.
CREATE OR REPLACE FUNCTION claim_runs(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int,
                                      p_default_cap int, p_reclaim boolean)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
  SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  r record;
  n int := 0;
  full_tenants uuid[] := '{}';
  found_full boolean;
  walks int := 0;
  tries int;
BEGIN
  FOR r IN SELECT x.tenant_id, x.run_id, x.thread_id, x.attempt FROM runs x
           WHERE p_reclaim AND x.status = 'running' AND x.lease_expires < now()
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
  LOOP
    found_full := false;
    walks := walks + 1;
    FOR r IN SELECT x.tenant_id, x.run_id, x.thread_id, greatest(x.created_at, x.run_after) AS due FROM runs x
             WHERE x.status = 'pending' AND x.run_after <= now() AND x.tenant_id <> ALL (full_tenants)
               AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = x.tenant_id AND y.thread_id = x.thread_id
                               AND (y.status = 'running'
                                    OR (y.status = 'pending' AND y.created_at < x.created_at)))
             ORDER BY x.created_at LIMIT greatest(p_limit - n, 0) * 4 LOOP
      EXIT WHEN n >= p_limit;
      CONTINUE WHEN r.tenant_id = ANY (full_tenants);
      -- Locked (and re-read) only now.
      SELECT y.attempt INTO tries FROM runs y
        WHERE y.tenant_id = r.tenant_id AND y.run_id = r.run_id AND y.status = 'pending' AND y.run_after <= now()
        FOR UPDATE SKIP LOCKED;
      CONTINUE WHEN NOT FOUND;
      BEGIN
        IF NOT take_run_slot(r.tenant_id, p_default_cap, r.run_id) THEN
          full_tenants := full_tenants || r.tenant_id;
          found_full := true;
          CONTINUE;
        END IF;
        UPDATE runs SET status = 'running', lease_owner = p_worker,
                        lease_expires = now() + p_lease_ms * interval '1 millisecond',
                        attempt = runs.attempt + 1, updated_at = now()
          WHERE runs.tenant_id = r.tenant_id AND runs.run_id = r.run_id;
      EXCEPTION WHEN unique_violation THEN
        CONTINUE;  -- another worker just started a run on this thread
      END;
      tenant_id := r.tenant_id; run_id := r.run_id; thread_id := r.thread_id; attempt := tries + 1;
      waited_ms := extract(epoch FROM clock_timestamp() - r.due) * 1000;
      RETURN NEXT;
      n := n + 1;
    END LOOP;
    EXIT WHEN n >= p_limit OR NOT found_full OR walks >= 4;
  END LOOP;
END $$;
