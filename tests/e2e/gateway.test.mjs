// The model gateway driven by the unmodified `openai` and `@anthropic-ai/sdk` clients, against a
// mock provider this test starts. Environment (set by tests/integration/gateway_e2e_test.cc):
// AGENTPLANE_URL, AGENTPLANE_KEY_A, AGENTPLANE_KEY_B (two tenants), AGENTPLANE_ADMIN_TOKEN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startMock } from './mock_upstream.mjs';

const URL_ = process.env.AGENTPLANE_URL;
const KEY_A = process.env.AGENTPLANE_KEY_A;
const KEY_B = process.env.AGENTPLANE_KEY_B;
const ADMIN = process.env.AGENTPLANE_ADMIN_TOKEN;
const UPSTREAM_KEY = 'sk-upstream-' + Math.random().toString(36).slice(2) + '-secret';
let mock;

async function api(method, path, key, body) {
  const r = await fetch(URL_ + path, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : null };
}

const openai = (key = KEY_A) => new OpenAI({ apiKey: key, baseURL: URL_ + '/v1', maxRetries: 0 });
const anthropic = (key = KEY_A) => new Anthropic({ apiKey: key, baseURL: URL_, maxRetries: 0 });
const weatherTool = { type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };

async function usageOf(key, groupBy, until) {
  for (let i = 0; i < 100; i++) {
    const u = await api('GET', `/v1/usage?group_by=${groupBy}`, key);
    assert.equal(u.status, 200, JSON.stringify(u.body));
    if (until(u.body)) return u.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('usage never reached the expected state');
}

before(async () => {
  mock = await startMock(UPSTREAM_KEY);
  let r = await api('PUT', '/v1/credentials/openai-key', KEY_A, { value: UPSTREAM_KEY, kind: 'provider_key' });
  assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
  r = await api('PUT', '/v1/credentials/anthropic-key', KEY_A, { value: UPSTREAM_KEY, kind: 'provider_key' });
  assert.ok(r.status === 201 || r.status === 200);
  r = await api('PUT', '/v1/model-routes/gpt-mock', KEY_A, { provider: 'openai', upstream_model: 'gpt-4o-mini',
    base_url: mock.url + '/v1', credential: 'openai-key' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await api('PUT', '/v1/model-routes/slow-mock', KEY_A, { provider: 'openai', upstream_model: 'slow',
    base_url: mock.url + '/v1', credential: 'openai-key' });
  assert.equal(r.status, 201);
  r = await api('PUT', '/v1/model-routes/claude-mock', KEY_A, { provider: 'anthropic', upstream_model: 'claude-3-5-haiku-20241022',
    base_url: mock.url, credential: 'anthropic-key' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await api('PUT', '/v1/model-routes/scripted', KEY_A, { provider: 'scripted', script: ['Scripted hello to {{last_user}}'] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});

after(async () => { await mock?.close(); });

test('models.list shows the tenant\'s routes in OpenAI\'s format, and only its own', async () => {
  const ids = [];
  for await (const m of openai().models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['claude-mock', 'gpt-mock', 'scripted', 'slow-mock']);
  const b = [];
  for await (const m of openai(KEY_B).models.list()) b.push(m.id);
  assert.deepEqual(b, []);
  const one = await openai().models.retrieve('gpt-mock');
  assert.equal(one.owned_by, 'openai');
});

test('chat.completions (JSON) goes upstream with the tenant\'s key injected', async () => {
  const c = await openai().chat.completions.create({ model: 'gpt-mock', messages: [{ role: 'user', content: 'Say hello' }] });
  assert.equal(c.choices[0].message.content, 'Hello from the mock.');
  assert.equal(c.usage.total_tokens, 17);
  const last = (await (await fetch(mock.url + '/_last')).json()).last;
  assert.equal(last.headers.authorization, `Bearer ${UPSTREAM_KEY}`);  // the vault's key, not the client's
  assert.equal(last.body.model, 'gpt-4o-mini');                          // the route's upstream model
});

test('a request that needs no change goes upstream byte for byte', async () => {
  const r = await api('PUT', '/v1/model-routes/gpt-4o-mini', KEY_A, { provider: 'openai', upstream_model: 'gpt-4o-mini',
    base_url: mock.url + '/v1', credential: 'openai-key' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  // Our own spacing, key order and number forms: a re-serialisation would change them.
  const sent = '{ "messages" : [{"role":"user","content":"Say hello"}], "temperature": 1.50, "model":"gpt-4o-mini", "user":"\u00e9" }';
  const res = await fetch(URL_ + '/v1/chat/completions', { method: 'POST', headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' }, body: sent });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).usage.total_tokens, 17);
  const last = (await (await fetch(mock.url + '/_last')).json()).last;
  assert.equal(last.raw, sent);
  assert.equal(last.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
  // A repeated key is another matter: the upstream gets the body as we read it (the last one).
  const twice = '{"model":"gpt-4o-mini","max_tokens":100000,"messages":[{"role":"user","content":"hi"}],"max_tokens":5}';
  const res2 = await fetch(URL_ + '/v1/chat/completions', { method: 'POST', headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' }, body: twice });
  assert.equal(res2.status, 200);
  const last2 = (await (await fetch(mock.url + '/_last')).json()).last;
  assert.equal(last2.raw.split('max_tokens').length, 2, last2.raw);
  assert.equal(last2.body.max_tokens, 5);
  // JSON's numbers have no size limit: an integer beyond 64 bits in a tool schema is no reason
  // to refuse a request, and it goes upstream as sent.
  const wide = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"integer","maximum":18446744073709551616}}}]}';
  const res3 = await fetch(URL_ + '/v1/chat/completions', { method: 'POST', headers: { 'x-api-key': KEY_A, 'content-type': 'application/json' }, body: wide });
  assert.equal(res3.status, 200, await res3.clone().text());
  assert.equal((await (await fetch(mock.url + '/_last')).json()).last.raw, wide);
  await api('DELETE', '/v1/model-routes/gpt-4o-mini', KEY_A);
});

test('a reply without usage is recorded with estimated tokens', async () => {
  const r = await api('PUT', '/v1/model-routes/no-usage', KEY_A, { provider: 'openai', upstream_model: 'no-usage',
    base_url: mock.url + '/v1', credential: 'openai-key' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const c = await openai().chat.completions.create({ model: 'no-usage', messages: [{ role: 'user', content: 'Say hello' }] });
  assert.equal(c.choices[0].message.content, 'Hello from the mock.');
  const u = await usageOf(KEY_A, 'model', (b) => b.rows.some((x) => x.group === 'no-usage'));
  const row = u.rows.find((x) => x.group === 'no-usage');
  assert.equal(row.requests, 1);
  assert.ok(row.prompt_tokens >= 1 && row.completion_tokens >= 1, JSON.stringify(row));
  await api('DELETE', '/v1/model-routes/no-usage', KEY_A);
});

test('chat.completions streams chunk by chunk; usage only when asked', async () => {
  const s = await openai().chat.completions.create({ model: 'gpt-mock', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  let text = '';
  let usageChunks = 0;
  for await (const ch of s) {
    if (ch.usage) usageChunks++;
    text += ch.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, 'Hello from the mock.');
  assert.equal(usageChunks, 0);  // we asked upstream for usage ourselves and kept it from the client
  const last = (await (await fetch(mock.url + '/_last')).json()).last;
  assert.equal(last.body.stream_options.include_usage, true);

  const s2 = await openai().chat.completions.create({ model: 'gpt-mock', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'hi' }] });
  let usage = null;
  for await (const ch of s2) if (ch.usage) usage = ch.usage;
  assert.equal(usage.prompt_tokens, 12);
});

test('tool calls come through, JSON and streamed', async () => {
  const c = await openai().chat.completions.create({ model: 'gpt-mock', tools: [weatherTool],
    messages: [{ role: 'user', content: 'weather in Paris?' }] });
  assert.equal(c.choices[0].message.tool_calls[0].function.name, 'get_weather');
  const runner = openai().beta.chat.completions.stream({ model: 'gpt-mock', tools: [weatherTool],
    messages: [{ role: 'user', content: 'weather in Paris?' }] });
  const final = await runner.finalChatCompletion();
  assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris' });
});

test('anthropic messages, JSON and streamed, with tool use', async () => {
  const m = await anthropic().messages.create({ model: 'claude-mock', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(m.content[0].text, 'Hello from the mock.');
  assert.equal(m.usage.input_tokens, 20);
  const last = (await (await fetch(mock.url + '/_last')).json()).last;
  assert.equal(last.headers['x-api-key'], UPSTREAM_KEY);
  assert.equal(last.body.model, 'claude-3-5-haiku-20241022');
  const stream = anthropic().messages.stream({ model: 'claude-mock', max_tokens: 64, tools: [{ name: 'get_weather',
    description: 'w', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
    messages: [{ role: 'user', content: 'weather in Paris?' }] });
  const final = await stream.finalMessage();
  assert.equal(final.content[0].type, 'tool_use');
  assert.deepEqual(final.content[0].input, { city: 'Paris' });
  assert.equal(final.usage.output_tokens, 7);
});

test('scripted routes answer in both formats without any upstream', async () => {
  const c = await openai().chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'Ada' }] });
  assert.equal(c.choices[0].message.content, 'Scripted hello to Ada');
  let text = '';
  for await (const ch of await openai().chat.completions.create({ model: 'scripted', stream: true, messages: [{ role: 'user', content: 'Bo' }] }))
    text += ch.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'Scripted hello to Bo');
  const m = await anthropic().messages.create({ model: 'scripted', max_tokens: 50, messages: [{ role: 'user', content: 'Cy' }] });
  assert.equal(m.content[0].text, 'Scripted hello to Cy');
  const s = anthropic().messages.stream({ model: 'scripted', max_tokens: 50, messages: [{ role: 'user', content: 'Di' }] });
  assert.equal((await s.finalMessage()).content[0].text, 'Scripted hello to Di');
});

test('errors: unknown model, wrong endpoint, bad body, upstream error passed back', async () => {
  await assert.rejects(openai().chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(openai().chat.completions.create({ model: 'claude-mock', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && /\/v1\/messages/.test(e.message));
  const bad = await api('POST', '/v1/chat/completions', KEY_A, { model: 'gpt-mock', messages: 'hello' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.type, 'invalid_request_error');
  // The upstream's own 400 comes back with its status and body.
  let r = await api('PUT', '/v1/model-routes/overloaded', KEY_A, { provider: 'openai', upstream_model: 'overloaded',
    base_url: mock.url + '/v1', credential: 'openai-key' });
  assert.equal(r.status, 201);
  await assert.rejects(openai().chat.completions.create({ model: 'overloaded', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && /overloaded for test/.test(e.message));
  // A wrong provider key: the upstream's 401 body echoes it; the gateway removes it.
  r = await api('PUT', '/v1/credentials/wrong-key', KEY_A, { value: 'sk-wrong-0123456789', kind: 'provider_key' });
  r = await api('PUT', '/v1/model-routes/wrong', KEY_A, { provider: 'openai', upstream_model: 'x', base_url: mock.url + '/v1', credential: 'wrong-key' });
  const w = await api('POST', '/v1/chat/completions', KEY_A, { model: 'wrong', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(w.status, 401);
  assert.ok(!JSON.stringify(w.body).includes('sk-wrong-0123456789'), JSON.stringify(w.body));
  await api('DELETE', '/v1/model-routes/wrong', KEY_A);
  await api('DELETE', '/v1/model-routes/overloaded', KEY_A);
  // Tenant B cannot use tenant A's routes.
  await assert.rejects(openai(KEY_B).chat.completions.create({ model: 'gpt-mock', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404);
});

test('a client that disconnects mid-stream cancels the upstream call and is still recorded', async () => {
  const before = (await (await fetch(mock.url + '/_last')).json()).aborted;
  const ac = new AbortController();
  const s = await openai().chat.completions.create({ model: 'slow-mock', stream: true, messages: [{ role: 'user', content: 'x' }] },
    { signal: ac.signal });
  const headersAt = Date.now();  // create() resolves with the response's head
  for await (const ch of s) { if (ch.choices[0]?.delta?.content) break; }  // leaves after the first token
  // The model thought for 300 ms before its first token: the head reached the client before that
  // (it is not held back for the first piece of the body).
  assert.ok(headersAt < (await (await fetch(mock.url + '/_last')).json()).slowFirstSentAt, 'head before the first token');
  ac.abort();
  for (let i = 0; i < 50; i++) {
    const st = (await (await fetch(mock.url + '/_last')).json());
    if (st.aborted > before) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok((await (await fetch(mock.url + '/_last')).json()).aborted > before, 'upstream saw the cancel');
  const u = await usageOf(KEY_A, 'model', (b) => b.rows.some((r) => r.group === 'slow-mock'));
  const row = u.rows.find((r) => r.group === 'slow-mock');
  assert.equal(row.requests, 1);
  assert.ok(row.completion_tokens >= 1);
  assert.ok(row.prompt_tokens >= 1, JSON.stringify(row));  // the prompt's bound, estimated
});

test('usage: every call recorded with tokens and cost, by model and in total', async () => {
  const u = await usageOf(KEY_A, 'model', (b) => (b.rows.find((r) => r.group === 'gpt-mock')?.requests ?? 0) >= 5);
  const g = u.rows.find((r) => r.group === 'gpt-mock');
  assert.ok(g.prompt_tokens >= 60, JSON.stringify(g));
  assert.ok(g.cached_tokens >= 10);
  assert.ok(g.cost_micro_usd > 0);  // gpt-4o-mini is in the shipped price table
  assert.equal(g.unpriced_requests, 0);
  assert.ok(u.total.requests >= g.requests);
  const byDay = await api('GET', '/v1/usage?group_by=day', KEY_A);
  assert.equal(byDay.status, 200);
  assert.match(byDay.body.rows[0].group, /^\d{4}-\d{2}-\d{2}$/);
  const bad = await api('GET', '/v1/usage?group_by=colour', KEY_A);
  assert.equal(bad.status, 400);
  const b = await api('GET', '/v1/usage', KEY_B);
  assert.equal(b.body.total.requests, 0);
});

test('limits: requests per minute enforced with 429, Retry-After and x-ratelimit headers', async () => {
  const me = await api('GET', '/v1/limits', KEY_B);
  assert.equal(me.status, 200);
  const tenantB = process.env.AGENTPLANE_TENANT_B;
  assert.ok(tenantB, 'tenant id of B');
  let r = await api('PUT', `/v1/tenants/${tenantB}/limits`, ADMIN, { model_requests_per_min: 2, time_zone: 'Europe/Paris' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  r = await api('PUT', `/v1/tenants/${tenantB}/limits`, ADMIN, { model_requests_per_min: -2 });
  assert.equal(r.status, 400);
  r = await api('PUT', `/v1/tenants/${tenantB}/limits`, KEY_B, { model_requests_per_min: 1000 });
  assert.equal(r.status, 403);  // tenants read their limits, never set them
  await api('PUT', '/v1/model-routes/s', KEY_B, { provider: 'scripted', script: ['ok'] });
  const call = () => fetch(URL_ + '/v1/chat/completions', { method: 'POST',
    headers: { authorization: `Bearer ${KEY_B}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 's', messages: [{ role: 'user', content: 'x' }], max_tokens: 5 }) });
  const r1 = await call();
  assert.equal(r1.status, 200);
  assert.equal(r1.headers.get('x-ratelimit-limit-requests'), '2');
  assert.equal(r1.headers.get('x-ratelimit-remaining-requests'), '1');
  assert.ok(r1.headers.get('ratelimit-limit'));
  assert.equal((await call()).status, 200);
  const r3 = await call();
  assert.equal(r3.status, 429);
  assert.ok(Number(r3.headers.get('retry-after')) >= 1);
  const body = await r3.json();
  assert.equal(body.error.code, 'rate_limit_exceeded');
  await assert.rejects(openai(KEY_B).chat.completions.create({ model: 's', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 429);
  const st = await api('GET', '/v1/limits', KEY_B);
  assert.equal(st.body.limits.model_requests_per_min, 2);
  assert.equal(st.body.usage.model_requests_per_min.remaining, 0);
});

test('budgets: a daily spend limit refuses calls whose worst case no longer fits', async () => {
  const tenantB = process.env.AGENTPLANE_TENANT_B;
  // A priced scripted route: 1 USD per token, so one call's worst case is far above 10 micro-USD.
  await api('PUT', '/v1/model-routes/pricey', KEY_B, { provider: 'scripted', script: ['ok'], prices: { input_cost_per_token: 1, output_cost_per_token: 1 } });
  let r = await api('PUT', `/v1/tenants/${tenantB}/limits`, ADMIN, { budget_micro_usd_per_day: 10 });
  assert.equal(r.status, 200);
  const res = await api('POST', '/v1/chat/completions', KEY_B, { model: 'pricey', messages: [{ role: 'user', content: 'x' }], max_tokens: 5 });
  assert.equal(res.status, 429);
  assert.equal(res.body.error.code, 'budget_exceeded');
  r = await api('PUT', `/v1/tenants/${tenantB}/limits`, ADMIN, {});
  assert.equal(r.status, 200);
});
