-- 0006: deleting a tenant (docs/database.md, "Deleting a tenant").
-- A deleted tenant keeps its row (marked) and its audit chain, sealed by a final signed
-- checkpoint, until `audit_retain_until`; all its other data is deleted at once. After the
-- retention period `admin_purge_tenants()` removes the chain and the row.

ALTER TABLE tenants ADD COLUMN deleted_at timestamptz,
                    ADD COLUMN audit_retain_until timestamptz,
                    ADD CONSTRAINT tenants_deleted_retained
                      CHECK ((deleted_at IS NULL) = (audit_retain_until IS NULL));
GRANT UPDATE (deleted_at, audit_retain_until) ON tenants TO agentplane_system;
-- The owner deletes a tenant's row only once its retention has passed (the owner is subject to
-- row-level security too: FORCE).
CREATE POLICY tenant_purge ON tenants FOR DELETE TO agentplane_owner
  USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
         AND audit_retain_until <= now());

-- Tenant table: the final signed checkpoint of a deleted tenant's chain. Once a seal exists
-- the chain takes no more entries.
CREATE TABLE audit_seals (
  tenant_id uuid NOT NULL,
  seq bigint NOT NULL,
  hash bytea NOT NULL,
  checkpoint text NOT NULL,  -- the signed checkpoint JSON (docs/audit_format.md)
  sealed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);
ALTER TABLE audit_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_seals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_seals
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON audit_seals TO agentplane_app;

-- Appending to a sealed chain fails (checked under the head row's lock, which sealing takes).
CREATE OR REPLACE FUNCTION audit_append(p_tenant uuid, p_levels smallint[], p_kinds text[], p_bodies bytea[])
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

-- Entries may be removed only once their tenant's retention has passed (by the purge below, or
-- by a superuser); never updated, never truncated.
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM agentplane.tenants t
                                  WHERE t.id = OLD.tenant_id AND t.audit_retain_until <= now()) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

-- A deleted tenant's keys stop working.
CREATE OR REPLACE FUNCTION find_api_key(p_hash bytea)
  RETURNS TABLE (tenant_id uuid, key_id uuid, scopes text[], revoked boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  SELECT k.tenant_id, k.id, k.scopes, k.revoked_at IS NOT NULL
  FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
  WHERE k.hash = p_hash AND t.deleted_at IS NULL
$$;

DROP FUNCTION admin_list_tenants(uuid, int);
CREATE FUNCTION admin_list_tenants(p_after uuid, p_limit int)
  RETURNS TABLE (id uuid, name text, created_at timestamptz, deleted_at timestamptz,
                 audit_retain_until timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  SELECT t.id, t.name, t.created_at, t.deleted_at, t.audit_retain_until FROM tenants t
  WHERE p_after IS NULL OR t.id > p_after
  ORDER BY t.id LIMIT least(greatest(p_limit, 1), 1000)
$$;
ALTER FUNCTION admin_list_tenants(uuid, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION admin_list_tenants(uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_list_tenants(uuid, int) TO agentplane_app;

-- Crosses tenants because: the admin deletes a tenant from outside it. Marks it deleted (a
-- second call keeps the first times) and tells every replica to drop its cached keys.
CREATE FUNCTION admin_mark_tenant_deleted(p_id uuid, p_retain_until timestamptz)
  RETURNS TABLE (deleted_at timestamptz, audit_retain_until timestamptz)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  RETURN QUERY UPDATE tenants t
    SET deleted_at = coalesce(t.deleted_at, now()),
        audit_retain_until = coalesce(t.audit_retain_until, p_retain_until)
    WHERE t.id = p_id RETURNING t.deleted_at, t.audit_retain_until;
  PERFORM pg_notify('agentplane_key_revoked', k.id::text) FROM api_keys k WHERE k.tenant_id = p_id;
END $$;
ALTER FUNCTION admin_mark_tenant_deleted(uuid, timestamptz) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION admin_mark_tenant_deleted(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_mark_tenant_deleted(uuid, timestamptz) TO agentplane_app;

-- Deletes every row of a deleted tenant from every tenant table except the audit chain. Runs as
-- the owner (who owns every table) under the tenant's own row-level security, and finds the
-- tables itself, so tables added by later migrations are covered. Tables that reference each
-- other are retried until a pass deletes nothing more. Returns the number of rows deleted.
CREATE FUNCTION tenant_delete_data(p_id uuid) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  t text;
  n bigint;
  total bigint := 0;
  progress boolean := true;
  blocked boolean;
BEGIN
  PERFORM set_config('app.tenant_id', p_id::text, true);
  IF NOT EXISTS (SELECT 1 FROM tenants WHERE id = p_id AND deleted_at IS NOT NULL) THEN
    RAISE EXCEPTION 'tenant % is not marked deleted', p_id USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  WHILE progress LOOP
    progress := false;
    blocked := false;
    FOR t IN
      SELECT c.relname FROM pg_class c
      JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = 'agentplane'
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND c.relname NOT IN ('tenants', 'audit_events', 'audit_heads', 'audit_seals')
      ORDER BY c.relname
    LOOP
      BEGIN
        EXECUTE format('DELETE FROM %I WHERE tenant_id = $1', t) USING p_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        progress := progress OR n > 0;
      EXCEPTION WHEN foreign_key_violation THEN
        blocked := true;
      END;
    END LOOP;
    progress := progress AND blocked;
  END LOOP;
  IF blocked THEN
    RAISE EXCEPTION 'tenant % data could not be deleted: references between tables remain', p_id;
  END IF;
  RETURN total;
END $$;
REVOKE ALL ON FUNCTION tenant_delete_data(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_delete_data(uuid) TO agentplane_app, agentplane_system;

-- Removes an expired tenant's audit chain, seal and row (the owner, under the tenant's RLS).
CREATE FUNCTION tenant_purge_audit(p_id uuid) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE n bigint;
BEGIN
  PERFORM set_config('app.tenant_id', p_id::text, true);
  DELETE FROM audit_events WHERE tenant_id = p_id;
  GET DIAGNOSTICS n = ROW_COUNT;
  DELETE FROM audit_heads WHERE tenant_id = p_id;
  DELETE FROM audit_seals WHERE tenant_id = p_id;
  DELETE FROM tenants WHERE id = p_id;
  RETURN n;
END $$;
REVOKE ALL ON FUNCTION tenant_purge_audit(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_purge_audit(uuid) TO agentplane_system;

-- Crosses tenants because: a periodic job sweeps every deleted tenant. Deletes data that
-- reached a deleted tenant after its deletion (a request already in flight), and removes the
-- chains whose retention has passed. One caller at a time (advisory lock); returns what it did.
CREATE FUNCTION admin_purge_tenants()
  RETURNS TABLE (swept_rows bigint, purged_tenants int, purged_events bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
DECLARE
  r record;
  rows bigint := 0;
  tenants_n int := 0;
  events bigint := 0;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('agentplane_purge_tenants')) THEN
    RETURN QUERY SELECT 0::bigint, 0, 0::bigint;
    RETURN;
  END IF;
  FOR r IN SELECT t.id, t.audit_retain_until <= now() AS expired FROM tenants t
           WHERE t.deleted_at IS NOT NULL ORDER BY t.id LOOP
    rows := rows + tenant_delete_data(r.id);
    IF r.expired THEN
      events := events + tenant_purge_audit(r.id);
      tenants_n := tenants_n + 1;
    END IF;
  END LOOP;
  RETURN QUERY SELECT rows, tenants_n, events;
END $$;
ALTER FUNCTION admin_purge_tenants() OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION admin_purge_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_purge_tenants() TO agentplane_app;
