#!/bin/bash
# e2e_faults.sh - fault injection sweep (tests/faultinject.c, LD_PRELOAD):
# the Nth write, fsync, rename, mmap, malloc or open fails with ENOSPC /
# EIO / ENOMEM during `index`, `rm`, `compact`, and during uploads and
# deletions through `serve`.  For each injection point:
#   - the operation fails cleanly: exit status 0 or 1 (never a signal or a
#     hang; 60 s timeout) and a message on stderr when it fails; over HTTP
#     a JSON answer (2xx, or 4xx/5xx with an error message), never a dropped
#     connection, and the server keeps answering;
#   - `clipdex check` passes afterwards, every image committed before the
#     operation is still there with the same vector (export compared);
#   - the same operation run again without the fault succeeds.
# N sweeps every call up to FAULT_DENSE (default 2), then FAULT_SAMPLES
# (default 2) points spread over the rest of the calls the operation makes
# (counted by a first run without faults).  Prints the number of injection
# points covered.  FAULT_DENSE=12 FAULT_SAMPLES=6 is the longer sweep
# (about 6 minutes on a loaded 2-core machine); FAULT_OPS limits the CLI
# operations swept (default "index rm compact").  Skips (77) without ../shared or the shim.
set -u
BIN=${CLIPDEX_BIN:?}
SO=${CLIPDEX_FAULTINJECT:-}
SHARED=${CLIPDEX_SHARED:-}
DATA=$SHARED/data/formats
MORE=$SHARED/data/imagenet-sample
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$DATA" ] && [ -d "$MORE" ] && [ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
[ -n "$SO" ] && [ -f "$SO" ] || { echo "SKIP: fault-injection shim not built (CLIPDEX_FAULTINJECT)"; exit 77; }
command -v python3 >/dev/null && command -v curl >/dev/null || { echo "SKIP: python3/curl absent"; exit 77; }
DENSE=${FAULT_DENSE:-2}
SAMPLES=${FAULT_SAMPLES:-2}
OPS=${FAULT_OPS:-index rm compact}
SRV_DENSE=${FAULT_SRV_DENSE:-2}
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"
POINTS=0
FAILED_CLEANLY=0

mkdir "$T/a" "$T/b"
for f in astronaut.png camera.png chelsea.png coffee.png horse.png; do cp "$DATA/$f" "$T/a/"; done
cp "$DATA/page.png" "$DATA/rocket.jpg" "$T/b/"
"$BIN" index --library "$T/base" --model "$MODEL" "$T/a" >/dev/null 2>&1 || fail "baseline index"
"$BIN" rm --library "$T/base" "$T/a/horse.png" >/dev/null || fail "baseline rm"   # a dead row for compact

# snapshot LIB OUT: one line per image: id path sha256 vector-bytes-hash
snapshot() {
  "$BIN" export --library "$1" --vectors "$T/snap.npy" --meta "$T/snap.jsonl" >/dev/null 2>"$T/snap.err" \
    || { cat "$T/snap.err"; return 1; }
  python3 - "$T/snap.npy" "$T/snap.jsonl" >"$2" <<'EOF'
import hashlib, json, sys
raw = open(sys.argv[1], "rb").read()
hl = int.from_bytes(raw[8:10], "little")
data = raw[10 + hl:]
recs = [json.loads(l) for l in open(sys.argv[2])]
row = len(data) // max(len(recs), 1)
for i, r in enumerate(recs):
    print(r["id"], r["path"], r["sha256"], hashlib.sha1(data[i * row:(i + 1) * row]).hexdigest())
EOF
}
snapshot "$T/base" "$T/base.snap" || fail "baseline export"

# points COUNT: the N values to try
points() {
  local c=$1 i
  for i in $(seq 1 $(( c < DENSE ? c : DENSE ))); do echo "$i"; done
  if [ "$c" -gt "$DENSE" ]; then
    for i in $(seq 1 "$SAMPLES"); do echo $(( DENSE + (c - DENSE) * i / SAMPLES )); done | sort -un
  fi
}

# op NAME LIB: the operation under test (mktemp paths have no blanks)
op_args() {
  case $1 in
    index) echo "index --library $2 $T/b" ;;
    rm) echo "rm --library $2 $T/a/camera.png" ;;
    compact) echo "compact --library $2" ;;
  esac
}
# shellcheck disable=SC2046
op() { "$BIN" $(op_args "$@"); }

# expected_after NAME LIB: the image count after a successful operation
expected_after() {
  local want
  case $1 in index) want=6 ;; rm) want=3 ;; compact) want=4 ;; esac
  "$BIN" info --library "$2" --json | grep -q "\"images\": *$want,"
}

# committed BEFORE AFTER NAME: every image of BEFORE is in AFTER unchanged
# (rm may have removed camera.png when it reports success)
committed() {
  python3 - "$1" "$2" "$3" "$4" <<'EOF'
import sys
before, after, op, rc = sys.argv[1:]
b = {l.split()[0]: l for l in open(before)}
a = {l.split()[0]: l for l in open(after)}
for i, l in b.items():
    if op == "rm" and "camera.png" in l and rc == "0":
        if i in a: sys.exit("removed image still listed: " + l)
        continue
    if op == "rm" and "camera.png" in l:
        continue   # a failed rm may or may not have committed
    if a.get(i) != l: sys.exit("lost or changed: " + l.strip() + " -> " + str(a.get(i)))
EOF
}

sweep_cli() {
  local name=$1 cls n rc errno count
  rm -rf "$T/lib" && cp -a "$T/base" "$T/lib"
  : >"$T/rep"
  LD_PRELOAD=$SO FAULT_ARM=catalog.db FAULT_REPORT=$T/rep op "$name" "$T/lib" >/dev/null 2>&1 || fail "$name without faults"
  echo "$name: calls after arming: $(cat "$T/rep")"
  for cls in write fsync rename mmap malloc open; do
    count=$(sed -n "s/.*\b$cls \([0-9]*\).*/\1/p" "$T/rep")
    for n in $(points "${count:-0}"); do
      errno=ENOSPC; [ $((n % 2)) = 0 ] && errno=EIO; [ "$cls" = malloc ] || [ "$cls" = mmap ] && errno=ENOMEM
      rm -rf "$T/lib" && cp -a "$T/base" "$T/lib"
      # shellcheck disable=SC2046
      LD_PRELOAD=$SO FAULT_ARM=catalog.db FAULT_CALL=$cls FAULT_N=$n FAULT_ERRNO=$errno \
        timeout 60 "$BIN" $(op_args "$name" "$T/lib") >"$T/out" 2>"$T/err"
      rc=$?
      POINTS=$((POINTS + 1))
      local at="$name $cls #$n $errno"
      [ $rc = 124 ] && fail "$at: hung"
      [ $rc -ge 2 ] && [ ! "$name $rc" = "index 3" ] && { cat "$T/err"; fail "$at: exit $rc"; }
      if [ $rc != 0 ]; then
        FAILED_CLEANLY=$((FAILED_CLEANLY + 1))
        grep -qi . "$T/err" || fail "$at: failed without a message"
      fi
      "$BIN" check --library "$T/lib" >"$T/check" 2>&1 || { cat "$T/err" "$T/check"; fail "$at: check fails afterwards"; }
      snapshot "$T/lib" "$T/after.snap" || fail "$at: export afterwards"
      committed "$T/base.snap" "$T/after.snap" "$name" "$rc" || { cat "$T/err"; fail "$at: committed data lost"; }
      # a reported failure may come after the commit (e.g. a failed WAL
      # checkpoint): rm is then not repeated, its image is already gone
      [ "$name" = rm ] && ! grep -q camera.png "$T/after.snap" && continue
      op "$name" "$T/lib" >/dev/null 2>"$T/err2" || { cat "$T/err" "$T/err2"; fail "$at: the operation fails again without the fault"; }
      expected_after "$name" "$T/lib" || { "$BIN" info --library "$T/lib"; fail "$at: wrong library after the retry"; }
    done
  done
}

for name in $OPS; do [ "$name" = none ] || sweep_cli "$name"; done
echo "CLI sweep: $POINTS injection points, $FAILED_CLEANLY failed cleanly (the rest absorbed the fault)"

# ---- the server: uploads and deletions ----------------------------------
rm -rf "$T/lib" && cp -a "$T/base" "$T/lib"
echo "none 0 ENOSPC 0 0" >"$T/ctl"
LD_PRELOAD=$SO FAULT_ARM=signal FAULT_CTL=$T/ctl \
  "$BIN" serve --library "$T/lib" --port 0 --access-log off >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
URL=$(serve_url "$T/serve.out" "$SPID") || { cat "$T/serve.err"; fail "serve did not start"; }
mapfile -t IMGS < <(ls "$MORE"/*.JPEG | head -200)
next=0
SRV_POINTS=0
# http_op KIND: upload a fresh image, or delete the last uploaded one.
# Prints the status; the body is in $T/body.
upload() {
  curl -s -o "$T/body" -w '%{http_code}' -F "image=@${IMGS[$next]}" "$URL/api/images"
}
body_id() { sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$T/body" | head -1; }
SEQ=0
# arm "CLASS N ERRNO PERSIST": the new setting, live once the shim acknowledged it
arm() {
  SEQ=$((SEQ + 1))
  echo "$1 $SEQ" >"$T/ctl"
  kill -USR2 "$SPID"
  for _ in $(seq 1 200); do [ "$(cat "$T/ctl.ack" 2>/dev/null)" = $SEQ ] && return; sleep 0.05; done
  fail "the shim did not acknowledge '$1'"
}
# count the calls of one upload and one deletion
arm "none 0 ENOSPC 0"
[ "$(upload)" = 201 ] || fail "upload without faults: $(cat "$T/body")"
id=$(body_id)
next=$((next + 1))
for kind in upload delete; do
  for cls in write fsync rename mmap malloc open; do
    for n in $(DENSE=$SRV_DENSE SAMPLES=1 points 24); do
      [ $next -ge ${#IMGS[@]} ] && break
      errno=ENOSPC; [ $((n % 2)) = 0 ] && errno=EIO; [ "$cls" = malloc ] || [ "$cls" = mmap ] && errno=ENOMEM
      arm "$cls $n $errno 0"
      if [ $kind = upload ]; then
        st=$(upload); next=$((next + 1))
      else
        st=$(curl -s -o "$T/body" -w '%{http_code}' -X DELETE "$URL/api/images/$id")
      fi
      SRV_POINTS=$((SRV_POINTS + 1))
      at="$kind $cls #$n $errno"
      kill -0 "$SPID" 2>/dev/null || { tail -20 "$T/serve.err"; fail "$at: the server died"; }
      [ "$st" != 000 ] || fail "$at: no HTTP answer"
      [ "$st" -lt 400 ] || grep -q '^{"error":{"code":"[a-z_]*","message":"[^"]' "$T/body" || fail "$at: status $st without a JSON error: $(head -c 300 "$T/body")"
      arm "none 0 ENOSPC 0"
      # the server still works: the delete retried, or a fresh upload
      if [ $kind = delete ]; then
        st=$(curl -s -o "$T/body" -w '%{http_code}' -X DELETE "$URL/api/images/$id")
        [ "$st" = 200 ] || [ "$st" = 404 ] || fail "$at: delete retry answered $st: $(cat "$T/body")"
        st=$(upload); next=$((next + 1))
        [ "$st" = 201 ] || fail "$at: upload after the fault answered $st: $(cat "$T/body")"
        id=$(body_id)
      else
        st=$(upload); next=$((next + 1))
        [ "$st" = 201 ] || [ "$st" = 200 ] || fail "$at: upload after the fault answered $st: $(cat "$T/body")"
        id=$(body_id)
      fi
      curl -sf "$URL/api/health" >/dev/null || fail "$at: health"
    done
  done
done
kill "$SPID"; wait "$SPID" 2>/dev/null; SPID=
"$BIN" check --library "$T/lib" >"$T/check" 2>&1 || { cat "$T/check"; fail "check after the server sweep"; }
snapshot "$T/lib" "$T/after.snap" || fail "export after the server sweep"
committed "$T/base.snap" "$T/after.snap" server 0 || fail "server sweep lost committed images"
echo "server sweep: $SRV_POINTS injection points (uploads and deletions)"
echo "injection points covered: $((POINTS + SRV_POINTS))"
echo "PASS"
