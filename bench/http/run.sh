#!/usr/bin/env bash
# HTTP benchmarks of issue 3, in one run on this machine (wrk shares the cores):
#   1. GET /ok on a bare one-thread Beast server (the anchor) and on agentplane;
#   2. GET /v1/keys/{id}: authenticated (x-api-key), PostgreSQL-backed, under RLS.
# Usage: bench/http/run.sh [BUILD_DIR]   (env: DURATION=10s CONNS=50 WRK_THREADS=1 AP_THREADS=2)
# Prints one JSON object per case on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${AP_BUILD_DIR:-$root/build}}
dur=${DURATION:-10s}; conns=${CONNS:-50}; wthreads=${WRK_THREADS:-1}; apthreads=${AP_THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
work=$(mktemp -d /tmp/ap-bench-XXXXXX); chmod 755 "$work"
cleanup() { kill "$bare" "$dev" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

lua=$work/report.lua
cat > "$lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format('{"requests_per_s": %.0f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
    summary.errors.timeout))
end
LUA
run_wrk() {  # name url [header]
  local name=$1 url=$2; shift 2
  local out
  out=$(wrk -t"$wthreads" -c"$conns" -d"$dur" -s "$lua" "$@" "$url" | tail -1)
  echo "{\"case\": \"$name\", \"connections\": $conns, \"result\": $out}"
}

"$build/bench_bare_server" 18201 & bare=$!
"$build/agentplane" dev --data-dir "$work/dev" --listen 127.0.0.1:18202 --threads "$apthreads" ${POOL:+--pool-size $POOL} ${LOG_LEVEL:+--log-level $LOG_LEVEL} \
  >"$work/dev.out" 2>&1 & dev=$!
for _ in $(seq 1 300); do [ -f "$work/dev/dev.json" ] && break; sleep 0.1; done
key=$(sed -n 's/.*"demo_api_key": "\([^"]*\)".*/\1/p' "$work/dev/dev.json")
key_id=$(curl -s -H "x-api-key: $key" http://127.0.0.1:18202/v1/keys | sed -n 's/.*"key_id":"\([^"]*\)".*/\1/p')
curl -sf -H "x-api-key: $key" "http://127.0.0.1:18202/v1/keys/$key_id" >/dev/null

run_wrk bare_beast_ok http://127.0.0.1:18201/ok
run_wrk agentplane_ok http://127.0.0.1:18202/ok
run_wrk agentplane_auth_pg_read "http://127.0.0.1:18202/v1/keys/$key_id" -H "x-api-key: $key"
