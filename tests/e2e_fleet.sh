#!/usr/bin/env bash
# e2e_fleet.sh - streaming ingestion through a REAL nats-server (JetStream,
# file storage in a temp dir, loopback, free ports; killed at exit).
#  1. `feed folder` of 40 photos + the format samples + a corrupt JPEG + a
#     file deleted before the workers run; feeding again publishes nothing
#     (dedup by record id).  Two workers embed, `index --from` commits and
#     exits when the streams are drained.  Every image is catalogued exactly
#     once (ids counted in the export), `clipdex check` passes, the vectors
#     equal a local `clipdex index` of the same folder (same search scores),
#     and the broker's streams agree: work empty, one result per image, two
#     dead letters, whose reasons the workers logged.
#  2. `feed urls` from a loopback HTTP server whose first URL stalls: worker
#     A fetches the whole batch and hangs on it; kill -9 of A; worker B gets
#     A's items after the ack wait (3 s) and everything lands exactly once;
#     a 404 URL is dead-lettered after max deliveries.
#  3. `feed watch`: the initial scan, files copied in, a new subfolder, and
#     a rewritten file (published again; the library entry is updated).
#  4. nats-server killed and restarted mid-run: the worker reconnects and
#     every image is committed once.
# Skips (77) without nats-server, python3 or ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/fleet_testutil.sh"
start_nats
URL1=nats://127.0.0.1:$PORT/t1
URL2=nats://127.0.0.1:$PORT/t2

# stream_msgs STREAM: messages the broker holds in it (monitoring endpoint)
stream_msgs() {
  curl -sf "http://127.0.0.1:$MPORT/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for a in d.get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == sys.argv[1]: print(s["state"]["messages"]); sys.exit(0)
print(-1)' "$1"
}
# waiting STREAM CONSUMER: pull requests waiting on the consumer
waiting() {
  curl -sf "http://127.0.0.1:$MPORT/jsz?consumers=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for a in d.get("account_details", []):
    for s in a.get("stream_detail", []):
        for c in s.get("consumer_detail", []) or []:
            if s["name"] == sys.argv[1] and c["name"] == sys.argv[2]: print(c.get("num_waiting", 0)); sys.exit(0)
print(0)' "$1" "$2"
}
# worker NAME URL ARGS... : start a worker in the background, pid in $WPID
worker() {
  local name=$1 url=$2; shift 2
  "$BIN" worker --nats "$url" --model "$MODEL" --threads 1 --ack-wait 3000 "$@" >"$T/$name.log" 2>&1 &
  WPID=$!
  PIDS+=($WPID)
}
# count_once LIB N: N images, each path once, check passes
count_once() {
  "$BIN" export --library "$1" --vectors "$T/x.npy" --meta "$T/x.jsonl" >/dev/null || fail "export $1"
  local rows uniq
  rows=$(wc -l <"$T/x.jsonl")
  uniq=$(python3 -c 'import json,sys; print(len({json.loads(l)["path"] for l in open(sys.argv[1])}))' "$T/x.jsonl")
  [ "$rows" -eq "$2" ] && [ "$uniq" -eq "$2" ] || fail "$1: $rows images, $uniq distinct paths, want $2"
  "$BIN" check --library "$1" >/dev/null || fail "check $1"
}

# ---------------------------------------------------------------- 1
"$BIN" feed --help | grep -q "feed folder DIR" || fail "feed --help"
"$BIN" worker --help | grep -q -- "--ack-wait" || fail "worker --help"
"$BIN" feed folder "$T" --nats "http://x/y" >/dev/null 2>&1; [ $? -eq 1 ] || fail "bad URL accepted"
"$BIN" feed folder "$T" --nats "nats://127.0.0.1:$PORT/Bad.Name" >/dev/null 2>&1; [ $? -eq 1 ] || fail "bad name accepted"
SRC=$T/src
mkdir -p "$SRC/photos" "$SRC/formats"
ls "$SHARED/data/imagenet-sample/"*.JPEG | head -40 | xargs -I{} cp {} "$SRC/photos/"
cp "$SHARED/data/formats/"* "$SRC/formats/"
# a photo with embedded EXIF text: workers read it, the library's
# full-text index gets it as a local index does
python3 "$CLIPDEX_SRC/tests/exif_jpeg.py" "$(ls "$SHARED/data/imagenet-sample/"*.JPEG | sed -n 41p)" "$SRC/photos/tagged.jpg" \
  "A lighthouse keeper with his catch" "seagull;harbour" || fail "making a photo with EXIF text"
N=$(find "$SRC" -type f ! -name README.md | wc -l)
printf '\xff\xd8\xff\xe0 this is not really a JPEG' >"$SRC/corrupt.jpg"
# a file that is gone when the workers come: fed first, then deleted
mkdir "$T/gone"
cp "$SRC/photos/$(ls "$SRC/photos" | head -1)" "$T/gone/missing.jpg"
out=$("$BIN" feed folder "$T/gone" --nats "$URL1") || fail "feed folder gone"
[ "$out" = "1 published, 0 duplicates, 0 skipped" ] || fail "feed folder gone said: $out"
rm "$T/gone/missing.jpg"
# both workers wait for work before the rest is fed, so both take part
worker w1 "$URL1" --batch 8 --max-deliver 3; W1=$WPID
worker w2 "$URL1" --batch 8 --max-deliver 3; W2=$WPID
for _ in $(seq 150); do [ "$(waiting CLIPDEX_T1_WORK workers)" -ge 2 ] && break; sleep 0.1; done
[ "$(waiting CLIPDEX_T1_WORK workers)" -ge 2 ] || fail "the workers are not waiting for work"
out=$("$BIN" feed folder "$SRC" --nats "$URL1") || fail "feed folder"
[ "$out" = "$((N + 1)) published, 0 duplicates, 1 skipped" ] || fail "feed folder said: $out (N=$N)"
out=$("$BIN" feed folder "$SRC" --nats "$URL1") || fail "feed folder again"
[ "$out" = "0 published, $((N + 1)) duplicates, 1 skipped" ] || fail "second feed said: $out"
timeout 120 "$BIN" index --library "$T/lib" --model "$MODEL" --from "$URL1" >"$T/index1.log" 2>&1 \
  || fail "index --from"
grep -q "^$N results: $N added" "$T/index1.log" || fail "index --from said: $(cat "$T/index1.log")"
kill -TERM "$W1" "$W2"; wait "$W1" "$W2"
count_once "$T/lib" "$N"
[ "$(stream_msgs CLIPDEX_T1_WORK)" = 0 ] || fail "work stream not empty"
[ "$(stream_msgs CLIPDEX_T1_RESULTS)" = "$N" ] || fail "results stream: $(stream_msgs CLIPDEX_T1_RESULTS), want $N"
[ "$(stream_msgs CLIPDEX_T1_DEAD)" = 2 ] || fail "dead stream: $(stream_msgs CLIPDEX_T1_DEAD), want 2"
cat "$T/w1.log" "$T/w2.log" >"$T/w12.txt"
grep -q "dead letter file:.* $SRC/corrupt.jpg: CDX_ERR_" "$T/w12.txt" || fail "corrupt image not dead-lettered"
grep -q "dead letter file:.* $T/gone/missing.jpg: CDX_ERR_IO" "$T/w12.txt" || fail "missing file not dead-lettered"
[ "$(grep -c "retry file:.* $T/gone/missing.jpg" "$T/w12.txt")" -eq 2 ] || fail "missing file not retried twice"
# both workers took part
grep -q "[1-9][0-9]* done" "$T/w1.log" && grep -q "[1-9][0-9]* done" "$T/w2.log" || fail "a worker did nothing"
# the vectors equal a local index of the same images
"$BIN" index --library "$T/local" --model "$MODEL" "$SRC" >/dev/null 2>&1
for q in "a photo of a dog" "a red car"; do
  a=$("$BIN" search --library "$T/lib" --mode semantic -k 10 "$q" | awk '{print $2, $4}')
  b=$("$BIN" search --library "$T/local" --mode semantic -k 10 "$q" | awk '{print $2, $4}')
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "fleet and local search differ for '$q':\n$a\n--\n$b"
done
# embedded text and keywords reached the fleet library's full-text index
for w in lighthouse seagull; do
  a=$("$BIN" search --library "$T/lib" --mode keyword -k 5 "$w" | awk '{print $NF}')
  b=$("$BIN" search --library "$T/local" --mode keyword -k 5 "$w" | awk '{print $NF}')
  [ "$a" = "$SRC/photos/tagged.jpg" ] && [ "$a" = "$b" ] || fail "keyword '$w': fleet [$a], local [$b]"
done
"$BIN" search --library "$T/lib" --mode keyword --tag harbour -k 5 "lighthouse" | grep -q "tagged.jpg" \
  || fail "embedded keyword as a tag filter"
one=$(ls "$SRC/photos" | sed -n 5p)
"$BIN" search --library "$T/lib" -k 1 --image "$SRC/photos/$one" | grep -q "$SRC/photos/$one" || fail "search by image"
# a worker with another model is refused
mkdir "$T/other"; for f in "$MODEL"/*; do ln -s "$f" "$T/other/"; done; rm "$T/other/config.json"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["_note"]="x"; json.dump(c,open(sys.argv[2],"w"))' "$MODEL/config.json" "$T/other/config.json"
timeout 20 "$BIN" worker --nats "$URL1" --model "$T/other" >"$T/other.log" 2>&1
[ $? -eq 1 ] && grep -q "embeds with model" "$T/other.log" || fail "a different model was accepted"

# kill -9 of the library consumer mid-run: a second library with its own
# consumer reads the same results in small batches, is killed after its
# first commit, then resumes (its unacked batch comes back after 2 s); a third consumer replays every result into the
# finished library: a redelivered record changes nothing.
"$BIN" index --library "$T/lib3" --model "$MODEL" --from "$URL1" --consumer lib3 --ack-wait 2000 --batch 3 --json \
  >"$T/index3.log" 2>&1 &
I3=$!
PIDS+=($I3)
for _ in $(seq 100); do grep -q '"event": "progress"' "$T/index3.log" && break; sleep 0.05; done
kill -9 "$I3"; wait "$I3" 2>/dev/null
grep -q '"event": "summary"' "$T/index3.log" && fail "the consumer finished before it was killed"
"$BIN" check --library "$T/lib3" >/dev/null || fail "check after kill -9 of index --from"
timeout 60 "$BIN" index --library "$T/lib3" --from "$URL1" --consumer lib3 >"$T/index3b.log" 2>&1 || fail "resume"
count_once "$T/lib3" "$N"
timeout 60 "$BIN" index --library "$T/lib3" --from "$URL1" --consumer replay >"$T/index3c.log" 2>&1 || fail "replay"
grep -q "^$N results: 0 added, 0 updated, $N unchanged" "$T/index3c.log" || fail "replay said: $(cat "$T/index3c.log")"
count_once "$T/lib3" "$N"

# ---------------------------------------------------------------- 2
mkdir "$T/www"
ls "$SRC/photos" | head -10 | xargs -I{} cp "$SRC/photos/{}" "$T/www/"
python3 - "$T/www" "$T/http.port" "$T/stalled" >"$T/http.log" 2>&1 <<'PY' &
import http.server, os, sys, time, threading
root, portfile, marker = sys.argv[1:4]
stalled = []
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name = os.path.basename(self.path)
        if self.path.startswith("/slow/") and not stalled:
            stalled.append(1)
            open(marker, "w").close()
            time.sleep(40)
        p = os.path.join(root, name)
        if not os.path.isfile(p):
            self.send_response(404); self.end_headers(); return
        data = open(p, "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
open(portfile + ".tmp", "w").write(str(s.server_address[1])); os.rename(portfile + ".tmp", portfile)
s.serve_forever()
PY
PIDS+=($!)
for _ in $(seq 50); do [ -f "$T/http.port" ] && break; sleep 0.1; done
HP=$(cat "$T/http.port")
first=$(ls "$T/www" | head -1)
{
  echo "# the first URL stalls once"
  echo "http://127.0.0.1:$HP/slow/$first"
  ls "$T/www" | sed -n '2,$p' | sed "s|^|http://127.0.0.1:$HP/img/|"
  echo "http://127.0.0.1:$HP/img/no-such-photo.jpg"
} >"$T/urls.txt"
out=$("$BIN" feed urls "$T/urls.txt" --nats "$URL2") || fail "feed urls"
[ "$out" = "11 published, 0 duplicates, 0 skipped" ] || fail "feed urls said: $out"
worker wa "$URL2" --batch 64 --max-deliver 2; WA=$WPID
for _ in $(seq 100); do [ -f "$T/stalled" ] && break; sleep 0.1; done
[ -f "$T/stalled" ] || fail "worker A never fetched the slow URL"
sleep 1.5    # A holds the whole batch; its in-progress signals keep it
kill -9 "$WA"; wait "$WA" 2>/dev/null
worker wb "$URL2" --batch 64 --max-deliver 2; WB=$WPID
timeout 120 "$BIN" index --library "$T/lib2" --model "$MODEL" --from "$URL2" >"$T/index2.log" 2>&1 \
  || fail "index --from (2)"
kill -TERM "$WB"; wait "$WB"
count_once "$T/lib2" 10
grep -q "11 fetched, 10 done, 1 dead-lettered" "$T/wb.log" || fail "worker B did not get A's items: $(tail -1 "$T/wb.log")"
grep -q "dead letter url:.*no-such-photo.jpg: CDX_ERR_NETWORK.*404" "$T/wb.log" || fail "404 not dead-lettered with its reason"
[ "$(stream_msgs CLIPDEX_T2_WORK)" = 0 ] || fail "work stream 2 not empty"
[ "$(stream_msgs CLIPDEX_T2_DEAD)" = 1 ] || fail "dead stream 2: $(stream_msgs CLIPDEX_T2_DEAD)"
"$BIN" search --library "$T/lib2" -k 1 --image "$T/www/$first" | grep -q "/slow/$first" || fail "stalled URL not indexed"

# ---------------------------------------------------------------- 3
# feed watch: files present at start, copied in later, in a new subfolder,
# and a file rewritten with other content (published again, re-embedded).
URL3=nats://127.0.0.1:$PORT/t3
W=$T/watched
mkdir "$W"
cp "$T/www/$(ls "$T/www" | sed -n 1p)" "$W/a.jpg"
"$BIN" feed watch "$W" --nats "$URL3" >"$T/watch.log" 2>&1 &
FW=$!
PIDS+=($FW)
for _ in $(seq 100); do [ "$(stream_msgs CLIPDEX_T3_WORK)" = 1 ] && break; sleep 0.1; done
[ "$(stream_msgs CLIPDEX_T3_WORK)" = 1 ] || fail "watch: initial scan not published"
worker ww "$URL3" --batch 4; WW=$WPID
cp "$T/www/$(ls "$T/www" | sed -n 2p)" "$W/b.jpg"
mkdir "$W/sub"
cp "$T/www/$(ls "$T/www" | sed -n 3p)" "$W/sub/c.jpg"
cp "$T/www/$(ls "$T/www" | sed -n 4p)" "$W/sub/d.jpg"
wait_results() { # wait_results STREAM N
  for _ in $(seq 200); do [ "$(stream_msgs "$1")" -ge "$2" ] && break; sleep 0.1; done
  [ "$(stream_msgs "$1")" -ge "$2" ] || fail "$1: $(stream_msgs "$1") results, want $2"
}
wait_results CLIPDEX_T3_RESULTS 4
timeout 60 "$BIN" index --library "$T/lib4" --model "$MODEL" --from "$URL3" >"$T/index4.log" 2>&1 || fail "index (4)"
count_once "$T/lib4" 4
sleep 1.1   # another mtime second
cp "$T/www/$(ls "$T/www" | sed -n 5p)" "$W/b.jpg"
wait_results CLIPDEX_T3_RESULTS 5
timeout 60 "$BIN" index --library "$T/lib4" --from "$URL3" >"$T/index4b.log" 2>&1 || fail "index (4b)"
grep -q "^1 results: 0 added, 1 updated" "$T/index4b.log" || fail "rewritten file: $(cat "$T/index4b.log")"
count_once "$T/lib4" 4
"$BIN" search --library "$T/lib4" -k 1 --image "$W/b.jpg" | grep -q "$W/b.jpg" || fail "rewritten file not re-embedded"
kill -TERM "$FW" "$WW"; wait "$FW" "$WW" || fail "feed watch or worker exit status"

# ---------------------------------------------------------------- 4
# nats-server killed (-9) and restarted on its store while a worker runs:
# the worker reconnects, nothing is lost or doubled.
URL4=nats://127.0.0.1:$PORT/t4
mkdir "$T/src4"
ls "$SRC/photos" | head -30 | xargs -I{} cp "$SRC/photos/{}" "$T/src4/"
out=$("$BIN" feed folder "$T/src4" --nats "$URL4") || fail "feed (4)"
[ "$out" = "30 published, 0 duplicates, 0 skipped" ] || fail "feed (4) said: $out"
worker w4 "$URL4" --batch 2; W4=$WPID
for _ in $(seq 100); do at_kill=$(stream_msgs CLIPDEX_T4_RESULTS); [ "$at_kill" -ge 2 ] && break; sleep 0.05; done
kill -9 "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null
[ "$at_kill" -lt 30 ] || fail "the worker finished before the broker was killed"
sleep 0.5
start_nats nats2
timeout 90 "$BIN" index --library "$T/lib5" --model "$MODEL" --from "$URL4" >"$T/index5.log" 2>&1 || fail "index (5)"
kill -TERM "$W4"; wait "$W4" || fail "worker 4 exit status after the broker restart"
count_once "$T/lib5" 30
echo "broker restart after $at_kill of 30 results; $(grep -c 'publish failed' "$T/w4.log") publishes handed back"
echo "ok"
