#!/usr/bin/env bash
# e2e_slow_clients.sh - a flood of connections that send half a request
# header ("slowloris") must not lock out other clients of `clipdex serve`.
#
# 300 connections from 127.0.0.2 each send a partial header and stall.  The
# server caps connections per client address (--max-per-client 20 here),
# drops stalled headers after --header-timeout seconds, and meanwhile a
# well-behaved client on 127.0.0.1 gets /api/health and a search answered.
# All traffic stays on the loopback range; every loop is bounded.
set -euo pipefail
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
[ -d "$SHARED/fixtures/clip-tiny" ] || skip "../shared is absent (CLIPDEX_SHARED=$SHARED)"
T=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT

"$BIN" index --library "$T/lib" --model "$SHARED/fixtures/clip-tiny" "$SHARED/data/formats" >/dev/null 2>&1 \
  || fail "index"
timeout -s TERM 120 "$BIN" serve --library "$T/lib" --port 0 --read-only --access-log off \
  --max-per-client 20 --header-timeout 2 >"$T/serve.out" 2>"$T/serve.err" &
server_pid=$!
url=$(serve_url "$T/serve.out" "$server_pid") || { cat "$T/serve.err"; fail "clipdex serve did not start"; }
port=${url##*:}

python3 - "$port" <<'PY' || fail "slow clients"
import socket, sys, time, urllib.request, json
port = int(sys.argv[1])
flood = []
for i in range(300):
    s = socket.socket()
    s.settimeout(5)
    s.bind(("127.0.0.2", 0))          # the attacker's address
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    except OSError:
        pass
    flood.append(s)
time.sleep(0.5)

def alive(s):
    """True while the server keeps the connection open."""
    s.setblocking(False)
    try:
        return s.recv(1) == b"" and False
    except BlockingIOError:
        return True
    except OSError:
        return False

open_now = sum(alive(s) for s in flood)
print(f"flood: {open_now} of 300 connections held open by the server")
assert open_now <= 20, f"per-client limit not applied: {open_now} open"

t0 = time.monotonic()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=3) as r:
    assert r.status == 200 and json.load(r)["status"] == "ok"
with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=a%20cat&k=2", timeout=5) as r:
    assert r.status == 200 and len(json.load(r)["results"]) == 2
dt = time.monotonic() - t0
print(f"well-behaved client answered in {dt * 1000:.0f} ms during the flood")
assert dt < 3, dt

# the stalled headers are dropped after --header-timeout (2 s), well
# before the 30 s body timeout
deadline = time.monotonic() + 10
while time.monotonic() < deadline and any(alive(s) for s in flood):
    time.sleep(0.25)
left = sum(alive(s) for s in flood)
print(f"after {10 - (deadline - time.monotonic()):.1f} s: {left} flood connections still open")
assert left == 0, left
for s in flood:
    s.close()
PY
kill -0 "$server_pid" 2>/dev/null || fail "server died"
echo PASS
