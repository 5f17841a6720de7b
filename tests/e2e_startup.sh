#!/usr/bin/env bash
# e2e_startup.sh - start-up caches from the command line (docs/model-cache.md):
# a text embed prepares only the text tower (its prepared file appears, the
# vision one does not), warm runs print identical output, a damaged prepared
# file is rebuilt, `clipdex model verify` recomputes the fingerprint and
# repairs a wrong cache entry, and an unwritable cache dir only costs speed.
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
F=${CLIPDEX_SHARED:-}/fixtures/clip-tiny
if [ -z "${CLIPDEX_SHARED:-}" ] || [ ! -d "$F" ]; then echo "SKIP: fixtures absent"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

M=$T/model
mkdir "$M"
cp "$F/config.json" "$F/preprocessor_config.json" "$F/vocab.json" "$F/merges.txt" \
   "$F/model.safetensors" "$M/"
export CLIPDEX_CACHE_DIR=$T/cache
sleep 0.2   # fingerprints are not cached within a timestamp tick of a write

"$BIN" embed --model "$M" --text "a photo of a cat" > "$T/e1.jsonl"
ls "$T/cache/prepared/"*-text-*.cdxw > /dev/null || fail "no prepared text tower"
if ls "$T/cache/prepared/"*-vision-* > /dev/null 2>&1; then fail "a text embed prepared the vision tower"; fi
ls "$T/cache/fingerprints/"*.txt > /dev/null || fail "no fingerprint cache entry"
"$BIN" embed --model "$M" --text "a photo of a cat" > "$T/e2.jsonl"
cmp -s "$T/e1.jsonl" "$T/e2.jsonl" || fail "warm (mapped) output differs"

# damaged prepared file: ignored, rebuilt, same output
P=$(ls "$T/cache/prepared/"*-text-*.cdxw)
printf 'garbage' | dd of="$P" bs=1 seek=100000 conv=notrunc status=none
"$BIN" embed --model "$M" --text "a photo of a cat" > "$T/e3.jsonl"
cmp -s "$T/e1.jsonl" "$T/e3.jsonl" || fail "output after rebuilding a damaged file differs"

# model verify: fingerprint = sha256(config.json || weights)
want=$(cat "$M/config.json" "$M/model.safetensors" | sha256sum | cut -d' ' -f1)
got=$("$BIN" model verify "$M" 2> "$T/verify.err") || fail "model verify failed: $(cat "$T/verify.err")"
[ "$got" = "$want" ] || fail "verify printed $got, want $want"
grep -q "matches the cache" "$T/verify.err" || fail "verify: $(cat "$T/verify.err")"
grep -q "1 valid, 0 damaged" "$T/verify.err" || fail "verify: $(cat "$T/verify.err")"

# a wrong cache entry: verify reports it (exit 1) and repairs it
E=$(ls "$T/cache/fingerprints/"*.txt)
python3 - "$E" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
open(p, "w").write(s[:-2] + ("a" if s[-2] != "a" else "b") + "\n")
PY
rc=0; "$BIN" model verify "$M" > /dev/null 2> "$T/verify.err" || rc=$?
[ $rc -eq 1 ] || fail "verify of a wrong cache entry: exit $rc"
grep -q "corrected" "$T/verify.err" || fail "verify: $(cat "$T/verify.err")"
"$BIN" model verify "$M" > /dev/null 2>&1 || fail "verify after repair failed"

# errors
rc=0; "$BIN" model verify "$T/nothing-here" > /dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "verify of a missing model succeeded"
rc=0; "$BIN" model verify > /dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "verify without argument: exit $rc"

# an unwritable cache dir (a path under a regular file): still works
CLIPDEX_CACHE_DIR=$T/e1.jsonl/cache "$BIN" embed --model "$M" --text "a photo of a cat" > "$T/e4.jsonl"
cmp -s "$T/e1.jsonl" "$T/e4.jsonl" || fail "output without a cache differs"
echo "e2e_startup: ok"
