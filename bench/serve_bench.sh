#!/usr/bin/env bash
# bench/serve_bench.sh - load test of `clipdex serve` with wrk (run by hand).
#
# Builds (once, cached in $WORK) a library of $N_IMAGES entries bound to a
# full-size random ViT-B/32 (bench/make_random_clip.py):
#   LIBRARY=import (default): $N_IMAGES random unit vectors loaded with
#     `clipdex import` (minutes saved; a text search costs the same: one
#     text-tower pass + an exact scan of every vector; no thumbnails);
#   LIBRARY=index: $N_IMAGES distinct JPEGs (bench/serve_bench_images: random
#     crops of ../shared/data re-encoded) indexed (slow on 2 cores), which
#     also allows the thumbnail runs.
# Then, for each server binary (BEFORE_BIN if given, e.g. main's build, then
# this build) and each connection count in $CONNS_LIST, runs wrk for
# $DURATION seconds against GET /api/search?q=... (text embedding + exact
# scan) and prints requests/s, p50/p99 latency, errors (socket errors +
# non-2xx, 503s counted apart) and the server's RSS.  With LIBRARY=index it
# also runs GET /api/images/ID/thumb (random ids) twice.
#
# env: BUILD (build dir, default build), WORK (default /tmp/clipdex-serve-bench),
#      N_IMAGES (10000), DURATION (15), CONNS_LIST ("1 16 64"), WRK_THREADS (2),
#      LIBRARY (import|index), BEFORE_BIN (another clipdex to compare, run first
#      in the same session), SERVER_ARGS (extra `serve` options for this build,
#      e.g. "--workers 2 --threads 1"), BEFORE_ARGS (the same for BEFORE_BIN), MODEL (default: an existing
#      /tmp/clipdex-vitb32, else one written into $WORK)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
WORK=${WORK:-/tmp/clipdex-serve-bench}
N_IMAGES=${N_IMAGES:-10000}
DURATION=${DURATION:-15}
CONNS_LIST=${CONNS_LIST:-1 16 64}
WRK_THREADS=${WRK_THREADS:-2}
LIBRARY=${LIBRARY:-import}
BEFORE_BIN=${BEFORE_BIN:-}
SERVER_ARGS=${SERVER_ARGS:-}
BEFORE_ARGS=${BEFORE_ARGS:-}
SHARED=${CLIPDEX_SHARED:-$SRC/../shared}
BIN=$BUILD/clipdex
GEN=$BUILD/bench/serve_bench_images

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk (scripts/setup.sh)"; exit 1; }
[ -x "$BIN" ] || { echo "build first: cmake --build $BUILD --target clipdex"; exit 1; }
mkdir -p "$WORK"

MODEL=${MODEL:-$WORK/model-vit-b32-random}
[ -f "$MODEL/model.safetensors" ] || [ ! -f /tmp/clipdex-vitb32/model.safetensors ] || MODEL=/tmp/clipdex-vitb32
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "== writing a random full-size ViT-B/32 to $MODEL"
  python3 "$SRC/bench/make_random_clip.py" "$SHARED/fixtures/clip-tiny" "$MODEL" --shape ViT-B/32 >/dev/null
fi

LIB=$WORK/library-$LIBRARY-$N_IMAGES
have=$("$BIN" info --library "$LIB" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])' 2>/dev/null || echo 0)
if [ "$have" -lt "$N_IMAGES" ] && [ "$LIBRARY" = import ]; then
  echo "== importing $N_IMAGES random unit vectors into $LIB"
  rm -rf "$LIB"
  python3 - "$WORK/vectors.npy" "$WORK/meta.jsonl" "$N_IMAGES" <<'PY'
import json, math, random, struct, sys
npy, meta, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = 512
random.seed(7)
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
with open(npy, "wb") as f, open(meta, "w") as m:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    for i in range(n):
        v = [random.gauss(0, 1) for _ in range(d)]
        s = math.sqrt(sum(x * x for x in v))
        f.write(struct.pack("<%df" % d, *[x / s for x in v]))
        m.write(json.dumps({"path": "/nonexistent/bench/img%05d.jpg" % i, "format": "jpeg",
                            "width": 640, "height": 480}) + "\n")
PY
  "$BIN" import --library "$LIB" --model "$MODEL" --vectors "$WORK/vectors.npy" --meta "$WORK/meta.jsonl" >/dev/null
elif [ "$have" -lt "$N_IMAGES" ]; then
  [ -x "$GEN" ] || { echo "build bench/serve_bench_images first"; exit 1; }
  IMAGES=$WORK/images-$N_IMAGES
  if [ "$(ls "$IMAGES" 2>/dev/null | wc -l)" -lt "$N_IMAGES" ]; then
    echo "== generating $N_IMAGES images in $IMAGES"
    rm -rf "$IMAGES"; mkdir -p "$IMAGES"
    "$GEN" "$SHARED/data/formats" "$SHARED/data/imagenet-sample" "$SHARED/data/coco-mini" -- "$IMAGES" "$N_IMAGES"
  fi
  echo "== indexing (library $LIB; this takes a while on 2 cores)"
  t0=$(date +%s)
  "$BIN" index --library "$LIB" --model "$MODEL" "$IMAGES" >/dev/null
  echo "   indexed in $(( $(date +%s) - t0 )) s"
fi

cat >"$WORK/search.lua" <<'LUA'
local queries = {"a%20photo%20of%20a%20dog", "red%20car", "two%20cats%20on%20a%20sofa",
                 "a%20rocket%20launch", "mountain%20landscape", "a%20cup%20of%20coffee"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/search?k=20&q=" .. queries[(i % #queries) + 1])
end
LUA
cat >"$WORK/thumb.lua" <<LUA
math.randomseed(7)
request = function()
  return wrk.format("GET", "/api/images/" .. math.random(1, $N_IMAGES) .. "/thumb")
end
LUA

PID=
stop_server() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }; PID=; }
trap stop_server EXIT

start_server() {  # binary extra-args...
  local bin=$1; shift
  local out=$WORK/server.out log=$WORK/server.log
  "$bin" serve --library "$LIB" --port 0 --read-only --access-log off "$@" >"$out" 2>"$log" &
  PID=$!
  for _ in $(seq 1 300); do grep -q '^listening on ' "$out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^listening on //p' "$out" | head -1)
  [ -n "$URL" ] || { echo "server did not start:"; cat "$log"; exit 1; }
  sleep 0.3
  echo "== $bin serve $* ($(grep -h 'worker' "$log" || echo 'no job queue'))"
}

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }

run() {  # name script connections
  local name=$1 script=$2 conns=$3
  curl -s -o /dev/null "$URL/api/search?q=warmup"
  local before after out
  before=$(rss)
  out=$(wrk -t"$(( conns < WRK_THREADS ? conns : WRK_THREADS ))" -c"$conns" -d"${DURATION}s" --timeout 30s \
        --latency -s "$script" "$URL")
  after=$(rss)
  local rps p50 p99 non2xx sock
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  sock=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' <<<"$out"); sock=${sock:-0}
  printf '%-7s c=%-3s %9s req/s  p50 %8s  p99 %8s  errors %s (non-2xx %s, socket %s)  RSS %s -> %s\n' \
    "$name" "$conns" "$rps" "$p50" "$p99" $((non2xx + sock)) "$non2xx" "$sock" "$before" "$after"
}

echo "== library $LIB: $("$BIN" info --library "$LIB" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["images"], "images, dim", d["dim"])')"
echo "== wrk ${DURATION}s per run; load average now: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
for bin in $BEFORE_BIN $BIN; do
  # shellcheck disable=SC2086
  if [ "$bin" = "$BIN" ]; then start_server "$bin" $SERVER_ARGS; else start_server "$bin" $BEFORE_ARGS; fi
  for c in $CONNS_LIST; do run search "$WORK/search.lua" "$c"; done
  if [ "$LIBRARY" = index ]; then
    run thumb "$WORK/thumb.lua" 16
    run thumb2 "$WORK/thumb.lua" 16   # second pass: thumbnails served from the disk cache
  fi
  curl -s "$URL/metrics" | grep -E '^clipdex_(embeddings_total|library_images)' || true
  stop_server
done
