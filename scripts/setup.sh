#!/usr/bin/env bash
# Install every build and test dependency of clipdex on Debian 12 (bookworm).
# Idempotent and quick when everything is present: apt is only called for
# packages that are missing.  Needs root (or sudo) when something is missing.
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake pkg-config git clang libclang-rt-14-dev
  # libraries (see README "Dependencies")
  libvips-dev libdnnl-dev libopenblas-dev libjansson-dev libcurl4-openssl-dev
  libssl-dev libutf8proc-dev zlib1g-dev libsqlite3-dev libmicrohttpd-dev
  # tests: a real HTTP server on loopback for 'model fetch', image tooling
  python3 curl
  # bench/serve_bench.sh: HTTP load generator
  wrk
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}"
echo "setup: done"
