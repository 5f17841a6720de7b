#!/bin/bash
# e2e_ann_kill.sh - kill -9 landing inside a real build of the approximate
# index (DIR/ann.cdxi), at chosen points, through the real binary.
#
# A build at test size takes milliseconds, so a timed kill would mostly
# miss it.  The fault-injection shim (tests/faultinject.c) with
# FAULT_ACTION=kill makes the process SIGKILL itself at the Nth call of a
# class, counted from the first open of a path:
#   k-means       the 5th GEMM after ann.lock is taken (2nd of 8 iterations;
#                 no file is touched yet: the .tmp must not exist)
#   header        the 2nd write to ann.cdxi.tmp (header written, centroids not)
#   segment       the 3rd write (header and centroids written, no vectors)
#   before rename the rename of the complete, fsynced .tmp
#   after rename  the directory fsync that follows the rename
# The library (8100 vectors, dim 64, CLIPDEX_ANN_MIN_ROWS=1000) holds an
# index trained on its first 1000: past 8x that it is stale and the next
# update rebuilds it.  First an `import` of the other 7100 is killed inside
# that rebuild's k-means, after its commit; then `check` (which rebuilds a
# stale index) is killed at each point on a copy of that library, and once
# more with no index at all.  After each kill:
#   - the process died of the kill (status 137) at the intended phase;
#   - the old index is byte for byte what it was (kills before the rename),
#     or the new one is complete (after the rename);
#   - the library opens and `check` passes, reports the index (stale or
#     missing, then rebuilt; ok after the rename) and leaves no .tmp;
#   - every committed image is there (counts), and found first by a search
#     for its own vector through the rebuilt index (a sample after each
#     kill, all 8100 at the end).
# Skips (77) without ../shared or the shim.
set -u
BIN=${CLIPDEX_BIN:?}
SO=${CLIPDEX_FAULTINJECT:-}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
[ -n "$SO" ] && [ -f "$SO" ] || { echo "SKIP: fault-injection shim not built (CLIPDEX_FAULTINJECT)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export CLIPDEX_ANN_MIN_ROWS=1000
N=8100

# clustered unit vectors (as e2e_ann.sh): a.npy the first 1000, b.npy the
# other 7100, all.npy every row in slot order
python3 - "$T" "$N" <<'PY' || fail "generating the input"
import os, random, sys
sys.path.insert(0, os.path.join(os.environ.get("CLIPDEX_SRC", "."), "tests"))
from ann_testdata import Clusters, write_meta, write_npy
out, n, dim = sys.argv[1], int(sys.argv[2]), 64
g = Clusters(random.Random(11), dim, 40)
rows = [g.sample() for _ in range(n)]
for name, a, b in (("a", 0, 1000), ("b", 1000, n)):
    write_npy("%s/%s.npy" % (out, name), rows[a:b], dim)
    write_meta("%s/%s.csv" % (out, name), a, b)
write_npy(out + "/all.npy", rows, dim)
write_npy(out + "/sample.npy", rows[::20], dim)   # 405 rows
PY

jget() { tail -1 | sed -n "s/.*\"$1\": \"\{0,1\}\([^\",}]*\).*/\1/p"; }
# killed RC NAME: the process must have died of the injected SIGKILL
killed() { [ "$1" = 137 ] || fail "$2: exit status $1, not killed at the injection point"; }
# found LIB NPY STEP: every vector's own image comes first (slot i = id i+1)
found() {
    "$BIN" search --library "$1" --vectors "$2" -k 1 >"$T/found" || fail "search after the kill ($3)"
    python3 - "$T/found" "$3" <<'PY' || fail "an image is not found by its own vector after the kill ($3)"
import json, sys
step = int(sys.argv[2])
n = 0
for l in open(sys.argv[1]):
    d = json.loads(l)
    want = d["query"] * step + 1
    assert d["approximate"], d
    assert d["results"] and d["results"][0]["id"] == want and d["results"][0]["score"] > 0.9999, (want, d)
    n += 1
assert n > 0
PY
}

# ---- the library: an index trained on 1000, then an import of 7100 more
# whose rebuild (stale: 8100 > 8 x 1000) is killed inside k-means
L=$T/lib
"$BIN" init --library "$L" --model "$MODEL" >/dev/null || fail "init"
"$BIN" import --library "$L" --vectors "$T/a.npy" --meta "$T/a.csv" >/dev/null || fail "import a"
[ "$("$BIN" check --library "$L" --json | jget ann_rows)" = 1000 ] || fail "no index after the first import"
cp "$L/ann.cdxi" "$T/old.cdxi"
# (in a subshell: the shell's "Killed" notice goes to /dev/null too)
(FAULT_CALL=gemm FAULT_N=5 FAULT_ACTION=kill FAULT_ARM=ann.lock LD_PRELOAD=$SO \
    "$BIN" import --library "$L" --vectors "$T/b.npy" --meta "$T/b.csv" --json >"$T/import.log") 2>/dev/null
rc=$?
[ "$rc" = 0 ] && { echo "SKIP: GEMM calls not seen by the shim (reference GEMM backend?)"; exit 77; }
killed "$rc" "import killed in k-means"
grep -q '"rows": 7100, "total_rows": 7100' "$T/import.log" || fail "the import had not committed its rows: $(tail -1 "$T/import.log")"
[ ! -e "$L/ann.cdxi.tmp" ] || fail "k-means kill: a .tmp exists, the kill was not in k-means"
cmp -s "$L/ann.cdxi" "$T/old.cdxi" || fail "import killed in k-means: the old index changed"
cp -a "$L" "$T/grown"   # committed rows, stale old index: the start of each kill below
c=$("$BIN" check --library "$L" --json | tail -1) || fail "check after the import kill: $c"
[ "$(echo "$c" | jget ok)" = true ] && [ "$(echo "$c" | jget images)" = $N ] &&
    [ "$(echo "$c" | jget ann_index)" = stale ] && [ "$(echo "$c" | jget ann_rebuilt)" = true ] &&
    [ "$(echo "$c" | jget ann_rows)" = $N ] || fail "check after the import kill: $c"
[ ! -e "$L/ann.cdxi.tmp" ] || fail "check left a .tmp"
cp "$L/ann.cdxi" "$T/new.cdxi"   # what a rebuild writes (fixed seed)
found "$L" "$T/sample.npy" 20
echo "import killed in k-means: old index intact, check rebuilt it, $N images found"

# ---- check (rebuilding the stale index) killed at each point
# point NAME CLASS N ARM EXPECT: EXPECT = state check reports afterwards
point() {
    local name=$1 class=$2 n=$3 arm=$4 expect=$5 lib=$T/p rc c
    rm -rf "$lib"
    cp -a "$T/grown" "$lib"
    [ "$expect" = missing ] && rm "$lib/ann.cdxi"
    (FAULT_CALL=$class FAULT_N=$n FAULT_ACTION=kill FAULT_ARM=$arm LD_PRELOAD=$SO \
        "$BIN" check --library "$lib" >/dev/null) 2>/dev/null
    rc=$?
    killed "$rc" "$name"
    local tmp=$lib/ann.cdxi.tmp
    case $name in
    k-means) [ ! -e "$tmp" ] || fail "$name: a .tmp exists" ;;
    header) [ -e "$tmp" ] && [ "$(stat -c %s "$tmp")" = 128 ] || fail "$name: the .tmp is not the header alone" ;;
    segment)   # header (128 bytes) and 64 centroids x 64 floats, no vectors
        [ -e "$tmp" ] && [ "$(stat -c %s "$tmp")" = $((128 + 64 * 64 * 4)) ] || fail "$name: not header and centroids" ;;
    "before rename") cmp -s "$tmp" "$T/new.cdxi" || fail "$name: the .tmp is not the complete new index" ;;
    "after rename")
        [ ! -e "$tmp" ] && cmp -s "$lib/ann.cdxi" "$T/new.cdxi" || fail "$name: the new index is not in place" ;;
    esac
    if [ "$expect" = stale ]; then
        cmp -s "$lib/ann.cdxi" "$T/old.cdxi" || fail "$name: the old index was damaged"
    fi
    c=$("$BIN" check --library "$lib" --json | tail -1) || fail "$name: check after the kill: $c"
    [ "$(echo "$c" | jget ok)" = true ] && [ "$(echo "$c" | jget images)" = $N ] &&
        [ "$(echo "$c" | jget vectors)" = $N ] && [ "$(echo "$c" | jget ann_index)" = "$expect" ] &&
        [ "$(echo "$c" | jget ann_rows)" = $N ] || fail "$name: check after the kill: $c"
    if [ "$expect" = ok ]; then
        [ "$(echo "$c" | jget ann_rebuilt)" = false ] || fail "$name: rebuilt a complete index: $c"
    else
        [ "$(echo "$c" | jget ann_rebuilt)" = true ] || fail "$name: not rebuilt: $c"
    fi
    [ ! -e "$tmp" ] || fail "$name: check left a .tmp"
    cmp -s "$lib/ann.cdxi" "$T/new.cdxi" || fail "$name: the rebuilt index differs from a clean rebuild"
    found "$lib" "$T/sample.npy" 20
    echo "check killed at $name (old index: $expect): check $(echo "$c" | jget ann_index), rebuilt $(echo "$c" | jget ann_rebuilt)"
}
point k-means gemm 5 ann.lock stale
point header write 2 ann.cdxi.tmp stale
point segment write 3 ann.cdxi.tmp stale
point "before rename" rename 1 ann.cdxi.tmp stale
point "after rename" fsync 2 ann.cdxi.tmp ok
point segment write 3 ann.cdxi.tmp missing

# every committed image, through the index of the last rebuild
found "$T/p" "$T/all.npy" 1
echo "PASS"
