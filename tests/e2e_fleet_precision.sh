#!/usr/bin/env bash
# e2e_fleet_precision.sh - `clipdex worker --precision` through a REAL
# nats-server: the first worker (int8) records the pipeline's precision, the
# results carry it, `index --from` records it in the library (`info`), and
# the vectors equal a local `index --precision int8` of the same photos; a
# worker at another precision is refused with a message naming both, a bad
# value is a usage error.  CLIPDEX_PRECISION_EMULATE=1 lets int8 run on a
# CPU without AVX2 too.  Skips (77) without nats-server, python3 or ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/fleet_testutil.sh"
export CLIPDEX_PRECISION_EMULATE=1 CLIPDEX_CACHE_DIR=$T/cache
start_nats
URL=nats://127.0.0.1:$PORT/prec

"$BIN" worker --nats "$URL" --model "$MODEL" --precision int4 >"$T/bad.log" 2>&1
[ $? -eq 2 ] && grep -q -- "--precision" "$T/bad.log" || fail "a bad --precision was accepted"
"$BIN" worker --help | grep -q -- "--precision" || fail "worker --help has no --precision"

SRC=$T/src
mkdir -p "$SRC"
ls "$SHARED/data/imagenet-sample/"*.JPEG | head -8 | xargs -I{} cp {} "$SRC/"
"$BIN" worker --nats "$URL" --model "$MODEL" --threads 1 --precision int8 >"$T/w.log" 2>&1 &
W=$!
PIDS+=($W)
out=$("$BIN" feed folder "$SRC" --nats "$URL") || fail "feed folder"
[ "$out" = "8 published, 0 duplicates, 0 skipped" ] || fail "feed said: $out"
timeout 120 "$BIN" index --library "$T/lib" --model "$MODEL" --from "$URL" >"$T/index.log" 2>&1 || fail "index --from"
grep -q "^8 results: 8 added" "$T/index.log" || fail "index --from said: $(cat "$T/index.log")"
"$BIN" info --library "$T/lib" | grep -q "^precision: *int8" || fail "library precision: $("$BIN" info --library "$T/lib" | grep precision)"

# a worker at another precision is refused, the running one carries on
timeout 20 "$BIN" worker --nats "$URL" --model "$MODEL" --precision fp32 >"$T/fp32.log" 2>&1
[ $? -eq 1 ] && grep -q "embeds with precision int8, this worker with fp32" "$T/fp32.log" \
  || fail "a worker at fp32 joined an int8 pipeline: $(cat "$T/fp32.log")"
kill -TERM "$W"; wait "$W"

# the fleet's vectors are a local int8 index's
"$BIN" index --library "$T/local" --model "$MODEL" --precision int8 "$SRC" >/dev/null 2>&1 || fail "local index"
"$BIN" info --library "$T/local" | grep -q "^precision: *int8" || fail "local library precision"
for q in "a photo of a dog" "a fish"; do
  a=$("$BIN" search --library "$T/lib" --mode semantic -k 8 "$q" | awk '{print $2, $4}')
  b=$("$BIN" search --library "$T/local" --mode semantic -k 8 "$q" | awk '{print $2, $4}')
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "fleet and local int8 search differ for '$q':\n$a\n--\n$b"
done
echo "PASS"
