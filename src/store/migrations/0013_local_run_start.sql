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

-- Crosses tenants because: a worker serves every tenant's queue. Whether any run is due in the
-- queue (a worker starts new runs directly only when none is: queued runs go first, also those
-- that wait for their tenant's cap or for their thread).
CREATE FUNCTION pending_runs_due() RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'pending' AND run_after <= now()) $$;
ALTER FUNCTION pending_runs_due() OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION pending_runs_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pending_runs_due() TO agentplane_app;
