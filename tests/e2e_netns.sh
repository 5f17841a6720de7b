#!/usr/bin/env bash
# e2e_netns.sh - the fleet across "hosts": network namespaces of its own
# (a broker, two workers, a library), each linked to the broker's by a veth
# pair with addresses of its own (10.231.N.1 broker side, 10.231.N.2 the
# other side).  120 photos are fed; worker 1 starts alone and, once its first
# results are in, its link is taken down (ip link set ... down on the
# broker side; its batches of 32 are acked after all 32 results, so it
# is cut with a batch in hand); worker 2 starts: it gets the rest, and worker 1's unacked
# items after the ack wait (3 s), `index --from` drains, and every
# photo is catalogued exactly once; `clipdex check` passes.
# Skips (77) when not root, without iproute2 / netns support, nats-server,
# python3, curl or ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
PHOTOS=$SHARED/data/imagenet-sample
[ -d "$MODEL" ] && [ -d "$PHOTOS" ] || { echo "SKIP: ../shared absent"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 absent"; exit 77; }
command -v nats-server >/dev/null || { echo "SKIP: nats-server absent"; exit 77; }
command -v python3 >/dev/null && command -v curl >/dev/null || { echo "SKIP: python3 or curl absent"; exit 77; }
S=cdx$$
B=${S}b; W1=${S}w1; W2=${S}w2; L=${S}l
if ! ip netns add "$B" 2>/dev/null; then echo "SKIP: cannot create network namespaces here"; exit 77; fi
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "$B" "$W1" "$W2" "$L"; do   # whatever still runs inside (ip netns exec may fork)
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  wait 2>/dev/null
  for n in "$B" "$W1" "$W2" "$L"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
}
inb() { ip netns exec "$B" "$@"; }

# topology: one veth pair per host, 10.231.N.0/24
N=0
for ns in "$W1" "$W2" "$L"; do
  N=$((N + 1))
  ip netns add "$ns" || fail "netns add $ns"
  ip link add "${S}v$N" type veth peer name "${S}p$N" 2>/dev/null || { echo "SKIP: cannot create veth links here"; exit 77; }
  ip link set "${S}v$N" netns "$B"
  ip link set "${S}p$N" netns "$ns"
  inb ip addr add "10.231.$N.1/24" dev "${S}v$N"
  inb ip link set "${S}v$N" up
  ip netns exec "$ns" ip addr add "10.231.$N.2/24" dev "${S}p$N"
  ip netns exec "$ns" ip link set "${S}p$N" up
  ip netns exec "$ns" ip link set lo up
done
inb ip link set lo up
inb nats-server -js -sd "$T/js" -a 0.0.0.0 -p 4222 -m 8222 >"$T/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do inb curl -sf http://127.0.0.1:8222/healthz >/dev/null && break; sleep 0.2; done
inb curl -sf http://127.0.0.1:8222/healthz >/dev/null || fail "nats-server did not start"
ip netns exec "$W1" curl -sf -m 3 http://10.231.1.1:8222/healthz >/dev/null || fail "worker 1 cannot reach the broker"

results() {
  inb curl -sf "http://127.0.0.1:8222/jsz?streams=true" | python3 -c '
import json, sys
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == "CLIPDEX_NS_RESULTS": print(s["state"]["messages"]); sys.exit(0)
print(0)'
}

F=$T/photos
mkdir -p "$F"
ls "$PHOTOS" | grep -i '\.jpe\?g$' | head -120 | while read -r f; do cp "$PHOTOS/$f" "$F/"; done
ip netns exec "$L" "$BIN" feed folder "$F" --nats nats://10.231.3.1:4222/ns >"$T/feed.log" 2>&1 || fail "feed"
ip netns exec "$W1" "$BIN" worker --nats nats://10.231.1.1:4222/ns --model "$MODEL" --threads 1 --batch 32 \
  --ack-wait 3000 >"$T/w1.log" 2>&1 &
PW1=$!; PIDS+=($PW1)
# ack_pending: items the workers' consumer has handed out and not had acked
ack_pending() {
  inb curl -sf "http://127.0.0.1:8222/jsz?consumers=true" | python3 -c '
import json, sys
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        for c in s.get("consumer_detail", []) or []:
            if s["name"] == "CLIPDEX_NS_WORK" and c["name"] == "workers": print(c["num_ack_pending"]); sys.exit(0)
print(0)'
}
for _ in $(seq 600); do [ "$(results)" -ge 1 ] && [ "$(ack_pending)" -ge 1 ] && break; sleep 0.02; done
inb ip link set "${S}v1" down    # worker 1's host drops off the network mid-run
cut_at=$(results)
held=$(ack_pending)
echo "worker 1's link down after $cut_at results, $held items in its hands"
ip netns exec "$W2" "$BIN" worker --nats nats://10.231.2.1:4222/ns --model "$MODEL" --threads 1 --batch 4 \
  --ack-wait 3000 >"$T/w2.log" 2>&1 &
PW2=$!; PIDS+=($PW2)
ip netns exec "$L" "$BIN" init --library "$T/lib" --model "$MODEL" >/dev/null 2>&1 || fail "init"
timeout 300 ip netns exec "$L" "$BIN" index --library "$T/lib" --from nats://10.231.3.1:4222/ns --ack-wait 3000 \
  >"$T/index.log" 2>&1 || fail "index --from"
"$BIN" export --library "$T/lib" --vectors "$T/v.npy" --meta "$T/m.jsonl" >/dev/null 2>&1 || fail "export"
python3 - "$T/m.jsonl" "$F" <<'EOF' || fail "not every photo catalogued exactly once"
import json, os, sys
paths = [json.loads(l)["path"] for l in open(sys.argv[1])]
want = sorted(os.path.join(sys.argv[2], f) for f in os.listdir(sys.argv[2]))
assert len(paths) == len(set(paths)), "a path catalogued twice"
assert sorted(paths) == want, "%d catalogued, %d fed" % (len(paths), len(want))
EOF
"$BIN" check --library "$T/lib" >"$T/check.log" 2>&1 || fail "check"
kill -TERM "$PW2"; wait "$PW2"
done2=$(sed -n 's/.* \([0-9][0-9]*\) done,.*/\1/p' "$T/w2.log")
[ -n "$done2" ] && [ "$done2" -ge $((120 - cut_at)) ] || fail "worker 2 did $done2, expected at least $((120 - cut_at))"
echo "worker 2 embedded $done2, the $held worker 1 held included (redelivered after the ack wait)"
[ "$cut_at" -lt 120 ] || echo "note: every result was in before the cut (a fast run); nothing was lost either way"
echo "ok: 120 photos through 2 workers in their own namespaces, worker 1 cut off mid-run, each catalogued once"
