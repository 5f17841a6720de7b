#!/usr/bin/env bash
# e2e_search_text.sh - `clipdex search` modes, tag filter and combined
# queries through the real binary (docs/search.md): a library of the formats
# images plus five ImageNet photos, indexed with the fixture model; keyword
# search by file name with FTS5 syntax, malformed syntax refused with a
# clear message (exit 1), usage errors (exit 2) for a bad mode, weights or
# keyword weight, --not / --text / --weights giving the documented
# combination, and the JSON output's "mode".
set -u
bin=${CLIPDEX_BIN:?CLIPDEX_BIN is not set}
src=${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
shared=${CLIPDEX_SHARED:-$src/../shared}
[ -d "$shared/fixtures/clip-tiny" ] && [ -d "$shared/data/formats" ] || { echo "SKIP: shared data not found"; exit 77; }
tmp=$(mktemp -d /tmp/clipdex-e2e-search-text.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass=0
out=$tmp/out
err=$tmp/err
expect() { # expect STATUS DESCRIPTION -- CMD...
  local want=$1 desc=$2; shift 3
  "$@" >"$out" 2>"$err"
  local got=$?
  if [ "$got" -eq "$want" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: $desc: exit $got, want $want"; cat "$err"; fi
}
check() { # check DESCRIPTION -- CMD... (a test on the last output)
  local desc=$1; shift 2
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $desc"; cat "$out" "$err"; fi
}

mkdir -p "$tmp/img"
cp "$shared/data/formats/"*.png "$shared/data/formats/"*.jpg "$tmp/img/"
find "$shared/data/imagenet-sample" -maxdepth 1 -name '*.JPEG' | sort | head -n 5 | xargs -I{} cp {} "$tmp/img/"
lib=$tmp/lib
"$bin" index --library "$lib" --model "$shared/fixtures/clip-tiny" "$tmp/img" >"$tmp/index.log" 2>&1 ||
  { cat "$tmp/index.log"; echo "FAIL: index"; exit 1; }
S() { "$bin" search --library "$lib" "$@"; }

# keyword mode: file names, FTS5 syntax
expect 0 "keyword search" -- S --mode keyword tench --json
check "tench found by name" -- grep -q '"path": "[^"]*n01440764_tench.JPEG"' "$out"
check "mode in JSON" -- grep -q '"mode": "keyword"' "$out"
check "one match" -- grep -q '"total": 1,' "$out"
expect 0 "keyword OR and prefix" -- S --mode keyword 'tench OR astro*' -k 5
check "two results" -- test "$(wc -l <"$out")" -eq 2
expect 0 "keyword phrase and column" -- S --mode keyword 'name:"great white shark"' -k 5
check "the shark" -- grep -q great_white_shark "$out"
expect 0 "keyword with a format filter" -- S --mode keyword 'tench OR astronaut' --format png -k 5
check "only the png" -- sh -c "grep -q astronaut.png '$out' && ! grep -q tench '$out'"
# malformed syntax: exit 1, the reason, nothing else
expect 1 "unterminated string" -- S --mode keyword '"tench'
check "says what is wrong" -- grep -q 'keyword query ""tench" is not valid: unterminated string' "$err"
expect 1 "dangling operator" -- S --mode keyword 'tench AND'
check "syntax error message" -- grep -q 'syntax error' "$err"
expect 1 "unknown column" -- S --mode keyword 'colour:red'
# usage errors
expect 2 "unknown mode" -- S --mode fuzzy cat
check "lists the modes" -- grep -q 'expected semantic, keyword or hybrid' "$err"
expect 2 "keyword mode with an image" -- S --mode keyword --like 1
expect 2 "hybrid without text" -- S --mode hybrid --like 1
expect 2 "weights count" -- S cat --not dog --weights 1
expect 2 "zero weight" -- S cat --not dog --weights 1,0
expect 2 "keyword weight range" -- S cat --keyword-weight 2
# semantic / hybrid defaults: no text in this library beyond paths and cameras
expect 0 "default mode" -- S "a photo of a cat" --json
check "semantic by default" -- grep -q '"mode": "semantic"' "$out"
expect 0 "hybrid on request" -- S "tench" --mode hybrid --json -k 3
check "hybrid puts the name match first" -- sh -c "grep -o '\"path\": \"[^\"]*\"' '$out' | head -n 1 | grep -q tench"
# combined queries: "x" --not "x" cancels out; --weights 2 equals 1 (one part is normalised)
expect 1 "parts that cancel out" -- S cat --not cat
check "cancel message" -- grep -q 'cancel out' "$err"
expect 0 "text" -- S "a red car" --mode semantic -k 20
cp "$out" "$tmp/plain"
expect 0 "one text part, weight 2" -- S "a red car" --mode semantic -k 20 --weights 2
check "same ranking" -- cmp -s "$out" "$tmp/plain"
expect 0 "--not changes the ranking" -- S "a red car" --not "a cat" --mode semantic -k 20
check "different ranking" -- sh -c "! cmp -s '$out' '$tmp/plain'"
expect 0 "like + text" -- S --like 1 --text "at night" --json -k 3
check "results" -- grep -q '"rank": 3' "$out"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
