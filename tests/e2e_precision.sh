#!/usr/bin/env bash
# e2e_precision.sh - --precision through the binary (issue #10 section 1):
# `embed --precision int8` close to fp32 on the clip-tiny fixture (cosine >=
# 0.99), an explicit bf16 failing with a clear message on a CPU without
# AVX512_BF16 (and running with CLIPDEX_PRECISION_EMULATE=1, cosine >= 0.999
# to fp32), a bad value
# refused as a usage error, `auto`, and `index --precision int8` recorded in
# the library and shown by `info` (then "int8+fp32" after an fp32 index).
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
F=${CLIPDEX_SHARED:-}/fixtures/clip-tiny
if [ -z "${CLIPDEX_SHARED:-}" ] || [ ! -d "$F" ]; then echo "SKIP: fixtures absent"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export CLIPDEX_CACHE_DIR=$T/cache
fail() { echo "FAIL: $*" >&2; exit 1; }
P=$F/expected/preprocess

for p in fp32 int8 auto; do
  "$BIN" embed --model "$F" --precision $p --normalize --text "a photo of a cat" --text "a diagram" \
      --pixels "$P/coco_cats.f32" --image "$F/images/skimage_chelsea.png" > "$T/$p.jsonl"
done
python3 - "$T" <<'PY'
import json, sys
T = sys.argv[1]
rows = {p: [json.loads(l)["embedding"] for l in open(f"{T}/{p}.jsonl")] for p in ("fp32", "int8", "auto")}
for a, b in zip(rows["fp32"], rows["int8"]):
    c = sum(x * y for x, y in zip(a, b))
    assert c >= 0.99, f"int8 cosine to fp32 {c}"
    assert c < 0.999999, "int8 output identical to fp32: not quantised?"
if "avx2" in open("/proc/cpuinfo").read():   # auto = int8 where AVX2 runs it
    assert rows["auto"] == rows["int8"], "auto differs from int8 on an AVX2 CPU"
print("int8 vs fp32 cosines ok")
PY

if "$BIN" embed --model "$F" --precision bf16 --text "x" > /dev/null 2> "$T/err"; then
  grep -q avx512_bf16 /proc/cpuinfo || fail "bf16 ran on a CPU without AVX512_BF16"
else
  [ $? -eq 1 ] || fail "bf16: wrong exit status"
  grep -q "AVX512_BF16" "$T/err" || fail "bf16 message: $(cat "$T/err")"
fi
CLIPDEX_PRECISION_EMULATE=1 "$BIN" embed --model "$F" --precision bf16 --normalize --text "a photo of a cat" \
    --text "a diagram" --pixels "$P/coco_cats.f32" --image "$F/images/skimage_chelsea.png" > "$T/bf16.jsonl"
python3 - "$T" <<'PY'
import json, sys
T = sys.argv[1]
a = [json.loads(l)["embedding"] for l in open(f"{T}/fp32.jsonl")]
b = [json.loads(l)["embedding"] for l in open(f"{T}/bf16.jsonl")]
for x, y in zip(a, b):
    c = sum(p * q for p, q in zip(x, y))
    assert 0.999 <= c < 0.9999999, f"bf16 (emulated) cosine to fp32 {c} (1: not rounded?)"
print("bf16 (emulated) vs fp32 cosines ok")
PY
set +e
"$BIN" embed --model "$F" --precision fp16 --text x > /dev/null 2> "$T/err"; rc=$?
set -e
[ $rc -eq 2 ] || fail "--precision fp16: exit $rc, want 2"
grep -q "expected fp32, bf16, int8 or auto" "$T/err" || fail "usage message: $(cat "$T/err")"

L=$T/lib
"$BIN" index --library "$L" --model "$F" --precision int8 "$F/images" > /dev/null 2>&1
"$BIN" info --library "$L" | grep -q "^precision: *int8 " || fail "info after an int8 index: $("$BIN" info --library "$L")"
mkdir "$T/more"
cp "$CLIPDEX_SHARED/data/imagenet-sample/n01440764_tench.JPEG" "$T/more/"
"$BIN" index --library "$L" "$T/more" > /dev/null 2>&1
"$BIN" info --library "$L" --json | grep -q '"precision": "int8+fp32"' || fail "info --json after an fp32 index: $("$BIN" info --library "$L" --json)"
echo "e2e_precision: ok"
