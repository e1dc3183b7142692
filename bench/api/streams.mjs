// Holds N concurrent SSE streams open on agentplane for HOLD seconds and reports the server's
// memory per stream: N threads each get a run that starts only after the hold
// (`after_seconds`), and a client per run joins its stream (`GET .../runs/{id}/stream`), which
// stays open on heartbeats. The server process's RSS is read from /proc before and while the
// streams are open. Env: API_URL, API_KEY, SERVER_PID, STREAMS (1000), HOLD (60), GRAPH.
import { readFileSync } from "node:fs";

const url = process.env.API_URL, key = process.env.API_KEY, pid = process.env.SERVER_PID;
const n = Number(process.env.STREAMS || 1000), hold = Number(process.env.HOLD || 60);
const graph = process.env.GRAPH || "bench_linear3";
// Node's fetch opens as many connections per origin as there are requests in flight.
const headers = { "x-api-key": key, "content-type": "application/json" };
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
const post = async (path, body) => {
  const r = await fetch(url + path, { method: "POST", headers, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
};

const runs = [];
for (let i = 0; i < n; i += 50) {
  const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, async () => {
    const th = await post("/threads", {});
    const run = await post(`/threads/${th.thread_id}/runs`, { assistant_id: graph, input: { counter: 0, messages: [] }, after_seconds: hold + 30 });
    return [th.thread_id, run.run_id];
  }));
  runs.push(...batch);
}
await new Promise((r) => setTimeout(r, 1000));
const before = rss();
const ac = new AbortController();
let open = 0, heartbeats = 0, failed = 0;
const streams = runs.map(async ([t, r]) => {
  try {
    const res = await fetch(`${url}/threads/${t}/runs/${r}/stream`, { headers: { "x-api-key": key }, signal: ac.signal });
    if (!res.ok) { failed++; return; }
    open++;
    for await (const chunk of res.body) if (String(Buffer.from(chunk)).includes("heartbeat")) heartbeats++;
  } catch (e) {
    if (e.name !== "AbortError") failed++;
  }
});
const t0 = Date.now();
let peak = before, samples = [];
while (Date.now() - t0 < hold * 1000) {
  await new Promise((r) => setTimeout(r, 5000));
  const now = rss();
  peak = Math.max(peak, now);
  samples.push({ s: Math.round((Date.now() - t0) / 1000), open, rss_mib: +(now / 1048576).toFixed(1) });
}
const during = rss();
ac.abort();
await Promise.allSettled(streams);
await post("/runs/cancel", { status: "pending" }).catch(() => {});
console.log(JSON.stringify({
  bench: "sse_streams", streams: n, held_s: hold, open_at_end: open, failed, heartbeats,
  rss_before_mib: +(before / 1048576).toFixed(1), rss_during_mib: +(during / 1048576).toFixed(1),
  rss_peak_mib: +(peak / 1048576).toFixed(1),
  bytes_per_stream: Math.round((during - before) / Math.max(1, open)), samples,
}));
