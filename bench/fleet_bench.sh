#!/usr/bin/env bash
# bench/fleet_bench.sh - throughput and latency of the fleet (run by hand).
#
# Starts a nats-server (JetStream, file storage under $WORK, loopback, free
# ports), then on the same $N_IMAGES photos of ../shared/data/imagenet-sample:
#   1w  : 1 worker, 1 thread, pinned to core 0 (taskset -c 0)
#   2w  : 2 workers, 1 thread each, pinned to cores 0 and 1
#   local: `clipdex index --threads 2` of the same folder (no broker)
# Each fleet run feeds a fresh pipeline and times the workers from their
# start to the N-th result on the results stream (model loading included)
# and from the first to the last result (steady state).  Then the latency
# from publish to searchable with `index --from --follow`: $N_LAT single
# photos fed one at a time (1 worker), each timed from the `feed` call to
# the commit `index --from --follow --json` reports; p50 and p99.
# Prints the ratios asked for in issue #11: 2w/1w (goal >= 1.8) and
# 2w/local (goal >= 0.9).  Figures are only as good as the machine is idle.
#
# env: BUILD (default build), WORK (default /tmp/clipdex-fleet-bench),
#      N_IMAGES (200), N_LAT (20), MODEL (default: an existing
#      /tmp/clipdex-vitb32*, else ../shared/fixtures/clip-tiny),
#      MAX_WAIT (worker --max-wait for the latency run, default 50)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
WORK=${WORK:-/tmp/clipdex-fleet-bench}
N_IMAGES=${N_IMAGES:-200}
N_LAT=${N_LAT:-20}
MAX_WAIT=${MAX_WAIT:-50}
SHARED=${CLIPDEX_SHARED:-$SRC/../shared}
BIN=$BUILD/clipdex
if [ -z "${MODEL:-}" ]; then
  MODEL=$(ls -d /tmp/clipdex-vitb32* 2>/dev/null | head -1 || true)
  [ -n "$MODEL" ] && [ -f "$MODEL/config.json" ] || MODEL=$SHARED/fixtures/clip-tiny
fi
command -v nats-server >/dev/null || { echo "nats-server absent"; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/photos" "$WORK/lat"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ls "$SHARED/data/imagenet-sample" | grep -i '\.jpe\?g$' | head -"$N_IMAGES" | while read -r f; do
  cp "$SHARED/data/imagenet-sample/$f" "$WORK/photos/"; done
N=$(ls "$WORK/photos" | wc -l)
read -r PORT MPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
nats-server -js -sd "$WORK/js" -a 127.0.0.1 -p "$PORT" -m "$MPORT" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null || { echo "nats-server did not start"; exit 1; }
echo "model $MODEL, $N photos, load average $(cut -d' ' -f1-3 /proc/loadavg)"

results() {   # STREAM: messages in it
  curl -sf "http://127.0.0.1:$MPORT/jsz?streams=true" | python3 -c '
import json, sys
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == sys.argv[1]: print(s["state"]["messages"]); sys.exit(0)
print(0)' "$1"
}
now() { date +%s.%N; }

# fleet_run NAME CORES...: one worker per core; prints "total steady" img/s
fleet_run() {
  local name=$1; shift
  local url=nats://127.0.0.1:$PORT/$name stream
  stream=CLIPDEX_$(echo "$name" | tr 'a-z-' 'A-Z_')_RESULTS
  "$BIN" feed folder "$WORK/photos" --nats "$url" >/dev/null
  local pids=() t0 tfirst="" c
  t0=$(now)
  for c in "$@"; do
    taskset -c "$c" "$BIN" worker --nats "$url" --model "$MODEL" --threads 1 >"$WORK/$name-$c.log" 2>&1 &
    pids+=($!); PIDS+=($!)
  done
  while :; do
    c=$(results "$stream")
    [ -z "$tfirst" ] && [ "$c" -ge 1 ] && tfirst=$(now)
    [ "$c" -ge "$N" ] && break
    sleep 0.1
  done
  local t1; t1=$(now)
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  python3 -c "import sys; n,t0,tf,t1=map(float,sys.argv[1:]); print('%.2f %.2f' % (n/(t1-t0), (n-1)/max(t1-tf,1e-9)))" \
    "$N" "$t0" "$tfirst" "$t1"
}

read -r one one_s < <(fleet_run b1 0)
echo "1 worker  (core 0):        $one img/s from start, $one_s img/s steady"
read -r two two_s < <(fleet_run b2 0 1)
echo "2 workers (cores 0 and 1): $two img/s from start, $two_s img/s steady"
t0=$(now)
OMP_NUM_THREADS=2 "$BIN" index --library "$WORK/local" --model "$MODEL" --threads 2 "$WORK/photos" >"$WORK/local.log" 2>&1
t1=$(now)
loc=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2]))))" "$N" "$t0" "$t1")
echo "local index --threads 2:   $loc img/s (model loading included)"
python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print('ratio 2w/1w: %.2fx from start, %.2fx steady (goal >= 1.8)' % (b/a, d/c))" \
  "$one" "$two" "$one_s" "$two_s"
python3 -c "import sys; b,l=map(float,sys.argv[1:]); print('ratio 2w/local: %.2fx (goal >= 0.9)' % (b/l))" "$two" "$loc"

# latency: publish -> committed, one photo at a time
url=nats://127.0.0.1:$PORT/lat
"$BIN" init --library "$WORK/latlib" --model "$MODEL" >/dev/null
"$BIN" worker --nats "$url" --model "$MODEL" --threads 1 --max-wait "$MAX_WAIT" >"$WORK/latw.log" 2>&1 &
PIDS+=($!)
"$BIN" index --library "$WORK/latlib" --from "$url" --follow --json --batch 1 >"$WORK/latidx.log" 2>&1 &
PIDS+=($!)
mapfile -t LAT < <(ls "$WORK/photos" | head -"$N_LAT")
: >"$WORK/lat.txt"
i=0
for f in "${LAT[@]}"; do
  i=$((i + 1))
  rm -rf "$WORK/lat/one"; mkdir -p "$WORK/lat/one"
  cp "$WORK/photos/$f" "$WORK/lat/one/$i-$f"
  t0=$(now)
  "$BIN" feed folder "$WORK/lat/one" --nats "$url" >/dev/null
  until grep -q "\"added\": $i," "$WORK/latidx.log"; do sleep 0.01; done
  t1=$(now)
  python3 -c "import sys; print(float(sys.argv[2])-float(sys.argv[1]))" "$t0" "$t1" >>"$WORK/lat.txt"
done
python3 - "$WORK/lat.txt" "$MAX_WAIT" <<'EOF'
import sys
v = sorted(float(x) for x in open(sys.argv[1]))
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("publish -> searchable (index --from --follow, worker --max-wait %s ms): p50 %.0f ms, p99 %.0f ms over %d photos"
      % (sys.argv[2], 1000 * p(0.5), 1000 * p(0.99), len(v)))
EOF
