#!/usr/bin/env bash
# e2e_web_ocr.sh - text read from images (index --ocr) in the web UI, in
# Debian's Chromium (tests/web/ocr.test.mjs): a word rendered by the vips
# CLI and two photos, indexed with --ocr and clip-tiny, served; a keyword
# search for the word finds its image and the detail view shows the text
# in its "Text in image" row.  Its own library, so the other web tests'
# counts are untouched.  Skips (77) like e2e_web.sh, and without the vips
# CLI (libvips-tools) or Tesseract's English data.
set -u
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/web_testutil.sh"
command -v vips >/dev/null || skip "the vips CLI is missing (libvips-tools)"
ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 || skip "tesseract-ocr-eng is absent"

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

web_serve "$lib" --access-log off

cd "$webdir" || exit 1
CLIPDEX_WEB_URL=$url CLIPDEX_WEB_SHOTS=$out CLIPDEX_WEB_DATA=$data CLIPDEX_CHROMIUM=$chromium \
  timeout -s TERM 240 node --test --test-concurrency=1 ocr.test.mjs
