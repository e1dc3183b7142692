#!/usr/bin/env bash
# POST /runs/wait and POST /threads/{id}/runs/wait under autocannon (bench.mjs): agentplane dev
# (private durable PostgreSQL) with the peer's 10-node `linear` graph and a 3-node one, and,
# with PEER, the LangGraph.js in-memory dev server (`langgraphjs dev`) on the same scenarios,
# right after ours (one server at a time), with the same autocannon and settings.
# Usage: bench/api/run.sh [BUILD_DIR]
# Env: DURATION (s per scenario, 10), CONNS ("1 10 100"), KINDS ("stateless thread"),
#      GRAPHS ("linear10 linear3"), DURABILITY ("sync async exit"), ONLY (comma list of
#      scenario-name globs, e.g. "stateless_linear10_sync_c10,thread_*_c1"), AP_THREADS, POOL,
#      LOG_LEVEL (agentplane dev options), WORKERS (the worker's runs at once, 128) and
#      TENANT_RUNS (the demo tenant's concurrent_runs limit, 128): both above the largest
#      connection count, so that no run waits in the queue for a slot (with dev's defaults, 16
#      and 16, 84 of 100 connections' runs queue), PEER (a copy of ../shared/peers/langgraph, or
#      "auto": copied to PEER_CACHE, default /var/tmp/agentplane-bench-peer, npm ci the first
#      time), PEER_JOBS (the peer's --n-jobs-per-worker, 10: its default).
# STREAMS=N (HOLD=s, 60): instead, hold N concurrent SSE streams open and report the server's
# memory per stream (streams.mjs).
# stdout: JSON lines: api_env, one per scenario (server agentplane), then with PEER the peer's,
# and last one line of agentplane/peer throughput ratios. stderr: progress. KEEP_WORK=1 keeps
# the temp folder with the server logs (the PostgreSQL cluster is always removed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-${AP_BUILD_DIR:-$root/build}}
bin=$build/agentplane
[ -x "$bin" ] || { echo "run.sh: no $bin" >&2; exit 1; }
for c in node npm curl sha256sum; do command -v $c >/dev/null || { echo "run.sh: $c is needed" >&2; exit 1; }; done
if [ ! -d "$here/node_modules/autocannon" ]; then (cd "$here" && npm ci --no-audit --no-fund >&2); fi
export DURATION=${DURATION:-10}
export WORKERS=${WORKERS:-128} TENANT_RUNS=${TENANT_RUNS:-128} PEER_JOBS=${PEER_JOBS:-10}

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
jget() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"))[process.argv[2]] ?? "")' "$1" "$2"; }

work=$(mktemp -d /tmp/ap-api-bench-XXXXXX); chmod 755 "$work"
data=$work/dev
# agentplane dev's private cluster: as root under /var/lib/agentplane/dev-<tag> (see
# src/app/dev.cc layout_for), the socket in /tmp/ap-<uid>-<tag>; removed again on exit.
tag=$(printf %s "$data" | sha256sum | cut -c1-8)
if [ "$(id -u)" = 0 ]; then cluster_home=/var/lib/agentplane/dev-$tag; else cluster_home=$data; fi
sockdir=/tmp/ap-$(id -u)-$tag
[ -e "$cluster_home" ] && [ "$cluster_home" != "$data" ] && { echo "run.sh: $cluster_home exists already" >&2; exit 1; }
dev=""; peer_pgid=""
stop_agentplane() {
  [ -n "$dev" ] || return 0
  if kill -0 "$dev" 2>/dev/null; then
    kill -TERM "$dev" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$dev" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$dev" 2>/dev/null || true
  fi
  wait "$dev" 2>/dev/null || true
  # if agentplane could not stop its PostgreSQL, stop that postmaster (ours, by its pid file)
  local pm; pm=$(head -1 "$cluster_home/pg/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null; then
    kill -TERM "$pm" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pm" 2>/dev/null || break; sleep 0.25; done
  fi
  dev=""
}
stop_peer() {
  [ -n "$peer_pgid" ] || return 0
  if kill -0 "$peer_pgid" 2>/dev/null; then
    kill -TERM -- "-$peer_pgid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$peer_pgid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$peer_pgid" 2>/dev/null || true
  fi
  peer_pgid=""
}
cleanup() {
  stop_peer; stop_agentplane
  if [ "$cluster_home" != "$data" ]; then
    [ -n "${KEEP_WORK:-}" ] && cp "$cluster_home/postgres.log" "$work/" 2>/dev/null
    rm -rf "$cluster_home"
  fi
  rm -rf "$sockdir"
  if [ -n "${KEEP_WORK:-}" ]; then echo "run.sh: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- agentplane ----
port=$(free_port)
"$bin" dev --data-dir "$data" --listen "127.0.0.1:$port" ${AP_THREADS:+--threads $AP_THREADS} \
  ${POOL:+--pool-size $POOL} ${WORKERS:+--worker-concurrency $WORKERS} ${LOG_LEVEL:+--log-level $LOG_LEVEL} >"$work/dev.out" 2>&1 &
dev=$!
for _ in $(seq 1 600); do
  [ -s "$data/dev.json" ] && break
  kill -0 "$dev" 2>/dev/null || { echo "run.sh: agentplane dev died:" >&2; cat "$work/dev.out" >&2; exit 1; }
  sleep 0.2
done
[ -s "$data/dev.json" ] || { echo "run.sh: no dev.json after 120 s" >&2; cat "$work/dev.out" >&2; exit 1; }
url=$(jget "$data/dev.json" url); key=$(jget "$data/dev.json" demo_api_key)
admin=$(jget "$data/dev.json" admin_token); tenant=$(jget "$data/dev.json" demo_tenant_id)
echo "run.sh: agentplane dev up at $url (pid $dev)" >&2
code=$(curl -s -o "$work/put.out" -w '%{http_code}' -X PUT -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' -d "{\"concurrent_runs\": $TENANT_RUNS}" "$url/v1/tenants/$tenant/limits")
case $code in 200|201) ;; *) echo "run.sh: PUT /v1/tenants/$tenant/limits -> $code: $(cat "$work/put.out")" >&2; exit 1;; esac
for g in linear10:10 linear3:3; do
  code=$(node "$here/bench.mjs" spec "${g#*:}" | curl -s -o "$work/put.out" -w '%{http_code}' -X PUT \
    -H "x-api-key: $key" -H 'content-type: application/json' --data-binary @- "$url/v1/graphs/bench_${g%%:*}")
  case $code in 200|201) ;; *) echo "run.sh: PUT /v1/graphs/bench_${g%%:*} -> $code: $(cat "$work/put.out")" >&2; exit 1;; esac
done
# /metrics: unauthenticated on the main listener; try the admin token if it is refused
metrics_token=""
mcode=$(curl -s -o /dev/null -w '%{http_code}' "$url/metrics")
if [ "$mcode" = 401 ] || [ "$mcode" = 403 ]; then metrics_token=$admin; fi
postmaster=$(head -1 "$cluster_home/pg/postmaster.pid" 2>/dev/null || true)

if [ -n "${STREAMS:-}" ]; then   # held SSE streams instead of the load scenarios
  API_URL=$url API_KEY=$key SERVER_PID=$dev STREAMS=$STREAMS node "$here/streams.mjs"
  exit 0
fi
TARGET=agentplane API_URL=$url API_KEY=$key METRICS_URL=$url/metrics METRICS_TOKEN=$metrics_token \
  SERVER_PIDS="$dev${postmaster:+,$postmaster}" node "$here/bench.mjs" | tee "$work/ours.jsonl"
stop_agentplane

# ---- the peer ----
[ -n "${PEER:-}" ] || exit 0
peer_scen=$({ grep -o '"peer_scenario":"[^"]*"' "$work/ours.jsonl" || true; } | cut -d'"' -f4 | awk '!s[$0]++' | paste -sd, -)
[ -n "$peer_scen" ] || { echo "run.sh: no scenario matches the peer's (only linear10 does)" >&2; exit 0; }
if [ "$PEER" = auto ]; then
  src=$root/../shared/peers/langgraph
  peer=${PEER_CACHE:-/var/tmp/agentplane-bench-peer}
  [ -f "$src/api/graph.mjs" ] || { echo "run.sh: no peer at $src" >&2; exit 1; }
  mkdir -p "$peer"   # the peer's files, fresh each time; its api/node_modules is kept
  (cd "$src" && tar cf - --exclude=node_modules --exclude=.langgraph_api --exclude=out .) | (cd "$peer" && tar xf -)
  chmod -R u+w "$peer"
else
  peer=$(cd "$PEER" && pwd)
fi
cd "$peer/api"
if [ ! -d node_modules/@langchain/langgraph-api ] || ! npm ls --depth=0 >/dev/null 2>&1; then
  echo "run.sh: npm ci in $peer/api ..." >&2
  npm ci --no-audit --no-fund >&2
fi
rm -rf .langgraph_api   # an empty in-memory store
pport=$(free_port)
LANGSMITH_TRACING=false LANGCHAIN_TRACING_V2=false NO_COLOR=1 setsid node \
  node_modules/@langchain/langgraph-cli/dist/cli/cli.mjs dev --port "$pport" --host 127.0.0.1 \
  --no-browser --no-reload --n-jobs-per-worker "$PEER_JOBS" >"$work/peer-server.log" 2>&1 &
peer_pgid=$!
for _ in $(seq 1 240); do
  curl -sf -m 2 "http://127.0.0.1:$pport/ok" >/dev/null 2>&1 && break
  kill -0 "$peer_pgid" 2>/dev/null || { echo "run.sh: peer server died:" >&2; cat "$work/peer-server.log" >&2; exit 1; }
  sleep 0.5
done
curl -sf -m 2 "http://127.0.0.1:$pport/ok" >/dev/null || { echo "run.sh: peer not up after 120 s" >&2; tail -30 "$work/peer-server.log" >&2; exit 1; }
echo "run.sh: peer up at http://127.0.0.1:$pport (pgid $peer_pgid)" >&2
TARGET=peer API_URL=http://127.0.0.1:$pport API_LOG=$work/peer-server.log SCENARIOS=$peer_scen \
  SERVER_PIDS=$peer_pgid node "$here/bench.mjs" | tee "$work/peer.jsonl"
stop_peer
node "$here/bench.mjs" ratios "$work/ours.jsonl" "$work/peer.jsonl"
