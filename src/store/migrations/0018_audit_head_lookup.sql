-- 0018: audit_append looks its tenant's head up before creating it. The INSERT ... ON CONFLICT
-- DO NOTHING it ran first on every call had to check the unique index against the head row's
-- long chain of updated versions (0.5 ms of work per append under load; appends of one tenant
-- still wait for each other on the head's row lock). Only a tenant's first append creates the
-- head now. Otherwise as in 0006.
CREATE OR REPLACE FUNCTION audit_append(p_tenant uuid, p_levels smallint[], p_kinds text[], p_bodies bytea[])
  RETURNS TABLE (last_seq bigint, head bytea) LANGUAGE plpgsql SET search_path = agentplane, pg_temp
AS $$
DECLARE
  s bigint;
  h bytea;
  hashes bytea[] := ARRAY[]::bytea[];
  n int := coalesce(array_length(p_bodies, 1), 0);
BEGIN
  SELECT a.seq, a.hash INTO s, h FROM audit_heads a WHERE a.tenant_id = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (p_tenant, 0, decode(repeat('00', 32), 'hex'))
      ON CONFLICT (tenant_id) DO NOTHING;
    SELECT a.seq, a.hash INTO s, h FROM audit_heads a WHERE a.tenant_id = p_tenant FOR UPDATE;
  END IF;
  IF EXISTS (SELECT 1 FROM audit_seals x WHERE x.tenant_id = p_tenant) THEN
    RAISE EXCEPTION 'the tenant is deleted: its audit chain is sealed' USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  FOR i IN 1 .. n LOOP
    h := sha256(h || p_bodies[i]);
    hashes[i] := h;
  END LOOP;
  INSERT INTO audit_events (tenant_id, seq, level, kind, body, hash)
    SELECT p_tenant, s + x.i, p_levels[x.i], p_kinds[x.i], p_bodies[x.i], hashes[x.i]
    FROM generate_series(1, n) AS x(i);
  UPDATE audit_heads SET seq = s + n, hash = h WHERE tenant_id = p_tenant;
  RETURN QUERY SELECT s + n, h;
END $$;
