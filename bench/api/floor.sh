#!/usr/bin/env bash
# The floor under api/run.sh's durable 3-node runs: what PostgreSQL alone does on this machine
# when each "run" is only the commits a durable (`durability: sync`) run of the 3-node graph
# cannot do without: the run's row (1), one checkpoint per step (3), and the end (status and
# checkpoints dropped, 1): five commits, four of them waiting for their flush (the last step's
# is flushed by the end's, as agentplane's worker does: docs/graph.md "Durability"), to narrow
# tables with primary keys only, no row-level security, no application, no HTTP, and pgbench (C)
# as the client. Any server that keeps runs durable in PostgreSQL on this machine stays under
# these numbers.
# Usage: bench/api/floor.sh [BUILD_DIR]   Env: CONNS ("10 16 100"), SECONDS_PER (10).
# stdout: one JSON line per connection count: runs/s and how busy the CPUs were.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${AP_BUILD_DIR:-$root/build}}
conns=${CONNS:-10 16 100}; secs=${SECONDS_PER:-10}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/ap-floor-XXXXXX); chmod 755 "$work"
"$build/agentplane" dev --data-dir "$work/dev" --listen 127.0.0.1:0 --log-level warn >"$work/dev.out" 2>&1 & dev=$!
trap 'kill $dev 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q "Ctrl-C" "$work/dev.out" 2>/dev/null && break; sleep 0.1; done
sock=$(grep -o '/tmp/ap-[0-9]*-[0-9a-f]*' "$work/dev.out" | head -1)
"$bindir/psql" -h "$sock" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 <<'SQL'
CREATE DATABASE floor;
\c floor
CREATE TABLE runs (id bigint PRIMARY KEY, status text NOT NULL, result jsonb, created_at timestamptz DEFAULT now());
CREATE TABLE checkpoints (run bigint, step int, state jsonb, PRIMARY KEY (run, step));
SQL
cat >"$work/run.sql" <<'SQL'
\set id random(1, 9000000000000000)
INSERT INTO runs (id, status) VALUES (:id, 'running');
BEGIN;
INSERT INTO checkpoints VALUES (:id, 1, '{"counter": 1, "messages": [{"role": "user", "content": "go"}]}');
COMMIT;
BEGIN;
INSERT INTO checkpoints VALUES (:id, 2, '{"counter": 2, "messages": [{"role": "user", "content": "go"}]}');
COMMIT;
BEGIN;
SET LOCAL synchronous_commit = off;
INSERT INTO checkpoints VALUES (:id, 3, '{"counter": 3, "messages": [{"role": "user", "content": "go"}]}');
COMMIT;
BEGIN;
UPDATE runs SET status = 'success', result = '{"counter": 3}' WHERE id = :id;
DELETE FROM checkpoints WHERE run = :id;
COMMIT;
SQL
cpu() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }  # busy (user nice system irq softirq), idle+iowait
for c in $conns; do
  read -r b0 i0 < <(cpu)
  tps=$("$bindir/pgbench" -h "$sock" -U postgres -n -M prepared -c "$c" -j 2 -T "$secs" -f "$work/run.sql" floor 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  read -r b1 i1 < <(cpu)
  echo "{\"case\": \"durable_3_step_run_floor\", \"connections\": $c, \"runs_per_s\": $tps, \"commits_per_run\": 5, \"flushed_commits_per_run\": 4, \"cpu_busy\": $(echo "($b1 - $b0) / ($b1 - $b0 + $i1 - $i0)" | bc -l | xargs printf %.2f)}"
done
