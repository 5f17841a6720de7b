#!/usr/bin/env bash
# e2e_watch.sh - libraries kept in step without a batch run:
#  1. `index --watch DIR`: the start pass; files copied in, a new subfolder,
#     a file rewritten with other content (updated), a file moved (same id,
#     not re-embedded), files deleted, a subfolder deleted; every check by a
#     bounded poll of `clipdex export`.  Then an inotify queue overflow: the
#     watcher is stopped (SIGSTOP) while more events than
#     fs.inotify.max_queued_events arrive, then a file is added and one
#     deleted (both lost from the queue); on SIGCONT the watcher reports the
#     overflow and its full pass catches both.  SIGHUP forces a full pass.
#     SIGTERM: exit 0, `clipdex check` passes.
#  2. `serve --watch DIR`: the API answers searches during the start pass,
#     new photos become searchable, deleted ones disappear.
#  3. With a real nats-server: `serve --ingest` (the pipeline's results
#     committed inside the server) and a read replica `serve --replica-of`
#     into a second library (read-only API); kill -9 of the replica while
#     more results flow, restart: it catches up from its durable consumer;
#     a DELETE on the owner and a `clipdex rm` on the owner's library
#     propagate to the replica; the replica's DELETE is refused (403).
#     With the broker gone, `clipdex rm` on the owner removes and keeps the
#     change for the replicas (warning); `rm --no-publish` removes locally.
# Skips (77) without ../shared; part 3 without nats-server.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
PHOTOS=$SHARED/data/imagenet-sample
[ -d "$MODEL" ] && [ -d "$PHOTOS" ] || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl absent"; exit 77; }
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -25 "$f"; }; done
  exit 1
}
mapfile -t IMGS < <(ls "$PHOTOS" | grep -i '\.jpe\?g$' | head -40)
[ "${#IMGS[@]}" -ge 40 ] || fail "fewer than 40 photos in $PHOTOS"

# lib_paths LIB: the catalogued paths, sorted (export's JSONL)
lib_paths() {
  "$BIN" export --library "$1" --vectors "$T/x.npy" --meta "$T/x.jsonl" >/dev/null 2>&1 || return 1
  python3 -c 'import json,sys
print("\n".join(sorted(json.loads(l)["path"] for l in open(sys.argv[1]))))' "$T/x.jsonl"
}
# lib_id LIB PATH: the id of PATH (empty when absent)
lib_id() {
  "$BIN" export --library "$1" --vectors "$T/x.npy" --meta "$T/x.jsonl" >/dev/null 2>&1 || return 1
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"] == sys.argv[2]: print(r["id"])' "$T/x.jsonl" "$2"
}
# until_ok SECONDS CMD...: poll CMD every 0.3 s until it succeeds
until_ok() {
  local end=$((SECONDS + $1)); shift
  while ! "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.3
  done
}
has_path() { lib_paths "$1" | grep -qxF "$2"; }
no_path() { lib_paths "$1" >"$T/p.txt" && ! grep -qxF "$2" "$T/p.txt"; }
count_is() { [ "$(lib_paths "$1" | grep -c .)" = "$2" ]; }

# ---------------------------------------------------------------- 1. index --watch
W=$T/photos
mkdir -p "$W"
for f in "${IMGS[@]:0:10}"; do cp "$PHOTOS/$f" "$W/"; done
L1=$T/lib1
"$BIN" index --library "$L1" --model "$MODEL" --threads 1 --watch --json "$W" >"$T/watch.log" 2>"$T/watch.err" &
WP=$!
PIDS+=($WP)
until_ok 60 grep -q '"reason": "start"' "$T/watch.log" || fail "no start pass"
until_ok 10 count_is "$L1" 10 || fail "start pass: expected 10 images"

cp "$PHOTOS/${IMGS[10]}" "$PHOTOS/${IMGS[11]}" "$W/"
mkdir -p "$W/sub/deeper"
cp "$PHOTOS/${IMGS[12]}" "$W/sub/deeper/"
until_ok 30 has_path "$L1" "$W/sub/deeper/${IMGS[12]}" || fail "file in a new subfolder not indexed"
until_ok 10 count_is "$L1" 13 || fail "copied files: expected 13 images"

# rewritten with other content: the entry is updated (new sha256)
sha_before=$(grep -F "\"$W/${IMGS[0]}\"" "$T/x.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["sha256"])')
cat "$PHOTOS/${IMGS[30]}" >"$W/${IMGS[0]}"
sha_of() {
  lib_paths "$L1" >/dev/null && grep -F "\"$W/${IMGS[0]}\"" "$T/x.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["sha256"])'
}
changed() { [ "$(sha_of)" != "$sha_before" ] && [ -n "$(sha_of)" ]; }
until_ok 30 changed || fail "rewritten file not updated"

# moved: same id, recognised by content (no new embedding)
id_before=$(lib_id "$L1" "$W/${IMGS[1]}")
[ -n "$id_before" ] || fail "no id for ${IMGS[1]}"
mv "$W/${IMGS[1]}" "$W/sub/renamed.jpg"
until_ok 30 has_path "$L1" "$W/sub/renamed.jpg" || fail "moved file not indexed"
until_ok 10 no_path "$L1" "$W/${IMGS[1]}" || fail "moved file's old path kept"
[ "$(lib_id "$L1" "$W/sub/renamed.jpg")" = "$id_before" ] || fail "moved file changed id"
grep -q "\"event\": \"moved\", \"path\": \"$W/sub/renamed.jpg\"" "$T/watch.log" || fail "move not reported as moved"

# deleted: a file, then a whole subfolder
rm "$W/${IMGS[2]}"
until_ok 30 no_path "$L1" "$W/${IMGS[2]}" || fail "deleted file kept"
rm -r "$W/sub"
until_ok 30 count_is "$L1" 10 || fail "deleted subfolder: expected 10 images"

# overflow: the watcher stopped while the kernel queue overflows
MAXQ=$(cat /proc/sys/fs/inotify/max_queued_events 2>/dev/null || echo 16384)
if [ "$MAXQ" -le 200000 ]; then
  kill -STOP "$WP"
  python3 -c 'import os,sys
d, n = sys.argv[1], int(sys.argv[2]) + 500
for i in range(n):
    fd = os.open(os.path.join(d, ".flood%d" % (i & 1)), os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)' "$W" "$MAXQ"
  cp "$PHOTOS/${IMGS[20]}" "$W/after-overflow.jpg"   # events lost: only a rescan finds these
  rm "$W/${IMGS[3]}"
  kill -CONT "$WP"
  until_ok 30 grep -q '"reason": "overflow"' "$T/watch.log" || fail "no overflow pass"
  until_ok 30 has_path "$L1" "$W/after-overflow.jpg" || fail "file added during the overflow not indexed"
  until_ok 10 no_path "$L1" "$W/${IMGS[3]}" || fail "file deleted during the overflow kept"
else
  echo "overflow part skipped: max_queued_events = $MAXQ"
fi
kill -HUP "$WP"
until_ok 20 grep -q '"reason": "request"' "$T/watch.log" || fail "SIGHUP: no full pass"
kill -TERM "$WP"
wait "$WP"; rc=$?
[ $rc -eq 0 ] || fail "index --watch exit status $rc after SIGTERM"
grep -q '"event": "summary"' "$T/watch.log" || fail "no summary"
"$BIN" check --library "$L1" >"$T/check1.log" 2>&1 || fail "check after index --watch"
echo "ok: index --watch (add, subfolder, rewrite, move, delete, overflow, SIGHUP, SIGTERM) (${SECONDS} s)"

# ---------------------------------------------------------------- 2. serve --watch
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# serve_start NAME ARGS...: start a server, its URL in $SURL, pid in $SPID
serve_start() {
  local name=$1; shift
  "$BIN" serve --port 0 --access-log off --workers 1 "$@" >"$T/$name.out" 2>"$T/$name.log" &
  SPID=$!
  PIDS+=($SPID)
  until_ok 30 grep -q '^listening on' "$T/$name.out" || fail "$name did not start"
  SURL=$(sed -n 's/^listening on //p' "$T/$name.out" | head -1)
}
api_paths() {   # URL: paths the API lists, sorted
  curl -sf "$1/api/images?limit=1000" | python3 -c 'import json,sys
print("\n".join(sorted(i["path"] for i in json.load(sys.stdin)["images"])))'
}
api_has() { api_paths "$1" | grep -qxF "$2"; }
api_not() { api_paths "$1" >"$T/ap.txt" && ! grep -qxF "$2" "$T/ap.txt"; }
api_count() { [ "$(api_paths "$1" | grep -c .)" = "$2" ]; }
search_has() {   # URL PATH: a text search returns PATH among its first 100
  curl -sf "$1/api/search?q=a%20photo&k=100" | python3 -c 'import json,sys
sys.exit(0 if sys.argv[1] in [r["path"] for r in json.load(sys.stdin)["results"]] else 1)' "$2"
}
W2=$T/photos2
mkdir -p "$W2"
for f in "${IMGS[@]:0:20}"; do cp "$PHOTOS/$f" "$W2/"; done
"$BIN" init --library "$T/lib2" --model "$MODEL" >/dev/null 2>&1 || fail "init lib2"
serve_start serve2 --library "$T/lib2" --watch "$W2"
S2=$SPID; U2=$SURL
# searches are answered while the start pass runs (or right after it)
curl -sf "$U2/api/search?q=a%20dog&k=5" >/dev/null || fail "search during the start pass"
until_ok 60 api_count "$U2" 20 || fail "serve --watch: start pass did not index 20"
cp "$PHOTOS/${IMGS[25]}" "$W2/new-one.jpg"
until_ok 30 search_has "$U2" "$W2/new-one.jpg" || fail "serve --watch: new photo not searchable"
rm "$W2/${IMGS[4]}"
until_ok 30 api_not "$U2" "$W2/${IMGS[4]}" || fail "serve --watch: deleted photo still listed"
curl -sf "$U2/api/stats" | python3 -c 'import json,sys
w = json.load(sys.stdin)["background"]["watch"]
assert w["passes"] >= 3 and w["added"] >= 21 and w["removed"] >= 1, w' || fail "stats.background.watch"
kill -TERM "$S2"; wait "$S2" || fail "serve --watch exit status"
"$BIN" check --library "$T/lib2" >"$T/check2.log" 2>&1 || fail "check after serve --watch"
echo "ok: serve --watch (${SECONDS} s)"

# ---------------------------------------------------------------- 3. --ingest and a replica
if ! command -v nats-server >/dev/null; then
  echo "SKIP part 3: nats-server absent"
  exit 0
fi
read -r PORT MPORT < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
nats-server -js -sd "$T/js" -a 127.0.0.1 -p "$PORT" -m "$MPORT" >"$T/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=($NATS_PID)
until_ok 10 curl -sf "http://127.0.0.1:$MPORT/healthz" || fail "nats-server did not start"
NURL=nats://127.0.0.1:$PORT/wt
F=$T/fleet
mkdir -p "$F"
for f in "${IMGS[@]:0:15}"; do cp "$PHOTOS/$f" "$F/"; done
"$BIN" init --library "$T/owner" --model "$MODEL" >/dev/null 2>&1 || fail "init owner"
"$BIN" init --library "$T/replica" --model "$MODEL" >/dev/null 2>&1 || fail "init replica"
"$BIN" worker --nats "$NURL" --model "$MODEL" --threads 1 --ack-wait 3000 >"$T/worker.log" 2>&1 &
PIDS+=($!)
serve_start owner --library "$T/owner" --ingest "$NURL"
SO=$SPID; UO=$SURL
serve_start replica --library "$T/replica" --replica-of "$NURL"
SR=$SPID; UR=$SURL
"$BIN" feed folder "$F" --nats "$NURL" >"$T/feed1.log" 2>&1 || fail "feed 1"
until_ok 60 api_count "$UO" 15 || fail "serve --ingest: owner did not get 15"
until_ok 30 api_count "$UR" 15 || fail "replica did not get 15"
until_ok 10 search_has "$UR" "$F/${IMGS[0]}" || fail "replica: search misses a photo"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$UR/api/images/1")
[ "$code" = 403 ] || fail "replica accepted a DELETE ($code)"

# kill -9 of the replica; more results flow meanwhile; restarted, it catches up
kill -9 "$SR"; wait "$SR" 2>/dev/null
for f in "${IMGS[@]:15:10}"; do cp "$PHOTOS/$f" "$F/"; done
"$BIN" feed folder "$F" --nats "$NURL" >"$T/feed2.log" 2>&1 || fail "feed 2"
until_ok 60 api_count "$UO" 25 || fail "owner did not get 25"
serve_start replica2 --library "$T/replica" --replica-of "$NURL"
SR=$SPID; UR=$SURL
until_ok 60 api_count "$UR" 25 || fail "restarted replica did not catch up to 25"

# deletions: DELETE on the owner's API, then clipdex rm on the owner's library
did=$(curl -sf "$UO/api/images?limit=1000" | python3 -c 'import json,sys
for i in json.load(sys.stdin)["images"]:
    if i["path"].endswith(sys.argv[1]): print(i["id"])' "/${IMGS[5]}")
[ -n "$did" ] || fail "no owner id for ${IMGS[5]}"
curl -sf -X DELETE "$UO/api/images/$did" >/dev/null || fail "owner DELETE"
until_ok 30 api_not "$UR" "$F/${IMGS[5]}" || fail "DELETE on the owner did not reach the replica"
kill -TERM "$SO"; wait "$SO" || fail "owner serve exit status"
"$BIN" rm --library "$T/owner" "$F/${IMGS[6]}" >"$T/rm.log" 2>&1 || fail "rm on the owner"
until_ok 30 api_not "$UR" "$F/${IMGS[6]}" || fail "clipdex rm on the owner did not reach the replica"
api_count "$UR" 23 || fail "replica should hold 23"
curl -sf "$UR/api/stats" | python3 -c 'import json,sys
g = json.load(sys.stdin)["background"]["ingest"]
assert g["replica"] and g["deleted"] >= 1, g' || fail "replica stats"
kill -TERM "$SR"; wait "$SR" || fail "replica exit status"
"$BIN" check --library "$T/replica" >"$T/check4.log" 2>&1 || fail "check of the replica"
# the broker gone: rm on the owner removes and keeps the change for the
# replicas (warning; e2e_replica_sync publishes it later); --no-publish too
kill -9 "$NATS_PID"; wait "$NATS_PID" 2>/dev/null
"$BIN" rm --library "$T/owner" "$F/${IMGS[7]}" >"$T/rm2.log" 2>&1 || fail "rm with the broker gone"
grep -q "kept for the replicas" "$T/rm2.log" || fail "rm: no warning about the kept change"
"$BIN" rm --library "$T/owner" --no-publish "$F/${IMGS[8]}" >"$T/rm3.log" 2>&1 || fail "rm --no-publish"
grep -q "removed" "$T/rm3.log" || fail "rm --no-publish removed nothing"
echo "ok: serve --ingest, replica (kill -9, catch-up, deletions) (${SECONDS} s)"
