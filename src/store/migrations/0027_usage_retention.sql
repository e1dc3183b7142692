-- 0027: usage records older than the operator's retention (`serve --usage-retention-days`) are
-- deleted by the maintenance sweep, a batch at a time, oldest first; the hourly rollups
-- (usage_hourly, what GET /v1/usage reports) are kept. Walks each tenant's part of the
-- (tenant_id, created_at) index, so a sweep reads only what it deletes.
CREATE FUNCTION sweep_usage_records(p_before timestamptz, p_limit int) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  t uuid;
  n bigint;
  total bigint := 0;
BEGIN
  FOR t IN SELECT id FROM tenants ORDER BY id LOOP
    EXIT WHEN total >= p_limit;
    DELETE FROM usage_records x WHERE (x.tenant_id, x.id) IN (
      SELECT u.tenant_id, u.id FROM usage_records u
        WHERE u.tenant_id = t AND u.created_at < p_before
        ORDER BY u.created_at LIMIT p_limit - total);
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
  END LOOP;
  RETURN total;
END $$;
GRANT DELETE ON usage_records TO agentplane_system;
ALTER FUNCTION sweep_usage_records(timestamptz, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION sweep_usage_records(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sweep_usage_records(timestamptz, int) TO agentplane_app;
