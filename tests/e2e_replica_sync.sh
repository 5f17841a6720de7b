#!/usr/bin/env bash
# e2e_replica_sync.sh - a read replica follows every change of its owner
# (issue #11; docs/fleet.md "Deletions"), with a real nats-server:
#  1. the owner `serve --ingest --watch F` commits the workers' results for
#     the files fed from F, and its watcher indexes F itself; the replica
#     `serve --replica-of` follows; same (path, sha256) set on both.
#  2. on disk, while the owner watches: files deleted, moved inside F
#     (the owner keeps their ids), moved out of F, copied in, one rewritten
#     with other content; the replica is killed (-9) in the middle of these
#     changes and restarted: it catches up, deletions included.
#  3. the owner stopped: files deleted, then `clipdex index --prune F` (a
#     one-shot run) removes them and publishes; with the broker stopped, a
#     `clipdex rm` removes and keeps the change (warning, exit 0), and the
#     next run of the owner (after the broker's restart) publishes it; `rm
#     --no-publish` removes on the owner only.
#  4. the broker frozen (SIGSTOP), a DELETE on the owner's server, the
#     owner killed (-9) before it could publish: the restarted owner
#     publishes the removal from its outbox and the replica applies it.
#  5. `index --watch` on the owner (no server): its full pass re-adds the
#     files removed above but still on disk, then a deletion and a copy;
#     the replica follows; both hold exactly the files of F.
# After each step the replica's image set equals the owner's (each path
# counted once, same content), and `clipdex check` passes on both.
# Skips (77) without ../shared or nats-server.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
PHOTOS=$SHARED/data/imagenet-sample
[ -d "$MODEL" ] && [ -d "$PHOTOS" ] || { echo "SKIP: ../shared absent"; exit 77; }
. "$(dirname "$0")/fleet_testutil.sh"
mapfile -t IMGS < <(ls "$PHOTOS" | grep -i '\.jpe\?g$' | head -40)
[ "${#IMGS[@]}" -ge 40 ] || fail "fewer than 40 photos in $PHOTOS"

# until_ok SECONDS CMD...: poll CMD every 0.3 s until it succeeds
until_ok() {
  local end=$((SECONDS + $1)); shift
  while ! "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.3
  done
}
serve_start() {   # NAME ARGS...: $SPID, $SURL
  local name=$1; shift
  "$BIN" serve --port 0 --access-log off --workers 1 "$@" >"$T/$name.out" 2>"$T/$name.log" &
  SPID=$!
  PIDS+=($SPID)
  until_ok 30 grep -q '^listening on' "$T/$name.out" || fail "$name did not start"
  SURL=$(sed -n 's/^listening on //p' "$T/$name.out" | head -1)
}
# pairs LIB: "path sha256" of every image (export, a read-only open beside
# the running server), sorted; fails when a path is listed twice
pairs() {
  "$BIN" export --library "$1" --vectors "$T/x.npy" --meta "$T/x.jsonl" >/dev/null 2>&1 || return 1
  python3 -c 'import json,sys
rows = [json.loads(l) for l in open(sys.argv[1])]
paths = [r["path"] for r in rows]
if len(paths) != len(set(paths)): sys.exit("a path listed twice")
print("\n".join(sorted(r["path"] + " " + r["sha256"] for r in rows)))' "$T/x.jsonl"
}
same_sets() {   # owner and replica hold the same (path, sha256) pairs
  pairs "$T/owner" >"$T/po.txt" && pairs "$T/replica" >"$T/pr.txt" && cmp -s "$T/po.txt" "$T/pr.txt"
}
expect_same() {   # SECONDS WHAT
  until_ok "$1" same_sets || {
    diff "$T/po.txt" "$T/pr.txt" | head -20
    fail "$2: the replica's images differ from the owner's"
  }
}
owner_has() { pairs "$T/owner" | grep -q "^$1 "; }
owner_not() { pairs "$T/owner" >"$T/pn.txt" && ! grep -q "^$1 " "$T/pn.txt"; }

start_nats
NURL=nats://127.0.0.1:$PORT/rs
F=$T/photos
mkdir -p "$F/sub" "$T/elsewhere"
for f in "${IMGS[@]:0:16}"; do cp "$PHOTOS/$f" "$F/"; done
for f in "${IMGS[@]:16:4}"; do cp "$PHOTOS/$f" "$F/sub/"; done
"$BIN" init --library "$T/owner" --model "$MODEL" >/dev/null 2>&1 || fail "init owner"
"$BIN" init --library "$T/replica" --model "$MODEL" >/dev/null 2>&1 || fail "init replica"

# ---------------------------------------------------------------- 1. owner and replica
"$BIN" worker --nats "$NURL" --model "$MODEL" --threads 1 --batch 8 --max-wait 200 --ack-wait 3000 \
  >"$T/worker.log" 2>&1 &
PIDS+=($!)
serve_start owner --library "$T/owner" --ingest "$NURL" --watch "$F" --ack-wait 3000
SO=$SPID; UO=$SURL
serve_start replica --library "$T/replica" --replica-of "$NURL" --ack-wait 3000
SR=$SPID
"$BIN" feed folder "$F" --nats "$NURL" >"$T/feed.log" 2>&1 || fail "feed"
until_ok 40 eval '[ "$(pairs "$T/owner" | grep -c .)" = 20 ]' || fail "owner did not get 20"
expect_same 30 "after the first feed"
echo "ok: owner (ingest + watch) and replica agree on 20 images (${SECONDS} s)"

# ---------------------------------------------------------------- 2. changes while watching; kill -9 of the replica
rm "$F/${IMGS[0]}" "$F/${IMGS[1]}"
mv "$F/${IMGS[2]}" "$F/sub/moved-${IMGS[2]}"                   # moved inside: the owner keeps the id
until_ok 20 owner_has "$F/sub/moved-${IMGS[2]}" || fail "owner: move not seen"
kill -9 "$SR"; wait "$SR" 2>/dev/null                           # the replica dies mid-stream
mv "$F/${IMGS[3]}" "$T/elsewhere/"                              # moved out: a deletion
mv "$F/sub" "$F/sub2"                                           # a folder renamed: 4 + 1 moves
cp "$PHOTOS/${IMGS[30]}" "$PHOTOS/${IMGS[31]}" "$F/"            # indexed by the owner itself
cat "$PHOTOS/${IMGS[32]}" >"$F/${IMGS[4]}"                      # rewritten: other content
until_ok 30 owner_has "$F/${IMGS[31]}" || fail "owner: copied file not indexed"
until_ok 20 owner_not "$F/${IMGS[3]}" || fail "owner: moved-out file still listed"
until_ok 20 owner_has "$F/sub2/moved-${IMGS[2]}" || fail "owner: renamed folder not followed"
serve_start replica2 --library "$T/replica" --replica-of "$NURL" --ack-wait 3000
SR=$SPID
expect_same 40 "after the watcher's changes and a kill -9 of the replica"
n=$(pairs "$T/owner" | grep -c .)
[ "$n" = 19 ] || fail "owner should hold 19 images, has $n"
grep -qF "$F/${IMGS[4]} $(sha256sum "$F/${IMGS[4]}" | cut -c1-64)" "$T/pr.txt" || fail "replica: rewritten file has the old content"
echo "ok: watcher deletions, moves, additions and a rewrite reach the restarted replica (${SECONDS} s)"

# ---------------------------------------------------------------- 3. prune, rm with the broker away
kill -TERM "$SO"; wait "$SO" || fail "owner serve exit status"
rm "$F/${IMGS[5]}" "$F/${IMGS[6]}"
"$BIN" index --library "$T/owner" --prune "$F" >"$T/prune.log" 2>&1 || fail "index --prune"
expect_same 30 "after index --prune"
[ "$(pairs "$T/owner" | grep -c .)" = 17 ] || fail "prune: owner should hold 17"
NATS_PID=${PIDS[0]}
kill -TERM "$NATS_PID"; wait "$NATS_PID" 2>/dev/null   # stopped cleanly: its acks kept
"$BIN" rm --library "$T/owner" "$F/${IMGS[7]}" >"$T/rm.out" 2>"$T/rm.log" || fail "rm with the broker away"
grep -q "kept for the replicas" "$T/rm.log" || fail "rm: no warning about the kept change"
"$BIN" rm --library "$T/owner" --no-publish "$F/${IMGS[8]}" >"$T/rm2.log" 2>&1 || fail "rm --no-publish"
start_nats nats2
"$BIN" index --library "$T/owner" --from "$NURL" >"$T/from.log" 2>&1 || fail "index --from (publishes the kept change)"
until_ok 30 eval '! grep -q "^$F/${IMGS[7]} " <(pairs "$T/replica")' || fail "the kept removal did not reach the replica"
pairs "$T/replica" | grep -q "^$F/${IMGS[8]} " || fail "rm --no-publish reached the replica"
pairs "$T/owner" | grep -v "^$F/${IMGS[8]} " >"$T/po.txt"
pairs "$T/replica" | grep -v "^$F/${IMGS[8]} " >"$T/pr.txt"
cmp -s "$T/po.txt" "$T/pr.txt" || { diff "$T/po.txt" "$T/pr.txt" | head; fail "final sets differ"; }
[ "$(grep -c . "$T/pr.txt")" = 15 ] || fail "expected 15 shared images, got $(grep -c . "$T/pr.txt")"
echo "ok: prune, a change kept while the broker was away, --no-publish (${SECONDS} s)"

# ---------------------------------------------------------------- 4. kill -9 of the owner before it publishes
# The broker is frozen (SIGSTOP) so the owner's publication cannot finish;
# the owner is killed while it waits: the removal is committed in its
# catalog and its outbox, not yet on the broker.  A restarted owner
# publishes it.
NATS_PID=${PIDS[${#PIDS[@]}-1]}
serve_start owner2 --library "$T/owner"
SO=$SPID; UO=$SURL
victim="$F/${IMGS[9]}"
id=$(curl -sf "$UO/api/images?limit=100" | python3 -c 'import json,sys
print(next(i["id"] for i in json.load(sys.stdin)["images"] if i["path"] == sys.argv[1]))' "$victim") ||
  fail "no id for $victim"
kill -STOP "$NATS_PID"
code=$(curl -s -o "$T/del.json" -w '%{http_code}' -X DELETE "$UO/api/images/$id")
[ "$code" = 200 ] || { kill -CONT "$NATS_PID"; fail "DELETE /api/images/$id: $code $(cat "$T/del.json")"; }
sleep 0.5
kill -9 "$SO"; wait "$SO" 2>/dev/null
kill -CONT "$NATS_PID"
pairs "$T/replica" | grep -q "^$victim " || fail "the replica lost $victim before the owner published"
owner_not "$victim" || fail "the owner still lists $victim after the DELETE"
serve_start owner3 --library "$T/owner"
SO=$SPID
until_ok 30 eval '! grep -q "^$victim " <(pairs "$T/replica")' || fail "the removal of a killed owner did not reach the replica"
pairs "$T/owner" | grep -v "^$F/${IMGS[8]} " >"$T/po.txt"
pairs "$T/replica" | grep -v "^$F/${IMGS[8]} " >"$T/pr.txt"
cmp -s "$T/po.txt" "$T/pr.txt" || { diff "$T/po.txt" "$T/pr.txt" | head; fail "sets differ after the owner's restart"; }
kill -TERM "$SO"; wait "$SO" || fail "owner exit status"
echo "ok: a removal committed by an owner killed before publishing reaches the replica after its restart (${SECONDS} s)"

# ---------------------------------------------------------------- 5. index --watch on the owner
# The one-machine watcher (no server): its first full pass indexes again
# the files still on disk that rm and DELETE removed above (published as
# additions), then a deletion and a copy while it watches; the replica
# follows each pass.
"$BIN" index --library "$T/owner" --model "$MODEL" --watch --json "$F" >"$T/iw.out" 2>"$T/iw.log" &
IW=$!
PIDS+=($IW)
until_ok 30 grep -q '"event": "pass"' "$T/iw.out" || fail "index --watch: no first pass"
rm "$F/${IMGS[10]}"
cp "$PHOTOS/${IMGS[33]}" "$F/"
until_ok 20 owner_has "$F/${IMGS[33]}" || fail "index --watch: copied file not indexed"
until_ok 20 owner_not "$F/${IMGS[10]}" || fail "index --watch: deleted file still listed"
expect_same 30 "after index --watch"
kill -TERM "$IW"; wait "$IW" || fail "index --watch exit status"
n=$(find "$F" -type f | grep -c .)
[ "$(pairs "$T/owner" | grep -c .)" = "$n" ] || fail "owner should hold the $n files of $F"
[ "$(pairs "$T/replica" | grep -c .)" = "$n" ] || fail "replica should hold the $n files of $F"
pairs "$T/replica" | grep -q "^$F/${IMGS[10]} " && fail "replica: the watcher's deletion did not arrive"
kill -TERM "$SR"; wait "$SR" || fail "replica exit status"
"$BIN" check --library "$T/owner" >"$T/check1.log" 2>&1 || fail "check of the owner"
"$BIN" check --library "$T/replica" >"$T/check2.log" 2>&1 || fail "check of the replica"
echo "ok: index --watch re-adds, deletes and adds; the replica holds the owner's $n images; check passes on both (${SECONDS} s)"
