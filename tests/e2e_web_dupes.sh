#!/usr/bin/env bash
# e2e_web_dupes.sh - the near-duplicates page (web/dupes.html) in Debian's
# Chromium (tests/web/dupes.test.mjs): a library of 3 ImageNet photos with
# 2 copies each made by the vips CLI (half size, JPEG quality 30) and 4
# distinct photos, indexed with clip-tiny, served with a write token.  Its
# own library, so the other web tests' counts are untouched.  Skips (77)
# like e2e_web.sh, and without the vips CLI (libvips-tools).
set -u
bin=${CLIPDEX_BIN:?CLIPDEX_BIN is not set}
src=${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
shared=${CLIPDEX_SHARED:-$src/../shared}
chromium=${CLIPDEX_CHROMIUM:-/usr/bin/chromium}
webdir=$src/tests/web

skip() { echo "SKIP: $*"; exit 77; }
command -v node >/dev/null || skip "node is not installed (scripts/setup.sh installs nodejs)"
command -v vips >/dev/null || skip "the vips CLI is missing (libvips-tools)"
[ -x "$chromium" ] || skip "$chromium is missing (scripts/setup.sh installs Debian's chromium)"
[ -d "$shared/fixtures/clip-tiny" ] && [ -d "$shared/data/imagenet-sample" ] || skip "shared fixtures/data not found under $shared"
[ -d "$webdir/node_modules/playwright-core" ] ||
  (cd "$webdir" && npm ci --no-audit --no-fund --loglevel=error) || skip "npm ci failed in tests/web"

out=${CLIPDEX_TEST_OUTPUT:-$(cd "$(dirname "$bin")" && pwd)/test-output}/web
mkdir -p "$out"
tmp=$(mktemp -d /tmp/clipdex-e2e-web-dupes.XXXXXX)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

data=$tmp/data
mkdir -p "$data"
mapfile -t photos < <(find "$shared/data/imagenet-sample" -maxdepth 1 -name '*.JPEG' | sort | sed -n '30,36p')
for f in "${photos[@]:0:3}"; do
  b=$(basename "$f" .JPEG)
  cp "$f" "$data/$b.jpg"
  vips resize "$f" "$data/${b}_half.jpg[Q=90]" 0.5 || exit 1
  vips copy "$f" "$data/${b}_q30.jpg[Q=30]" || exit 1
done
cp "${photos[@]:3:4}" "$data/"
lib=$tmp/library
"$bin" index --library "$lib" --model "$shared/fixtures/clip-tiny" "$data" >"$tmp/index.log" 2>&1 ||
  { cat "$tmp/index.log"; echo "FAIL: clipdex index"; exit 1; }

token=web-dupes-token-$$
timeout -s TERM 300 "$bin" serve --library "$lib" --port 0 --token "$token" --access-log off \
  >"$tmp/serve.out" 2>"$tmp/serve.err" &
server_pid=$!
url=
for _ in $(seq 300); do
  url=$(sed -n 's/^listening on //p' "$tmp/serve.out")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$tmp/serve.err"; echo "FAIL: clipdex serve did not start"; exit 1; }

cd "$webdir" || exit 1
CLIPDEX_WEB_URL=$url CLIPDEX_WEB_TOKEN=$token CLIPDEX_WEB_SHOTS=$out CLIPDEX_WEB_DATA=$data \
CLIPDEX_CHROMIUM=$chromium timeout -s TERM 240 node --test --test-concurrency=1 dupes.test.mjs
