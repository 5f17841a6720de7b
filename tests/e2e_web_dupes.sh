#!/usr/bin/env bash
# e2e_web_dupes.sh - the near-duplicates page (web/dupes.html) in Debian's
# Chromium (tests/web/dupes.test.mjs): a library of 3 ImageNet photos with
# 2 copies each made by the vips CLI (half size, JPEG quality 30) and 4
# distinct photos, indexed with clip-tiny, served with a write token.  Its
# own library, so the other web tests' counts are untouched.  Skips (77)
# like e2e_web.sh, and without the vips CLI (libvips-tools).
set -u
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/web_testutil.sh"
command -v vips >/dev/null || skip "the vips CLI is missing (libvips-tools)"

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
web_serve "$lib" --token "$token" --access-log off

cd "$webdir" || exit 1
CLIPDEX_WEB_URL=$url CLIPDEX_WEB_TOKEN=$token CLIPDEX_WEB_SHOTS=$out CLIPDEX_WEB_DATA=$data \
CLIPDEX_CHROMIUM=$chromium timeout -s TERM 240 node --test --test-concurrency=1 dupes.test.mjs
