#!/usr/bin/env bash
# RLS cost: the same primary-key read, as the app role, in the same pipelined transaction
# (BEGIN; set_config; SELECT; COMMIT), on api_keys (FORCE RLS + tenant policy) and on an
# identical copy without RLS, in one run, alternating rounds. Prints JSON.
# Usage: bench/rls/run.sh [BUILD_DIR]   (env: ROUNDS=3 SECONDS_PER=5 CLIENTS=8)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${AP_BUILD_DIR:-$root/build}}
rounds=${ROUNDS:-3}; secs=${SECONDS_PER:-5}; clients=${CLIENTS:-8}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/ap-rls-XXXXXX); chmod 755 "$work"
"$build/agentplane" dev --data-dir "$work/dev" --listen 127.0.0.1:0 >"$work/dev.out" 2>&1 & dev=$!
trap 'kill $dev 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q "Ctrl-C" "$work/dev.out" 2>/dev/null && break; sleep 0.1; done
sock=$(grep -o '/tmp/ap-[0-9]*-[0-9a-f]*' "$work/dev.out" | head -1)
su() { "$bindir/psql" -h "$sock" -U postgres -d agentplane -qAt -v ON_ERROR_STOP=1 "$@"; }

su <<'SQL'
SET search_path = agentplane;
-- 100 tenants x 100 keys, and an identical copy of the keys without row-level security.
INSERT INTO tenants (id, name) SELECT gen_random_uuid(), 't' || i FROM generate_series(1, 100) i;
INSERT INTO api_keys (tenant_id, id, hash, prefix, name, scopes, created_by)
  SELECT t.id, gen_random_uuid(), sha256(gen_random_uuid()::text::bytea), 'ap_x', 'k', '{read}', 'bench'
  FROM tenants t, generate_series(1, 100);
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE bench.keys_norls (LIKE api_keys INCLUDING ALL);
INSERT INTO bench.keys_norls SELECT * FROM api_keys;
GRANT USAGE ON SCHEMA bench TO agentplane_app;
GRANT SELECT ON bench.keys_norls TO agentplane_app;
ANALYZE api_keys; ANALYZE bench.keys_norls;
SQL
row=$(su -c "SELECT tenant_id || ' ' || id FROM agentplane.api_keys ORDER BY id LIMIT 1 OFFSET 5000")
tenant=${row% *}; key=${row#* }
for t in agentplane.api_keys bench.keys_norls; do
  cat > "$work/${t#*.}.sql" <<SQL
\\startpipeline
BEGIN;
SELECT set_config('app.tenant_id', '$tenant', true);
SELECT id, name, scopes FROM $t WHERE tenant_id = '$tenant' AND id = '$key';
COMMIT;
\\endpipeline
SQL
done
# Sanity: the RLS table shows the row to its tenant only.
tps() { "$bindir/pgbench" -h "$sock" -U agentplane_app -n -M prepared -c "$clients" -j 1 -T "$secs" \
        -f "$work/$1.sql" agentplane 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
rls_sum=0; norls_sum=0
for r in $(seq 1 "$rounds"); do
  a=$(tps api_keys); b=$(tps keys_norls)
  echo "{\"round\": $r, \"rls_tps\": $a, \"no_rls_tps\": $b}"
  rls_sum=$(echo "$rls_sum + $a" | bc -l); norls_sum=$(echo "$norls_sum + $b" | bc -l)
done
echo "{\"case\": \"rls_cost\", \"rls_tps\": $(echo "$rls_sum / $rounds" | bc -l | xargs printf %.0f), \"no_rls_tps\": $(echo "$norls_sum / $rounds" | bc -l | xargs printf %.0f), \"rls_over_no_rls\": $(echo "$rls_sum / $norls_sum" | bc -l | xargs printf %.3f)}"
