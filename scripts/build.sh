#!/usr/bin/env bash
# Configures and builds agentplane into $AP_BUILD_DIR (default: build/ in the checkout, which
# git ignores). Uses ccache when it is installed. Prints the build dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${AP_BUILD_DIR:-$root/build}
type=${AP_BUILD_TYPE:-RelWithDebInfo}
args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE="$type")
command -v ccache >/dev/null 2>&1 && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
[ -n "${AP_SANITIZE:-}" ] && args+=(-DAP_SANITIZE=ON)
if [ ! -f "$build/CMakeCache.txt" ]; then cmake "${args[@]}" >&2; fi
cmake --build "$build" -j"${AP_JOBS:-$(nproc)}" >&2
echo "$build"
