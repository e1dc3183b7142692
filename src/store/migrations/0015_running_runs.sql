-- 0015: a tenant's running runs hold slots, and no run start waits for another.
-- Before, every start and claim took the tenant's advisory lock until its commit, then counted
-- the tenant's running runs in `runs`: one tenant's starts ran one at a time, each holding the
-- lock through a WAL flush, and the count had to visit every recently finished run (each finish
-- leaves a dead entry in the partial index, pointing into the wide, often-updated rows of `runs`).
-- Now `running_runs` holds one narrow row per running run, kept by triggers on `runs` (so every
-- path that starts or ends a run keeps it true), and a start takes one of the tenant's slots
-- 0 .. cap-1 that no running run holds: it tries slots under their own advisory locks without
-- waiting (pg_try_advisory_xact_lock), so concurrent starts take different slots, and slots are
-- unique, so no more than `cap` runs that hold a slot run at once. Runs that started without a
-- slot (before this migration) count against the cap, as do runs in slots above a lowered cap;
-- until those end, starts that race each other may exceed the cap by at most their number.

-- Tenant table.
CREATE TABLE running_runs (
  tenant_id uuid NOT NULL,
  run_id uuid NOT NULL,
  slot int,  -- NULL: started without one (before 0015)
  PRIMARY KEY (tenant_id, run_id)
);
CREATE UNIQUE INDEX running_runs_slot ON running_runs (tenant_id, slot);
ALTER TABLE running_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE running_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON running_runs
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
-- Written only by the system role (the triggers, take_run_slot): the app role could otherwise
-- free slots and pass its tenant's cap.
GRANT SELECT ON running_runs TO agentplane_app;
GRANT SELECT, INSERT, DELETE ON running_runs TO agentplane_system;

-- Runs as its owner (agentplane_system) so that the workers' cross-tenant functions, the app
-- role and tenant deletion all keep the table the same way. A run that took a slot for its
-- start (take_run_slot) has its row already.
CREATE FUNCTION track_running_runs() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.status = 'running' THEN
    DELETE FROM running_runs WHERE tenant_id = OLD.tenant_id AND run_id = OLD.run_id;
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.status = 'running' THEN
    INSERT INTO running_runs (tenant_id, run_id) VALUES (NEW.tenant_id, NEW.run_id)
      ON CONFLICT (tenant_id, run_id) DO NOTHING;
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

-- Crosses no tenant: the one it is given. Takes a slot for run `p_run` of `p_tenant` if the
-- tenant is under its cap (tenant_limits.limits->'concurrent_runs', else the deployment's
-- default p_default_cap, else tenants.max_concurrent_runs): the row in running_runs is written
-- here, in the caller's transaction, and the run is to be set running in the same one. A slot
-- is tried under its own advisory lock (held to the end of the transaction, never waited for)
-- and taken only if no committed row holds it, checked after the lock is held.
CREATE FUNCTION take_run_slot(p_tenant uuid, p_default_cap int, p_run uuid) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  cap int;
  first int;
  s int;
  base bigint := hashtext(p_tenant::text)::bigint << 32;
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    -- The check after the lock must see commits made since the transaction began.
    RAISE EXCEPTION 'take_run_slot needs READ COMMITTED' USING ERRCODE = 'invalid_transaction_state';
  END IF;
  SELECT coalesce((SELECT (l.limits->>'concurrent_runs')::int FROM tenant_limits l WHERE l.tenant_id = p_tenant),
                  p_default_cap, t.max_concurrent_runs)
    INTO cap FROM tenants t WHERE t.id = p_tenant;
  cap := coalesce(cap, 0);
  IF (SELECT count(*) FROM running_runs y WHERE y.tenant_id = p_tenant) >= cap THEN
    RETURN false;
  END IF;
  first := floor(random() * cap)::int;  -- concurrent starts mostly try different slots first
  FOR i IN 0 .. cap - 1 LOOP
    s := (first + i) % cap;
    CONTINUE WHEN EXISTS (SELECT 1 FROM running_runs y WHERE y.tenant_id = p_tenant AND y.slot = s);
    CONTINUE WHEN NOT pg_try_advisory_xact_lock(base | s);
    CONTINUE WHEN EXISTS (SELECT 1 FROM running_runs y WHERE y.tenant_id = p_tenant AND y.slot = s);
    INSERT INTO running_runs (tenant_id, run_id, slot) VALUES (p_tenant, p_run, s);
    RETURN true;
  END LOOP;
  RETURN false;
END $$;
ALTER FUNCTION take_run_slot(uuid, int, uuid) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION take_run_slot(uuid, int, uuid) FROM PUBLIC;

-- Crosses no tenant: only the caller's own (its app.tenant_id). The local start of a new run.
CREATE FUNCTION start_run_slot(p_tenant uuid, p_default_cap int, p_run uuid) RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  IF p_tenant IS DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid THEN
    RAISE EXCEPTION 'start_run_slot: not the current tenant' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN take_run_slot(p_tenant, p_default_cap, p_run);
END $$;
ALTER FUNCTION start_run_slot(uuid, int, uuid) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION start_run_slot(uuid, int, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION start_run_slot(uuid, int, uuid) TO agentplane_app;
DROP FUNCTION may_start_run(uuid, int);

-- As in 0011, with a slot taken by take_run_slot instead of the tenant lock and a count, and
-- runs whose worker's lease expired looked for only when `p_reclaim` (the workers ask about once
-- a second: every round would visit the index entries of every recently finished run).
DROP FUNCTION claim_runs_then_due(text, int, int, int, int);
DROP FUNCTION claim_runs(text, int, int, int, int);
CREATE FUNCTION claim_runs(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int, p_default_cap int,
                           p_reclaim boolean)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  r record;
  n int := 0;
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
  FOR r IN SELECT x.tenant_id, x.run_id, x.thread_id, x.attempt, greatest(x.created_at, x.run_after) AS due FROM runs x
           WHERE x.status = 'pending' AND x.run_after <= now()
             AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = x.tenant_id AND y.thread_id = x.thread_id
                             AND (y.status = 'running'
                                  OR (y.status = 'pending' AND y.created_at < x.created_at)))
           ORDER BY x.created_at LIMIT greatest(p_limit - n, 0) * 4 FOR UPDATE SKIP LOCKED LOOP
    EXIT WHEN n >= p_limit;
    BEGIN
      CONTINUE WHEN NOT take_run_slot(r.tenant_id, p_default_cap, r.run_id);
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
ALTER FUNCTION claim_runs(text, int, int, int, int, boolean) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_runs(text, int, int, int, int, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_runs(text, int, int, int, int, boolean) TO agentplane_app;

-- As in 0013, passing p_reclaim on.
CREATE FUNCTION claim_runs_then_due(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int, p_default_cap int,
                                    p_reclaim boolean)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision, due boolean)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  RETURN QUERY SELECT c.tenant_id, c.run_id, c.thread_id, c.attempt, c.waited_ms, NULL::boolean
    FROM claim_runs(p_worker, p_lease_ms, p_limit, p_max_attempts, p_default_cap, p_reclaim) c;
  RETURN QUERY SELECT NULL::uuid, NULL::uuid, NULL::uuid, NULL::int, NULL::double precision,
    EXISTS (SELECT 1 FROM runs r WHERE r.status = 'pending' AND r.run_after <= now());
END $$;
ALTER FUNCTION claim_runs_then_due(text, int, int, int, int, boolean) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_runs_then_due(text, int, int, int, int, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_runs_then_due(text, int, int, int, int, boolean) TO agentplane_app;

-- Crosses tenants because: the sweeper serves them all. A row of running_runs whose run is not
-- running would hold its tenant's slot for good; the triggers never leave one, but bypassing
-- them can (TRUNCATE, session_replication_role, manual repairs). The sweeper drops such rows.
-- A start's row commits with its run's status, so no row of a starting run is seen alone.
CREATE FUNCTION sweep_running_runs() RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  WITH gone AS (
    DELETE FROM running_runs x WHERE NOT EXISTS (
      SELECT 1 FROM runs r WHERE r.tenant_id = x.tenant_id AND r.run_id = x.run_id AND r.status = 'running')
    RETURNING 1)
  SELECT count(*) FROM gone
$$;
ALTER FUNCTION sweep_running_runs() OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION sweep_running_runs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sweep_running_runs() TO agentplane_app;
