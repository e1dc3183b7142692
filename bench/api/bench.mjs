// POST /runs/wait and POST /threads/{id}/runs/wait under autocannon, on agentplane or on the
// LangGraph.js dev server (the peer). Started by run.sh, which starts the servers; one JSON
// line per scenario on stdout, progress on stderr.
//   TARGET=agentplane API_URL=... API_KEY=... node bench.mjs
//   TARGET=peer API_URL=... SCENARIOS=stateless_linear10_c10,... node bench.mjs
//   node bench.mjs ratios OURS.jsonl PEER.jsonl      one JSON line: agentplane/peer req/s
// Env: DURATION (s, 10), CONNS ("1 10 100"), KINDS ("stateless thread"), GRAPHS ("linear10
// linear3"), DURABILITY ("sync async exit"), ONLY (comma list of scenario-name globs),
// SCENARIOS (exact names, overrides the matrix), SERVER_PIDS (roots of the server's process
// trees, for CPU accounting), METRICS_URL (+ METRICS_TOKEN), API_LOG (peer: its server log).
// Autocannon settings are the peer's api-bench.mjs ones: defaults (pipelining 1, 10 s request
// timeout), `connections`, `duration`; a thread per connection for thread runs.
import autocannon from "autocannon";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const log = (s) => process.stderr.write(`[bench/api] ${s}\n`);
const words = (s, d) => (s ?? d).split(/[\s,]+/).filter(Boolean);
const round = (x, n = 2) => (x == null || !Number.isFinite(x) ? x : Math.round(x * 10 ** n) / 10 ** n);

if (process.argv[2] === "ratios") {
  ratios(process.argv[3], process.argv[4]);
  process.exit(0);
}
if (process.argv[2] === "spec") {
  emit(linearSpec(Number(process.argv[3])));
  process.exit(0);
}

// agentplane's graph spec (docs/graph_spec.md) of the peer's `linear` graph with n nodes:
// node n<i> appends {role: "assistant", content: "node <i> done"} to `messages` (append =
// concat, as the peer's reducer) and sets `counter` to counter + 1 (null counts as 0).
function linearSpec(n) {
  const nodes = {};
  const edges = [["__start__", "n0"]];
  for (let i = 0; i < n; i++) {
    nodes[`n${i}`] = { kind: "set", values: { messages: { literal: { role: "assistant", content: `node ${i} done` } }, counter: { increment: "counter" } } };
    edges.push([`n${i}`, i + 1 < n ? `n${i + 1}` : "__end__"]);
  }
  return { channels: { messages: "append", counter: "last_value" }, nodes, edges };
}

const TARGET = process.env.TARGET ?? "agentplane";
const API_URL = process.env.API_URL;
if (!API_URL) throw new Error("API_URL not set");
const DURATION = Number(process.env.DURATION ?? 10);
const HEADERS = { "content-type": "application/json", ...(process.env.API_KEY ? { "x-api-key": process.env.API_KEY } : {}) };

// The graphs: same state as the peer's graph.mjs `linear`: `messages` (concat) gets one
// {role, content} per node, `counter` (last value) is incremented by each node.
const GRAPHS = { linear10: 10, linear3: 3 };
const assistantOf = (graph) => (TARGET === "peer" ? { linear10: "linear" }[graph] : `bench_${graph}`);
const input = { messages: [{ role: "user", content: "go" }], counter: 0 };

// ---- scenario matrix ----
function matrix() {
  const out = [];
  const durs = TARGET === "peer" ? [null] : words(process.env.DURABILITY, "sync async exit");
  for (const kind of words(process.env.KINDS, "stateless thread"))
    for (const graph of words(process.env.GRAPHS, "linear10 linear3"))
      for (const durability of durs)
        for (const c of words(process.env.CONNS, "1 10 100").map(Number)) {
          if (!GRAPHS[graph] || !["stateless", "thread"].includes(kind)) throw new Error(`unknown ${kind} ${graph}`);
          if (!assistantOf(graph)) continue; // the peer has no such graph
          const name = [kind, graph, durability, `c${c}`].filter(Boolean).join("_");
          out.push({ name, kind, graph, durability, connections: c });
        }
  const only = words(process.env.ONLY, "").map((g) => new RegExp("^" + g.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*") + "$"));
  const exact = words(process.env.SCENARIOS, "");
  return out.filter((s) => (exact.length ? exact.includes(s.name) : !only.length || only.some((r) => r.test(s.name))));
}

// ---- HTTP helpers ----
async function call(method, path, body) {
  const r = await fetch(API_URL + path, { method, headers: HEADERS, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path} -> ${r.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}
function checkOutput(o, nodes, kind) {
  const okCounter = o && o.counter === nodes;
  const okMsgs = o && Array.isArray(o.messages) && (kind === "thread" ? o.messages.length >= nodes + 1 : o.messages.length === nodes + 1)
    && o.messages.at(-1)?.content === `node ${nodes - 1} done`;
  return okCounter && okMsgs;
}
const verifier = (nodes) => (body) => { try { const o = JSON.parse(body); return o.counter === nodes && !o.__error__; } catch { return false; } };

// ---- CPU accounting from /proc: the server's process trees, this process, everything else ----
const HZ = 100;
const sysBusy = () => { const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number); return f[0] + f[1] + f[2] + f[5] + f[6]; };
function treeTicks(roots) {
  if (!roots.length) return 0;
  const procs = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const x = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = x.slice(x.lastIndexOf(")") + 2).split(" ");
      procs.set(Number(d), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch {}
  }
  const kids = new Map();
  for (const [pid, p] of procs) { if (!kids.has(p.ppid)) kids.set(p.ppid, []); kids.get(p.ppid).push(pid); }
  let t = 0; const seen = new Set(); const stack = [...roots];
  while (stack.length) {
    const pid = stack.pop();
    if (seen.has(pid)) continue;
    seen.add(pid);
    t += procs.get(pid)?.ticks ?? 0;
    stack.push(...(kids.get(pid) ?? []));
  }
  return t;
}
const ROOTS = words(process.env.SERVER_PIDS, "").map(Number);
const cpuStart = () => ({ t: performance.now(), busy: sysBusy(), srv: treeTicks(ROOTS), me: process.cpuUsage() });
function cpuEnd(s) {
  const wall = (performance.now() - s.t) / 1000;
  const me = process.cpuUsage(s.me); const meT = ((me.user + me.system) / 1e6) * HZ;
  const srv = treeTicks(ROOTS) - s.srv; const busy = sysBusy() - s.busy;
  const c = (x) => round(x / HZ / wall, 3);
  return { wall_s: round(wall, 3), busy_cores: c(busy), server_cores: c(srv), loadgen_cores: c(meT), other_cores: c(Math.max(0, busy - srv - meT)) };
}

// ---- agentplane_run_pickup_seconds from /metrics ----
const METRICS_URL = process.env.METRICS_URL;
async function pickupBuckets() {
  if (!METRICS_URL) return null;
  try {
    const h = process.env.METRICS_TOKEN ? { authorization: `Bearer ${process.env.METRICS_TOKEN}` } : {};
    const r = await fetch(METRICS_URL, { headers: h });
    if (!r.ok) return null;
    const b = new Map();
    for (const line of (await r.text()).split("\n")) {
      const m = /^agentplane_run_pickup_seconds_bucket\{([^}]*)\}\s+(\S+)/.exec(line);
      if (!m) continue;
      const le = /le="([^"]+)"/.exec(m[1])?.[1];
      const v = le === "+Inf" ? Infinity : Number(le);
      b.set(v, (b.get(v) ?? 0) + Number(m[2])); // summed over any other labels
    }
    return b.size ? b : null;
  } catch { return null; }
}
// histogram_quantile-style estimate (linear within a bucket) over the difference after - before
function pickupStats(before, after) {
  if (!before || !after) return "not exposed";
  const les = [...after.keys()].sort((a, b) => a - b);
  const cum = les.map((le) => after.get(le) - (before.get(le) ?? 0));
  const n = cum.at(-1);
  if (!n) return { runs: 0 };
  const bucket = (p) => les.findIndex((le, i) => cum[i] >= p * n);
  const q = (p) => {
    const rank = p * n, i = bucket(p);
    if (les[i] === Infinity) return `>${round(les[i - 1] * 1000, 4)}`; // above the last finite bucket
    const lo = i ? les[i - 1] : 0, clo = i ? cum[i - 1] : 0;
    const inb = cum[i] - clo;
    return round((lo + (les[i] - lo) * (inb ? (rank - clo) / inb : 1)) * 1000, 3);
  };
  const range = (p) => { const i = bucket(p); return [i ? round(les[i - 1] * 1000, 4) : 0, les[i] === Infinity ? "+Inf" : round(les[i] * 1000, 4)]; };
  // p50/p99: linear within the bucket (as histogram_quantile); *_bucket_ms: that bucket's bounds
  return { runs: n, p50_ms: q(0.5), p99_ms: q(0.99), p50_bucket_ms: range(0.5), p99_bucket_ms: range(0.99), buckets_ms: les.map((le, i) => [le === Infinity ? "+Inf" : round(le * 1000, 4), cum[i]]) }; // [le ms, cumulative]
}

// ---- peer server log: each run's queue wait and exec time (as the peer's api-bench.mjs) ----
const API_LOG = process.env.API_LOG;
const logSize = () => { try { return statSync(API_LOG).size; } catch { return 0; } };
function peerRunStats(from) {
  if (!API_LOG) return undefined;
  const txt = readFileSync(API_LOG).subarray(from).toString("utf8").replace(/\x1b\[[0-9;]*m/g, "");
  const q = [], e = [];
  const re = /Background run succeeded[\s\S]*?run_created_at: (\S+),[\s\S]*?run_started_at: (\S+),[\s\S]*?run_exec_ms: (\d+)/g;
  for (const m of txt.matchAll(re)) { q.push(Date.parse(m[2]) - Date.parse(m[1])); e.push(Number(m[3])); }
  const st = (a) => { if (!a.length) return { n: 0 }; const b = [...a].sort((x, y) => x - y); return { n: b.length, mean: round(b.reduce((s, x) => s + x, 0) / b.length, 1), p50: b[b.length >> 1], max: b.at(-1) }; };
  return { queue_ms: st(q), exec_ms: st(e) };
}

// wait (at most 30 s) until no thread is busy; returns the seconds waited, null if unknown
async function drain() {
  const t0 = performance.now();
  for (let i = 0; i < 300; i++) {
    const busy = await call("POST", "/threads/search", { status: "busy", limit: 1 }).catch(() => null);
    if (!Array.isArray(busy)) return null;
    if (!busy.length) return round((performance.now() - t0) / 1000, 2);
    await new Promise((r) => setTimeout(r, 100));
  }
  log("WARNING: threads still busy 30 s after the load stopped");
  return round((performance.now() - t0) / 1000, 2);
}

// ---- one scenario ----
async function scenario(s) {
  const nodes = GRAPHS[s.graph];
  const body = { assistant_id: assistantOf(s.graph), input, ...(s.durability ? { durability: s.durability } : {}) };
  const bodyStr = JSON.stringify(body);
  let threads = [];
  let opts;
  if (s.kind === "stateless") {
    const o = await call("POST", "/runs/wait", body);
    if (!checkOutput(o, nodes, s.kind)) throw new Error(`${s.name}: wrong output ${JSON.stringify(o).slice(0, 300)}`);
    opts = { url: API_URL + "/runs/wait", method: "POST", headers: HEADERS, body: bodyStr };
  } else {
    // As many threads as connections, each growing like a user session. A request checks a
    // thread out of the free list and its response returns it, so runs on one thread never
    // overlap (no multitask_strategy needed). The peer's api-bench.mjs keeps the id in
    // autocannon's `context`, which autocannon resets after every request: that picks threads
    // round-robin, so two connections can hit one thread at once (409 on agentplane).
    for (let i = 0; i < s.connections; i++) threads.push((await call("POST", "/threads", {})).thread_id);
    const o = await call("POST", `/threads/${threads[0]}/runs/wait`, body);
    if (!checkOutput(o, nodes, s.kind)) throw new Error(`${s.name}: wrong output ${JSON.stringify(o).slice(0, 300)}`);
    const free = [...threads];
    let next = 0;
    opts = {
      url: API_URL,
      requests: [{
        method: "POST", headers: HEADERS, body: bodyStr,
        setupRequest: (req, context) => {
          // none free only after a timeout (its thread is never given back): share one then
          context.threadId = free.length ? free.pop() : threads[next++ % threads.length];
          return { ...req, path: `/threads/${context.threadId}/runs/wait` };
        },
        onResponse: (status, _body, context) => { if (context.threadId) free.push(context.threadId); },
      }],
    };
  }
  const m0 = await pickupBuckets();
  const off = logSize();
  const c0 = cpuStart();
  const res = await autocannon({ ...opts, connections: s.connections, duration: DURATION, verifyBody: verifier(nodes) });
  const cpu = cpuEnd(c0);
  // read at once: runs claimed during the load (the requests still in flight when autocannon
  // stops are picked up later and would add a tail no client saw)
  const m1 = await pickupBuckets();
  // let those runs end before the next scenario (and before the threads are deleted)
  const drained = await drain();
  const out = {
    server: TARGET, scenario: s.name,
    endpoint: s.kind === "stateless" ? "POST /runs/wait" : "POST /threads/{id}/runs/wait",
    graph: s.graph, nodes, durability: s.durability ?? (TARGET === "peer" ? "in-memory (none)" : null),
    connections: s.connections, duration_s: res.duration, requests: res.requests.total,
    req_per_s: res.requests.average,
    latency_ms: { mean: res.latency.average, p50: res.latency.p50, p90: res.latency.p90, p99: res.latency.p99, max: res.latency.max },
    status_2xx: res["2xx"], non_2xx: res.non2xx, errors: res.errors, timeouts: res.timeouts,
    wrong_bodies: res.mismatches, // 2xx or not, a body without counter == nodes (or with __error__)
    status_codes: Object.fromEntries(Object.entries(res.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])),
    drain_s: drained,
  };
  if (TARGET !== "peer") out.pickup = pickupStats(m0, m1);
  else { await new Promise((r) => setTimeout(r, 300)); out.server_log = peerRunStats(off); }
  if (threads.length) {
    const st = await call("GET", `/threads/${threads[threads.length > 1 ? 1 : 0]}/state`).catch(() => null);
    out.threads = threads.length;
    out.messages_in_one_thread = st?.values?.messages?.length ?? null;
    for (const t of threads) await call("DELETE", `/threads/${t}`).catch(() => {});
  }
  if (s.graph === "linear10") out.peer_scenario = `${s.kind}_${s.graph}_c${s.connections}`;
  out.cpu = cpu;
  if (cpu.other_cores > 0.1) log(`WARNING: ${s.name}: other processes used ${cpu.other_cores} cores; rerun on a quiet machine`);
  return out;
}

// ---- agentplane/peer ratios ----
function ratios(oursFile, peerFile) {
  const read = (f) => readFileSync(f, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((d) => d.scenario);
  const peer = new Map(read(peerFile).map((d) => [d.scenario, d]));
  const rows = {};
  for (const d of read(oursFile)) {
    const p = peer.get(d.peer_scenario);
    if (!p) continue;
    (rows[d.peer_scenario] ??= { peer_req_per_s: p.req_per_s, peer_p50_ms: p.latency_ms.p50 })[`agentplane_${d.durability}`] = {
      req_per_s: d.req_per_s, p50_ms: d.latency_ms.p50, throughput_ratio: p.req_per_s ? round(d.req_per_s / p.req_per_s, 2) : null,
    };
  }
  emit({
    bench: "ratio_agentplane_over_peer",
    note: "throughput_ratio = agentplane req/s / peer req/s. agentplane is durable PostgreSQL (fsync on) with the named durability; the peer (langgraphjs dev) is in-memory with no durability setting",
    scenarios: rows,
  });
}

// ---- main ----
const list = matrix();
const ver = (p) => { try { return JSON.parse(readFileSync(join(HERE, "node_modules", p, "package.json"), "utf8")).version; } catch { return null; } };
const settings = TARGET === "peer" ? { n_jobs_per_worker: process.env.PEER_JOBS ?? null }
  : { worker_concurrency: process.env.WORKERS ?? null, tenant_concurrent_runs: process.env.TENANT_RUNS ?? null };
emit({ bench: "api_env", server: TARGET, node: process.version, autocannon: ver("autocannon"), duration_s: DURATION, settings, scenarios: list.map((s) => s.name) });
// warm-up, as the peer's: 20 sequential runs of the 10-node graph (and 5 of the 3-node one)
for (const [g, n] of [["linear10", 20], ["linear3", 5]]) {
  if (!assistantOf(g)) continue;
  for (let i = 0; i < n; i++) {
    const o = await call("POST", "/runs/wait", { assistant_id: assistantOf(g), input });
    if (!checkOutput(o, GRAPHS[g], "stateless")) throw new Error(`warm-up ${g}: wrong output ${JSON.stringify(o).slice(0, 300)}`);
  }
}
if (TARGET !== "peer" && !(await pickupBuckets())) log("pickup: not exposed (no agentplane_run_pickup_seconds on /metrics)");
for (const s of list) {
  log(`${TARGET} ${s.name} (${DURATION} s) ...`);
  emit(await scenario(s));
}
