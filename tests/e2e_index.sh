#!/bin/bash
# e2e_index.sh - the real binary on a real folder: ../shared/data/formats
# plus generated edge cases (corrupt JPEG, truncated PNG, zero-byte file, a
# text file named .jpg, a PNG "bomb" whose header claims 100000x100000,
# nested folders, a symlink loop, duplicates), a rename and a deletion
# between runs (--prune), search with filters, and URL indexing from a
# loopback python3 http.server (two images, a 404, a non-image).
# Skips (77) without ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
FORMATS=$SHARED/data/formats
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$FORMATS" ] && [ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
T=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
D=$T/photos
L=$T/lib
mkdir -p "$D/a/b/c"
cp "$FORMATS"/*.png "$FORMATS"/*.jpg "$D/a/"
cp "$FORMATS/rocket.jpg" "$D/a/b/c/rocket-copy.jpg"        # duplicate bytes, nested
cp "$FORMATS/horse.png" "$D/a/b/horse-copy.png"            # duplicate bytes
touch -d 2001-06-01 "$D/a/horse.png"                        # for the date filter
ln -s .. "$D/a/b/loop"                                      # symlink loop
: > "$D/a/empty.jpg"                                        # zero bytes
echo "just some text, not an image" > "$D/a/notes.jpg"      # text named .jpg: failed
printf '# my photos\n' > "$D/a/README.md"                  # not images by name nor
printf 'file,caption\nx.jpg,a cat\n' > "$D/a/b/data.csv"   # content: skipped
head -c 20000 "$FORMATS/chelsea.png" > "$D/a/b/truncated.png"
python3 - "$FORMATS/rocket.jpg" "$D/a/b/corrupt.jpg" "$D/a/bomb.png" <<'PY'
import sys, struct, zlib
data = bytearray(open(sys.argv[1], "rb").read())
# a bogus Huffman table: the header is there, the image cannot be decoded
j = data.find(b"\xff\xc4")
data[j + 4:j + 40] = b"\xff" * 36
open(sys.argv[2], "wb").write(data)
def chunk(t, b):
    return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\x00" * (1 + 3 * 100000) * 4)
open(sys.argv[3], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
PY

summary() { tail -1 "$1"; }
field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])[sys.argv[2]])' "$1" "$2"; }

# ---- run 1
"$BIN" index --library "$L" --model "$MODEL" --json "$D" >"$T/run1" 2>"$T/run1.err" || { cat "$T/run1.err"; fail "index run 1"; }
summary "$T/run1"
[ "$(field "$T/run1" added)" = 10 ] || fail "run 1: added != 10 (the 10 distinct images)"
[ "$(field "$T/run1" duplicates)" = 2 ] || fail "run 1: duplicates != 2"
[ "$(field "$T/run1" failed)" = 5 ] || { grep failed "$T/run1"; fail "run 1: failed != 5"; }
[ "$(field "$T/run1" skipped)" = 2 ] || { grep skipped "$T/run1"; fail "run 1: skipped != 2"; }
grep '"event": "skipped"' "$T/run1" | grep -q 'README.md' || fail "run 1: README.md skipped event"
python3 - "$T/run1" <<'PY' || fail "run 1: failure reasons"
import json, sys
fails = {}
for line in open(sys.argv[1]):
    ev = json.loads(line)
    if ev["event"] == "failed":
        fails[ev["path"].rsplit("/", 1)[1]] = ev["reason"]
print(fails)
want = {"empty.jpg": "empty", "notes.jpg": "not an image", "bomb.png": "pixels",
        "truncated.png": "", "corrupt.jpg": ""}
assert set(fails) == set(want), fails
for name, word in want.items():
    assert word in fails[name], (name, fails[name])
PY
"$BIN" check --library "$L" >/dev/null || fail "check after run 1"
# skipped files are listed on stderr only with --verbose; failures always
"$BIN" index --library "$L" "$D" >"$T/q.out" 2>"$T/q.err" || fail "index (quiet)"
grep -q README.md "$T/q.err" && fail "README.md listed without --verbose"
grep -q "failed .*notes.jpg" "$T/q.err" || fail "failure not listed"
grep -q "2 skipped" "$T/q.out" || fail "summary counts skipped"
"$BIN" index --library "$L" --verbose "$D" >/dev/null 2>"$T/v.err" || fail "index --verbose"
grep -q "skipped .*README.md" "$T/v.err" || fail "--verbose lists README.md"

# ---- search
s() { "$BIN" search --library "$L" --json "$@"; }
s --like "$D/a/rocket.jpg" -k 3 >"$T/like" || fail "search --like"
python3 - "$T/like" <<'PY' || fail "--like: the image itself (or its copy) first with score ~1"
import json, sys
r = json.load(open(sys.argv[1]))["results"]
assert len(r) == 3 and r[0]["score"] > 0.999 and r[1]["score"] > 0.999, r   # rocket + its copy
assert {r[0]["path"].rsplit("/", 1)[1], r[1]["path"].rsplit("/", 1)[1]} == {"rocket.jpg", "rocket-copy.jpg"}, r
assert r[2]["score"] < 0.999
PY
s -k 5 "a photo of a cat" >"$T/text" || fail "text search"
python3 - "$T/text" <<'PY' || fail "text search: 5 results in score order, total 12"
import json, sys
d = json.load(open(sys.argv[1])); r = d["results"]
assert len(r) == 5 and d["total"] == 12, d
assert all(r[i]["score"] >= r[i + 1]["score"] for i in range(4)), r
assert [x["rank"] for x in r] == [1, 2, 3, 4, 5]
PY
s -k 3 --offset 5 "a photo of a cat" >"$T/page2" || fail "offset"
python3 - "$T/text" "$T/page2" "$T/all" <<'PY' || fail "pagination"
import json, sys
p2 = json.load(open(sys.argv[2]))["results"]
assert [x["rank"] for x in p2] == [6, 7, 8], p2
PY
s -k 10 --format jpeg "rocket" >"$T/fmt" || fail "format filter"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert len(r)==2 and all(x["path"].endswith(".jpg") for x in r), r' "$T/fmt" || fail "--format jpeg"
s -k 1 --format png "rocket" >"$T/fmt1" || fail "format filter k=1"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["results"])==1 and d["total"]==10, d' "$T/fmt1" || fail "--format png -k 1"
s -k 20 --path-prefix "$D/a/b/" "anything" >"$T/pfx" || fail "prefix filter"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert sorted(x["path"].rsplit("/",1)[1] for x in r)==["horse-copy.png","rocket-copy.jpg"], r' "$T/pfx" || fail "--path-prefix"
s -k 20 --path-prefix "$D/a/b%" "anything" >"$T/pfx2" || fail "prefix filter %"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert r==[], r' "$T/pfx2" || fail "--path-prefix treats % literally"
s -k 20 --before 2002-01-01 "a horse" >"$T/date" || fail "date filter"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert [x["path"].rsplit("/",1)[1] for x in r]==["horse.png"], r' "$T/date" || fail "--before"
s -k 20 --after 2001-05-31T00:00:00Z --before 2001-06-02 "a horse" >"$T/date2" || fail "date range"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert len(r)==1, r' "$T/date2" || fail "--after/--before ISO"
s -k 20 --after 2002-01-01 "a horse" >"$T/date3" || fail "after"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["results"])==11, d' "$T/date3" || fail "--after"
"$BIN" search --library "$L" --like 999999 >/dev/null 2>&1 && fail "--like of an unknown id must fail"

# ---- run 2: a rename, a deletion, --prune
id_before=$(s --like "$D/a/coffee.png" -k 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["id"])')
mv "$D/a/coffee.png" "$D/a/b/coffee-renamed.png"
rm "$D/a/camera.png"
"$BIN" index --library "$L" --prune --json "$D" >"$T/run2" 2>"$T/run2.err" || { cat "$T/run2.err"; fail "index run 2"; }
summary "$T/run2"
[ "$(field "$T/run2" added)" = 0 ] || fail "run 2: nothing should be embedded"
[ "$(field "$T/run2" moved)" = 1 ] || fail "run 2: moved != 1"
[ "$(field "$T/run2" removed)" = 1 ] || fail "run 2: removed != 1"
[ "$(field "$T/run2" unchanged)" = 10 ] || fail "run 2: unchanged != 10"
id_after=$(s --like "$D/a/b/coffee-renamed.png" -k 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["id"])')
[ "$id_before" = "$id_after" ] || fail "a moved file keeps its id ($id_before -> $id_after)"
"$BIN" info --library "$L" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["images"]==11 and d["vectors"]==9, d' || fail "info after run 2"

# ---- a different model is refused
mkdir "$T/other-model"
cp "$MODEL"/*.json "$MODEL"/merges.txt "$T/other-model/"
cp "$MODEL/model.fp16.safetensors" "$T/other-model/model.safetensors"
"$BIN" index --library "$L" --model "$T/other-model" "$D" >/dev/null 2>"$T/mm.err" && fail "another model must be refused"
grep -q "fingerprint" "$T/mm.err" || { cat "$T/mm.err"; fail "mismatch message"; }

# ---- URLs from a loopback server
W=$T/www
mkdir -p "$W"
cp "$FORMATS/astronaut.png" "$W/a.png"
cp "$(ls "$SHARED"/data/imagenet-sample/*.JPEG | head -1)" "$W/b.png"   # new content (a JPEG named .png)
printf 'GIF89a but not really\n' > "$W/fake.txt"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$W" && exec python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
SERVER=$!
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.1; done
echo "hello" > "$W/notes.html"
cat > "$T/urls.txt" <<URLS
# a comment, then a blank line

http://127.0.0.1:$PORT/a.png
http://127.0.0.1:$PORT/b.png
http://127.0.0.1:$PORT/missing.png
http://127.0.0.1:$PORT/notes.html
URLS
"$BIN" index --library "$L" --urls "$T/urls.txt" --json >"$T/run3" 2>"$T/run3.err" || { cat "$T/run3.err"; fail "index --urls"; }
summary "$T/run3"
grep '"failed"' "$T/run3" | grep -v summary
python3 - "$T/run3" <<'PY' || fail "URL results"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
s = ev[-1]
# a.png has the same bytes as astronaut.png (already indexed): duplicate; b.png new
assert s["duplicates"] == 1 and s["added"] == 1 and s["failed"] == 2, s
fails = {e["path"].rsplit("/", 1)[1]: e["reason"] for e in ev if e["event"] == "failed"}
assert "404" in fails["missing.png"], fails
assert "not an image" in fails["notes.html"], fails
PY
s -k 1 --path-prefix "http://127.0.0.1:$PORT/b" "photo" | grep -q "/b.png" || fail "search finds the URL"
"$BIN" check --library "$L" || fail "final check"

# ---- rm by path and by id
"$BIN" rm --library "$L" "$D/a/b/horse-copy.png" >/dev/null || fail "rm path"
"$BIN" info --library "$L" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["images"]==12 and d["vectors"]==10, d' || fail "info after rm"
"$BIN" check --library "$L" >/dev/null || fail "check after rm"
echo PASS
