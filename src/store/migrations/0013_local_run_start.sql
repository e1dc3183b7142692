-- 0013: a run may start at creation on a worker in the API's process (control::LocalWorker):
-- inserted `running` under that worker's lease when its tenant is under its concurrent-runs cap.
-- The check takes the same per-tenant lock as claim_runs, so the two never exceed the cap
-- together; the lock is held to the end of the creating transaction.
CREATE FUNCTION may_start_run(p_tenant uuid, p_default_cap int) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  cap int;
  running int;
BEGIN
  -- Crosses no tenant: only the caller's own (its app.tenant_id) may be asked about.
  IF p_tenant IS DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid THEN
    RAISE EXCEPTION 'may_start_run: not the current tenant' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('agentplane_tenant_runs'), hashtext(p_tenant::text));
  SELECT coalesce((SELECT (l.limits->>'concurrent_runs')::int FROM tenant_limits l WHERE l.tenant_id = p_tenant),
                  p_default_cap, t.max_concurrent_runs)
    INTO cap FROM tenants t WHERE t.id = p_tenant;
  SELECT count(*) INTO running FROM runs y WHERE y.tenant_id = p_tenant AND y.status = 'running';
  RETURN running < coalesce(cap, 0);
END $$;
ALTER FUNCTION may_start_run(uuid, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION may_start_run(uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION may_start_run(uuid, int) TO agentplane_app;

-- Crosses tenants because: a worker serves every tenant's queue. claim_runs, then whether any
-- run is still due in the queue after it (one more row, with only `due` set): a worker starts
-- new runs directly only when none is, so queued runs go first, also those that wait for their
-- tenant's cap or for their thread. (Each RETURN QUERY reads a fresh snapshot: the second sees
-- the first's claims.)
CREATE FUNCTION claim_runs_then_due(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int, p_default_cap int)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision, due boolean)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  RETURN QUERY SELECT c.tenant_id, c.run_id, c.thread_id, c.attempt, c.waited_ms, NULL::boolean
    FROM claim_runs(p_worker, p_lease_ms, p_limit, p_max_attempts, p_default_cap) c;
  RETURN QUERY SELECT NULL::uuid, NULL::uuid, NULL::uuid, NULL::int, NULL::double precision,
    EXISTS (SELECT 1 FROM runs r WHERE r.status = 'pending' AND r.run_after <= now());
END $$;
ALTER FUNCTION claim_runs_then_due(text, int, int, int, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_runs_then_due(text, int, int, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_runs_then_due(text, int, int, int, int) TO agentplane_app;

-- A thread's active runs (the double-texting check at creation, "is another run waiting" at a
-- run's end) without visiting every run the thread ever had.
CREATE INDEX runs_thread_active ON runs (tenant_id, thread_id) WHERE status IN ('pending', 'running');
