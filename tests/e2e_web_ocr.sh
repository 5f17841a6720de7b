#!/usr/bin/env bash
# e2e_web_ocr.sh - text read from images (index --ocr) in the web UI, in
# Debian's Chromium (tests/web/ocr.test.mjs): a word rendered by the vips
# CLI and two photos, indexed with --ocr and clip-tiny, served; a keyword
# search for the word finds its image and the detail view shows the text
# in its "Text in image" row.  Its own library, so the other web tests'
# counts are untouched.  Skips (77) like e2e_web.sh, and without the vips
# CLI (libvips-tools) or Tesseract's English data.
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
ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 || skip "tesseract-ocr-eng is absent"
[ -d "$webdir/node_modules/playwright-core" ] ||
  (cd "$webdir" && npm ci --no-audit --no-fund --loglevel=error) || skip "npm ci failed in tests/web"

out=${CLIPDEX_TEST_OUTPUT:-$(cd "$(dirname "$bin")" && pwd)/test-output}/web
mkdir -p "$out"
tmp=$(mktemp -d /tmp/clipdex-e2e-web-ocr.XXXXXX)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

data=$tmp/data
mkdir -p "$data"
font=/usr/share/fonts/truetype/dejavu
# black words on white: vips text draws white ink on black, invert it
vips text "$tmp/t.v" "LIGHTHOUSE" --font "DejaVu Sans Bold 44" --fontfile "$font/DejaVuSans-Bold.ttf" --dpi 72 &&
  vips embed "$tmp/t.v" "$tmp/te.v" 40 40 420 130 && vips invert "$tmp/te.v" "$data/sign.png" ||
  { echo "FAIL: rendering the word"; exit 1; }
cp "$shared/data/imagenet-sample/n01484850_great_white_shark.JPEG" "$data/shark.jpg"
cp "$shared/data/imagenet-sample/n01440764_tench.JPEG" "$data/tench.jpg"
lib=$tmp/library
"$bin" index --library "$lib" --model "$shared/fixtures/clip-tiny" --ocr "$data" >"$tmp/index.log" 2>&1 ||
  { cat "$tmp/index.log"; echo "FAIL: clipdex index --ocr"; exit 1; }

timeout -s TERM 300 "$bin" serve --library "$lib" --port 0 --access-log off \
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
CLIPDEX_WEB_URL=$url CLIPDEX_WEB_SHOTS=$out CLIPDEX_WEB_DATA=$data CLIPDEX_CHROMIUM=$chromium \
  timeout -s TERM 240 node --test --test-concurrency=1 ocr.test.mjs
