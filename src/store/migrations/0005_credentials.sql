-- 0005: tenant credentials (src/vault; docs/vault.md). A tenant table.
-- `token` is a plain Fernet token (Python's cryptography can read it) under the tenant's key
-- derived from master-key version `key_version`. Values are never returned by the API.
CREATE TABLE credentials (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  version integer NOT NULL CHECK (version > 0),
  kind text NOT NULL CHECK (kind IN ('provider_key', 'http_header', 'secret')),
  key_version integer NOT NULL,
  token text NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}',
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, name, version)
);
CREATE INDEX credentials_key_version ON credentials (key_version);
ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credentials
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON credentials TO agentplane_app;
