# fleet_testutil.sh - sourced by the fleet end-to-end tests (e2e_fleet.sh,
# e2e_flickr.sh): skips (77) without nats-server, python3 or curl; a temp
# dir $T removed at exit with every pid in PIDS killed; fail MSG (prints
# the tail of every $T/*.log); free_ports N; start_nats [LOG]: a JetStream
# nats-server with file storage in $T/js on loopback ports $PORT (client)
# and $MPORT (monitoring), chosen free on the first call and kept, so a
# restarted broker finds its streams again.
command -v nats-server >/dev/null || { echo "SKIP: nats-server absent (apt-get install nats-server)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl absent"; exit 77; }
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
}
free_ports() {
  python3 -c 'import socket,sys
s=[socket.socket() for _ in range(int(sys.argv[1]))]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])' "$1"
}
PORT= MPORT=
start_nats() {
  [ -n "$PORT" ] || read -r PORT MPORT < <(free_ports 2)
  nats-server -js -sd "$T/js" -a 127.0.0.1 -p "$PORT" -m "$MPORT" >"$T/${1:-nats}.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$MPORT/healthz" >/dev/null && return 0; sleep 0.2; done
  fail "nats-server did not start"
}
