-- 0009: crons (src/control/crons.h; docs/agent_api.md, "Crons"): runs created on a schedule.
-- payload: the run's body (assistant_id resolved); thread_id NULL: a stateless cron, each run on
-- a new thread (deleted after the run unless on_run_completed = 'keep').
CREATE TABLE crons (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  cron_id uuid NOT NULL,
  assistant_id uuid NOT NULL,
  thread_id uuid,
  schedule text NOT NULL,
  timezone text,  -- IANA name; NULL: UTC
  end_time timestamptz,
  payload jsonb NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}',
  enabled boolean NOT NULL DEFAULT true,
  on_run_completed text CHECK (on_run_completed IN ('delete', 'keep')),
  user_id text,
  next_run_date timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, cron_id)
);
CREATE INDEX crons_due ON crons (next_run_date) WHERE enabled;
CREATE INDEX crons_metadata ON crons USING gin (metadata jsonb_path_ops);

ALTER TABLE crons ENABLE ROW LEVEL SECURITY;
ALTER TABLE crons FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON crons
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON crons TO agentplane_app;
GRANT SELECT ON crons TO agentplane_system;

-- Crosses tenants because: any API replica fires every tenant's due crons. Lists them only; each
-- is then taken under its tenant's RLS with FOR UPDATE SKIP LOCKED.
CREATE FUNCTION due_crons(p_limit int) RETURNS TABLE (tenant_id uuid, cron_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  SELECT c.tenant_id, c.cron_id FROM crons c
  WHERE c.enabled AND c.next_run_date <= now() AND (c.end_time IS NULL OR c.end_time >= now())
  ORDER BY c.next_run_date LIMIT p_limit
$$;
ALTER FUNCTION due_crons(int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION due_crons(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION due_crons(int) TO agentplane_app;
