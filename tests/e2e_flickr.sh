#!/usr/bin/env bash
# e2e_flickr.sh - `feed flickr` against a fake Flickr API (tests/fake_flickr.py
# on loopback) through a REAL nats-server (JetStream, file storage in a temp
# dir, free ports):
#  1. the fake lists 300 photos of ../shared/data/imagenet-sample, served by
#     itself over loopback, in pages of 100, with one transient Flickr error
#     (code 105), one HTTP 429 with Retry-After and one malformed page, each
#     retried with backoff: all 300 published as flickr:<id>;
#  2. two workers download and embed them (and make thumbnails), `index
#     --from` commits them: 300 images, each URL once, `clipdex check` passes;
#  3. keyword search finds photos by title and by tag and returns their
#     titles, tags and source records (owner, licence, page, geo); hybrid
#     search ranks a title match first; the HTTP API returns the same and
#     /thumb serves the workers' thumbnail (no 404); the web UI's detail view
#     shows the title and credit line (tests/web/fleet.test.mjs, Chromium);
#  4. a second feed run publishes nothing new (300 duplicates) and keeps
#     within --rate (calls spaced by 3600/rate s);
#  5. a page that stays malformed stops the feed with an error naming it; a
#     wrong API key fails at once (no retries).
# Skips (77) without nats-server, python3, curl or ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
SRC_DIR=${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
MODEL=$SHARED/fixtures/clip-tiny
DATA=$SHARED/data/imagenet-sample
[ -d "$MODEL" ] && [ -d "$DATA" ] || { echo "SKIP: ../shared absent"; exit 77; }
. "$SRC_DIR/tests/fleet_testutil.sh"
# fake NAME ARGS...: start a fake Flickr, its endpoint in $EP
fake() {
  local name=$1; shift
  python3 "$SRC_DIR/tests/fake_flickr.py" --dir "$DATA" --port-file "$T/$name.port" --log "$T/$name.calls" "$@" \
    >"$T/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$T/$name.port" ] && break; sleep 0.1; done
  [ -s "$T/$name.port" ] || fail "fake flickr $name did not start"
  EP=http://127.0.0.1:$(cat "$T/$name.port")/services/rest
}

start_nats
URL=nats://127.0.0.1:$PORT/fl

# ---------------------------------------------------------------- usage
"$BIN" feed flickr --help | grep -q -- "--api-key" || fail "feed flickr --help"
"$BIN" feed flickr --api-key k --nats "$URL" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no query accepted"
"$BIN" feed flickr --api-key k --text a --tags b --nats "$URL" >/dev/null 2>&1; [ $? -eq 2 ] || fail "two queries accepted"
"$BIN" feed flickr --api-key k --text a --since yesterday --nats "$URL" >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --since accepted"
CLIPDEX_FLICKR_ENDPOINT="ftp://x/rest" "$BIN" feed flickr --api-key k --text a --nats "$URL" >/dev/null 2>&1
[ $? -eq 1 ] || fail "ftp endpoint accepted"

# ---------------------------------------------------------------- 1. feed with faults
fake f1 --count 300
export CLIPDEX_FLICKR_ENDPOINT=$EP
t0=$(date +%s.%N)
out=$("$BIN" feed flickr --api-key testkey --text animals --per-page 100 --rate 36000 --backoff 200 \
      --nats "$URL" 2>"$T/feed1.log") || fail "feed flickr: $out"
[ "$out" = "300 published, 0 duplicates, 0 skipped" ] || fail "feed flickr said: $out"
grep -q "page 1: .*Flickr error 105.*retrying" "$T/feed1.log" || fail "no retry of the Flickr error 105"
grep -q "page 2: .*HTTP status 429 (rate limited).*retrying in 1.0 s" "$T/feed1.log" || fail "no retry after 429 with Retry-After"
grep -q "page 3: .*malformed response.*retrying" "$T/feed1.log" || fail "no retry of the malformed page"
grep -q "6 API calls" "$T/feed1.log" || fail "expected 6 API calls: $(cat "$T/feed1.log")"
grep -q "testkey" "$T/feed1.log" && fail "the API key appears in the log"

# ---------------------------------------------------------------- 2. workers, index --from
W=()
for w in 1 2; do
  "$BIN" worker --nats "$URL" --model "$MODEL" --threads 1 --batch 16 >"$T/w$w.log" 2>&1 &
  PIDS+=($!); W+=($!)
done
timeout 300 "$BIN" index --library "$T/lib" --model "$MODEL" --from "$URL" >"$T/index.log" 2>&1 || fail "index --from"
grep -q "^300 results: 300 added" "$T/index.log" || fail "index --from said: $(cat "$T/index.log")"
for p in "${W[@]}"; do
  kill -TERM "$p"
  wait "$p" || fail "a worker stopped by SIGTERM exited with status $?"
done
"$BIN" export --library "$T/lib" --vectors "$T/x.npy" --meta "$T/x.jsonl" >/dev/null || fail "export"
python3 - "$T/x.jsonl" <<'EOF' || fail "catalogue is not 300 distinct fake URLs"
import json, sys
paths = [json.loads(l)["path"] for l in open(sys.argv[1])]
assert len(paths) == 300 and len(set(paths)) == 300, (len(paths), len(set(paths)))
assert all(p.startswith("http://127.0.0.1:") and "/img/" in p for p in paths), paths[:3]
EOF
"$BIN" check --library "$T/lib" >/dev/null || fail "check"
for w in 1 2; do grep -qE "worker: [0-9]+ fetched, [1-9][0-9]* done" "$T/w$w.log" || fail "worker $w did nothing"; done

# ---------------------------------------------------------------- 3. search returns the metadata
# photo 1 of the sorted sample: its title holds its label and "number 1"
"$BIN" search --library "$T/lib" --mode keyword -k 5 --json 'title:"number 7"' >"$T/s1.json" || fail "keyword search by title"
python3 - "$T/s1.json" <<'EOF' || fail "title search: $(cat "$T/s1.json")"
import json, sys
d = json.load(open(sys.argv[1]))
r = d["results"][0]
assert r["title"].endswith("number 7"), r
assert "p7" in r["tags"] and "flickrtest" in r["tags"], r
s = r["source"]
assert s["kind"] == "flickr" and s["photo_id"] == "1000007", s
assert s["owner_name"] == "Owner 1" and s["owner"] == "1001@N01", s
assert s["page"] == "https://www.flickr.com/photos/1001@N01/1000007", s
assert s["license"] == 7 and s["license_name"] == "No known copyright restrictions", s
assert s["date_taken"] == "2020-01-08 12:07:00", s
assert "geo" not in s, s   # odd photos have no position
assert s["description"].startswith("A fleet test photo of a "), s
EOF
"$BIN" search --library "$T/lib" --mode keyword -k 3 --json 'tags:p42' >"$T/s2.json" || fail "keyword search by tag"
python3 - "$T/s2.json" <<'EOF' || fail "tag search: $(cat "$T/s2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["total"] == 1, d
r = d["results"][0]
assert r["title"].endswith("number 42") and r["source"]["geo"] == {"lat": 48.85, "lon": 2.35}, r
EOF
n=$("$BIN" search --library "$T/lib" --mode keyword -k 1000 --json flickrtest | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
[ "$n" = 300 ] || fail "tag flickrtest matches $n images, want 300"
# a label word: every photo of that label, and hybrid (default with text) puts one first
word=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["title"].split()[0])' "$T/s1.json")
"$BIN" search --library "$T/lib" -k 3 --json "$word" >"$T/s3.json" || fail "default search '$word'"
python3 - "$T/s3.json" "$word" <<'EOF' || fail "hybrid search '$word': $(cat "$T/s3.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mode"] == "hybrid", d["mode"]
assert sys.argv[2].lower() in d["results"][0]["title"].lower(), d["results"][0]
EOF
# the HTTP API: search results and GET /api/images/ID carry the same; /thumb is the stored JPEG
read -r SPORT < <(free_ports 1)
"$BIN" serve --library "$T/lib" --port "$SPORT" >"$T/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SPORT/api/health" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$SPORT/api/search" -H 'Content-Type: application/json' \
  -d '{"text": "tags:p42", "mode": "keyword", "k": 1}' >"$T/api.json" || fail "API search"
python3 - "$T/api.json" <<'EOF' || fail "API search: $(cat "$T/api.json")"
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
assert r["title"].endswith("number 42") and "p42" in r["tags"], r
assert r["source"]["license_name"] == "CC0 1.0" and r["source"]["owner_name"] == "Owner 0", r
assert r["description"].startswith("A fleet test photo"), r
print(r["id"], file=open(sys.argv[1] + ".id", "w"))
EOF
id=$(cat "$T/api.json.id")
curl -sf "http://127.0.0.1:$SPORT/api/images/$id" | grep -q '"page": *"https://www.flickr.com/photos/1000@N00/1000042"' \
  || fail "GET /api/images/$id without its source"
curl -sf -o "$T/thumb.jpg" -w '%{http_code} %{content_type}\n' "http://127.0.0.1:$SPORT/api/images/$id/thumb" >"$T/thumb.txt" \
  || fail "/thumb of a URL image: $(cat "$T/thumb.txt")"
grep -q "^200 image/jpeg" "$T/thumb.txt" || fail "/thumb answered $(cat "$T/thumb.txt")"
python3 - "$T/thumb.jpg" <<'EOF' || fail "thumbnail is not a JPEG of at most 256 px"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:2] == b"\xff\xd8", b[:4]
i = 2
while i < len(b):
    assert b[i] == 0xff
    m = b[i + 1]
    n = struct.unpack(">H", b[i + 2:i + 4])[0]
    if m in (0xc0, 0xc1, 0xc2):
        h, w = struct.unpack(">HH", b[i + 5:i + 9])
        assert max(h, w) == 256, (w, h)
        sys.exit(0)
    i += 2 + n
sys.exit("no SOF marker")
EOF
# the web UI's detail view (Chromium), when node, Chromium and tests/web's packages are there
WEBDIR=$SRC_DIR/tests/web
if command -v node >/dev/null && [ -x "${CLIPDEX_CHROMIUM:-/usr/bin/chromium}" ] && [ -d "$WEBDIR/node_modules/playwright-core" ]; then
  (cd "$WEBDIR" && CLIPDEX_WEB_URL=http://127.0.0.1:$SPORT CLIPDEX_WEB_DATA=$DATA \
     CLIPDEX_WEB_SHOTS=$(dirname "$BIN")/test-output/web timeout -s TERM 120 node --test fleet.test.mjs) \
    >"$T/web.log" 2>&1 || fail "web detail view: $(tail -40 "$T/web.log")"
else
  echo "note: web detail view not checked (node, Chromium or tests/web/node_modules missing)"
fi

# ---------------------------------------------------------------- 4. dedup and the rate limit
: >"$T/f1.calls"
out=$("$BIN" feed flickr --api-key testkey --text animals --per-page 100 --rate 7200 --nats "$URL" 2>"$T/feed2.log") \
  || fail "second feed flickr"
[ "$out" = "0 published, 300 duplicates, 0 skipped" ] || fail "second feed said: $out"
python3 - "$T/f1.calls" <<'EOF' || fail "calls not spaced by 0.5 s at --rate 7200: $(cat "$T/f1.calls")"
import sys
t = [float(l.split()[0]) for l in open(sys.argv[1])]
assert len(t) == 3, t
gaps = [b - a for a, b in zip(t, t[1:])]
assert min(gaps) >= 0.45, gaps
EOF
out=$("$BIN" feed flickr --api-key testkey --tags flickrtest --max 50 --rate 36000 --nats "$URL" 2>/dev/null)
[ "$out" = "0 published, 50 duplicates, 0 skipped" ] || fail "--max 50 said: $out"

# ---------------------------------------------------------------- 5. failures
fake f2 --count 300 --always-malformed 2 --no-faults
CLIPDEX_FLICKR_ENDPOINT=$EP "$BIN" feed flickr --api-key testkey --text x --per-page 100 --rate 36000 --backoff 50 --retries 2 \
  --nats "nats://127.0.0.1:$PORT/fl2" >"$T/feed3.out" 2>"$T/feed3.log"
[ $? -eq 1 ] || fail "a page that stays malformed did not fail the feed"
grep -q "error: feed flickr: Flickr page 2 (after 3 attempts): malformed response (not JSON" "$T/feed3.log" \
  || fail "malformed page error unclear: $(cat "$T/feed3.log")"
grep -q "stopped after 100 published" "$T/feed3.log" || fail "page 1 not published before the failure"
CLIPDEX_FLICKR_ENDPOINT=$EP "$BIN" feed flickr --api-key wrong --text x --rate 36000 --nats "$URL" 2>"$T/feed4.log" >/dev/null
[ $? -eq 1 ] || fail "a wrong key did not fail"
grep -q "Flickr page 1 (after 1 attempt): Flickr error 100: Invalid API Key" "$T/feed4.log" \
  || fail "wrong key error: $(cat "$T/feed4.log")"
echo "e2e_flickr: OK"
