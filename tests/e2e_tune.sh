#!/usr/bin/env bash
# e2e_tune.sh - `clipdex tune-step` on the clip-tiny fixture against the
# fine-tuning reference (expected/train/): loss before each step, the first
# step's gradients and the parameters after two AdamW steps, for all
# parameters and for the last block only, on F32 and F16 weights (checked by
# tests/train_check.py with the fixture README's tolerances); the output is a
# model.safetensors that `clipdex embed` loads; bad inputs fail cleanly.
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
SRC=${CLIPDEX_SRC:?CLIPDEX_SRC not set}
F=${CLIPDEX_SHARED:-}/fixtures/clip-tiny
if [ -z "${CLIPDEX_SHARED:-}" ] || [ ! -d "$F/expected/train" ]; then echo "SKIP: fixtures absent"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
R=$F/expected/train
OPT=(--lr 1e-4 --betas 0.9,0.98 --eps 1e-6 --weight-decay 0.2 --steps 2 --json)

for W in fp32 fp16; do
    WF=model.safetensors; [ $W = fp16 ] && WF=model.fp16.safetensors
    for M in all last:1; do
        LB=; [ $M = last:1 ] && LB=--lastblock
        "$BIN" tune-step --model "$F" --weights $WF --pixels "$R/batch_pixels.f32" --tokens "$R/batch_tokens.i32" \
            --train $M "${OPT[@]}" --grads-out "$T/g.safetensors" --out "$T/a.safetensors" > "$T/out.jsonl"
        [ "$(wc -l < "$T/out.jsonl")" = 3 ] || fail "expected 3 loss lines"
        L=$(python3 -c 'import json,sys; print(",".join(repr(json.loads(l)["loss"]) for l in open(sys.argv[1])))' "$T/out.jsonl")
        python3 "$SRC/tests/train_check.py" "$F" --weights=$W $LB grads="$T/g.safetensors" \
            after2="$T/a.safetensors" loss="$L" || fail "$W $M differs from the reference"
    done
done

# the parameters file is a complete model: swap it into a copy of the model directory
mkdir "$T/m"
for f in config.json preprocessor_config.json vocab.json merges.txt; do ln -s "$F/$f" "$T/m/$f"; done
cp "$T/a.safetensors" "$T/m/model.safetensors"
"$BIN" embed --model "$T/m" --text "a photo of a cat" > /dev/null || fail "tuned model does not load"

# hostile inputs: nothing written, clear errors
head -c 1000 "$R/batch_pixels.f32" > "$T/short.f32"
if "$BIN" tune-step --model "$F" --pixels "$T/short.f32" --tokens "$R/batch_tokens.i32" --out "$T/x" 2> "$T/err"; then
    fail "a truncated pixel file was accepted"
fi
grep -q "expected n x" "$T/err" || fail "no size message: $(cat "$T/err")"
[ ! -e "$T/x" ] || fail "output written on error"
python3 -c 'import struct,sys; d=bytearray(open(sys.argv[1],"rb").read()); d[4:8]=struct.pack("<i",99999); open(sys.argv[2],"wb").write(d)' \
    "$R/batch_tokens.i32" "$T/badtok.i32"
if "$BIN" tune-step --model "$F" --pixels "$R/batch_pixels.f32" --tokens "$T/badtok.i32" 2> "$T/err"; then
    fail "an out-of-vocabulary token was accepted"
fi
grep -q "token id 99999" "$T/err" || fail "no token message: $(cat "$T/err")"
set +e
"$BIN" tune-step --model "$F" --pixels "$R/batch_pixels.f32" --tokens "$R/batch_tokens.i32" --train last:9 2> "$T/err"
[ $? = 1 ] || fail "last:9 on a 2-layer model must fail"
"$BIN" tune-step --model "$F" --pixels "$R/batch_pixels.f32" --tokens "$R/batch_tokens.i32" --betas 0.9 2> /dev/null
[ $? = 2 ] || fail "--betas without a comma must be a usage error"
set -e
echo "e2e_tune: ok"
