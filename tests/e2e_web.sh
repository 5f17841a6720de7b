#!/usr/bin/env bash
# e2e_web.sh - the web interface in a real browser: builds a small library
# with the fixture model (the formats images plus 20 ImageNet photos, so a
# search has more than one page), starts a real `clipdex serve --port 0
# --token ...` on loopback, and runs tests/web/*.test.mjs with node's test
# runner, driving Debian's Chromium through playwright-core.  Screenshots of
# every state go to $CLIPDEX_TEST_OUTPUT/web (default: test-output/web next
# to the binary, i.e. build/test-output/web).
#
# Skips (77) when node, /usr/bin/chromium or the shared data are missing;
# scripts/setup.sh installs them (and runs `npm ci` in tests/web).
set -u
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/web_testutil.sh"
rm -f "$out"/*.png

# Test images: copies, so the library's paths are ours.  upload/ holds
# images that are NOT indexed (for the upload test) and a non-image.
data=$tmp/data
mkdir -p "$data/formats" "$data/imagenet" "$data/upload"
find "$shared/data/formats" -maxdepth 1 -type f \( -name '*.png' -o -name '*.jpg' \) -exec cp {} "$data/formats/" \;
mapfile -t photos < <(find "$shared/data/imagenet-sample" -maxdepth 1 -name '*.JPEG' | sort | head -n 22)
cp "${photos[@]:0:20}" "$data/imagenet/"
cp "${photos[@]:20:2}" "$data/upload/"
printf 'these are notes, not an image\n' >"$data/upload/notes.txt"

lib=$tmp/library
"$bin" init --library "$lib" --model "$shared/fixtures/clip-tiny" >"$tmp/init.log" 2>&1 ||
  { cat "$tmp/init.log"; echo "FAIL: clipdex init"; exit 1; }
"$bin" index --library "$lib" "$data/formats" "$data/imagenet" >"$tmp/index.log" 2>&1 ||
  { cat "$tmp/index.log"; echo "FAIL: clipdex index"; exit 1; }
tail -n 1 "$tmp/index.log"

token=web-test-token-$$
web_serve "$lib" --token "$token" --access-log "$out/access.log"
echo "server at $url, screenshots in $out"

cd "$webdir" || exit 1
CLIPDEX_WEB_URL=$url CLIPDEX_WEB_TOKEN=$token CLIPDEX_WEB_SHOTS=$out CLIPDEX_WEB_DATA=$data \
CLIPDEX_CHROMIUM=$chromium \
  timeout -s TERM 240 node --test --test-concurrency=1 \
    search.test.mjs detail.test.mjs image-query.test.mjs upload.test.mjs search-modes.test.mjs
status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server stderr"
  tail -n 30 "$tmp/serve.err"
fi
exit "$status"
