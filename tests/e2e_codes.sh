#!/usr/bin/env bash
# e2e_codes.sh - compressed search through the real binary: `index --codes`
# builds companions, `search --scan int8|bit|pca8` answers like the float32 scan
# when every candidate is re-scored, companions follow new images, `info`
# reports bytes per image, a damaged companion is reported by `check` and
# rebuilt (by use when its header is damaged, by `index --codes` when its
# data is), and bad options are usage errors.
set -u
bin=${CLIPDEX_BIN:?CLIPDEX_BIN is not set}
shared=${CLIPDEX_SHARED:-}
model=$shared/fixtures/clip-tiny
photos=$shared/data/imagenet-sample
if [ ! -f "$model/config.json" ] || [ ! -d "$photos" ]; then
  echo "skip: $model or $photos not found (set CLIPDEX_SHARED)"; exit 77
fi
tmp=$(mktemp -d /tmp/e2e_codes.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
lib=$tmp/lib
mkdir -p "$tmp/a" "$tmp/b"
ls "$photos"/*.JPEG | head -30 | xargs -I{} cp {} "$tmp/a/"
ls "$photos"/*.JPEG | sed -n 31,40p | xargs -I{} cp {} "$tmp/b/"
fail=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
results() { sed 's/, "took_ms": [0-9.]*//'; }   # drop the timing

"$bin" index --library "$lib" --model "$model" --codes int8 "$tmp/a" >/dev/null 2>&1 || bad "index --codes int8"
[ -f "$lib/codes-int8.cdxc" ] && ok || bad "no int8 companion after index --codes int8"
[ ! -f "$lib/codes-bit.cdxc" ] && ok || bad "bit companion built unasked"
for q in "a photo of a dog" "a red car"; do
  want=$("$bin" search --library "$lib" --json -k 5 "$q" | results)
  for s in int8 bit pca8; do
    got=$("$bin" search --library "$lib" --json -k 5 --scan $s --rescore 1000 "$q" | results)
    [ "$got" = "$want" ] && ok || bad "--scan $s differs from f32 for '$q': $got vs $want"
  done
done
[ -f "$lib/codes-bit.cdxc" ] && [ -f "$lib/codes-pca8.cdxc" ] && ok || bad "bit/pca8 companions not built on first use"
"$bin" info --library "$lib" --json >"$tmp/info" || bad "info"
grep -q '"scan": "int8", "present": true, "fresh": true, "rows": 30' "$tmp/info" && ok || bad "info int8: $(cat "$tmp/info")"
grep -q '"bytes_per_image": 72' "$tmp/info" && ok || bad "info bytes per image: $(cat "$tmp/info")"

# new images: existing companions follow the vector file
"$bin" index --library "$lib" "$tmp/b" >/dev/null 2>&1 || bad "second index"
"$bin" info --library "$lib" --json >"$tmp/info"
grep -q '"scan": "int8", "present": true, "fresh": true, "rows": 40' "$tmp/info" && ok || bad "int8 not extended: $(cat "$tmp/info")"
grep -q '"scan": "bit", "present": true, "fresh": true, "rows": 40' "$tmp/info" && ok || bad "bit not extended: $(cat "$tmp/info")"
grep -q '"scan": "pca8", "present": true, "fresh": true, "rows": 40, "file_bytes": [0-9]*, "bytes_per_image": 72' "$tmp/info" && ok || bad "pca8 not extended: $(cat "$tmp/info")"
"$bin" check --library "$lib" >/dev/null 2>&1 && ok || bad "check after extending"

# damaged data: check reports it, index --codes rebuilds it
printf '\x55' | dd of="$lib/codes-int8.cdxc" bs=1 seek=8300 conv=notrunc 2>/dev/null
"$bin" check --library "$lib" >"$tmp/check" 2>&1 && bad "check passed a damaged companion" || ok
grep -q "companion codes .*codes-int8.cdxc are damaged" "$tmp/check" && ok || bad "check message: $(cat "$tmp/check")"
"$bin" index --library "$lib" --codes int8 "$tmp/b" >/dev/null 2>&1 || bad "index --codes int8 (rebuild)"
"$bin" check --library "$lib" >/dev/null 2>&1 && ok || bad "check after rebuild"
# damaged header: rebuilt by the next search that needs it
printf 'XX' | dd of="$lib/codes-bit.cdxc" bs=1 seek=2 conv=notrunc 2>/dev/null
"$bin" check --library "$lib" >/dev/null 2>&1 && bad "check passed a damaged header" || ok
want=$("$bin" search --library "$lib" --json -k 3 "a cat" | results)
got=$("$bin" search --library "$lib" --json -k 3 --scan bit --rescore 1000 "a cat" | results)
[ "$got" = "$want" ] && ok || bad "bit search after header damage"
"$bin" check --library "$lib" >/dev/null 2>&1 && ok || bad "check after header rebuild"

# usage errors
"$bin" search --library "$lib" --scan int4 "x" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--scan int4 not a usage error"
"$bin" search --library "$lib" --rescore 0 "x" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--rescore 0 not a usage error"
"$bin" index --library "$lib" --codes pq "$tmp/b" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--codes pq not a usage error"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
