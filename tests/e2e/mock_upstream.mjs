// A mock model provider for the gateway tests: OpenAI chat completions and Anthropic messages,
// JSON and SSE, tool calls (when the last message mentions "weather"), usage. It answers only a
// request that carries the expected provider key (MOCK_KEY), as the real providers would, and
// remembers the last request's headers and body at GET /_last. Listens on 127.0.0.1 only.
//   import { startMock } from './mock_upstream.mjs'; const m = await startMock('sk-upstream-...');
import http from 'node:http';

export async function startMock(key) {
  const state = { last: null, aborted: 0, requests: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (req.url === '/_last') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(state));
      }
      state.requests++;
      let json = {};
      try { json = JSON.parse(body || '{}'); } catch { /* answered below */ }
      state.last = { url: req.url, headers: req.headers, body: json, raw: body };
      if (req.url === '/v1/chat/completions') return openai(req, res, json);
      if (req.url === '/v1/messages') return anthropic(req, res, json);
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'no such path', type: 'invalid_request_error' } }));
    });
  });

  function lastText(messages) {
    const m = messages?.[messages.length - 1];
    if (!m) return '';
    if (typeof m.content === 'string') return m.content;
    return (m.content || []).map((p) => p.text || (typeof p.content === 'string' ? p.content : '')).join('');
  }

  function openai(req, res, json) {
    if (req.headers.authorization !== `Bearer ${key}`) {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${req.headers.authorization}`, type: 'invalid_request_error', code: 'invalid_api_key' } }));
    }
    if (json.model === 'overloaded') {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: 'model overloaded for test', type: 'invalid_request_error', code: 'test' } }));
    }
    const text = lastText(json.messages);
    const tool = /weather/.test(text) && (json.tools || []).length > 0;
    const words = ['Hello', ' from', ' the', ' mock', '.'];
    const usage = { prompt_tokens: 12, completion_tokens: tool ? 9 : 5, total_tokens: tool ? 21 : 17,
                    prompt_tokens_details: { cached_tokens: 2 } };
    const id = 'chatcmpl-mock';
    if (json.model === 'no-usage') {  // as some OpenAI-compatible servers answer
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ id, object: 'chat.completion', created: 1, model: json.model,
        choices: [{ index: 0, message: { role: 'assistant', content: words.join('') }, finish_reason: 'stop' }] }));
    }
    if (!json.stream) {
      const message = tool
        ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }
        : { role: 'assistant', content: words.join('') };
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_mock' });
      return res.end(JSON.stringify({ id, object: 'chat.completion', created: 1, model: json.model,
        choices: [{ index: 0, message, finish_reason: tool ? 'tool_calls' : 'stop' }], usage }));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (o) => res.write(`data: ${JSON.stringify(o)}\n\n`);
    const chunk = (delta, finish = null) => ({ id, object: 'chat.completion.chunk', created: 1, model: json.model,
      choices: [{ index: 0, delta, finish_reason: finish }], ...(json.stream_options?.include_usage ? { usage: null } : {}) });
    let i = 0;
    const slow = json.model === 'slow';
    res.on('close', () => { if (!res.writableEnded) state.aborted++; });
    const tick = () => {
      if (res.destroyed) return;
      if (slow && i === 0) state.slowFirstSentAt = Date.now();
      if (tool) {
        send(chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }));
        send(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
        send(chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }));
        send(chunk({}, 'tool_calls'));
      } else if (i < words.length) {
        send(chunk(i === 0 ? { role: 'assistant', content: words[i] } : { content: words[i] }));
        i++;
        return setTimeout(tick, slow ? 300 : 0);
      } else {
        send(chunk({}, 'stop'));
      }
      if (json.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created: 1, model: json.model, choices: [], usage });
      res.end('data: [DONE]\n\n');
    };
    if (slow) {  // a model that thinks before its first token: the head goes out at once, the body later
      res.flushHeaders();
      setTimeout(tick, 300);
    } else {
      tick();
    }
  }

  function anthropic(req, res, json) {
    if (req.headers['x-api-key'] !== key) {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } }));
    }
    const text = lastText(json.messages);
    const tool = /weather/.test(text) && (json.tools || []).length > 0;
    const usage = { input_tokens: 20, output_tokens: 7, cache_read_input_tokens: 4, cache_creation_input_tokens: 0 };
    const content = tool
      ? [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }]
      : [{ type: 'text', text: 'Hello from the mock.' }];
    const message = { id: 'msg_mock', type: 'message', role: 'assistant', model: json.model, content,
      stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null, usage };
    if (!json.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(message));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (name, data) => res.write(`event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`);
    ev('message_start', { message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } });
    if (tool) {
      ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {} } });
      ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '{"city": "Paris"}' } });
    } else {
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      for (const w of ['Hello', ' from', ' the mock.']) ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } });
    }
    ev('content_block_stop', { index: 0 });
    ev('message_delta', { delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: 7 } });
    ev('message_stop', {});
    res.end();
  }

  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, state, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}
