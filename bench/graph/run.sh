#!/usr/bin/env bash
# Issue 4's graph benchmarks in one run, with the disk's commit latency measured alongside:
#   (a) bench_graph_linear        10-node linear graph, in-memory checkpoints
#   (b) bench_graph_postgres linear  the same on PostgreSQL (sync x1, sync x8, async, exit)
#   (c) bench_graph_postgres chat    50-turn chat: latency by turn, bytes stored
#   (d) bench_graph_history / bench_graph_postgres history   500-checkpoint history
# With PEER=<path of the LangGraph.js peer folder> (../shared/peers/langgraph), also runs the
# peer's matching cases right after ours (copied to a temp folder; needs npm the first time).
# Usage: bench/graph/run.sh [BUILD_DIR]   Env: SECONDS_A (5), SECONDS_B (10), CONVERSATIONS (10),
#        PEER, PEER_SECONDS (14). Prints JSON lines; the last block is the peer's.
set -euo pipefail
build=${1:-${AP_BUILD_DIR:-$(dirname "$0")/../../build}}
pgbin=/usr/lib/postgresql/15/bin
tmp=$(mktemp -d /var/tmp/ap-graph-bench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "# commit latency of this disk (pg_test_fsync, 8 kB write + fdatasync, on /var/tmp)"
"$pgbin/pg_test_fsync" -s 2 -f "$tmp/fsync.test" | awk '$1 == "fdatasync" && !seen++ {
  printf("{\"case\": \"pg_test_fsync\", \"fdatasync_ops_per_s\": %s, \"usecs_per_op\": %s}\n", $2, $4) }'

echo "# (a) in memory"
"$build/bench_graph_linear" "${SECONDS_A:-5}"
echo "# (b) PostgreSQL (durable: fsync on, synchronous_commit on)"
"$build/bench_graph_postgres" linear "${SECONDS_B:-10}"
echo "# (c) chat"
"$build/bench_graph_postgres" chat "${CONVERSATIONS:-10}"
echo "# (d) history"
"$build/bench_graph_history" 20
"$build/bench_graph_postgres" history 20

if [ -n "${PEER:-}" ]; then
  echo "# LangGraph.js peer (same machine, same run)"
  chmod 755 "$tmp"
  cp -r "$PEER" "$tmp/peer"
  (cd "$tmp/peer" && BENCH_SECONDS=${PEER_SECONDS:-14} \
     BENCH_ONLY=linear_memory,linear_postgres_sync,chat_postgres,history_postgres,history_memory \
     ./run.sh 2>"$tmp/peer.log" | grep '^{' ) || { echo "peer failed:"; tail -20 "$tmp/peer.log"; }
fi
