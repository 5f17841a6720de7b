# web_testutil.sh - sourced by the browser tests (e2e_web*.sh): the paths
# ($bin, $src, $shared, $chromium, $webdir), skip MSG (exit 77), a skip
# without node, Debian's Chromium, the fixtures or tests/web's npm packages
# (installed with `npm ci` when missing), the screenshot folder $out, a temp
# dir $tmp removed at exit, and web_serve LIBRARY [serve options...]: a
# `clipdex serve --port 0` on loopback (at most 5 minutes), its address in
# $url, stopped at exit.
bin=${CLIPDEX_BIN:?CLIPDEX_BIN is not set}
src=${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
shared=${CLIPDEX_SHARED:-$src/../shared}
chromium=${CLIPDEX_CHROMIUM:-/usr/bin/chromium}
webdir=$src/tests/web
. "$src/tests/serve_testutil.sh"

skip() { echo "SKIP: $*"; exit 77; }
command -v node >/dev/null || skip "node is not installed (scripts/setup.sh installs nodejs)"
[ -x "$chromium" ] || skip "$chromium is missing (scripts/setup.sh installs Debian's chromium)"
[ -d "$shared/fixtures/clip-tiny" ] && [ -d "$shared/data/formats" ] && [ -d "$shared/data/imagenet-sample" ] ||
  skip "shared fixtures/data not found under $shared"
if [ ! -d "$webdir/node_modules/playwright-core" ]; then
  command -v npm >/dev/null || skip "npm is missing and tests/web/node_modules is not installed"
  echo "installing tests/web dependencies (npm ci)"
  (cd "$webdir" && npm ci --no-audit --no-fund --loglevel=error) || skip "npm ci failed in tests/web"
fi

out=${CLIPDEX_TEST_OUTPUT:-$(cd "$(dirname "$bin")" && pwd)/test-output}/web
mkdir -p "$out"
tmp=$(mktemp -d "/tmp/clipdex-$(basename "$0" .sh).XXXXXX")
server_pid=
web_cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap web_cleanup EXIT
trap 'exit 1' INT TERM

web_serve() {
  local lib=$1; shift
  timeout -s TERM 300 "$bin" serve --library "$lib" --port 0 "$@" >"$tmp/serve.out" 2>"$tmp/serve.err" &
  server_pid=$!
  url=$(serve_url "$tmp/serve.out" "$server_pid") || { cat "$tmp/serve.err"; echo "FAIL: clipdex serve did not start"; exit 1; }
}
