#!/usr/bin/env bash
# bench/fleet_bench.sh - throughput and latency of the fleet (run by hand).
#
# Starts a nats-server (JetStream, file storage under $WORK, loopback, free
# ports), then on the same $N_IMAGES photos of ../shared/data/imagenet-sample:
#   1w  : 1 worker, 1 thread, pinned to core 0 (taskset -c 0)
#   2w  : 2 workers, 1 thread each, pinned to cores 0 and 1
#   local: `clipdex index --threads 2` of the same folder (no broker)
# Each fleet run feeds a fresh pipeline, starts the workers (--batch
# $BATCH) and `index --from` into a fresh library together, and times from
# their start to the consumer's exit with all N committed (model loading
# included: the figure compared with the local index, which also ends with
# a library) and the commit rate from the first to the last commit (steady
# state: the 2w/1w ratio).  Nothing polls meanwhile: commits are stamped
# on arrival with bash's $EPOCHREALTIME.  Per run it prints the CPU seconds
# of the workers, the consumer and nats-server, and the workers' stage
# timers (model loading, waiting for work, decode, embed, publish + ack).
# Then the latency from publish to searchable with `index --from --follow`:
# $N_LAT single photos fed one at a time (1 worker), each timed from the
# `feed` call to the commit `index --from --follow --json` reports; p50
# and p99.  Prints the ratios asked for in issue #11: 2w/1w (goal >= 1.8)
# and 2w/local (goal >= 0.9).  Figures are only as good as the machine is
# idle: run it under `flock /work/wt/bench.lock` and note the load average.
#
# env: BUILD (default build), WORK (default /tmp/clipdex-fleet-bench),
#      N_IMAGES (200), N_LAT (20), MODEL (default: an existing
#      /tmp/clipdex-vitb32*, else ../shared/fixtures/clip-tiny),
#      MAX_WAIT (worker --max-wait for the latency run, default 50),
#      BATCH (worker --batch of the throughput runs, default 8)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
WORK=${WORK:-/tmp/clipdex-fleet-bench}
N_IMAGES=${N_IMAGES:-200}
N_LAT=${N_LAT:-20}
MAX_WAIT=${MAX_WAIT:-50}
BATCH=${BATCH:-8}
SHARED=${CLIPDEX_SHARED:-$SRC/../shared}
BIN=$BUILD/clipdex
if [ -z "${MODEL:-}" ]; then
  MODEL=$(ls -d /tmp/clipdex-vitb32* 2>/dev/null | head -1 || true)
  [ -n "$MODEL" ] && [ -f "$MODEL/config.json" ] || MODEL=$SHARED/fixtures/clip-tiny
fi
command -v nats-server >/dev/null || { echo "nats-server absent"; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time absent (apt-get install time)"; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/photos" "$WORK/lat"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ls "$SHARED/data/imagenet-sample" | grep -i '\.jpe\?g$' | sed -n "1,${N_IMAGES}p" | while read -r f; do
  cp "$SHARED/data/imagenet-sample/$f" "$WORK/photos/"; done
N=$(ls "$WORK/photos" | wc -l)
read -r PORT MPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
nats-server -js -sd "$WORK/js" -a 127.0.0.1 -p "$PORT" -m "$MPORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=($NATS_PID)
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null || { echo "nats-server did not start"; exit 1; }
echo "model $MODEL, $N photos, worker --batch $BATCH, load average $(cut -d' ' -f1-3 /proc/loadavg)"
now() { echo "$EPOCHREALTIME"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # PID: user + system clock ticks
HZ=$(getconf CLK_TCK)

# fleet_run NAME CORES...: one worker per core (pinned) and `index --from`
# (unpinned, like nats-server) into a fresh library, started together.
# Prints "from_start steady" img/s on stdout, where the CPU went on stderr.
fleet_run() {
  local name=$1; shift
  local url=nats://127.0.0.1:$PORT/$name c pids=() n0 t0 t1
  "$BIN" feed folder "$WORK/photos" --nats "$url" >/dev/null
  "$BIN" init --library "$WORK/lib-$name" --model "$MODEL" >/dev/null
  n0=$(ticks "$NATS_PID")
  t0=$(now)
  for c in "$@"; do
    taskset -c "$c" "$BIN" worker --nats "$url" --model "$MODEL" --threads 1 --batch "$BATCH" \
      >"$WORK/$name-$c.log" 2>&1 &
    pids+=($!); PIDS+=($!)
  done
  /usr/bin/time -f "%U %S" -o "$WORK/$name-idx.time" "$BIN" index --library "$WORK/lib-$name" --from "$url" \
    --json --max-wait 250 --batch 64 2>"$WORK/$name-idx.err" |
    while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$WORK/$name-idx.log"
  t1=$(now)
  for c in "${pids[@]}"; do ticks "$c"; done >"$WORK/$name-workers.ticks"
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  local nats_ticks=$(( $(ticks "$NATS_PID") - n0 ))
  python3 - "$N" "$t0" "$t1" "$WORK/$name" "$nats_ticks" "$HZ" "$@" <<'PY'
import json, re, sys
n, t0, t1, base = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
commits, rows = [], -1
for line in open(base + "-idx.log"):
    ts, _, rest = line.partition(" ")
    e = json.loads(rest)
    if e.get("event") == "progress": commits.append((float(ts), e["rows"]))
    if e.get("event") == "summary": rows = e["rows"]
if rows != n: sys.exit("the library committed %d results, expected %d" % (rows, n))
(ta, ra), (tb, rb) = commits[0], commits[-1]
print("%.2f %.2f" % (n / (t1 - t0), (rb - ra) / max(tb - ta, 1e-9)))
cpu = lambda f: sum(map(float, open(f).read().split()[-2:]))
cores = sys.argv[7:]
stages = {}
for c in cores:
    for l in open("%s-%s.log" % (base, c)):
        if "seconds:" in l:
            for k, v in re.findall(r"([a-z+-]+) ([0-9.]+)", l.split("seconds:")[1]):
                stages[k] = stages.get(k, 0) + float(v)
hz = float(sys.argv[6])
with open(base + ".cpu", "w") as out:
    print("    wall %.1f s; CPU s: workers %s, index --from %.2f, nats-server %.2f; worker stages (s, summed): %s"
          % (t1 - t0, " + ".join("%.1f" % (int(x) / hz) for x in open(base + "-workers.ticks").read().split()),
             cpu(base + "-idx.time"), int(sys.argv[5]) / hz, ", ".join("%s %.2f" % kv for kv in stages.items())),
          file=out)
    print("    start -> first commit %.2f s (%d rows), first -> last commit %.2f s, last commit -> exit %.2f s"
          % (ta - t0, ra, tb - ta, t1 - tb), file=out)
PY
}

fleet_run b1 0 >"$WORK/b1.rates"; read -r one one_s <"$WORK/b1.rates"
echo "1 worker  (core 0):        $one img/s from start, $one_s img/s steady"; cat "$WORK/b1.cpu"
fleet_run b2 0 1 >"$WORK/b2.rates"; read -r two two_s <"$WORK/b2.rates"
echo "2 workers (cores 0 and 1): $two img/s from start, $two_s img/s steady"; cat "$WORK/b2.cpu"
t0=$(now)
OMP_NUM_THREADS=2 /usr/bin/time -f "%U %S" -o "$WORK/local.time" \
  "$BIN" index --library "$WORK/local" --model "$MODEL" --threads 2 "$WORK/photos" >"$WORK/local.log" 2>&1
t1=$(now)
loc=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2]))))" "$N" "$t0" "$t1")
echo "local index --threads 2:   $loc img/s (model loading included; CPU s $(tr ' ' + <"$WORK/local.time")); index's own report: $(grep -o 'in [0-9.]* s ([0-9.]* images/s)' "$WORK/local.log" | tail -1)"
python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print('ratio 2w/1w: %.2fx from start, %.2fx steady (goal >= 1.8)' % (b/a, d/c))" \
  "$one" "$two" "$one_s" "$two_s"
python3 -c "import sys; b,l=map(float,sys.argv[1:]); print('ratio 2w/local: %.2fx, from start to all committed (goal >= 0.9)' % (b/l))" "$two" "$loc"
# CPU seconds per image, which contention inflates far less than wall time:
# the 2-worker fleet (workers + index --from + nats-server) against local
python3 - "$N" "$WORK/b2.cpu" "$WORK/local.time" <<'PY'
import re, sys
n, line = int(sys.argv[1]), open(sys.argv[2]).read()
w = sum(map(float, re.search(r"workers ([0-9. +]+),", line).group(1).split("+")))
i = float(re.search(r"index --from ([0-9.]+)", line).group(1))
b = float(re.search(r"nats-server ([0-9.]+)", line).group(1))
l = sum(map(float, open(sys.argv[3]).read().split()[-2:]))
print("CPU s per image: fleet %.3f (workers %.3f, index --from %.3f, nats-server %.3f), local %.3f; local/fleet %.2fx"
      % ((w + i + b) / n, w / n, i / n, b / n, l / n, l / (w + i + b)))
PY
echo "load average after the throughput runs: $(cut -d' ' -f1-3 /proc/loadavg)"

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
