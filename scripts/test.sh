#!/usr/bin/env bash
# Command B: install what is missing, build, and run every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" --with-node
build=$("$root/scripts/build.sh")
cd "$build"
ctest --output-on-failure -j"${AP_TEST_JOBS:-2}" --timeout 600 "$@"
