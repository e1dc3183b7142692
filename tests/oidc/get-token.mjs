// Usage: node get-token.mjs <issuer> <tenant_id> [resource]
//
// Obtains an access token with the client_credentials grant from the provider
// started by provider.mjs and prints just the token on stdout.
// Env: OIDC_CLIENT_ID (default agentplane-test), OIDC_CLIENT_SECRET (default
// test-secret), OIDC_CLIENT_AUTH_METHOD (client_secret_post (default) or
// client_secret_basic; must match the provider's setting).

const [issuerArg, tenantId, resource = 'urn:agentplane:test'] = process.argv.slice(2);
if (!issuerArg || tenantId === undefined) {
  console.error('usage: node get-token.mjs <issuer> <tenant_id> [resource]');
  process.exit(2);
}

const issuer = issuerArg.replace(/\/+$/, '');
const clientId = process.env.OIDC_CLIENT_ID || 'agentplane-test';
const clientSecret = process.env.OIDC_CLIENT_SECRET || 'test-secret';
const authMethod = process.env.OIDC_CLIENT_AUTH_METHOD || 'client_secret_post';

async function main() {
  const discoveryRes = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!discoveryRes.ok) throw new Error(`discovery failed: HTTP ${discoveryRes.status}`);
  const { token_endpoint: tokenEndpoint } = await discoveryRes.json();

  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    resource,
    tenant_id: tenantId,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (authMethod === 'client_secret_basic') {
    const enc = (s) => encodeURIComponent(s); // RFC 6749 2.3.1
    headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
  } else {
    form.set('client_id', clientId);
    form.set('client_secret', clientSecret);
  }

  const res = await fetch(tokenEndpoint, { method: 'POST', headers, body: form });
  const body = await res.text();
  if (!res.ok) throw new Error(`token request failed: HTTP ${res.status} ${body}`);
  const { access_token: accessToken } = JSON.parse(body);
  if (!accessToken) throw new Error(`no access_token in response: ${body}`);
  process.stdout.write(`${accessToken}\n`);
}

main().catch((err) => {
  console.error(`get-token.mjs: ${err.message}`);
  process.exit(1);
});
