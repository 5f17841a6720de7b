#!/usr/bin/env bash
# e2e_registry.sh - the model registry through the CLI: register two
# versions of one name (the F32 and F16 files of the tiny model, so two
# fingerprints), aliases set, moved and removed, references by alias,
# version prefix and name, lineage from training.json, refusals of bad
# names and conflicting registrations, eight concurrent taggers, evaluation
# results recorded by `clipdex eval --record`, and removal.
set -euo pipefail
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
[ -d "$SHARED/fixtures/clip-tiny" ] || skip "../shared is absent"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export CLIPDEX_HOME=$T/home
M=$SHARED/fixtures/clip-tiny
cp -r "$M" "$T/f16"
mv "$T/f16/model.fp16.safetensors" "$T/f16/model.safetensors"
printf '{"base": "tiny-f32", "data": "none", "lr": 0.001}\n' > "$T/f16/training.json"
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

v1=$("$BIN" model register "$M" --name tiny --alias production --json | j 'd["version"]')
v2=$("$BIN" model register "$T/f16" --name tiny --json | j 'd["version"]')
[ "${#v1}" = 64 ] && [ "$v1" != "$v2" ] || fail "two versions expected: $v1 $v2"
"$BIN" model show "tiny@production" --json | j 'd["version"]' | grep -qx "$v1" || fail "alias"
"$BIN" model show tiny --json | j 'd["version"]' | grep -qx "$v2" || fail "NAME = latest version"
"$BIN" model show "tiny@${v2:0:10}" --json | j 'd["lineage"]["base"]' | grep -qx tiny-f32 || fail "lineage from training.json"
"$BIN" model show "@${v1:0:8}" --json | j 'd["name"]' | grep -qx tiny || fail "@VERSION"
"$BIN" model list | grep -q "^tiny .*production" || fail "list"

# errors: each a clear message and a non-zero status, nothing changed
! "$BIN" model register "$M" --name other 2>"$T/e1" || fail "same files under another name"
grep -q "already registered as 'tiny'" "$T/e1" || fail "conflict message"
! "$BIN" model register "$M" --name 'bad name' 2>"$T/e2" || fail "bad name accepted"
! "$BIN" model tag tiny@production 'Prod!' 2>"$T/e3" || fail "bad alias accepted"
! "$BIN" model show tiny@nothing 2>/dev/null || fail "unknown alias resolved"
! "$BIN" model register "$T/nope" --name x 2>/dev/null || fail "missing directory registered"
printf '[1, 2]' > "$T/lin.json"
! "$BIN" model register "$M" --name tiny --lineage "$T/lin.json" 2>"$T/e4" || fail "non-object lineage"
grep -q 'JSON object' "$T/e4" || fail "lineage message"

# moving an alias; eight concurrent taggers
"$BIN" model tag "tiny@${v2:0:12}" production
"$BIN" model show tiny@production --json | j 'd["version"]' | grep -qx "$v2" || fail "alias moved"
pids=()
for i in 1 2 3 4 5 6 7 8; do "$BIN" model tag "tiny@${v1:0:12}" "c$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent tag failed"; done
"$BIN" model show "tiny@${v1:0:12}" --json | j '",".join(d["aliases"])' | grep -qx 'c1,c2,c3,c4,c5,c6,c7,c8' ||
  fail "concurrent aliases"
"$BIN" model untag tiny c8
! "$BIN" model untag tiny c8 2>/dev/null || fail "untag twice"

# evaluation results recorded with the library's model
"$BIN" index --library "$T/lib" --model "$M" "$SHARED/data/formats" >/dev/null 2>&1 || fail "index"
printf '{"text": "a photo of a cat", "relevant": ["%s"]}\n' "$SHARED/data/formats/chelsea.png" > "$T/q.jsonl"
"$BIN" eval queries --library "$T/lib" --queries "$T/q.jsonl" --record >/dev/null 2>"$T/rec.err" ||
  { cat "$T/rec.err"; fail "eval --record"; }
"$BIN" model show "@${v1:0:8}" --json | j 'd["evaluations"][0]["kind"]' | grep -qx queries || fail "recorded evaluation"

# removal: the version, its aliases and evaluations; files stay
"$BIN" model rm "tiny@${v1:0:12}"
! "$BIN" model show "@${v1:0:8}" 2>/dev/null || fail "removed version still resolves"
[ -f "$M/model.safetensors" ] || fail "files removed"
! "$BIN" model rm tiny 2>/dev/null || fail "rm without a version"
echo PASS
