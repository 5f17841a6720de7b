#!/usr/bin/env bash
# e2e_embed.sh - `clipdex embed` on the clip-tiny fixture: --pixels, --text
# and --image outputs against the reference embeddings (expected/fp32), input
# order, --normalize, the same embeddings under every CLIPDEX_MAX_ISA cap,
# and error handling (exit codes, messages).
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
F=${CLIPDEX_SHARED:-}/fixtures/clip-tiny
if [ -z "${CLIPDEX_SHARED:-}" ] || [ ! -d "$F" ]; then echo "SKIP: fixtures absent"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

P=$F/expected/preprocess
# mixed inputs: order must be kept; texts 0 ('a photo of a cat') and 1 ('a photo of a dog')
"$BIN" embed --model "$F" --pixels "$P/coco_cats.f32" --text "a photo of a cat" \
    --pixels "$P/clip_logo_rgba.f32" --text "a photo of a dog" \
    --image "$F/images/skimage_chelsea.png" --no-autorotate > "$T/raw.jsonl"
"$BIN" embed --model "$F" --normalize --text "a photo of a cat" --pixels "$P/coco_cats.f32" > "$T/norm.jsonl"

python3 - "$F" "$T" <<'PY'
import json, struct, sys
F, T = sys.argv[1], sys.argv[2]
cases = json.load(open(F + "/expected/cases.json"))
ids = [im["id"] for im in cases["preprocess"]["images"]]
texts = [t["text"] for t in cases["texts"]["texts"]]
E = cases["model"]["embed_dim"]
def arr(name, rows):
    d = open(F + "/expected/fp32/" + name, "rb").read()
    v = struct.unpack("<%df" % (len(d) // 4), d)
    assert len(v) == rows * E, name
    return [list(v[i * E:(i + 1) * E]) for i in range(rows)]
img, txt = arr("image_embeds.f32", len(ids)), arr("text_embeds.f32", len(texts))
imgn, txtn = arr("image_embeds_norm.f32", len(ids)), arr("text_embeds_norm.f32", len(texts))
def close(got, exp, what, rel=1e-4, abs_=0.0):
    m = max(abs(x) for x in exp)
    d = max(abs(a - b) for a, b in zip(got, exp))
    if len(got) != len(exp) or d > rel * m + abs_:
        sys.exit("FAIL: %s: max abs diff %g (max|exp| %g)" % (what, d, m))
    print("ok %-40s max abs diff %.3g" % (what, d))
raw = [json.loads(l) for l in open(T + "/raw.jsonl")]
want = [("pixels", "coco_cats"), ("text", "a photo of a cat"), ("pixels", "clip_logo_rgba"),
        ("text", "a photo of a dog"), ("image", "skimage_chelsea")]
if len(raw) != len(want): sys.exit("FAIL: %d output lines, want %d" % (len(raw), len(want)))
for o, (kind, key) in zip(raw, want):
    if kind == "text":
        assert o["input"] == key, o["input"]
        close(o["embedding"], txt[texts.index(key)], "--text " + key)
    else:
        assert o["input"].endswith(key + (".f32" if kind == "pixels" else ".png")), o["input"]
        close(o["embedding"], img[ids.index(key)], "--%s %s" % (kind, key))
norm = [json.loads(l) for l in open(T + "/norm.jsonl")]
close(norm[0]["embedding"], txtn[0], "--normalize --text", 0, 1e-4)
close(norm[1]["embedding"], imgn[ids.index("coco_cats")], "--normalize --pixels", 0, 1e-4)
PY

# every instruction-set cap (a level the CPU lacks, or an unknown value,
# falls back): same embeddings as the default run above, which matched the
# reference outputs
for isa in scalar avx2 avx512 bogus; do
    CLIPDEX_MAX_ISA=$isa "$BIN" embed --model "$F" --pixels "$P/coco_cats.f32" --text "a photo of a cat" \
        --pixels "$P/clip_logo_rgba.f32" --text "a photo of a dog" \
        --image "$F/images/skimage_chelsea.png" --no-autorotate > "$T/raw_$isa.jsonl"
    python3 - "$T/raw.jsonl" "$T/raw_$isa.jsonl" "$isa" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
if len(a) != len(b): sys.exit("FAIL: CLIPDEX_MAX_ISA=%s: %d lines, want %d" % (sys.argv[3], len(b), len(a)))
for x, y in zip(a, b):
    m = max(abs(v) for v in x["embedding"])
    d = max(abs(u - v) for u, v in zip(x["embedding"], y["embedding"]))
    if x["input"] != y["input"] or d > 1e-4 * m:
        sys.exit("FAIL: CLIPDEX_MAX_ISA=%s %s: max abs diff %g" % (sys.argv[3], y["input"], d))
print("ok CLIPDEX_MAX_ISA=%-8s same embeddings" % sys.argv[3])
PY
done

# errors: usage -> 2, failures -> 1 with "clipdex: error:" and nothing on stdout
expect() {  # expect CODE PATTERN args...
    local code=$1 pat=$2; shift 2
    set +e; "$BIN" embed "$@" > "$T/out" 2> "$T/err"; local rc=$?; set -e
    [ "$rc" = "$code" ] || fail "embed $*: exit $rc, want $code ($(cat "$T/err"))"
    [ -z "$pat" ] || grep -q -- "$pat" "$T/err" || fail "embed $*: stderr lacks '$pat': $(cat "$T/err")"
    [ "$code" = 0 ] || [ ! -s "$T/out" ] || fail "embed $*: printed output on failure"
}
head -c 1000 "$P/coco_cats.f32" > "$T/short.f32"
cat "$P/coco_cats.f32" "$P/coco_cats.f32" > "$T/long.f32"
expect 2 "model DIR is required" --text hi
expect 2 "nothing to embed" --model "$F"
expect 2 "unknown option" --model "$F" --bogus
expect 2 "needs a value" --model "$F" --text
expect 2 "threads" --model "$F" --threads 0 --text hi
expect 1 "expected exactly 602112 bytes" --model "$F" --pixels "$T/short.f32"
expect 1 "more than" --model "$F" --pixels "$T/long.f32"
expect 1 "cannot open" --model "$F" --pixels "$T/missing.f32"
expect 1 "clipdex: error:" --model "$F" --image "$T/missing.png"
expect 1 "clipdex: error:" --model "$F" --image "$T/short.f32"
expect 1 "clipdex: error: loading model" --model "$T" --text hi
expect 0 "" --help
echo "e2e_embed: all passed"
