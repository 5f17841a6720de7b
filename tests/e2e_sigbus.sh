#!/bin/bash
# e2e_sigbus.sh - the vector file truncated underneath a running server
# (clip-tiny, ../shared/data/formats): searches of every kind then answer a
# JSON error (5xx, the message names the truncation) instead of killing the
# process with SIGBUS on the map; /api/health, image records and the stats
# keep answering (stats and metrics: or an error naming the truncation); after the file is restored from a copy and the server
# restarted, search works again and check passes.  Skips (77) without
# ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
DATA=$SHARED/data/formats
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$DATA" ] && [ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null && command -v curl >/dev/null || { echo "SKIP: python3/curl absent"; exit 77; }
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$T"' EXIT
L=$T/lib
fail() { echo "FAIL: $*"; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"

start() {
  "$BIN" serve --library "$L" --port 0 --access-log off >"$T/serve.out" 2>"$T/serve.err" &
  SPID=$!
  URL=$(serve_url "$T/serve.out" "$SPID") || { cat "$T/serve.err"; fail "serve did not start"; }
}
# status of a request; body in $T/body
req() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }

"$BIN" index --library "$L" --model "$MODEL" "$DATA" >/dev/null 2>&1 || fail "index"
cp "$L/vectors.cdxv" "$T/vectors.copy"
start
[ "$(req "$URL/api/search?q=a+cat&k=3")" = 200 ] || fail "search before: $(cat "$T/body")"
VEC=$(python3 -c 'import json; print(json.dumps({"vector": [0.1] * 64, "k": 3}))')
[ "$(req -H 'Content-Type: application/json' -d "$VEC" "$URL/api/search")" = 200 ] || fail "vector search before: $(cat "$T/body")"

# cut the file after the header and one page
python3 -c 'import os,sys; os.truncate(sys.argv[1], 8192)' "$L/vectors.cdxv"
for q in "q=a+cat&k=3" "image_id=1&k=3" "q=a+cat&mode=semantic" "q=photo&mode=hybrid"; do
  st=$(req "$URL/api/search?$q")
  kill -0 "$SPID" 2>/dev/null || { tail "$T/serve.err"; fail "server died on search $q"; }
  case $st in 5*) ;; *) fail "search $q after truncation answered $st: $(head -c 300 "$T/body")" ;; esac
  grep -q truncated "$T/body" || fail "search $q: message does not name the truncation: $(cat "$T/body")"
done
st=$(req -H 'Content-Type: application/json' -d "$VEC" "$URL/api/search")
case $st in 5*) ;; *) fail "vector search after truncation answered $st" ;; esac
for i in 1 2 3; do
  [ "$(req "$URL/api/health")" = 200 ] || fail "health after truncation"
done
[ "$(req "$URL/api/images/1")" = 200 ] || fail "image record after truncation"
# stats and metrics report the library's state: an answer, or an error naming the truncation
for u in /api/stats /metrics; do
  st=$(req "$URL$u")
  [ "$st" = 200 ] || { case $st in 5*) grep -q truncated "$T/body" ;; *) false ;; esac; } \
    || fail "$u after truncation: $st $(head -c 300 "$T/body")"
done
kill -0 "$SPID" 2>/dev/null || fail "server died"
kill "$SPID"; wait "$SPID"; rc=$?; SPID=
[ $rc = 0 ] || fail "server exit status $rc after SIGTERM"
"$BIN" check --library "$L" >/dev/null 2>&1 && fail "check passes on a truncated vector file"

cp "$T/vectors.copy" "$L/vectors.cdxv"
"$BIN" check --library "$L" >/dev/null || fail "check after restoring the file"
start
[ "$(req "$URL/api/search?q=a+cat&k=3")" = 200 ] || fail "search after restoring: $(cat "$T/body")"
echo "PASS"
