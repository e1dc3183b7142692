#!/usr/bin/env bash
# Command A: install what is missing, build, and run `agentplane dev` (extra args pass through).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
build=$("$root/scripts/build.sh")
exec "$build/agentplane" dev "$@"
