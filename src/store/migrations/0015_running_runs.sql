-- 0015: a tenant's running runs are counted in a small table of their own.
-- Counting them in `runs` (its partial index on status = 'running') had to visit every run that
-- had recently finished: each finish leaves a dead index entry that points into the wide,
-- often-updated rows of `runs`. Under load that count took milliseconds, and it runs under the
-- tenant's advisory lock, so it capped how fast one tenant could start runs. `running_runs`
-- holds one narrow row per running run, kept by triggers on `runs`, so every path that starts
-- or ends a run (local start, claim, finish, cancel, lease expiry, deletion) keeps it true.

-- Tenant table.
CREATE TABLE running_runs (
  tenant_id uuid NOT NULL,
  run_id uuid NOT NULL,
  PRIMARY KEY (tenant_id, run_id)
);
ALTER TABLE running_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE running_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON running_runs
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, DELETE ON running_runs TO agentplane_app;
GRANT SELECT, INSERT, DELETE ON running_runs TO agentplane_system;

-- Runs as its owner (agentplane_system) so that the workers' cross-tenant functions, the app
-- role and tenant deletion all keep the table the same way.
CREATE FUNCTION track_running_runs() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.status = 'running' THEN
    DELETE FROM running_runs WHERE tenant_id = OLD.tenant_id AND run_id = OLD.run_id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status = 'running' THEN
    INSERT INTO running_runs (tenant_id, run_id) VALUES (NEW.tenant_id, NEW.run_id);
  END IF;
  RETURN NULL;
END $$;
ALTER FUNCTION track_running_runs() OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION track_running_runs() FROM PUBLIC;
CREATE TRIGGER runs_running_insert AFTER INSERT ON runs FOR EACH ROW
  WHEN (NEW.status = 'running') EXECUTE FUNCTION track_running_runs();
CREATE TRIGGER runs_running_update AFTER UPDATE OF status ON runs FOR EACH ROW
  WHEN ((OLD.status = 'running') <> (NEW.status = 'running')) EXECUTE FUNCTION track_running_runs();
CREATE TRIGGER runs_running_delete AFTER DELETE ON runs FOR EACH ROW
  WHEN (OLD.status = 'running') EXECUTE FUNCTION track_running_runs();

INSERT INTO running_runs (tenant_id, run_id) SELECT tenant_id, run_id FROM runs WHERE status = 'running';

-- Crosses no tenant: the one it is given. Whether `p_tenant` may start one more run now: under
-- its advisory lock (held to the end of the transaction, so that concurrent starts and claims
-- cannot overshoot the cap), its cap (tenant_limits.limits->'concurrent_runs', else the
-- deployment's default p_default_cap, else tenants.max_concurrent_runs) against its running runs.
CREATE FUNCTION tenant_run_slot_free(p_tenant uuid, p_default_cap int) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  cap int;
  running int;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('agentplane_tenant_runs'), hashtext(p_tenant::text));
  SELECT coalesce((SELECT (l.limits->>'concurrent_runs')::int FROM tenant_limits l WHERE l.tenant_id = p_tenant),
                  p_default_cap, t.max_concurrent_runs)
    INTO cap FROM tenants t WHERE t.id = p_tenant;
  SELECT count(*) INTO running FROM running_runs y WHERE y.tenant_id = p_tenant;
  RETURN running < coalesce(cap, 0);
END $$;
ALTER FUNCTION tenant_run_slot_free(uuid, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION tenant_run_slot_free(uuid, int) FROM PUBLIC;

CREATE OR REPLACE FUNCTION may_start_run(p_tenant uuid, p_default_cap int) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  -- Crosses no tenant: only the caller's own (its app.tenant_id) may be asked about.
  IF p_tenant IS DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid THEN
    RAISE EXCEPTION 'may_start_run: not the current tenant' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN tenant_run_slot_free(p_tenant, p_default_cap);
END $$;

-- As in 0011, with the cap checked by tenant_run_slot_free.
CREATE OR REPLACE FUNCTION claim_runs(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int, p_default_cap int)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  r record;
  n int := 0;
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
    CONTINUE WHEN NOT tenant_run_slot_free(r.tenant_id, p_default_cap);
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
