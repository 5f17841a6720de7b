#!/usr/bin/env bash
# bench/serve_bench.sh - load test of `clipdex serve` with wrk (run by hand).
#
# Builds (once, cached in $WORK) a library of $N_IMAGES distinct JPEGs
# (bench/serve_bench_images: random crops of ../shared/data re-encoded) indexed
# with a full-size random ViT-B/32 (bench/make_random_clip.py), starts the
# server on 127.0.0.1, then runs wrk for $DURATION seconds against
#   1. GET /api/search?q=...   (text embedding + exact scan of all vectors)
#   2. GET /api/images/ID/thumb (random ids; thumbnails cached after first use)
# and prints requests/s, p50/p99 latency, errors (socket errors + non-2xx)
# and the server's RSS before and after each run.
#
# env: BUILD (build dir, default build), WORK (default /tmp/clipdex-serve-bench),
#      N_IMAGES (10000), DURATION (60), CONNS (16), WRK_THREADS (2),
#      SERVER_THREADS (0 = all cores)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
WORK=${WORK:-/tmp/clipdex-serve-bench}
N_IMAGES=${N_IMAGES:-10000}
DURATION=${DURATION:-60}
CONNS=${CONNS:-16}
WRK_THREADS=${WRK_THREADS:-2}
SERVER_THREADS=${SERVER_THREADS:-0}
SHARED=${CLIPDEX_SHARED:-$SRC/../shared}
BIN=$BUILD/clipdex
GEN=$BUILD/bench/serve_bench_images

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk (scripts/setup.sh)"; exit 1; }
[ -x "$BIN" ] && [ -x "$GEN" ] || { echo "build first: cmake --build $BUILD (needs clipdex and bench/serve_bench_images)"; exit 1; }
mkdir -p "$WORK"

MODEL=$WORK/model-vit-b32-random
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "== writing a random full-size ViT-B/32 to $MODEL"
  python3 "$SRC/bench/make_random_clip.py" "$SHARED/fixtures/clip-tiny" "$MODEL" --shape ViT-B/32 >/dev/null
fi

IMAGES=$WORK/images-$N_IMAGES
if [ "$(ls "$IMAGES" 2>/dev/null | wc -l)" -lt "$N_IMAGES" ]; then
  echo "== generating $N_IMAGES images in $IMAGES"
  rm -rf "$IMAGES"; mkdir -p "$IMAGES"
  "$GEN" "$SHARED/data/formats" "$SHARED/data/imagenet-sample" "$SHARED/data/coco-mini" -- "$IMAGES" "$N_IMAGES"
fi

LIB=$WORK/library-$N_IMAGES
have=$("$BIN" info --library "$LIB" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])' 2>/dev/null || echo 0)
if [ "$have" -lt "$N_IMAGES" ]; then
  echo "== indexing (library $LIB; this takes a while on 2 cores)"
  t0=$(date +%s)
  "$BIN" index --library "$LIB" --model "$MODEL" "$IMAGES" >/dev/null
  echo "   indexed in $(( $(date +%s) - t0 )) s"
fi

LOG=$WORK/server.log
OUT=$WORK/server.out
"$BIN" serve --library "$LIB" --port 0 --read-only --access-log off --threads "$SERVER_THREADS" >"$OUT" 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q '^listening on ' "$OUT" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$OUT" | head -1)
[ -n "$URL" ] || { echo "server did not start:"; cat "$LOG"; exit 1; }
echo "== server $URL (pid $PID), library $(curl -s "$URL/api/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["images"], "images, dim", d["dim"])')"

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }

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

run() {  # name script
  local name=$1 script=$2
  curl -s -o /dev/null "$URL/api/search?q=warmup"
  local before after out
  before=$(rss)
  out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 30s --latency -s "$script" "$URL")
  after=$(rss)
  local rps p50 p99 non2xx sock
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  sock=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' <<<"$out"); sock=${sock:-0}
  printf '%-8s %9s req/s  p50 %8s  p99 %8s  errors %s (non-2xx %s, socket %s)  RSS %s -> %s\n' \
    "$name" "$rps" "$p50" "$p99" $((non2xx + sock)) "$non2xx" "$sock" "$before" "$after"
}

echo "== wrk: $CONNS connections, $WRK_THREADS threads, ${DURATION}s per run"
run search "$WORK/search.lua"
run thumb "$WORK/thumb.lua"
run thumb2 "$WORK/thumb.lua"   # second pass: thumbnails served from the disk cache
curl -s "$URL/metrics" | grep -E '^clipdex_(embeddings_total|library_images)' || true
