-- 0026: webhooks shared fairly between tenants. One tenant's many due deliveries to a slow or
-- unreachable receiver (each attempt can take the client's timeouts) could fill every sender's
-- slots and hold up every other tenant's webhooks. A claim now takes at most p_per_tenant
-- deliveries in flight per tenant on the calling sender (p_busy / p_busy_n: the tenants it has
-- in flight and how many): a tenant at its share is passed over, the others' due deliveries
-- come next.

DROP FUNCTION claim_webhooks(int, int);

-- Crosses tenants because: any worker sends any tenant's due webhooks. Takes up to p_limit of
-- them, oldest due first but no more than p_per_tenant in flight per tenant on this sender
-- (among the oldest p_limit x 16 due ones of the tenants below their share), and leases each for
-- p_lease_ms (a sender that dies leaves it due again then); each attempt is counted as it is
-- taken. Returns ids only: the sender reads the URL and the payload under the tenant's row-level
-- security.
CREATE FUNCTION claim_webhooks(p_limit int, p_lease_ms int, p_per_tenant int, p_busy uuid[], p_busy_n int[])
  RETURNS TABLE (tenant_id uuid, id uuid, attempts int)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  RETURN QUERY
  WITH busy AS (
    SELECT b.tenant_id, b.n FROM unnest(p_busy, p_busy_n) AS b(tenant_id, n)
  ), candidates AS (
    SELECT d.tenant_id, d.id, d.next_at, row_number() OVER (PARTITION BY d.tenant_id ORDER BY d.next_at, d.id) AS k
      FROM (SELECT x.tenant_id, x.id, x.next_at FROM webhook_deliveries x
              WHERE x.next_at <= now()
                AND x.tenant_id <> ALL (ARRAY(SELECT b.tenant_id FROM busy b WHERE b.n >= p_per_tenant))
              ORDER BY x.next_at LIMIT p_limit * 16) d
  ), picked AS (
    SELECT c.tenant_id, c.id FROM candidates c LEFT JOIN busy b ON b.tenant_id = c.tenant_id
      WHERE c.k <= p_per_tenant - coalesce(b.n, 0)
      ORDER BY c.next_at LIMIT p_limit
  )
  UPDATE webhook_deliveries w SET next_at = now() + p_lease_ms * interval '1 millisecond', attempts = w.attempts + 1
    WHERE (w.tenant_id, w.id) IN (
      SELECT y.tenant_id, y.id FROM webhook_deliveries y
        WHERE (y.tenant_id, y.id) IN (SELECT p.tenant_id, p.id FROM picked p) AND y.next_at <= now()
        FOR UPDATE SKIP LOCKED)
    RETURNING w.tenant_id, w.id, w.attempts;
END $$;
ALTER FUNCTION claim_webhooks(int, int, int, uuid[], int[]) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION claim_webhooks(int, int, int, uuid[], int[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_webhooks(int, int, int, uuid[], int[]) TO agentplane_app;
