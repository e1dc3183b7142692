-- 0001: tenants (platform table) and API keys (tenant table).
-- Runs as agentplane_owner with search_path = agentplane (see store/migrate.cc).
-- Table classes are listed in docs/database.md; tests fail on a table missing from that list.

-- Platform table: one row per tenant. RLS lets a tenant read its own row only; creating and
-- listing tenants goes through the admin_* functions below.
CREATE TABLE tenants (
  id uuid PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_self ON tenants FOR SELECT
  USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT ON tenants TO agentplane_app;
GRANT SELECT, INSERT ON tenants TO agentplane_system;

-- Tenant table: API keys, stored only as SHA-256 of the key.
CREATE TABLE api_keys (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  hash bytea NOT NULL CHECK (length(hash) = 32),
  prefix text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  scopes text[] NOT NULL,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO agentplane_app;
GRANT SELECT, UPDATE (last_used_at) ON api_keys TO agentplane_system;

-- Every replica caches key look-ups; a revoked or deleted key is announced so that all of them
-- drop it at once (auth/key_cache.cc listens).
CREATE FUNCTION notify_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('agentplane_key_revoked', OLD.id::text);
  RETURN NULL;
END $$;
CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_at OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION notify_key_revoked();

-- Crosses tenants because: a request's key must be resolved before its tenant is known.
-- Takes only the key's hash; returns the one matching key.
CREATE FUNCTION find_api_key(p_hash bytea)
  RETURNS TABLE (tenant_id uuid, key_id uuid, scopes text[], revoked boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  SELECT k.tenant_id, k.id, k.scopes, k.revoked_at IS NOT NULL
  FROM api_keys k WHERE k.hash = p_hash
$$;
ALTER FUNCTION find_api_key(bytea) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION find_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION find_api_key(bytea) TO agentplane_app;

-- Crosses tenants because: last-used times of many tenants' keys are written in one batch, off
-- the request path. Only moves last_used_at forward.
CREATE FUNCTION touch_api_keys(p_ids uuid[], p_at timestamptz)
  RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  UPDATE api_keys SET last_used_at = p_at
  WHERE id = ANY (p_ids) AND (last_used_at IS NULL OR last_used_at < p_at)
$$;
ALTER FUNCTION touch_api_keys(uuid[], timestamptz) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION touch_api_keys(uuid[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION touch_api_keys(uuid[], timestamptz) TO agentplane_app;

-- Crosses tenants because: a tenant is created before any tenant context exists (admin only;
-- the server checks the admin token before calling it).
CREATE FUNCTION admin_create_tenant(p_id uuid, p_name text)
  RETURNS TABLE (id uuid, name text, created_at timestamptz)
  LANGUAGE sql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  INSERT INTO tenants (id, name) VALUES (p_id, p_name)
  RETURNING tenants.id, tenants.name, tenants.created_at
$$;
ALTER FUNCTION admin_create_tenant(uuid, text) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION admin_create_tenant(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_create_tenant(uuid, text) TO agentplane_app;

-- Crosses tenants because: the platform admin lists all tenants (keyset pagination by id).
CREATE FUNCTION admin_list_tenants(p_after uuid, p_limit int)
  RETURNS TABLE (id uuid, name text, created_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  SELECT t.id, t.name, t.created_at FROM tenants t
  WHERE p_after IS NULL OR t.id > p_after
  ORDER BY t.id LIMIT least(greatest(p_limit, 1), 1000)
$$;
ALTER FUNCTION admin_list_tenants(uuid, int) OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION admin_list_tenants(uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_list_tenants(uuid, int) TO agentplane_app;
