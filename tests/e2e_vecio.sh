#!/bin/bash
# e2e_vecio.sh - vectors in and out through the real binary.
#  1. A 20 000 x 64 float16 .npy + CSV (clip-retrieval style, generated here
#     with the Python standard library) is imported with `kill -9` at random
#     moments, several times: after every kill `clipdex check` passes and
#     every row a killed run reported committed (JSON progress lines are
#     printed after their commit) is in the catalog.  Running the import
#     again resumes it: the final run ends with exactly 20 000 images and
#     as many vector records (the batches lost to kills are adopted).
#  2. `clipdex export` writes vectors equal to the normalised input, in
#     input order; importing the export into a new library gives the same
#     search results (`search --vectors`, one JSON line per query).
#  3. `search --vector` with a raw .f32 and a .npy query; bad inputs
#     (dimension mismatch, malformed CSV) fail clearly and change nothing.
# Uses the tiny fixture model (dim 64).  Skips (77) without ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
N=${VECIO_ROWS:-20000}
KILLS=${VECIO_KILLS:-5}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
L=$T/lib
fail() { echo "FAIL: $*"; exit 1; }

# ---- input: float16 [N, 64] .npy + CSV (image_path, caption, width, height)
python3 - "$N" 64 "$T/in" <<'PY' || fail "generating the input"
import struct, random, sys
n, dim, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(12345)
hdr = "{'descr': '<f2', 'fortran_order': False, 'shape': (%d, %d), }" % (n, dim)
hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
fmt = '<%de' % dim
with open(out + '.npy', 'wb') as f, open(out + '.csv', 'w') as m:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
    m.write("image_path,caption,width,height\n")
    for i in range(n):
        f.write(struct.pack(fmt, *[rng.uniform(-1, 1) for _ in range(dim)]))
        m.write('/photos/%02d/img%06d.jpg,"a caption, with ""quotes"" %d",%d,80\n' % (i % 17, i, i, 100 + i % 50))
PY

"$BIN" init --library "$L" --model "$MODEL" >/dev/null || fail "init"
"$BIN" import --help | grep -q -- "--vectors FILE" || fail "import --help"
"$BIN" export --help | grep -q -- "--meta OUT.jsonl" || fail "export --help"
"$BIN" search --help | grep -q -- "--vectors FILE" || fail "search --help"

# ---- 1. kill -9 during the import, check, resume
verify_reported() {
    python3 - "$L/catalog.db" "$T/in.csv" "$T"/log.* <<'PY' || fail "a reported row is missing after kill $1"
import csv, json, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
have = {r[0] for r in db.execute("SELECT path FROM images")}
n, distinct = db.execute("SELECT count(*), count(DISTINCT path) FROM images").fetchone()
assert n == distinct, "duplicate paths"
rows = 0
for log in sys.argv[3:]:
    for line in open(log, errors="replace"):
        try:
            ev = json.loads(line)
        except ValueError:
            continue   # the line being written when the process died
        if ev.get("event") == "progress":
            rows = max(rows, ev["rows"])
paths = [r["image_path"] for r in csv.DictReader(open(sys.argv[2]))]
missing = [p for p in paths[:rows] if p not in have]
print("reported rows %d, catalogued %d" % (rows, n))
if missing:
    print("reported but not in the catalog:", missing[:5], len(missing))
    sys.exit(1)
PY
}

RANDOM=${VECIO_SEED:-$$}
echo "seed/kills: ${VECIO_SEED:-$$} $KILLS"
for i in $(seq 1 "$KILLS"); do
    "$BIN" import --library "$L" --vectors "$T/in.npy" --meta "$T/in.csv" --batch 500 --json \
        >"$T/log.$i" 2>"$T/err.$i" &
    pid=$!
    ms=$((100 + RANDOM % 1500))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    "$BIN" check --library "$L" >"$T/check.$i" 2>&1 || { cat "$T/check.$i"; fail "check after kill $i (${ms} ms)"; }
    verify_reported "$i"
    echo "kill $i at ${ms} ms: $(tail -1 "$T/check.$i")"
done
"$BIN" import --library "$L" --vectors "$T/in.npy" --meta "$T/in.csv" --json >"$T/final" 2>"$T/final.err" ||
    { cat "$T/final.err"; fail "final import"; }
tail -1 "$T/final"
python3 - "$T/final" "$N" <<'PY' || fail "final import summary"
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
n = int(sys.argv[2])
assert s["event"] == "summary" and s["rows"] == n and s["added"] + s["unchanged"] == n, s
assert s["updated"] == 0 and not s["interrupted"], s
PY
"$BIN" check --library "$L" || fail "final check"
# No vector was stored twice: the batches lost to the kills were adopted by
# the next run (record count from the file size, docs/storage-format.md).
python3 - "$L/vectors.cdxv" "$N" <<'PY' || fail "vector file holds more records than images"
import os, sys
size, n = os.path.getsize(sys.argv[1]), int(sys.argv[2])
row, block = 256, 64 * 256 + 64 * 64          # dim 64
def size_of(c):
    s = c - 1
    return 4096 + (s // 64) * block + 64 * row + (s % 64) * 64 + 64
count = next((c for c in range(1, 4 * n) if size_of(c) == size), None)
print("vector records:", count)
assert count == n, (count, n)
PY
"$BIN" info --library "$L" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["images"]==int(sys.argv[1]), d' "$N" ||
    fail "info counts"

# ---- 2. export: vectors = normalised input, in input order; round trip
"$BIN" export --library "$L" --vectors "$T/out.npy" --meta "$T/out.jsonl" || fail "export"
python3 - "$T/in.npy" "$T/in.csv" "$T/out.npy" "$T/out.jsonl" <<'PY' || fail "exported data"
import csv, json, math, struct, sys
def load(path):
    d = open(path, 'rb').read()
    assert d[:8] == b'\x93NUMPY\x01\x00'
    hl = struct.unpack('<H', d[8:10])[0]
    h = eval(d[10:10 + hl].decode())   # our own test files
    n, dim = h['shape']
    code = {'<f2': 'e', '<f4': 'f'}[h['descr']]
    size = struct.calcsize(code)
    body = d[10 + hl:]
    assert len(body) == n * dim * size
    return [struct.unpack_from('<%d%s' % (dim, code), body, i * dim * size) for i in range(n)]
a, b = load(sys.argv[1]), load(sys.argv[3])
assert len(a) == len(b), (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    s = math.sqrt(sum(v * v for v in x))
    worst = max(worst, max(abs(v / s - w) for v, w in zip(x, y)))
assert worst < 1e-6, worst
paths = [r["image_path"] for r in csv.DictReader(open(sys.argv[2]))]
meta = [json.loads(l) for l in open(sys.argv[4])]
assert [m["path"] for m in meta] == paths, "export order differs from the input order"
assert all(m["width"] == 100 + i % 50 and m["height"] == 80 for i, m in enumerate(meta))
print("exported %d rows, max |diff| %.2e" % (len(b), worst))
# queries for the round trip: three exported rows (float32) and one raw .f32
with open(sys.argv[3] + '.q.npy', 'wb') as f:
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64), }"
    hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
    for i in (5, 17, 29999 % len(b)):
        f.write(struct.pack('<64f', *b[i]))
with open(sys.argv[3] + '.q.f32', 'wb') as f:
    f.write(struct.pack('<64f', *[3.0 * v for v in b[42]]))
PY
L2=$T/lib2
"$BIN" import --library "$L2" --model "$MODEL" --vectors "$T/out.npy" --meta "$T/out.jsonl" >/dev/null ||
    fail "import of the export"
"$BIN" search --library "$L" --vectors "$T/out.npy.q.npy" -k 5 --min-score 0.2 | sed 's/"took_ms": [0-9.]*/"took_ms": 0/' >"$T/r1" ||
    fail "search --vectors"
"$BIN" search --library "$L2" --vectors "$T/out.npy.q.npy" -k 5 --min-score 0.2 | sed 's/"took_ms": [0-9.]*/"took_ms": 0/' >"$T/r2" ||
    fail "search --vectors (copy)"
[ "$(wc -l <"$T/r1")" -eq 3 ] || fail "one JSON line per query"
python3 - "$T/r1" "$T/r2" "$T/out.jsonl" <<'PY' || fail "round-trip search results"
import json, sys
meta = [json.loads(l) for l in open(sys.argv[3])]
r1 = [json.loads(l) for l in open(sys.argv[1])]
r2 = [json.loads(l) for l in open(sys.argv[2])]
for q, (x, y) in enumerate(zip(r1, r2)):
    assert x["query"] == q and x["total"] == y["total"] and x["total"] >= 1, (x, y)
    assert [(h["path"], h["score"]) for h in x["results"]] == [(h["path"], h["score"]) for h in y["results"]], (x, y)
want = [meta[i]["path"] for i in (5, 17, 29999 % len(meta))]
assert [x["results"][0]["path"] for x in r1] == want, [x["results"][0] for x in r1]
print("round trip: same results for %d queries" % len(r1))
PY

# ---- 3. search --vector (raw .f32, scaled: normalised by clipdex) and errors
top=$("$BIN" search --library "$L" --vector "$T/out.npy.q.f32" -k 1 --json) || fail "search --vector"
echo "$top" | python3 -c '
import json, sys
d = json.load(sys.stdin)
h = d["results"][0]
assert h["path"] == "/photos/08/img000042.jpg" and h["score"] > 0.9999, d' || fail "search --vector top hit: $top"
"$BIN" search --library "$L" --vector "$T/out.npy.q.npy" >/dev/null 2>"$T/e" && fail "--vector with 3 vectors accepted"
grep -q "holds 3 vectors" "$T/e" || fail "--vector message: $(cat "$T/e")"
head -c 100 "$T/out.npy.q.f32" >"$T/odd.f32"
"$BIN" search --library "$L" --vector "$T/odd.f32" >/dev/null 2>"$T/e" && fail "odd-sized .f32 accepted"
grep -q "not a whole number" "$T/e" || fail "odd .f32 message: $(cat "$T/e")"

before=$("$BIN" info --library "$L" --json)
python3 - "$T" <<'PY'
import struct, sys
t = sys.argv[1]
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 32), }"
hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
with open(t + '/d32.npy', 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + struct.pack('<64f', *([0.5] * 64)))
open(t + '/d32.csv', 'w').write("path\n/x/1.jpg\n/x/2.jpg\n")
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), }"
hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
with open(t + '/ok.npy', 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + struct.pack('<128f', *([0.5] * 128)))
open(t + '/bad.csv', 'w').write('path,width\n/x/1.jpg,1\n/x/2.jpg,"2\n')
PY
"$BIN" import --library "$L" --vectors "$T/d32.npy" --meta "$T/d32.csv" 2>"$T/e" && fail "dimension mismatch accepted"
grep -q "32-dimensional" "$T/e" || fail "dimension message: $(cat "$T/e")"
"$BIN" import --library "$L" --vectors "$T/ok.npy" --meta "$T/bad.csv" 2>"$T/e" && fail "malformed CSV accepted"
grep -q "line 3: unterminated quoted field" "$T/e" || fail "CSV message: $(cat "$T/e")"
"$BIN" import --library "$L" --vectors "$T/in.csv" --meta "$T/in.csv" 2>"$T/e" && fail "CSV as vectors accepted"
grep -q "not a .npy file" "$T/e" || fail "npy message: $(cat "$T/e")"
[ "$("$BIN" info --library "$L" --json | sed 's/"bytes": [0-9]*//')" = "$(echo "$before" | sed 's/"bytes": [0-9]*//')" ] ||
    fail "a rejected import changed the library"
"$BIN" check --library "$L" >/dev/null || fail "check after rejected imports"

# source metadata in the metadata file: title, description and tags (CSV:
# ';'-separated; JSONL: a string or an array) reach the full-text index and
# the tag filter; text that is not UTF-8 fails the file with its line
L2=$T/lib-meta
"$BIN" init --library "$L2" --model "$MODEL" >/dev/null || fail "init lib-meta"
python3 - "$T" <<'PY'
import json, struct, sys
t = sys.argv[1]
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64), }"
hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
vals = []
for r in range(3):
    vals += [1.0 if d == r else 0.01 for d in range(64)]
with open(t + '/m.npy', 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + struct.pack('<192f', *vals))
open(t + '/m.csv', 'w').write('path,title,description,tags\n'
    '/m/a.jpg,Old pier at dawn,"Fishing boats, gulls",holiday;Sea\n'
    '/m/b.jpg,Tram in Lisbon,,city\n/m/c.jpg,,,\n')
with open(t + '/m.jsonl', 'w') as f:
    f.write(json.dumps({"path": "/m/a.jpg", "title": "Old pier at dawn", "tags": ["holiday", "sea"]}) + '\n')
    f.write(json.dumps({"path": "/m/b.jpg", "description": "a yellow tram", "tags": "city;transport"}) + '\n')
    f.write(json.dumps({"path": "/m/c.jpg"}) + '\n')
open(t + '/m-bad.csv', 'wb').write(b'path,title\n/m/a.jpg,ok\n/m/b.jpg,caf\xe9\n/m/c.jpg,\n')
PY
"$BIN" import --library "$L2" --vectors "$T/m.npy" --meta "$T/m-bad.csv" 2>"$T/e" && fail "a non-UTF-8 title accepted"
grep -q "line 3: 'title' must be UTF-8 text" "$T/e" || fail "UTF-8 message: $(cat "$T/e")"
[ "$("$BIN" info --library "$L2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])')" = 0 ] ||
    fail "the bad file imported something"
"$BIN" import --library "$L2" --vectors "$T/m.npy" --meta "$T/m.csv" >/dev/null 2>"$T/e" || fail "import with titles: $(cat "$T/e")"
kw() { "$BIN" search --library "$L2" --mode keyword --json -k 10 "$@" |
       python3 -c 'import json,sys; print(" ".join(sorted(h["path"] for h in json.load(sys.stdin)["results"])))'; }
[ "$(kw pier)" = "/m/a.jpg" ] || fail "title not indexed: $(kw pier)"
[ "$(kw gulls)" = "/m/a.jpg" ] || fail "description not indexed: $(kw gulls)"
[ "$(kw lisbon)" = "/m/b.jpg" ] || fail "second title: $(kw lisbon)"
[ "$(kw --tag sea pier)" = "/m/a.jpg" ] && [ -z "$(kw --tag city pier)" ] || fail "tags as a filter"
"$BIN" search --library "$L2" --mode keyword --json -k 1 pier | grep -q '"title": "Old pier at dawn"' ||
    fail "title not in the result"
# the same rows from JSON Lines: unchanged vectors, metadata stored again
"$BIN" import --library "$L2" --vectors "$T/m.npy" --meta "$T/m.jsonl" >/dev/null 2>"$T/e" || fail "jsonl: $(cat "$T/e")"
[ "$(kw transport)" = "/m/b.jpg" ] && [ "$(kw yellow)" = "/m/b.jpg" ] || fail "jsonl metadata: $(kw transport)"
[ "$(kw --tag holiday pier)" = "/m/a.jpg" ] || fail "jsonl tag array"
"$BIN" check --library "$L2" >/dev/null || fail "check after imports with metadata"
echo "PASS"
