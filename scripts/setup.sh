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
  # fleet (docs/fleet.md): the NATS C client, and the broker for its tests
  libnats-dev nats-server
  # tests/e2e_netns.sh (network namespaces, veth links; root only) and the
  # core pinning of bench/fleet_bench.sh (taskset)
  iproute2 util-linux
  # tests: a real HTTP server on loopback for 'model fetch', image tooling
  python3 curl
  # tests/e2e_dupes.sh, e2e_web_dupes.sh: copies of photos made with the vips CLI
  libvips-tools
  # bench/serve_bench.sh: HTTP load generator
  wrk
  # scripts/package.sh (Debian package: man pages from --help, dependencies)
  # and its test, which installs the package with apt
  help2man dpkg-dev adduser
  # tests/e2e_web.sh: the web interface in a real browser (playwright-core
  # from npm drives Debian's Chromium; no browser is downloaded)
  chromium nodejs
  # OCR (docs/search.md "Text inside images"): Tesseract's C API and English;
  # the OCR tests render words with libvips text (pango) in DejaVu fonts,
  # e2e_ocr.sh with the vips command
  libtesseract-dev tesseract-ocr-eng fonts-dejavu-core libvips-tools
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Debian's nodejs needs the separate npm package; other builds of nodejs
# (e.g. NodeSource's) bring npm along and conflict with Debian's.
if ! command -v npm >/dev/null; then missing+=(npm); fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi

# npm packages of the web tests (playwright-core only, pinned by
# tests/web/package-lock.json).  Never `playwright install`: the tests use
# /usr/bin/chromium.
web_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/web"
if [ -f "$web_tests/package-lock.json" ] && [ ! -d "$web_tests/node_modules/playwright-core" ]; then
  echo "setup: npm ci in tests/web"
  (cd "$web_tests" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
