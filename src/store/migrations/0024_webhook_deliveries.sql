-- 0024: run webhooks (a run's `webhook`, as LangGraph's API takes it). When a run ends, the
-- transaction that records its end also queues the POST here, so that it is sent exactly when
-- the end is committed, and sent even if the worker that ran the run dies right after: any
-- worker sends what is due (claim_webhooks), retries a failed POST with a growing delay, and
-- deletes the row once it is sent or given up.
CREATE TABLE webhook_deliveries (
  tenant_id uuid NOT NULL,
  id uuid NOT NULL,
  run_id uuid NOT NULL,
  url text NOT NULL,
  payload text NOT NULL,  -- the JSON body, as it is sent
  attempts int NOT NULL DEFAULT 0,
  next_at timestamptz NOT NULL DEFAULT now(),  -- due; while being sent, the sender's lease
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at);

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries TO agentplane_app;
GRANT SELECT, UPDATE ON webhook_deliveries TO agentplane_system;

-- Crosses tenants because: any worker sends any tenant's due webhooks. Takes up to p_limit of
-- them, oldest due first, and leases each for p_lease_ms (a sender that dies leaves it due
-- again then); each attempt is counted as it is taken. Returns ids only: the sender reads the
-- URL and the payload under the tenant's row-level security.
CREATE FUNCTION claim_webhooks(p_limit int, p_lease_ms int)
  RETURNS TABLE (tenant_id uuid, id uuid, attempts int)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  RETURN QUERY
  UPDATE webhook_deliveries w SET next_at = now() + p_lease_ms * interval '1 millisecond', attempts = w.attempts + 1
    WHERE (w.tenant_id, w.id) IN (
      SELECT d.tenant_id, d.id FROM webhook_deliveries d WHERE d.next_at <= now()
        ORDER BY d.next_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
    RETURNING w.tenant_id, w.id, w.attempts;
END $$;
ALTER FUNCTION claim_webhooks(int, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_webhooks(int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_webhooks(int, int) TO agentplane_app;
