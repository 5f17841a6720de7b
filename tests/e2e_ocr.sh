#!/usr/bin/env bash
# e2e_ocr.sh - OCR through the real binary and server (docs/search.md
# "Text inside images"), with the real Tesseract: two images with words
# rendered by the vips command (libvips-tools) and a photo without text.
#  - an unknown --ocr-lang fails before any work, naming the installed ones;
#  - `clipdex ocr` on a library indexed without OCR: the words become
#    findable by keyword search, the plain photo is skipped, info counts
#    them, a second run has nothing to do;
#  - `clipdex index --ocr` on a new library does the same in one pass;
#  - SIGINT during `clipdex ocr` commits what was read (exit 130) and the
#    next run reads the rest;
#  - the HTTP API: a keyword search finds the word and its result carries
#    "ocr"; GET /api/images/ID too.
set -u
bin=${CLIPDEX_BIN:?CLIPDEX_BIN is not set}
src=${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
shared=${CLIPDEX_SHARED:-$src/../shared}
[ -d "$shared/fixtures/clip-tiny" ] || { echo "SKIP: shared data not found"; exit 77; }
command -v vips >/dev/null || { echo "SKIP: the vips command (libvips-tools) is absent"; exit 77; }
ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 ||
  [ -n "${TESSDATA_PREFIX:-}" ] || { echo "SKIP: tesseract-ocr-eng is absent"; exit 77; }
tmp=$(mktemp -d /tmp/clipdex-e2e-ocr.XXXXXX)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
model=$shared/fixtures/clip-tiny
img=$tmp/img
mkdir -p "$img"
font=/usr/share/fonts/truetype/dejavu
# black words on white: vips text draws white ink on black, invert it
vips text "$tmp/t1.v" "LIGHTHOUSE" --font "DejaVu Sans Bold 44" --fontfile "$font/DejaVuSans-Bold.ttf" --dpi 72 &&
  vips embed "$tmp/t1.v" "$tmp/t1e.v" 40 40 420 130 && vips invert "$tmp/t1e.v" "$img/a.png" || bad "render a"
vips text "$tmp/t2.v" "marmalade" --font "DejaVu Serif 36" --fontfile "$font/DejaVuSerif.ttf" --dpi 72 &&
  vips embed "$tmp/t2.v" "$tmp/t2e.v" 30 30 320 110 && vips invert "$tmp/t2e.v" "$img/b.png" || bad "render b"
cp "$shared/data/imagenet-sample/n01484850_great_white_shark.JPEG" "$img/c.jpg"

# unknown language: exit 1 before any work, the installed ones named
"$bin" index --library "$tmp/never" --model "$model" --ocr-lang eng+xx9 "$img" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q 'OCR language "xx9" is not installed (installed: .*eng' "$tmp/err" &&
  [ ! -e "$tmp/never" ] && ok || { bad "index --ocr-lang xx9"; cat "$tmp/err"; }

lib=$tmp/lib
"$bin" index --library "$lib" --model "$model" "$img" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; bad "index"; }
"$bin" search --library "$lib" --mode keyword 'ocr:lighthouse' >"$tmp/out" 2>&1
[ ! -s "$tmp/out" ] && ok || bad "OCR text before clipdex ocr"
"$bin" ocr --library "$lib" --ocr-lang xx9 >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q 'installed: ' "$tmp/err" && ok || bad "ocr --ocr-lang xx9"
"$bin" ocr --library "$lib" --json >"$tmp/ocr.json" 2>"$tmp/err" || { cat "$tmp/err"; bad "clipdex ocr"; }
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["todo"]==3 and d["read"]==2 and d["with_text"]==2 and d["skipped"]==1 and d["failed"]==0, d' "$tmp/ocr.json" && ok || bad "ocr summary"
for w in lighthouse marmalade; do
  "$bin" search --library "$lib" --mode keyword "ocr:$w" --json >"$tmp/out" 2>&1
  f=$([ $w = lighthouse ] && echo a.png || echo b.png)
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert len(r)==1 and r[0]["path"].endswith("/"+sys.argv[2]), r' "$tmp/out" "$f" && ok || bad "keyword $w"
done
"$bin" info --library "$lib" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ocr_images"]==2 and d["ocr_read"]==3 and d["ocr_skipped"]==1, d' && ok || bad "info counts"
"$bin" ocr --library "$lib" --json >"$tmp/ocr2.json" 2>&1
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["todo"]==0 and d["read"]==0, d' "$tmp/ocr2.json" && ok || bad "second ocr run"

# index --ocr: one pass
lib2=$tmp/lib2
"$bin" index --library "$lib2" --model "$model" --ocr --json "$img" >"$tmp/idx.json" 2>"$tmp/err" || { cat "$tmp/err"; bad "index --ocr"; }
python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); assert d["added"]==3 and d["ocr_read"]==2 and d["ocr_skipped"]==1, d' "$tmp/idx.json" && ok || bad "index --ocr summary"
"$bin" search --library "$lib2" --mode keyword lighthouse >"$tmp/out" 2>&1
grep -q '/a.png' "$tmp/out" && ok || bad "index --ocr: keyword search"

# Ctrl-C: what was read is committed (exit 130), the next run resumes
many=$tmp/many
mkdir -p "$many"
find "$shared/data/imagenet-sample" -maxdepth 1 -name '*.JPEG' | sort | sed -n '20,35p' | xargs -I{} cp {} "$many/"
lib3=$tmp/lib3
"$bin" index --library "$lib3" --model "$model" "$many" >/dev/null 2>&1 || bad "index many"
"$bin" ocr --library "$lib3" --threads 1 --json >"$tmp/int.json" 2>&1 &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid"
st=$?
"$bin" ocr --library "$lib3" --json >"$tmp/rest.json" 2>&1 || bad "resumed ocr"
python3 - "$tmp/int.json" "$tmp/rest.json" "$st" <<'PY' && ok || { bad "interrupted ocr"; cat "$tmp/int.json" "$tmp/rest.json"; }
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
done_a = a["read"] + a["skipped"] + a["failed"]
assert sys.argv[3] == "130" and a["interrupted"] and a["todo"] == 16 and done_a < 16, a
assert b["todo"] == 16 - a["read"] - a["skipped"] and not b["interrupted"], (a, b)
assert b["read"] + b["skipped"] == b["todo"], b
PY
"$bin" check --library "$lib3" >/dev/null 2>&1 && ok || bad "check after the interrupted ocr"

# the HTTP API
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --library "$lib" --port "$port" >"$tmp/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/info" >/dev/null 2>&1 && break; sleep 0.1; done
curl -s "http://127.0.0.1:$port/api/search?q=marmalade&mode=keyword" >"$tmp/api.json"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
r = d["results"]
assert d["mode"] == "keyword" and len(r) == 1 and r[0]["path"].endswith("/b.png"), d
assert "marmalade" in r[0]["ocr"].lower(), r[0]
print(r[0]["id"])' "$tmp/api.json" >"$tmp/id" && ok || { bad "API keyword search"; cat "$tmp/api.json"; }
id=$(cat "$tmp/id" 2>/dev/null)
curl -s "http://127.0.0.1:$port/api/images/${id:-0}" >"$tmp/img.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "marmalade" in d["ocr"].lower(), d' "$tmp/img.json" && ok || bad "GET /api/images/ID ocr"
curl -s "http://127.0.0.1:$port/api/search?q=jpg&mode=keyword" >"$tmp/api2.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert len(r)==1 and "ocr" not in r[0], r' "$tmp/api2.json" && ok || bad "no ocr field without text"

echo "e2e_ocr: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
