-- 0004: the audit log (src/audit; format in docs/audit_format.md). Tenant tables.
-- Each tenant's log is a hash chain: entry n stores the exact canonical JSON bytes of the event
-- (`body`) and hash_n = SHA-256(hash_{n-1} || body), with hash_0 = 32 zero bytes.

CREATE TABLE audit_events (
  tenant_id uuid NOT NULL,
  seq bigint NOT NULL,             -- 1, 2, ... per tenant, no gaps
  level smallint NOT NULL,         -- 0: full replay, 1: decision log
  kind text NOT NULL,
  body bytea NOT NULL,             -- canonical JSON, exactly the bytes hashed
  at timestamptz NOT NULL DEFAULT now(),  -- when it was written (not hashed: the body has the time)
  hash bytea NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_decisions ON audit_events (tenant_id, seq) WHERE level = 1;

-- The head of each tenant's chain: appends lock this row, so one tenant's appends are ordered
-- and other tenants' are not held up.
CREATE TABLE audit_heads (
  tenant_id uuid NOT NULL,
  seq bigint NOT NULL,
  hash bytea NOT NULL,
  PRIMARY KEY (tenant_id)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_events', 'audit_heads'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
  END LOOP;
END $$;
-- Append-only for the server: it may add and read entries, never change or remove them.
GRANT SELECT, INSERT ON audit_events TO agentplane_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO agentplane_app;

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Appends a batch of one tenant's events (in order) to its chain, in the caller's transaction
-- and under its row-level security (SECURITY INVOKER). Returns the new head.
CREATE FUNCTION audit_append(p_tenant uuid, p_levels smallint[], p_kinds text[], p_bodies bytea[])
  RETURNS TABLE (last_seq bigint, head bytea) LANGUAGE plpgsql SET search_path = agentplane, pg_temp
AS $$
DECLARE
  s bigint;
  h bytea;
  hashes bytea[] := ARRAY[]::bytea[];
  n int := coalesce(array_length(p_bodies, 1), 0);
BEGIN
  INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (p_tenant, 0, decode(repeat('00', 32), 'hex'))
    ON CONFLICT (tenant_id) DO NOTHING;
  SELECT a.seq, a.hash INTO s, h FROM audit_heads a WHERE a.tenant_id = p_tenant FOR UPDATE;
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
REVOKE ALL ON FUNCTION audit_append(uuid, smallint[], text[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append(uuid, smallint[], text[], bytea[]) TO agentplane_app;
