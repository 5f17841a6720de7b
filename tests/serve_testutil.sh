# serve_testutil.sh - sourced by the e2e tests that start `clipdex serve
# --port 0` in the background: serve_url OUT PID [TRIES] waits until the
# server (PID, its stdout in OUT) prints "listening on URL" and prints URL.
# It checks every 0.1 s, TRIES times (300 by default: 30 s), and returns 1
# with nothing printed when the server exited or never listened, so that a
# test writes: URL=$(serve_url "$T/serve.out" "$SPID") || fail ...
serve_url() {
  local out=$1 pid=$2 tries=${3:-300} u=
  for _ in $(seq "$tries"); do
    u=$(sed -n 's/^listening on //p' "$out" 2>/dev/null)
    [ -n "$u" ] && { printf '%s\n' "${u%%$'\n'*}"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  u=$(sed -n 's/^listening on //p' "$out" 2>/dev/null)
  [ -n "$u" ] && { printf '%s\n' "${u%%$'\n'*}"; return 0; }
  return 1
}
