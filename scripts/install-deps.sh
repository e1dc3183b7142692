#!/usr/bin/env bash
# Installs what agentplane needs to build, run and test, and nothing that is already there.
# Works on this project's machine image and on a bare Debian 12 (debootstrap minbase).
# Usage: scripts/install-deps.sh [--with-node]   (--with-node: also npm ci for the test clients)
set -euo pipefail

need_pkgs=(
  g++ cmake make pkg-config ca-certificates
  libboost1.81-dev libpq-dev nlohmann-json3-dev libssl-dev libhiredis-dev libspdlog-dev
  libcli11-dev libexpected-dev libseccomp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libhowardhinnant-date-dev libjemalloc-dev libsimdjson-dev tzdata
  postgresql-15 redis-server python3 python3-cryptography procps openssl iproute2 runsc
)
# Tools that are useful but not required: installed only if missing, failures ignored.
optional_pkgs=(ccache wrk)

missing=()
for p in "${need_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
opt_missing=()
for p in "${optional_pkgs[@]}"; do
  command -v "$p" >/dev/null 2>&1 || dpkg -s "$p" >/dev/null 2>&1 || opt_missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ] || [ ${#opt_missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]} ${opt_missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    # The postgresql package starts a cluster of its own on install; we never use it (agentplane
    # starts private clusters), so policy-rc.d keeps it from starting where we can.
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [ ${#opt_missing[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${opt_missing[@]}" || true
  fi
fi

if [ "${1:-}" = "--with-node" ]; then
  # The test clients and the local OpenID provider (tests/*/package.json, lockfiles committed).
  for dir in "$(dirname "$0")"/../tests/*/; do
    [ -f "$dir/package.json" ] || continue
    # Node 20 and npm come with the machine image; never install Debian's npm over an existing Node.
    if ! command -v node >/dev/null 2>&1; then
      $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    (cd "$dir" && { [ -d node_modules ] || npm ci --no-audit --no-fund; })
  done
fi
