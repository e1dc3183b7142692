-- 0011: a tenant's concurrent runs are one of its limits (docs/limits.md): claim_runs takes the
-- cap from tenant_limits.limits->'concurrent_runs', else the deployment's default (the new
-- p_default_cap: serve --default-limits), else tenants.max_concurrent_runs (16).
DROP FUNCTION claim_runs(text, int, int, int);
CREATE FUNCTION claim_runs(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int, p_default_cap int)
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
    SELECT coalesce((SELECT (l.limits->>'concurrent_runs')::int FROM tenant_limits l WHERE l.tenant_id = r.tenant_id),
                    p_default_cap, t.max_concurrent_runs)
      INTO cap FROM tenants t WHERE t.id = r.tenant_id;
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
ALTER FUNCTION claim_runs(text, int, int, int, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_runs(text, int, int, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_runs(text, int, int, int, int) TO agentplane_app;
