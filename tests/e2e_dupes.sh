#!/bin/bash
# e2e_dupes.sh - `clipdex dupes` and GET /api/dupes on a real library
# (clip-tiny): 8 photos of ../shared/data/imagenet-sample, each with 4
# copies made here with the vips CLI (half size, JPEG quality 30, a 5% crop,
# a small colour change) and one byte-identical copy, mixed with 16 distinct
# photos.  Every copy must be grouped with its original, no distinct photo
# grouped, the original kept (most pixels, then oldest).  With a threshold so
# low that the embeddings alone would merge unrelated photos, the hashes
# must still keep them apart.  Indexing stored every hash; --rehash
# recomputes them (one per content).  Also: a library of schema 2 (no hashes) is
# upgraded and hashed by `dupes` (--read-only: without hashes, only
# identical contents are grouped); out-of-range thresholds (CLI exit 2, API 400); the
# API's groups equal the CLI's; deleting an extra through the API (token
# required) removes it from the groups.  Skips (77) without ../shared or vips.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
DATA=$SHARED/data/imagenet-sample
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$DATA" ] && [ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
for c in vips vipsheader python3 curl; do
    command -v $c >/dev/null || { echo "SKIP: $c absent (libvips-tools, python3, curl)"; exit 77; }
done
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$T"' EXIT
L=$T/lib
P=$T/photos
mkdir -p "$P"
fail() { echo "FAIL: $*"; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"

# the first 8 photos get copies, the next 16 stay alone
ls "$DATA" | grep '\.JPEG$' | sort | head -24 >"$T/list"
head -8 "$T/list" >"$T/orig"
for f in $(cat "$T/orig"); do
    b=${f%.JPEG}
    src=$DATA/$f
    cp "$src" "$P/$b.jpg"
    w=$(vipsheader -f width "$src") && h=$(vipsheader -f height "$src") || fail "vipsheader"
    vips resize "$src" "$P/${b}_half.jpg[Q=90]" 0.5 || fail "vips resize"
    vips copy "$src" "$P/${b}_q30.jpg[Q=30]" || fail "vips copy"
    vips crop "$src" "$P/${b}_crop.jpg[Q=90]" $((w / 40)) $((h / 40)) $((w - w / 20)) $((h - h / 20)) || fail "vips crop"
    vips linear "$src" "$P/${b}_tint.jpg[Q=90]" "1.06 1.02 0.95" "6 3 0" --uchar || fail "vips linear"
    cp "$src" "$P/${b}_same.jpg"
    touch -d 2020-01-01 "$P/$b.jpg"   # the original is the oldest of its full-size copies
done
for f in $(tail -16 "$T/list"); do cp "$DATA/$f" "$P/"; done

"$BIN" index --library "$L" --model "$MODEL" "$P" >/dev/null 2>&1 || fail "index"

# groups as sorted lists of file names, keeper first; checks as described above
check_groups() {   # $1 = JSON file, $2 = label
    python3 - "$1" "$T/orig" "$2" <<'EOF' || exit 1
import json, os, sys
d = json.load(open(sys.argv[1]))
origs = [l.strip()[:-5] for l in open(sys.argv[2]) if l.strip()]
label = sys.argv[3]
groups = {}
for g in d["groups"]:
    names = [os.path.basename(m["path"]) for m in g["members"]]
    keep = [os.path.basename(m["path"]) for m in g["members"] if m["keeper"]]
    assert len(keep) == 1 and g["members"][0]["keeper"] and g["keeper"] == g["members"][0]["id"], (label, g)
    groups[keep[0]] = sorted(names)
    for m in g["members"][1:]:
        assert m["via"] is not None, (label, m)
        assert m["same_content"] or (m["distance"] <= d["max_distance"] and m["similarity"] >= d["threshold"]), (label, m)
want = {o + ".jpg": sorted([o + s + ".jpg" for s in ("", "_half", "_q30", "_crop", "_tint", "_same")]) for o in origs}
if groups != want:
    for k in sorted(set(want) | set(groups)):
        if groups.get(k) != want.get(k): print(label, "group of", k, ":", groups.get(k), "wanted", want.get(k))
    sys.exit(1)
print(label, ": %d groups as expected; %d candidates, %d rejected" % (len(groups), d["candidates"], d["rejected"]))
EOF
}

"$BIN" dupes --help | grep -q "usage: clipdex dupes" || fail "--help"
# clip-tiny is a random model: its similarities of a crop to its original
# go down to ~0.9 (a real CLIP's are higher), so the tests use 0.85
TH=0.85
"$BIN" dupes --library "$L" --threshold $TH --json >"$T/d1.json" 2>"$T/d1.err" || { cat "$T/d1.err"; fail "dupes"; }
check_groups "$T/d1.json" "threshold $TH" || fail "threshold $TH groups"
grep -q "search: " "$T/d1.err" || fail "no progress on stderr: $(cat "$T/d1.err")"
# indexing stored every hash: nothing to hash, nothing without one
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['hashed'] == 0 and d['unhashed'] == 0 and d['images'] == 64 else 1)" "$T/d1.json" ||
    fail "hashes at indexing: $(head -c 300 "$T/d1.json")"
# --rehash recomputes them all (one per content) to the same values
"$BIN" dupes --library "$L" --threshold $TH --rehash --json >"$T/d1r.json" 2>/dev/null || fail "dupes --rehash"
check_groups "$T/d1r.json" rehash || fail "groups after --rehash"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['hashed'] == 56 else 1)" "$T/d1r.json" || fail "--rehash count"
"$BIN" dupes --library "$L" --read-only --rehash >/dev/null 2>&1; [ $? -eq 2 ] || fail "--rehash with --read-only must be a usage error"
# text output: the keeper line names the original
"$BIN" dupes --library "$L" --threshold $TH >"$T/d1.txt" 2>/dev/null || fail "dupes text"
grep -q "^  keep .*/$(head -1 "$T/orig" | sed 's/\.JPEG$//')\.jpg " "$T/d1.txt" || { cat "$T/d1.txt"; fail "text keeper"; }
grep -q "^8 groups, 40 extra images of 64" "$T/d1.txt" || { tail -1 "$T/d1.txt"; fail "text summary"; }

# a threshold that lets unrelated photos through as candidates: the hashes
# reject them (the int8 scan here, the default float32 scan above)
"$BIN" dupes --library "$L" --threshold 0.3 --neighbours 20 --scan int8 --json >"$T/d2.json" 2>/dev/null || fail "dupes 0.3"
check_groups "$T/d2.json" "threshold 0.3" || fail "low threshold groups"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['rejected'] > 100 else 1)" "$T/d2.json" ||
    fail "the hashes rejected nothing at threshold 0.3"

# out-of-range values: usage errors, nothing run
for bad in 1.5 0 -0.2 abc nan; do
    "$BIN" dupes --library "$L" --threshold "$bad" >/dev/null 2>"$T/err"; rc=$?
    [ $rc -eq 2 ] && grep -q "out of range" "$T/err" || fail "--threshold $bad: rc $rc, $(cat "$T/err")"
done
"$BIN" dupes --library "$L" --max-distance 40 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--max-distance 40"

# schema 2 (before hashes): `dupes` upgrades it, hashes every image from
# its file and finds the same groups
cp -r "$L" "$T/old"
python3 - "$T/old/catalog.db" <<'EOF' || fail "making a schema 2 catalog"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for col in ("phash", "ocr_lang", "ocr_skipped"):   # schema 3: hashes and OCR state
    db.execute("ALTER TABLE contents DROP COLUMN " + col)
db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
db.commit()
EOF
# a read-only run upgrades the catalog (the file is writable) but hashes
# nothing: only the byte-identical copies are grouped
"$BIN" dupes --library "$T/old" --read-only --threshold $TH --json 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin)
assert d['unhashed'] == 64 and d['hashed'] == 0 and len(d['groups']) == 8, d
assert all(len(g['members']) == 2 and g['members'][1]['same_content'] for g in d['groups']), d['groups']" ||
    fail "read-only without hashes"
"$BIN" dupes --library "$T/old" --threshold $TH --json >"$T/d3.json" 2>/dev/null || fail "dupes on schema 2"
check_groups "$T/d3.json" "upgraded" || fail "upgraded library groups"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['hashed'] == 56 and d['unhashed'] == 0 else 1)" "$T/d3.json" ||
    fail "hashed on upgrade: $(head -c 300 "$T/d3.json")"   # 64 images, 56 contents
"$BIN" dupes --library "$T/old" --json 2>/dev/null | python3 -c "import json,sys; sys.exit(json.load(sys.stdin)['hashed'])" ||
    fail "hashes were not stored"
"$BIN" check --library "$T/old" >/dev/null || fail "check after the upgrade"

# the API: same groups, 400s, delete an extra with the token
"$BIN" serve --library "$L" --port 0 --token s3cret --access-log off >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
URL=$(serve_url "$T/serve.out" "$SPID") || { cat "$T/serve.err"; fail "serve did not start"; }
curl -sf "$URL/api/dupes?threshold=$TH" >"$T/a1.json" || fail "GET /api/dupes"
check_groups "$T/a1.json" api || fail "API groups"
for bad in "threshold=2" "threshold=0" "threshold=abc" "max_distance=99" "bogus=1"; do
    code=$(curl -s -o "$T/e.json" -w '%{http_code}' "$URL/api/dupes?$bad")
    [ "$code" = 400 ] && grep -q '"code"' "$T/e.json" || fail "GET /api/dupes?$bad: $code $(cat "$T/e.json")"
done
curl -s "$URL/api/dupes?threshold=2" | grep -q "above 0 and at most 1" || fail "400 message names the range"
extra=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['groups'][0]['members'][1]['id'])" "$T/a1.json")
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/api/images/$extra")
[ "$code" = 401 ] || fail "delete without the token: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer s3cret" "$URL/api/images/$extra")
[ "$code" = 200 ] || [ "$code" = 204 ] || fail "delete with the token: $code"
curl -sf "$URL/api/dupes?threshold=$TH" | python3 -c "
import json, sys
d = json.load(sys.stdin)
ids = [m['id'] for g in d['groups'] for m in g['members']]
assert $extra not in ids and len(ids) == 47 and d['images'] == 63, (len(ids), d['images'])" || fail "groups after the delete"
echo "e2e_dupes: ok"
