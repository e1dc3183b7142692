// Local OpenID provider for integration tests.
//
// Starts oidc-provider on 127.0.0.1 (port from OIDC_PORT, or an ephemeral
// port), with one confidential client that may use the client_credentials
// grant. Access tokens are JWTs (RFC 9068 "at+jwt") signed with RS256 or
// ES256 (OIDC_ALG), audience = the requested resource, lifetime 300 s, and a
// custom claim tenant_id taken from the token request's form field tenant_id
// (fallback: env OIDC_TENANT_ID).
//
// Prints exactly one JSON line to stdout once listening:
//   {"issuer":"...","port":N,"token_endpoint":"...","jwks_uri":"..."}
// Everything else (oidc-provider notices, logs) goes to stderr.
// Runs until SIGTERM/SIGINT, then exits 0.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

// oidc-provider prints its NOTICEs with console.info (stdout). Keep stdout
// reserved for the single JSON line by sending all console output to stderr.
console.log = console.error;
console.info = console.error;

const { default: Provider, errors } = await import('oidc-provider');

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.OIDC_PORT ?? '0', 10);
const ALG = process.env.OIDC_ALG || 'RS256';
const CLIENT_ID = 'agentplane-test';
const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET || 'test-secret';
const CLIENT_AUTH_METHOD = process.env.OIDC_CLIENT_AUTH_METHOD || 'client_secret_post';
const DEFAULT_RESOURCE = process.env.OIDC_DEFAULT_RESOURCE || 'urn:agentplane:test';
const DEFAULT_TENANT_ID = process.env.OIDC_TENANT_ID || undefined;
const TOKEN_TTL = 300;

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`invalid OIDC_PORT ${process.env.OIDC_PORT}`);
if (!['RS256', 'ES256'].includes(ALG)) fail(`unsupported OIDC_ALG ${ALG} (RS256 or ES256)`);
if (!['client_secret_post', 'client_secret_basic'].includes(CLIENT_AUTH_METHOD)) {
  fail(`unsupported OIDC_CLIENT_AUTH_METHOD ${CLIENT_AUTH_METHOD}`);
}

// ---- signing key, generated at start-up, in memory only -------------------

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

// RFC 7638 JWK thumbprint, used as kid.
function thumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return b64url(crypto.createHash('sha256').update(JSON.stringify(members)).digest());
}

function generateSigningJwk(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
}

const signingJwk = generateSigningJwk(ALG);

// ---- tenant_id from the token request --------------------------------------

// oidc-provider only keeps the parameters it knows in ctx.oidc.params
// (extraParams applies to the authorization endpoint, not to the token
// endpoint), but the whole parsed form body stays in ctx.oidc.body, which is
// what extraTokenClaims reads.
function tenantIdFor(ctx) {
  const raw = ctx?.oidc?.body?.tenant_id;
  if (raw === undefined || raw === '') return DEFAULT_TENANT_ID;
  if (typeof raw !== 'string') {
    throw new errors.InvalidRequest('tenant_id must be given at most once');
  }
  return raw;
}

// ---- provider -----------------------------------------------------------------

// With OIDC_TLS_CERT and OIDC_TLS_KEY (PEM files) it serves HTTPS, as "localhost" (the
// certificate's name), still listening on 127.0.0.1.
const TLS = process.env.OIDC_TLS_CERT && process.env.OIDC_TLS_KEY;
const server = TLS
  ? https.createServer({ cert: fs.readFileSync(process.env.OIDC_TLS_CERT), key: fs.readFileSync(process.env.OIDC_TLS_KEY) })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
}).catch((err) => fail(`cannot listen on ${HOST}:${PORT}: ${err.message}`));
const { port } = server.address();
const issuer = TLS ? `https://localhost:${port}` : `http://${HOST}:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: CLIENT_AUTH_METHOD,
  }],
  jwks: { keys: [signingJwk] },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: ALG,
  },
  cookies: { keys: [b64url(crypto.randomBytes(32))] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // No `resource` in the request -> this one.
      defaultResource: async () => DEFAULT_RESOURCE,
      // Any resource indicator is accepted; it becomes the token's aud.
      getResourceServerInfo: async (ctx, resourceIndicator) => ({
        audience: resourceIndicator,
        scope: '',
        accessTokenTTL: TOKEN_TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: ALG } },
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => {
    if (token.kind !== 'ClientCredentials') return undefined;
    const tenantId = tenantIdFor(ctx);
    return tenantId === undefined ? undefined : { tenant_id: tenantId };
  },
  ttl: {
    ClientCredentials: TOKEN_TTL,
    AccessToken: TOKEN_TTL,
  },
  // Plain JSON errors; there is no HTML UI here.
  renderError: async (ctx, out) => {
    ctx.type = 'application/json';
    ctx.body = out;
  },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

server.removeAllListeners('error');
server.on('error', (err) => console.error('http server error', err));
server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({
  issuer,
  port,
  token_endpoint: provider.urlFor('token'),
  jwks_uri: provider.urlFor('jwks'),
})}\n`);

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`provider.mjs: ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
