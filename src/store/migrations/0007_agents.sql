-- 0007: the agent API (src/control; docs/agent_api.md): graphs, assistants and their versions,
-- threads, runs (the queue), run events (the log that resumable and cross-replica streams read),
-- and the store. All tenant tables.

ALTER TABLE tenants ADD COLUMN max_concurrent_runs integer NOT NULL DEFAULT 16
  CHECK (max_concurrent_runs BETWEEN 0 AND 100000);

-- A tenant's graph specs (docs/graph_spec.md), by id. Built-in templates are not stored.
CREATE TABLE graphs (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  graph_id text NOT NULL CHECK (graph_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  spec jsonb NOT NULL,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, graph_id)
);

CREATE TABLE assistants (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  assistant_id uuid NOT NULL,
  graph_id text NOT NULL,
  version integer NOT NULL,  -- the version in use ("latest")
  name text NOT NULL,
  description text,
  config jsonb NOT NULL DEFAULT '{}',
  context jsonb NOT NULL DEFAULT '{}',
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, assistant_id)
);
CREATE INDEX assistants_graph ON assistants (tenant_id, graph_id);
CREATE INDEX assistants_metadata ON assistants USING gin (metadata jsonb_path_ops);

CREATE TABLE assistant_versions (
  tenant_id uuid NOT NULL,
  assistant_id uuid NOT NULL,
  version integer NOT NULL CHECK (version > 0),
  graph_id text NOT NULL,
  name text NOT NULL,
  description text,
  config jsonb NOT NULL DEFAULT '{}',
  context jsonb NOT NULL DEFAULT '{}',
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, assistant_id, version),
  FOREIGN KEY (tenant_id, assistant_id) REFERENCES assistants (tenant_id, assistant_id) ON DELETE CASCADE
);

-- status: idle | busy | interrupted | error (as LangGraph derives it; kept by the workers).
-- values/interrupts: the state after the last run, for GET and search without a checkpoint read.
CREATE TABLE threads (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  thread_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
  metadata jsonb NOT NULL DEFAULT '{}',
  config jsonb NOT NULL DEFAULT '{}',
  "values" jsonb,
  interrupts jsonb NOT NULL DEFAULT '{}',
  error jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,  -- TTL: deleted by the sweep after this
  PRIMARY KEY (tenant_id, thread_id)
);
CREATE INDEX threads_metadata ON threads USING gin (metadata jsonb_path_ops);
CREATE INDEX threads_expires ON threads (expires_at) WHERE expires_at IS NOT NULL;

-- The run queue. status: pending | running | success | error | timeout | interrupted.
-- At most one running run per thread (the index below), whatever the replicas do.
CREATE TABLE runs (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  run_id uuid NOT NULL,
  thread_id uuid NOT NULL,
  assistant_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'success', 'error', 'timeout', 'interrupted')),
  metadata jsonb NOT NULL DEFAULT '{}',
  kwargs jsonb NOT NULL,          -- input, command, config, stream modes, interrupts, ...
  multitask_strategy text NOT NULL DEFAULT 'reject',
  stateless boolean NOT NULL DEFAULT false,  -- its thread is temporary (POST /runs/...)
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  run_after timestamptz NOT NULL DEFAULT now(),
  attempt integer NOT NULL DEFAULT 0,
  lease_owner text,
  lease_expires timestamptz,
  cancel text CHECK (cancel IN ('interrupt', 'rollback')),  -- requested; the worker acts on it
  result jsonb,                   -- /wait's answer once done
  PRIMARY KEY (tenant_id, run_id)
);
CREATE UNIQUE INDEX runs_one_running ON runs (tenant_id, thread_id) WHERE status = 'running';
CREATE INDEX runs_pending ON runs (created_at) WHERE status = 'pending';
CREATE INDEX runs_thread ON runs (tenant_id, thread_id, created_at);
CREATE INDEX runs_leases ON runs (lease_expires) WHERE status = 'running';

-- Events of a run, for resumable streams and for clients on another replica than the run's.
CREATE TABLE run_events (
  tenant_id uuid NOT NULL,
  run_id uuid NOT NULL,
  seq bigint NOT NULL,
  event text NOT NULL,
  data text NOT NULL,  -- the SSE data line, as sent
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, run_id, seq)
);

CREATE TABLE store_items (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  namespace text[] NOT NULL CHECK (cardinality(namespace) BETWEEN 1 AND 32),
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
  value jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  PRIMARY KEY (tenant_id, namespace, key)
);
CREATE INDEX store_items_expires ON store_items (expires_at) WHERE expires_at IS NOT NULL;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['graphs', 'assistants', 'assistant_versions', 'threads', 'runs',
                           'run_events', 'store_items'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO agentplane_app', t);
  END LOOP;
END $$;

-- Workers sleep on LISTEN agentplane_runs; a new pending run wakes them (no payload: NOTIFY
-- is cheap only when small).
CREATE FUNCTION notify_run_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('agentplane_runs', '');
  RETURN NULL;
END $$;
CREATE TRIGGER runs_pending_notify AFTER INSERT ON runs FOR EACH ROW WHEN (NEW.status = 'pending')
  EXECUTE FUNCTION notify_run_pending();

GRANT SELECT (id, max_concurrent_runs) ON tenants TO agentplane_system;
GRANT SELECT, UPDATE ON runs TO agentplane_system;
GRANT SELECT, UPDATE (status, error, updated_at) ON threads TO agentplane_system;

-- Crosses tenants because: a worker serves every tenant's queue. Claims up to p_limit runs:
-- first runs whose worker's lease has expired (a dead worker: the run resumes from its last
-- checkpoint), then pending runs oldest first, one per thread, each only while its tenant is
-- under its concurrency limit (checked under a per-tenant advisory lock, so that concurrent
-- claims cannot overshoot it). Runs past p_max_attempts are failed instead.
CREATE FUNCTION claim_runs(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int)
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
      CONTINUE;
    END IF;
    UPDATE runs SET lease_owner = p_worker, lease_expires = now() + p_lease_ms * interval '1 millisecond',
                    attempt = runs.attempt + 1, updated_at = now()
      WHERE runs.tenant_id = r.tenant_id AND runs.run_id = r.run_id;
    tenant_id := r.tenant_id; run_id := r.run_id; thread_id := r.thread_id; attempt := r.attempt + 1;
    RETURN NEXT;
    n := n + 1;
  END LOOP;
  FOR r IN SELECT x.tenant_id, x.run_id, x.thread_id, x.attempt FROM runs x
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
    RETURN NEXT;
    n := n + 1;
  END LOOP;
END $$;
ALTER FUNCTION claim_runs(text, int, int, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_runs(text, int, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_runs(text, int, int, int) TO agentplane_app;

-- Crosses tenants because: a worker renews the leases of all its runs, whatever their tenants,
-- in one statement. Returns the runs it still holds, with any cancel request.
CREATE FUNCTION renew_leases(p_worker text, p_runs uuid[], p_lease_ms int)
  RETURNS TABLE (run_id uuid, cancel text)
  LANGUAGE sql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  UPDATE runs SET lease_expires = now() + p_lease_ms * interval '1 millisecond'
  WHERE runs.run_id = ANY (p_runs) AND runs.lease_owner = p_worker AND runs.status = 'running'
  RETURNING runs.run_id, runs.cancel
$$;
ALTER FUNCTION renew_leases(text, uuid[], int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION renew_leases(text, uuid[], int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION renew_leases(text, uuid[], int) TO agentplane_app;
