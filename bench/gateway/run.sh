#!/usr/bin/env bash
# The model gateway against the peers' mock OpenAI upstream (../shared/peers/gateway), in one run:
# (a) direct to the mock, (b) through agentplane (auth, limits, usage recording on), c=CONNS JSON
# and SSE with wrk, and c=1 latency with the peers' probe. Portkey itself: run
# ../shared/peers/gateway/bench-gateway.sh right before/after (same machine, same mock).
# Usage: bench/gateway/run.sh [BUILD_DIR]   Env: DURATION (s per target, 10), ROUNDS (5: the
# throughput runs as interleaved slices, see rounds_of), CONNS (50), PEERS (path),
# LIMITS (redis: a redis-server of its own holds the limits, as across replicas; local: in-process),
# NGINX (auto: when nginx is installed, also through a bare nginx reverse proxy with upstream
# keep-alive and two workers: what forwarding alone costs here, without auth, JSON, limits or usage),
# AP_ARGS (more arguments for `agentplane dev`, e.g. "--threads 1").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}; bin=$build/agentplane
peers=${PEERS:-$root/../shared/peers/gateway}
DURATION=${DURATION:-10}; CONNS=${CONNS:-50}; LIMITS=${LIMITS:-redis}; NGINX=${NGINX:-auto}; ROUNDS=${ROUNDS:-5}
work=$(mktemp -d /tmp/ap-gw-bench-XXXXXX)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mock_port=$(free_port); ap_port=$(free_port)
node "$peers/mock-openai.mjs" "$mock_port" >"$work/mock.log" 2>&1 & pids+=($!)
redis_args=()
if [ "$LIMITS" = redis ]; then
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 & pids+=($!)
  for i in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis_args=(--redis-url "redis://127.0.0.1:$redis_port")
fi
"$bin" dev --data-dir "$work/dev" --listen "127.0.0.1:$ap_port" --egress-allow 127.0.0.1 "${redis_args[@]}" ${AP_ARGS:-} --log-level warn >"$work/dev.log" 2>&1 & pids+=($!)
for i in $(seq 1 300); do [ -f "$work/dev/dev.json" ] && curl -sf "http://127.0.0.1:$ap_port/ok" >/dev/null && break; sleep 0.2; done
key=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["demo_api_key"])' "$work/dev/dev.json")
admin=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["admin_token"])' "$work/dev/dev.json")
tenant=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["demo_tenant_id"])' "$work/dev/dev.json")
AP="http://127.0.0.1:$ap_port"
curl -sf -X PUT "$AP/v1/credentials/mock" -H "x-api-key: $key" -d '{"value":"sk-tenant-demo","kind":"provider_key"}' >/dev/null
curl -sf -X PUT "$AP/v1/model-routes/gpt-4o-mini" -H "x-api-key: $key" \
  -d "{\"provider\":\"openai\",\"upstream_model\":\"gpt-4o-mini\",\"base_url\":\"http://127.0.0.1:$mock_port/v1\",\"credential\":\"mock\"}" >/dev/null
# Limits on (high enough not to refuse): every request passes the API and model limiters.
curl -sf -X PUT "$AP/v1/tenants/$tenant/limits" -H "authorization: Bearer $admin" \
  -d '{"api_requests_per_min": 100000000, "model_requests_per_min": 100000000, "model_tokens_per_min": 1000000000000}' >/dev/null
echo "limits backend: $(curl -sf "$AP/v1/limits" -H "x-api-key: $key" | python3 -c 'import json,sys;print(json.load(sys.stdin)["backend"])')" >&2
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
SBODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}'
curl -sf "$AP/v1/chat/completions" -H "x-api-key: $key" -d "$BODY" | grep -q total_tokens || { echo "smoke failed" >&2; tail "$work/dev.log" >&2; exit 1; }
nginx_url=""
if [ "$NGINX" != no ] && command -v nginx >/dev/null; then
  nginx_port=$(free_port); mkdir -p "$work/nginx"
  printf '%s\n' "worker_processes 2;" "pid $work/nginx/nginx.pid;" "error_log $work/nginx/error.log warn;" \
    "events { worker_connections 4096; }" "http { access_log off;" \
    "  upstream mock { server 127.0.0.1:$mock_port; keepalive 128; }" \
    "  server { listen 127.0.0.1:$nginx_port;" \
    "    location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }" \
    >"$work/nginx/nginx.conf"
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" && nginx_url="http://127.0.0.1:$nginx_port/v1/chat/completions"
  pids+=("$(cat "$work/nginx/nginx.pid")")  # its master: stopped (with its workers) by cleanup
fi
# Throughput in ROUNDS interleaved slices of DURATION/ROUNDS seconds (direct, nginx, agentplane,
# the order rotating): this machine's speed drifts by tens of percent within a minute, so each
# round's ratio compares runs seconds apart; the summary gives every round's ratio and their median.
slice=$(( DURATION / ROUNDS > 0 ? DURATION / ROUNDS : 1 ))
rounds_of() { # kind body
  local kind=$1 body=$2 r i
  local -a labels=(direct nginx agentplane) urls=("http://127.0.0.1:$mock_port/v1/chat/completions" "$nginx_url" "$AP/v1/chat/completions")
  for l in 0 1 2; do  # warm-up
    [ -n "${urls[$l]}" ] && WRK_BODY="$body" wrk -t1 -c"$CONNS" -d2s -s "$peers/wrk-post.lua" -H "x-api-key: $key" "${urls[$l]}" >/dev/null
  done
  for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
      local l=$(( (i + r) % 3 ))
      [ -n "${urls[$l]}" ] || continue
      WRK_BODY="$body" WRK_LABEL="${labels[$l]}_$kind" wrk -t1 -c"$CONNS" -d"${slice}s" -s "$peers/wrk-post.lua" \
        -H "x-api-key: $key" "${urls[$l]}" | grep '^{"label"' | sed "s/^{/{\"round\":$r,/"
    done
  done
}
summarise() { # the slices' lines on stdin -> per label totals and the median of the per-round ratios
  python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin]
for l in rows: print(json.dumps(l))
for kind in ("json", "stream"):
    by = {}
    for l in rows:
        if l["label"].endswith("_" + kind): by.setdefault(l["round"], {})[l["label"].rsplit("_", 1)[0]] = l["rps"]
    if not by: continue
    out = {"summary": kind, "rounds": len(by)}
    for who in ("agentplane", "nginx"):
        ratios = [r[who] / r["direct"] for r in by.values() if who in r and "direct" in r]
        if ratios:
            out[who + "_over_direct_median"] = round(statistics.median(ratios), 3)
            out[who + "_over_direct_rounds"] = [round(x, 3) for x in ratios]
    for who in ("direct", "nginx", "agentplane"):
        v = [r[who] for r in by.values() if who in r]
        if v: out[who + "_rps_mean"] = round(sum(v) / len(v), 1)
    print(json.dumps(out))'
}
{ rounds_of json "$BODY"; rounds_of stream "$SBODY"; } | summarise
node "$peers/probe-latency.mjs" direct_json_c1 "http://127.0.0.1:$mock_port/v1/chat/completions" "$DURATION" "$BODY"
node "$peers/probe-latency.mjs" agentplane_json_c1 "$AP/v1/chat/completions" "$DURATION" "$BODY" "x-api-key: $key"
node "$peers/probe-latency.mjs" direct_stream_c1 "http://127.0.0.1:$mock_port/v1/chat/completions" "$DURATION" "$SBODY"
node "$peers/probe-latency.mjs" agentplane_stream_c1 "$AP/v1/chat/completions" "$DURATION" "$SBODY" "x-api-key: $key"
echo "usage records: $(curl -sf "$AP/v1/usage" -H "x-api-key: $key" | python3 -c 'import json,sys;print(json.load(sys.stdin)["total"]["requests"])')" >&2
