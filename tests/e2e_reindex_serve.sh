#!/usr/bin/env bash
# e2e_reindex_serve.sh - reindex with a WRITABLE `clipdex serve` holding the
# library (issue #12 section 2, docs/models.md "Reindex with a writable
# server"), on clip-tiny and a perturbed copy of it (another version, same
# dimension) over 60 photos of imagenet-sample:
#  1. under a live query load (4 clients), `clipdex reindex --model` (which
#     finds the server through DIR/serve.json and asks it), then two
#     `clipdex reindex --rollback`: no query fails, every answer equals the
#     answer of the model it names (model_fingerprint) exactly - the
#     reference answers come from servers on libraries indexed with each
#     model - and the answers' model changes with each switch;
#  2. images uploaded while the server embeds the new set end up in it:
#     found by their own image with score ~1 after the switch, `check` ok;
#  3. kill -9 of the server at several points of a reindex it runs (early,
#     mid-embedding, at the switch): the library is on exactly one set,
#     `check` passes, a restarted server resumes the rows already embedded;
#     a stale serve.json is harmless (the CLI runs the rollback itself).
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
S=${CLIPDEX_SHARED:-}
F=$S/fixtures/clip-tiny
P=$S/data/imagenet-sample
if [ -z "$S" ] || [ ! -d "$F" ] || [ ! -d "$P" ]; then echo "SKIP: fixtures absent"; exit 77; fi
command -v curl > /dev/null || { echo "SKIP: curl absent"; exit 77; }
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"
export CLIPDEX_HOME=$T/home TMPDIR=$T
L=$T/lib

# model B: clip-tiny with some weights changed (as tests/test_reindex.c does)
python3 - "$F" "$T/mb" <<'PY'
import os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
for f in ("config.json", "vocab.json", "merges.txt", "preprocessor_config.json"):
    shutil.copy(os.path.join(src, f), dst)
w = bytearray(open(os.path.join(src, "model.safetensors"), "rb").read())
hdr = struct.unpack("<Q", w[:8])[0]
for pct in (79, 95):
    at = 8 + hdr + 4 * ((len(w) - 8 - hdr) * pct // 400)
    for i in range(at, min(len(w) - 3, at + 65536), 4):
        w[i + 2] ^= 0x20
open(os.path.join(dst, "model.safetensors"), "wb").write(w)
PY
find "$(realpath "$P")" -maxdepth 1 -name '*.JPEG' | sort | sed -n 1,60p > "$T/files"
[ "$(wc -l < "$T/files")" = 60 ] || fail "expected 60 photos in $P"
xargs "$BIN" index --library "$L" --model "$F" < "$T/files" > /dev/null 2>&1 || fail "index"
xargs "$BIN" index --library "$T/lib-b" --model "$T/mb" < "$T/files" > /dev/null 2>&1 || fail "index b"
A_V=$("$BIN" info --library "$L" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_fingerprint"])')
B_V=$("$BIN" info --library "$T/lib-b" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_fingerprint"])')

# serve LIB [args...]: start a server, set URL and SPID
serve() {
    local lib=$1 out=$T/serve.$RANDOM
    shift
    "$BIN" serve --library "$lib" --port 0 --threads 1 --access-log off "$@" > "$out.out" 2> "$out.err" &
    SPID=$!
    PIDS+=("$SPID")
    URL=$(serve_url "$out.out" "$SPID") || { cat "$out.err"; fail "serve did not start"; }
}
QUERIES='["a photo of a dog", "a red car", "a bird on a branch", "food on a plate"]'
# answers QUERIES from URL as {fingerprint: {query: [[path, score], ...]}}
answers() {
    python3 - "$1" "$QUERIES" <<'PY'
import json, sys, urllib.parse, urllib.request
url, qs = sys.argv[1], json.loads(sys.argv[2])
out = {}
for q in qs:
    r = json.load(urllib.request.urlopen(url + "/api/search?mode=semantic&k=5&q=" + urllib.parse.quote(q)))
    out.setdefault(r["model_fingerprint"], {})[q] = [[x["path"], x["score"]] for x in r["results"]]
print(json.dumps(out))
PY
}
stop() { kill "$1" 2> /dev/null || true; wait "$1" 2> /dev/null || true; }

# reference answers of each model, from read-only servers
serve "$T/lib-b" --read-only; answers "$URL" > "$T/ref-b.json"; stop "$SPID"
serve "$L" --read-only; answers "$URL" > "$T/ref-a.json"; stop "$SPID"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); a.update(b); assert len(a) == 2, a.keys(); json.dump(a, open(sys.argv[3], "w"))' \
    "$T/ref-a.json" "$T/ref-b.json" "$T/ref.json" || fail "reference answers"

# 1. a writable server under load: reindex, rollback, rollback
serve "$L"
[ -f "$L/serve.json" ] || fail "no serve.json"
python3 - "$URL" "$QUERIES" "$T/ref.json" "$T/stop" "$T/load.json" <<'PY' &
import json, os, sys, threading, time, urllib.parse, urllib.request
url, qs, ref, stop, out = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3])), sys.argv[4], sys.argv[5]
stats = {"ok": 0, "failed": [], "wrong": [], "models": [[] for _ in range(4)]}
lock = threading.Lock()
def client(i):
    n = i
    while not os.path.exists(stop):
        q = qs[n % len(qs)]
        n += 1
        try:
            r = json.load(urllib.request.urlopen(url + "/api/search?mode=semantic&k=5&q=" + urllib.parse.quote(q), timeout=60))
        except Exception as e:
            with lock: stats["failed"].append(str(e))
            continue
        fp = r.get("model_fingerprint")
        got = [[x["path"], x["score"]] for x in r["results"]]
        with lock:
            if fp not in ref or ref[fp][q] != got: stats["wrong"].append([fp, q])
            else: stats["ok"] += 1
            seen = stats["models"][i]   # per client: its requests are sequential
            if not seen or seen[-1] != fp: seen.append(fp)
        time.sleep(0.005)
ts = [threading.Thread(target=client, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
json.dump(stats, open(out, "w"))
PY
LOAD=$!
sleep 0.5
"$BIN" reindex --library "$L" --model "$T/mb" --batch 4 > "$T/rx.out" 2> "$T/rx.err" || { cat "$T/rx.err"; fail "reindex via the server"; }
grep -q "^switched (by the server): 60 contents" "$T/rx.out" || fail "reindex: $(cat "$T/rx.out")"
grep -q "the server reindexes it" "$T/rx.err" || fail "the CLI did not ask the server"
sleep 0.5
"$BIN" reindex --library "$L" --rollback | grep -q "rolled back (by the server)" || fail "rollback via the server"
sleep 0.5
"$BIN" reindex --library "$L" --rollback > /dev/null || fail "second rollback"
sleep 0.5
touch "$T/stop"
wait "$LOAD"
python3 - "$T/load.json" "$A_V" "$B_V" <<'PY' || fail "query load"
import json, sys
s, a, b = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
print("load: %d answers, %d failed, %d not their model's own, models in order %s" %
      (s["ok"], len(s["failed"]), len(s["wrong"]), [[m[:8] for m in c] for c in s["models"]]))
assert not s["failed"], s["failed"][:3]
assert not s["wrong"], s["wrong"][:3]
assert s["ok"] > 20, s["ok"]
# each client's answers followed each switch, never going back (answers of
# different clients may interleave around a switch, so the check is per client)
for c in s["models"]:
    assert c == [a, b, a, b], s["models"]
PY
"$BIN" info --library "$L" --json | grep -q "\"$B_V\"" || fail "not on model B after the rollbacks"

# 2. uploads during a reindex end up in the new set
"$BIN" reindex --library "$L" --drop-previous > /dev/null || fail "drop previous (server)"
curl -sf -X POST -H 'Content-Type: application/json' -d "{\"model\": \"$F\", \"batch\": 1}" "$URL/api/reindex" > /dev/null || fail "POST /api/reindex"
for i in 1 2 3; do
    cp "$F/images/coco_cats.png" "$T/up$i.png"; printf 'upload %d' "$i" >> "$T/up$i.png"
    curl -sf -F "image=@$T/up$i.png" "$URL/api/images" > /dev/null || fail "upload $i"
done
curl -sf "$URL/api/reindex" | grep -q '"state":"running"' || fail "the reindex ended before the uploads (make it longer)"
for _ in $(seq 600); do
    st=$(curl -sf "$URL/api/reindex")
    echo "$st" | grep -q '"state":"running"' || break
    sleep 0.1
done
echo "$st" | grep -q '"state":"switched"' || fail "server reindex: $st"
curl -sf "$URL/api/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["images"] == 63 and s["vectors"] == 63 and s["model_fingerprint"] == sys.argv[1], s' "$A_V" \
    || fail "after the switch: $(curl -s "$URL/api/stats")"
for i in 1 2 3; do
    curl -sf -F "image=@$T/up$i.png" -F k=1 -F mode=semantic "$URL/api/search" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; assert r["score"] > 0.999, r' \
        || fail "upload $i is not in the new set with its new vector"
done
"$BIN" check --library "$L" > /dev/null || fail "check after the uploads"
stop "$SPID"
[ ! -f "$L/serve.json" ] || fail "serve.json left after a clean stop"

# 3. kill -9 of the server at several points of its reindex (target: model B)
for point in switch early late mid; do
    serve "$L"
    curl -sf -X POST -H 'Content-Type: application/json' -d "{\"model\": \"$T/mb\", \"batch\": 2}" "$URL/api/reindex" > /dev/null \
        || fail "POST /api/reindex ($point)"
    case $point in
        early) sleep 0.05 ;;
        mid|late)
            want=$([ $point = mid ] && echo 20 || echo 45)
            for _ in $(seq 600); do
                d=$(curl -sf "$URL/api/reindex" | sed -n 's/.*"done":\([0-9]*\).*/\1/p')
                [ "${d:-0}" -ge "$want" ] && break
                sleep 0.02
            done ;;
        switch)   # the moment it reports every row embedded: the catch-up and switch
            for _ in $(seq 1000); do
                st=$(curl -sf "$URL/api/reindex")
                d=$(echo "$st" | sed -n 's/.*"done":\([0-9]*\).*/\1/p')
                echo "$st" | grep -q '"state":"running"' || break
                [ "${d:-0}" -ge 63 ] && break
                sleep 0.01
            done ;;
    esac
    kill -9 "$SPID"; wait "$SPID" 2> /dev/null || true
    "$BIN" check --library "$L" > /dev/null || fail "check after kill -9 ($point)"
    v=$("$BIN" info --library "$L" --json | python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["model_fingerprint"], i["dim"], i["images"], i["vectors"])')
    case "$v" in
        "$A_V 64 63 63"|"$B_V 64 63 63") ;;
        *) fail "after kill -9 ($point) the library is on '$v'" ;;
    esac
    echo "kill -9 ($point): on ${v:0:12}"
    RESUMABLE=0
    [ "${v%% *}" = "$A_V" ] && [ -f "$L/reindex.json" ] && RESUMABLE=1
    if [ "${v%% *}" = "$B_V" ]; then   # it had switched: back to A for the next round
        "$BIN" reindex --library "$L" --rollback > "$T/rb.out" || fail "rollback with a stale serve.json ($point)"
        grep -q "^rolled back$" "$T/rb.out" || fail "the CLI did not roll back itself: $(cat "$T/rb.out")"
    fi
done
# a restarted server resumes what was embedded before the kills
serve "$L"
curl -sf -X POST -H 'Content-Type: application/json' -d "{\"model\": \"$T/mb\"}" "$URL/api/reindex" > /dev/null || fail "final POST"
for _ in $(seq 600); do
    st=$(curl -sf "$URL/api/reindex")
    echo "$st" | grep -q '"state":"running"' || break
    sleep 0.1
done
echo "resumed: $st"
echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["state"] == "switched", s' || fail "final reindex: $st"
if [ "$RESUMABLE" = 1 ]; then   # the last kill left embedded rows: they were kept
    echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["resumed"] > 0, s' || fail "nothing resumed: $st"
fi
curl -sf "$URL/api/stats" | grep -q "\"$B_V\"" || fail "not on B at the end"
stop "$SPID"
"$BIN" check --library "$L" > /dev/null || fail "final check"
echo "e2e_reindex_serve: ok"
