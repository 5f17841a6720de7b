#!/usr/bin/env bash
# e2e_tune_run.sh - `clipdex tune` on clip-tiny with coco-mini captions:
# the training loss falls, the output directory loads in other commands and
# carries a training record; a run killed with SIGKILL resumes from its last
# checkpoint and ends bit-identical to an uninterrupted run; last:1 with
# the frozen-prefix cache ends where it ends without (also across a kill -9
# and resume); CSV and
# --labels-from-folders inputs; bad inputs fail with clear messages.
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
S=${CLIPDEX_SHARED:-}
F=$S/fixtures/clip-tiny
C=$S/data/coco-mini
if [ -z "$S" ] || [ ! -d "$F" ] || [ ! -d "$C/images" ]; then echo "SKIP: fixtures absent"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

python3 - "$C" "$T" <<'PY'
import json, sys
C, T = sys.argv[1], sys.argv[2]
items = sorted(json.load(open(C + "/captions.json")).items())[:24]
with open(T + "/pairs.jsonl", "w") as f:
    for k, caps in items:
        f.write(json.dumps({"file": "images/" + k, "caption": caps[0]}) + "\n")
with open(T + "/pairs.csv", "w") as f:
    f.write("file,caption\n")
    for k, caps in items[:8]:
        f.write('images/%s,"%s"\n' % (k, caps[0].replace('"', '""')))
PY
ARGS=(--model "$F" --pairs "$T/pairs.jsonl" --images "$C" --epochs 3 --batch 8 --lr 1e-4 --val 0.34 --seed 3 --threads 2)

"$BIN" tune "${ARGS[@]}" --out "$T/a" 2> "$T/a.log" > "$T/a.out" || { cat "$T/a.log"; fail "tune failed"; }
[ "$(cat "$T/a.out")" = "$T/a" ] || fail "tune should print the output directory"
grep -q "ETA" "$T/a.log" || fail "no progress lines"
for f in config.json vocab.json merges.txt model.safetensors training.json; do
    [ -s "$T/a/$f" ] || fail "output lacks $f"
done
[ ! -e "$T/a/checkpoint.safetensors" ] || fail "checkpoint left behind"
python3 - "$T/a/training.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
log = r["epochs_log"]
assert r["steps"] == 6 and len(log) == 3, r
assert log[-1]["train_loss"] < log[0]["train_loss"], "training loss did not fall: %s" % log
assert log[-1]["val_loss"] < log[0]["val_loss"] + 1.0, log
t2i, i2t = log[-1]["val_text_to_image_recall"], log[-1]["val_image_to_text_recall"]
assert len(t2i) == 3 and 0 <= t2i[0] <= t2i[1] <= t2i[2] <= 1 and t2i[2] == 1.0, t2i   # 8 val pairs: R@10 = 1
assert 0 <= i2t[0] <= i2t[1] <= i2t[2] <= 1, i2t
print("loss per epoch:", [round(e["train_loss"], 3) for e in log])
PY
"$BIN" embed --model "$T/a" --text "a dog" > /dev/null || fail "tuned model does not load"

# kill_when PATTERN LOG PID: kill -9 PID as soon as LOG shows PATTERN
# (polled every 0.05 s, at most 60 s), and reap it
kill_when() {
    for _ in $(seq 1200); do
        grep -q "$1" "$2" 2>/dev/null && break
        sleep 0.05
    done
    kill -9 "$3" 2>/dev/null || true
    wait "$3" 2>/dev/null || true
}

# kill -9 after the first checkpoints, then resume: bit-identical result
"$BIN" tune "${ARGS[@]}" --out "$T/b" --checkpoint-every 1 2> "$T/b.log" > /dev/null &
kill_when "step 3/6" "$T/b.log" $!
[ -s "$T/b/checkpoint.safetensors" ] || fail "no checkpoint after 3 steps"
"$BIN" tune "${ARGS[@]}" --out "$T/b" --checkpoint-every 1 2> "$T/b2.log" > /dev/null || { cat "$T/b2.log"; fail "resume failed"; }
grep -q "resuming from the checkpoint at step" "$T/b2.log" || fail "did not resume"
cmp "$T/a/model.safetensors" "$T/b/model.safetensors" || fail "resumed run differs from the uninterrupted one"

# last:1 with the frozen-prefix cache (in RAM; spilled to a hidden deleted
# file in --out) ends where a run recomputing the frozen blocks ends
LARGS=(--model "$F" --pairs "$T/pairs.jsonl" --images "$C" --epochs 3 --batch 8 --lr 1e-3 --seed 3 --threads 2 --train last:1)
"$BIN" tune "${LARGS[@]}" --cache-mb 0 --cache-disk-mb 0 --out "$T/nc" 2> "$T/nc.log" > /dev/null || { cat "$T/nc.log"; fail "last:1 uncached"; }
! grep -q "frozen-prefix cache" "$T/nc.log" || fail "cache reported while off"
"$BIN" tune "${LARGS[@]}" --out "$T/ca" 2> "$T/ca.log" > /dev/null || { cat "$T/ca.log"; fail "last:1 cached"; }
grep -q "epoch 3: frozen-prefix cache: 96 hits, 48 misses, 0 not kept" "$T/ca.log" || { cat "$T/ca.log"; fail "cache not used"; }
"$BIN" tune "${LARGS[@]}" --cache-mb 0 --out "$T/cs" 2> "$T/cs.log" > /dev/null || { cat "$T/cs.log"; fail "last:1 spilled"; }
grep "epoch 3: frozen-prefix cache: 96 hits" "$T/cs.log" | grep -q " 0.0 MB RAM, [0-9.]*[1-9][0-9.]* MB spilled" || { cat "$T/cs.log"; fail "cache not spilled"; }
! ls -A "$T/cs" | grep -q frozen-cache || fail "spill file left in the output: $(ls -A "$T/cs")"
# kill -9 of a cached (spilling) last:1 run, then resume: the new process
# starts with an empty cache, rebuilds it (every image and caption computed
# once more, none read from the dead run), leaves no spill file behind, and
# ends where the uncached run ends
"$BIN" tune "${LARGS[@]}" --cache-mb 0 --checkpoint-every 1 --out "$T/kr" 2> "$T/kr.log" > /dev/null &
kill_when "step 4/9" "$T/kr.log" $!
[ -s "$T/kr/checkpoint.safetensors" ] || fail "no checkpoint in the cached run after 4 steps"
"$BIN" tune "${LARGS[@]}" --cache-mb 0 --checkpoint-every 1 --out "$T/kr" 2> "$T/kr2.log" > /dev/null \
    || { cat "$T/kr2.log"; fail "cached resume failed"; }
grep -q "resuming from the checkpoint at step" "$T/kr2.log" || fail "cached run did not resume"
grep "frozen-prefix cache" "$T/kr2.log" | head -1 | grep -q ": 0 hits, " || { cat "$T/kr2.log"; fail "cache not empty after the resume"; }
grep -q "epoch 3: frozen-prefix cache: [1-9][0-9]* hits, 48 misses, 0 not kept; 0.0 MB RAM" "$T/kr2.log" \
    || { cat "$T/kr2.log"; fail "cache not rebuilt after the resume"; }
! ls -A "$T/kr" | grep -q -e frozen-cache -e checkpoint || fail "left in the output after the resume: $(ls -A "$T/kr")"
python3 - "$T/nc/model.safetensors" "$T/ca/model.safetensors" "$T/cs/model.safetensors" "$T/kr/model.safetensors" <<'PY'
import sys
sys.path.insert(0, __import__("os").environ.get("CLIPDEX_SRC", ".") + "/tests")
from train_check import read_st
ref = read_st(sys.argv[1])
for path in sys.argv[2:]:
    got = read_st(path)
    assert sorted(got) == sorted(ref)
    md = max(max((abs(a - b) for a, b in zip(ref[k][1], got[k][1])), default=0) for k in ref)
    # 6 steps of up to lr = 1e-3 each; frozen outputs computed in other batches differ by rounding
    assert md <= 1e-4, "%s: max parameter difference %g to the uncached run" % (path, md)
    print("cached vs uncached, max parameter difference", md)
PY

# a checkpoint of other settings is refused
mkdir -p "$T/c" && cp "$T/b/training.json" "$T/c/checkpoint.json"
if "$BIN" tune "${ARGS[@]}" --out "$T/c" 2> "$T/err"; then fail "foreign checkpoint accepted"; fi
grep -q "other settings" "$T/err" || fail "no message: $(cat "$T/err")"

# CSV, last:1, labels from folders
"$BIN" tune --model "$F" --pairs "$T/pairs.csv" --images "$C" --batch 4 --train last:1 --out "$T/d" 2> /dev/null > /dev/null \
    || fail "CSV pairs"
mkdir -p "$T/fold/cat" "$T/fold/plane"
ls "$C/images/val2017" | head -3 | while read -r f; do ln -s "$C/images/val2017/$f" "$T/fold/cat/$f"; done
ls "$C/images/train2017" | head -3 | while read -r f; do ln -s "$C/images/train2017/$f" "$T/fold/plane/$f"; done
"$BIN" tune --model "$F" --labels-from-folders --images "$T/fold" --batch 6 --train proj --out "$T/e" 2> "$T/e.log" > /dev/null \
    || { cat "$T/e.log"; fail "labels from folders"; }

# bad inputs
printf 'file,caption\nimages/x.jpg\n' > "$T/bad.csv"
if "$BIN" tune --model "$F" --pairs "$T/bad.csv" --out "$T/f" 2> "$T/err"; then fail "bad CSV accepted"; fi
grep -q "bad.csv:2: expected two CSV fields" "$T/err" || fail "no CSV message: $(cat "$T/err")"
printf '{"file": "images/nope.jpg", "caption": "x"}\n{"file": "images/nope2.jpg", "caption": "y"}\n' > "$T/missing.jsonl"
if "$BIN" tune --model "$F" --pairs "$T/missing.jsonl" --images "$C" --out "$T/g" 2> "$T/err"; then fail "missing image accepted"; fi
grep -q "nope" "$T/err" || fail "no missing-image message: $(cat "$T/err")"
set +e
"$BIN" tune --model "$F" --pairs "$T/pairs.jsonl" --out "$T/h" --batch 1 2> /dev/null; [ $? = 2 ] || fail "--batch 1 must be a usage error"
set -e
echo "e2e_tune_run: ok"
