-- 0012: the hosts a credential may be sent to (src/vault; docs/vault.md). A JSON array of host
-- names ("api.example.com") and wildcards ("*.example.com": sub-domains only). Empty: model
-- routes (configured with the credentials scope) may use it; tools may not.
ALTER TABLE credentials ADD COLUMN allowed_hosts jsonb NOT NULL DEFAULT '[]'
  CHECK (jsonb_typeof(allowed_hosts) = 'array');
