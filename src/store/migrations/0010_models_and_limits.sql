-- 0010: the model gateway (src/llm, docs/models.md) and limits (src/ratelimit, docs/limits.md).

-- A tenant's models: the name clients use -> provider, upstream model, base URL, the credential
-- (name in the tenant's vault) holding the provider key, optional price override, and for the
-- scripted provider its script.
CREATE TABLE model_routes (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  provider text NOT NULL CHECK (provider IN ('openai', 'anthropic', 'scripted')),
  upstream_model text NOT NULL,
  base_url text,
  credential text,
  prices jsonb,
  script jsonb,
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, name)
);

-- One row per model call (gateway and llm nodes). No prompt or response bodies.
CREATE TABLE usage_records (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  created_at timestamptz NOT NULL,
  source text NOT NULL CHECK (source IN ('gateway', 'run')),
  request_id text,
  key_id uuid,
  thread_id uuid,
  run_id uuid,
  model text NOT NULL,
  provider text NOT NULL,
  upstream_model text,
  prompt_tokens bigint NOT NULL DEFAULT 0,
  cached_tokens bigint NOT NULL DEFAULT 0,
  cache_creation_tokens bigint NOT NULL DEFAULT 0,
  completion_tokens bigint NOT NULL DEFAULT 0,
  reasoning_tokens bigint NOT NULL DEFAULT 0,
  cost_micro_usd bigint NOT NULL DEFAULT 0,
  price_version text,
  unpriced boolean NOT NULL DEFAULT false,
  estimated boolean NOT NULL DEFAULT false,
  ttft_ms double precision,
  duration_ms double precision NOT NULL DEFAULT 0,
  status int NOT NULL,
  streamed boolean NOT NULL DEFAULT false,
  disconnected boolean NOT NULL DEFAULT false,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_records_time ON usage_records (tenant_id, created_at);

-- Hourly rollups, maintained incrementally by the usage writer (one upsert per group per flush,
-- never per request). Days in any whole-hour time zone are sums of these.
CREATE TABLE usage_hourly (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  hour timestamptz NOT NULL,
  model text NOT NULL,
  key_id text NOT NULL DEFAULT '',  -- '' for runs and admin calls
  requests bigint NOT NULL DEFAULT 0,
  prompt_tokens bigint NOT NULL DEFAULT 0,
  cached_tokens bigint NOT NULL DEFAULT 0,
  completion_tokens bigint NOT NULL DEFAULT 0,
  reasoning_tokens bigint NOT NULL DEFAULT 0,
  cost_micro_usd bigint NOT NULL DEFAULT 0,
  unpriced_requests bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, hour, model, key_id)
);

-- The operator's limits for a tenant (src/ratelimit/limits.h); absent: the deployment's defaults.
CREATE TABLE tenant_limits (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  limits jsonb NOT NULL,
  time_zone text,  -- IANA name for usage days and daily budgets; NULL: UTC
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['model_routes', 'usage_records', 'usage_hourly', 'tenant_limits'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                   'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
                   'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)', t);
    EXECUTE format('GRANT SELECT ON %I TO agentplane_system', t);
  END LOOP;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON model_routes TO agentplane_app;
GRANT SELECT, INSERT ON usage_records TO agentplane_app;
GRANT SELECT, INSERT, UPDATE ON usage_hourly TO agentplane_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_limits TO agentplane_app;
