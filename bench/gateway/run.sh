#!/usr/bin/env bash
# The model gateway against the peers' mock OpenAI upstream (../shared/peers/gateway), in one run:
# (a) direct to the mock, (b) through agentplane (auth, limits, usage recording on), c=CONNS JSON
# and SSE with wrk, and c=1 latency with the peers' probe. Portkey itself: run
# ../shared/peers/gateway/bench-gateway.sh right before/after (same machine, same mock).
# Usage: bench/gateway/run.sh [BUILD_DIR]   Env: DURATION (s, 10), CONNS (50), PEERS (path),
# LIMITS (redis: a redis-server of its own holds the limits, as across replicas; local: in-process),
# NGINX (auto: when nginx is installed, also through a bare nginx reverse proxy with upstream
# keep-alive and two workers: what forwarding alone costs here, without auth, JSON, limits or usage).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}; bin=$build/agentplane
peers=${PEERS:-$root/../shared/peers/gateway}
DURATION=${DURATION:-10}; CONNS=${CONNS:-50}; LIMITS=${LIMITS:-redis}; NGINX=${NGINX:-auto}
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
"$bin" dev --data-dir "$work/dev" --listen "127.0.0.1:$ap_port" --egress-allow 127.0.0.1 "${redis_args[@]}" --log-level warn >"$work/dev.log" 2>&1 & pids+=($!)
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
run_wrk() { # label url body [headers...]
  local label=$1 url=$2 body=$3; shift 3
  WRK_BODY="$body" WRK_LABEL="$label" wrk -t1 -c"$CONNS" -d2s -s "$peers/wrk-post.lua" "$@" "$url" >/dev/null
  WRK_BODY="$body" WRK_LABEL="$label" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$peers/wrk-post.lua" "$@" "$url" | grep '^{"label"'
}
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
run_wrk direct_json "http://127.0.0.1:$mock_port/v1/chat/completions" "$BODY"
[ -z "$nginx_url" ] || run_wrk nginx_json "$nginx_url" "$BODY"
run_wrk agentplane_json "$AP/v1/chat/completions" "$BODY" -H "x-api-key: $key"
run_wrk direct_stream "http://127.0.0.1:$mock_port/v1/chat/completions" "$SBODY"
[ -z "$nginx_url" ] || run_wrk nginx_stream "$nginx_url" "$SBODY"
run_wrk agentplane_stream "$AP/v1/chat/completions" "$SBODY" -H "x-api-key: $key"
node "$peers/probe-latency.mjs" direct_json_c1 "http://127.0.0.1:$mock_port/v1/chat/completions" "$DURATION" "$BODY"
node "$peers/probe-latency.mjs" agentplane_json_c1 "$AP/v1/chat/completions" "$DURATION" "$BODY" "x-api-key: $key"
node "$peers/probe-latency.mjs" direct_stream_c1 "http://127.0.0.1:$mock_port/v1/chat/completions" "$DURATION" "$SBODY"
node "$peers/probe-latency.mjs" agentplane_stream_c1 "$AP/v1/chat/completions" "$DURATION" "$SBODY" "x-api-key: $key"
echo "usage records: $(curl -sf "$AP/v1/usage" -H "x-api-key: $key" | python3 -c 'import json,sys;print(json.load(sys.stdin)["total"]["requests"])')" >&2
