// End-to-end self test of provider.mjs and get-token.mjs (needs `npm ci` first).
// For RS256 and ES256: starts the provider, reads discovery and JWKS, gets
// tokens for two tenant ids, decodes and verifies them (node:crypto), checks
// error cases, stops the provider with SIGTERM and expects exit code 0.
// Prints decoded tokens with -v. Ends with the line "N passed, N failed".

import { spawn, execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const dir = fileURLToPath(new URL('.', import.meta.url));
const verbose = process.argv.includes('-v');
const run = promisify(execFile);
let passed = 0;
let failed = 0;

function check(name, cond, detail = '') {
  if (cond) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name} ${detail}`);
  }
}

const decode = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function verifyJwt(token, jwks) {
  const [h, p, s] = token.split('.');
  const header = decode(h);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return { header, payload: decode(p), jwk, valid: false };
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const valid = crypto.verify(
    'sha256',
    Buffer.from(`${h}.${p}`),
    jwk.kty === 'EC' ? { key, dsaEncoding: 'ieee-p1363' } : key,
    Buffer.from(s, 'base64url'),
  );
  return { header, payload: decode(p), jwk, valid };
}

async function startProvider(env) {
  const child = spawn(process.execPath, ['provider.mjs'], {
    cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr.on('data', (d) => { if (verbose) process.stderr.write(d); });
  const lines = createInterface({ input: child.stdout });
  const [first] = await once(lines, 'line');
  const extra = [];
  lines.on('line', (l) => extra.push(l));
  return { child, info: JSON.parse(first), extra };
}

async function tokenRequest(endpoint, fields) {
  const res = await fetch(endpoint, { method: 'POST', body: new URLSearchParams(fields) });
  return { status: res.status, body: await res.json() };
}

async function scenario(alg) {
  console.log(`# OIDC_ALG=${alg}`);
  const { child, info, extra } = await startProvider({ OIDC_ALG: alg });
  const exited = once(child, 'exit');
  try {
    const { issuer } = info;
    check(`${alg} issuer is http://127.0.0.1:<port>`, issuer === `http://127.0.0.1:${info.port}`, issuer);

    const disco = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    check(`${alg} discovery issuer`, disco.issuer === issuer);
    check(`${alg} discovery token_endpoint`, disco.token_endpoint === info.token_endpoint);
    check(`${alg} discovery jwks_uri`, disco.jwks_uri === info.jwks_uri);
    check(`${alg} discovery client_credentials`, disco.grant_types_supported.includes('client_credentials'));

    const jwks = await (await fetch(info.jwks_uri)).json();
    check(`${alg} jwks has one key with alg ${alg}`, jwks.keys.length === 1 && jwks.keys[0].alg === alg);
    check(`${alg} jwks has no private parts`, !jwks.keys.some((k) => 'd' in k));

    const cases = [
      { tenant: 'tenant-a', resource: undefined, aud: 'urn:agentplane:test' },
      { tenant: 'tenant-b', resource: 'urn:agentplane:other', aud: 'urn:agentplane:other' },
    ];
    for (const c of cases) {
      const args = ['get-token.mjs', issuer, c.tenant, ...(c.resource ? [c.resource] : [])];
      const { stdout } = await run(process.execPath, args, { cwd: dir });
      const token = stdout.trim();
      const { header, payload, valid } = verifyJwt(token, jwks);
      if (verbose) console.log(JSON.stringify({ header, payload }, null, 2));
      const now = Math.floor(Date.now() / 1000);
      check(`${alg} ${c.tenant} header alg/typ`, header.alg === alg && header.typ === 'at+jwt', JSON.stringify(header));
      check(`${alg} ${c.tenant} kid in JWKS and signature valid`, valid);
      check(`${alg} ${c.tenant} iss`, payload.iss === issuer);
      check(`${alg} ${c.tenant} aud`, payload.aud === c.aud, payload.aud);
      check(`${alg} ${c.tenant} exp = iat + 300`, payload.exp - payload.iat === 300 && payload.exp > now);
      check(`${alg} ${c.tenant} tenant_id`, payload.tenant_id === c.tenant, payload.tenant_id);
      check(`${alg} ${c.tenant} sub/client_id`, payload.sub === 'agentplane-test' && payload.client_id === 'agentplane-test');
    }

    const base = { grant_type: 'client_credentials', client_id: 'agentplane-test', client_secret: 'test-secret' };
    let r = await tokenRequest(info.token_endpoint, { ...base, client_secret: 'wrong' });
    check(`${alg} wrong secret -> 401 invalid_client`, r.status === 401 && r.body.error === 'invalid_client', JSON.stringify(r));
    r = await tokenRequest(info.token_endpoint, base);
    check(`${alg} no tenant_id -> token without tenant_id`, r.status === 200 && !('tenant_id' in decode(r.body.access_token.split('.')[1])), JSON.stringify(r));
    r = await tokenRequest(info.token_endpoint, [...Object.entries(base), ['tenant_id', 'a'], ['tenant_id', 'b']]);
    check(`${alg} repeated tenant_id -> 400 invalid_request`, r.status === 400 && r.body.error === 'invalid_request', JSON.stringify(r));
  } finally {
    child.kill('SIGTERM');
  }
  const [code] = await exited;
  check(`${alg} SIGTERM -> exit 0`, code === 0, `code ${code}`);
  check(`${alg} exactly one stdout line`, extra.length === 0, JSON.stringify(extra));
}

try {
  await scenario('RS256');
  await scenario('ES256');
} catch (err) {
  failed += 1;
  console.log(`FAIL exception ${err.stack}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
