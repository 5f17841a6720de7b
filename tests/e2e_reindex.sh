#!/usr/bin/env bash
# e2e_reindex.sh - the model lifecycle end to end on clip-tiny and coco-mini:
# `clipdex tune` lowers the loss; `eval compare` shows caption retrieval on
# the training pairs improving over the base model; the registry keeps the
# lineage and the recorded results; the new version is tagged production; a
# library is re-indexed onto NAME@production while a read-only `serve`
# keeps answering and then follows the switch (its text queries use the
# new model); int8 companion codes are rebuilt; rollback and forward again;
# a switch to a model of another dimension (the server answers 503 until the
# library is back on its dimension); kill -9 of reindex at random moments
# leaves the library on exactly one set and `check` passing.
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
S=${CLIPDEX_SHARED:-}
F=$S/fixtures/clip-tiny
C=$S/data/coco-mini
if [ -z "$S" ] || [ ! -d "$F" ] || [ ! -d "$C/images" ]; then echo "SKIP: fixtures absent"; exit 77; fi
command -v curl > /dev/null || { echo "SKIP: curl absent"; exit 77; }
C=$(realpath "$C")   # the library stores resolved paths; eval matches captions by path
T=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"
export CLIPDEX_HOME=$T/home TMPDIR=$T
L=$T/lib

python3 - "$C" "$T" <<'PY'
import json, sys
C, T = sys.argv[1], sys.argv[2]
items = sorted(json.load(open(C + "/captions.json")).items())[:32]
with open(T + "/pairs.jsonl", "w") as f:
    for k, caps in items:
        f.write(json.dumps({"file": "images/" + k, "caption": caps[0]}) + "\n")
json.dump(dict(items), open(T + "/train_caps.json", "w"))
open(T + "/files", "w").write("\n".join(C + "/images/" + k for k, _ in items) + "\n")
PY

# 1. fine-tune: the loss falls
"$BIN" tune --model "$F" --pairs "$T/pairs.jsonl" --images "$C" --epochs 4 --batch 16 --lr 5e-4 \
    --val 0 --seed 1 --threads 2 --out "$T/tuned" 2> "$T/tune.log" > /dev/null || { cat "$T/tune.log"; fail "tune"; }
python3 - "$T/tuned/training.json" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))["epochs_log"]
assert log[-1]["train_loss"] < 0.7 * log[0]["train_loss"], log
print("loss per epoch:", [round(e["train_loss"], 3) for e in log])
PY

# 2. registry: base and tuned, lineage, alias
"$BIN" model register "$F" --name tiny > /dev/null
"$BIN" model register "$T/tuned" --name tiny-coco > /dev/null
"$BIN" model tag tiny-coco production > /dev/null
BASE_V=$("$BIN" model show tiny --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
NEW_V=$("$BIN" model show tiny-coco@production --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
"$BIN" model show tiny-coco@production --json | python3 -c '
import json, sys
m = json.load(sys.stdin); lin = m["lineage"]
assert lin["base_model_fingerprint"] == sys.argv[1], lin
assert lin["pairs"] == 32 and lin["epochs"] == 4 and len(lin["epochs_log"]) == 4, lin' "$BASE_V"

# 3. a library of the training images on the base model; eval compare
xargs "$BIN" index --library "$L" --model "$F" < "$T/files" > /dev/null 2>&1 || fail "index"
EARGS=(--library "$L" --captions "$T/train_caps.json" --images-root "$C/images")
"$BIN" eval compare captions "${EARGS[@]}" --model tiny --model tiny-coco@production \
    --svg "$T/cmp.svg" > "$T/cmp.txt" 2> "$T/cmp.err" || { cat "$T/cmp.err"; fail "eval compare"; }
cat "$T/cmp.txt"
grep -q "tiny-coco@${NEW_V:0:8}" "$T/cmp.txt" || fail "compare table lacks the tuned model"
grep -q "<svg" "$T/cmp.svg" || fail "no SVG chart"
"$BIN" eval compare captions "${EARGS[@]}" --model "$F" --model tiny-coco@production --json 2> /dev/null \
  | python3 -c '
import json, sys
r = json.load(sys.stdin)["models"]
assert len(r) == 2
s = [sum(v for k, v in m["report"].items() if k.startswith("text_to_image_r@")) for m in r]
print("text->image R@1+5+10: base %.3f tuned %.3f" % tuple(s))
assert s[1] > s[0], s' || fail "caption retrieval did not improve"
[ -z "$(ls "$T" | grep clipdex-compare)" ] || fail "temporary libraries left behind"

# 4. a read-only server on the base set
"$BIN" serve --library "$L" --read-only --port 0 --threads 1 > "$T/serve.out" 2> "$T/serve.err" &
SERVER=$!
URL=$(serve_url "$T/serve.out" "$SERVER") || { cat "$T/serve.err"; fail "serve did not start"; }
top() { python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; print(" ".join("%d:%.4f" % (x["id"], x["score"]) for x in r[:3]))'; }
BEFORE=$(curl -sf "$URL/api/search?q=a+dog+on+a+couch&mode=semantic" | top)

# 5. reindex onto NAME@production; serve follows; int8 companion codes are rebuilt
"$BIN" search --library "$L" --scan int8 -k 1 "a dog" > /dev/null 2>&1 || fail "int8 search"
"$BIN" info --library "$L" | grep -q "^int8 codes: *[0-9]" || fail "no int8 codes"
t0=$(date +%s.%N)
"$BIN" reindex --library "$L" --model tiny-coco@production > "$T/rx.out" 2> /dev/null || fail "reindex"
DUR=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
grep -q "^switched: 32 contents" "$T/rx.out" || fail "reindex: $(cat "$T/rx.out")"
"$BIN" info --library "$L" | grep -q "^version: *tiny-coco@$NEW_V" || fail "info does not show tiny-coco@version"
"$BIN" check --library "$L" > /dev/null || fail "check after reindex"
"$BIN" info --library "$L" | grep "^int8 codes" | grep -q "rows" || fail "int8 codes gone"
if "$BIN" info --library "$L" | grep "^int8 codes" | grep -q stale; then fail "int8 codes not rebuilt"; fi
CLI=$("$BIN" search --library "$L" --json --mode semantic -k 3 "a dog on a couch" | top)
AFTER=$(curl -sf "$URL/api/search?q=a+dog+on+a+couch&mode=semantic" | top)
[ "$AFTER" = "$CLI" ] || fail "serve after the switch ($AFTER) differs from a fresh search ($CLI)"
[ "$AFTER" != "$BEFORE" ] || fail "serve still answers with the old model ($BEFORE)"
"$BIN" eval captions "${EARGS[@]}" --record > /dev/null 2>&1 || fail "eval --record"
"$BIN" model show tiny-coco@production --json | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert any(e["kind"] == "captions" for e in m["evaluations"]), m.get("evaluations")' || fail "results not recorded"

# 6. rollback, and forward again
"$BIN" reindex --library "$L" --rollback > /dev/null || fail "rollback"
"$BIN" info --library "$L" | grep -q "^version: *tiny@$BASE_V" || fail "rollback did not restore the base"
"$BIN" check --library "$L" > /dev/null || fail "check after rollback"
ROLLED=$(curl -sf "$URL/api/search?q=a+dog+on+a+couch&mode=semantic" | top)
[ "$ROLLED" = "$BEFORE" ] || fail "serve after rollback ($ROLLED) differs from before ($BEFORE)"
"$BIN" reindex --library "$L" --rollback > /dev/null || fail "second rollback"
"$BIN" info --library "$L" | grep -q "^version: *tiny-coco@$NEW_V" || fail "second rollback did not go forward"

# 7. a model of another dimension (clip-tiny with 32-d projections): the
# switch changes the dimension too; the read-only server asks for a restart
# (503) until the library is back on a 64-d model, then follows again
python3 - "$F" "$T/dim32" <<'PY2'
import json, os, shutil, struct, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
for f in ("vocab.json", "merges.txt", "preprocessor_config.json"):
    shutil.copy(os.path.join(src, f), out)
cfg = json.load(open(os.path.join(src, "config.json")))
cfg["projection_dim"] = 32
json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
d = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n]); h.pop("__metadata__", None)
hdr, blobs, off = {}, [], 0
for k, v in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = v["data_offsets"]; data = d[8 + n + a:8 + n + b]; shape = list(v["shape"])
    if k in ("text_projection.weight", "visual_projection.weight"):
        data = data[:len(data) // shape[0] * 32]; shape[0] = 32
    hdr[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [off, off + len(data)]}
    blobs.append(data); off += len(data)
hj = json.dumps(hdr).encode(); hj += b" " * (-len(hj) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
PY2
"$BIN" reindex --library "$L" --model "$T/dim32" > /dev/null 2>&1 || fail "reindex to 32 dimensions"
"$BIN" info --library "$L" | grep -q "^dim: *32" || fail "dimension not switched"
"$BIN" check --library "$L" > /dev/null || fail "check after the dimension switch"
"$BIN" search --library "$L" -k 1 "a dog" > /dev/null || fail "search after the dimension switch"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/api/search?q=a+dog&mode=semantic")
[ "$code" = 503 ] || fail "read-only serve after a dimension switch answered $code, not 503"
"$BIN" reindex --library "$L" --rollback > /dev/null || fail "rollback from 32 dimensions"
AGAIN=$(curl -sf "$URL/api/search?q=a+dog+on+a+couch&mode=semantic" | top)
[ "$AGAIN" = "$AFTER" ] || fail "serve after rolling back to 64 dimensions ($AGAIN) differs from ($AFTER)"
kill "$SERVER"; wait "$SERVER" 2> /dev/null || true; SERVER=

# 8. kill -9 at random moments: one set in use, check passes, then resume
# moments spread over one run's duration (model load, embedding, switch)
python3 -c 'import random, sys; d = float(sys.argv[1]); print("\n".join("%.2f" % random.uniform(0.2, 1.5 * d) for _ in range(4)))' "$DUR" > "$T/moments"
want=$BASE_V
while read -r t; do
    "$BIN" reindex --library "$L" --model tiny --batch 4 > /dev/null 2>&1 &
    pid=$!
    sleep "$t"
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    "$BIN" check --library "$L" > /dev/null || fail "check after kill -9 at ${t}s"
    v=$("$BIN" info --library "$L" --json | python3 -c 'import json,sys; i=json.load(sys.stdin); print(i["model_fingerprint"], i["dim"], i["vectors"])')
    case "$v" in
        "$BASE_V 64 32"|"$NEW_V 64 32") ;;
        *) fail "after kill -9 at ${t}s the library is on '$v'" ;;
    esac
    echo "kill -9 at ${t}s: on ${v:0:12}"
    if [ "${v%% *}" = "$BASE_V" ]; then   # it switched: go back to the tuned set for the next round
        "$BIN" reindex --library "$L" --rollback > /dev/null || fail "rollback after a completed kill round"
    fi
done < "$T/moments"
"$BIN" reindex --library "$L" --model tiny > "$T/rx.out" 2> /dev/null || fail "resumed reindex"
cat "$T/rx.out"
grep -q "^switched: 32 contents" "$T/rx.out" || fail "final reindex did not switch"
"$BIN" info --library "$L" | grep -q "^version: *tiny@$BASE_V" || fail "final reindex did not switch"
"$BIN" check --library "$L" > /dev/null || fail "final check"
[ "$(ls "$L" | grep -c '^vectors.*\.cdxv$')" = 2 ] || fail "expected the current and the previous vector file: $(ls "$L")"
"$BIN" reindex --library "$L" --drop-previous > /dev/null || fail "drop previous"
[ "$(ls "$L" | grep -c '^vectors.*\.cdxv$')" = 1 ] || fail "drop-previous left $(ls "$L")"
if "$BIN" reindex --library "$L" --rollback 2> "$T/err"; then fail "rollback without a previous set"; fi
grep -q "no previous set" "$T/err" || fail "no message: $(cat "$T/err")"
echo "e2e_reindex: ok"
