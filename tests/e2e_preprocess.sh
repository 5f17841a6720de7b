#!/usr/bin/env bash
# e2e_preprocess.sh - `clipdex preprocess` on the clip-tiny fixture: every
# fixture image with --no-autorotate must reproduce expected/preprocess/<id>.f32
# byte for byte; EXIF autorotation changes the rotated images only; the JSON
# line describes the image; errors give exit 1 / usage errors exit 2 with a
# "clipdex: error:" message and never leave an output file behind.
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
F=${CLIPDEX_SHARED:-}/fixtures/clip-tiny
if [ -z "${CLIPDEX_SHARED:-}" ] || [ ! -d "$F" ]; then echo "SKIP: fixtures absent"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

ids=$(python3 -c 'import json,sys; [print(i["id"], i["file"]) for i in json.load(open(sys.argv[1]))["preprocess"]["images"]]' "$F/expected/cases.json")
n=0
while read -r id file; do
    "$BIN" preprocess --model "$F" --image "$F/$file" --out "$T/$id.f32" --no-autorotate > "$T/$id.json" \
        || fail "$id: exit status $?"
    cmp -s "$T/$id.f32" "$F/expected/preprocess/$id.f32" || fail "$id: output differs from the reference"
    n=$((n + 1))
done <<< "$ids"
[ "$n" -eq 17 ] || fail "expected 17 fixture images, ran $n"
echo "ok all $n fixture images bit-exact"

python3 - "$T" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/syn_exif6_jpg.json"))
assert m["format"] == "jpeg" and m["width"] == 320 and m["height"] == 200, m
assert m["orientation"] == 6 and m["autorotate"] is False and m["size"] == 224, m
print("ok JSON line", m)
PY

# Autorotate (default): the EXIF-6 image changes, an upright image does not.
"$BIN" preprocess --model "$F" --image "$F/images/syn_exif6_jpg.jpg" --out "$T/rot.f32" > /dev/null
cmp -s "$T/rot.f32" "$T/syn_exif6_jpg.f32" && fail "autorotate had no effect on an Orientation=6 image"
"$BIN" preprocess --model "$F" --image "$F/images/coco_cats.png" --out "$T/cats.f32" > /dev/null
cmp -s "$T/cats.f32" "$T/coco_cats.f32" || fail "autorotate changed an image without orientation"
echo "ok autorotate"

# Errors: exit 1, message, no output file.
printf 'not an image\n' > "$T/fake.jpg"
head -c 5000 "$F/images/skimage_rocket_jpg.jpg" > "$T/trunc.jpg"
for bad in "$T/fake.jpg" "$T/trunc.jpg" "$T/missing.png"; do
    set +e
    "$BIN" preprocess --model "$F" --image "$bad" --out "$T/bad.f32" 2> "$T/err" > /dev/null
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$bad: exit status $rc, want 1"
    grep -q "clipdex: error:" "$T/err" || fail "$bad: no error message"
    [ ! -e "$T/bad.f32" ] || fail "$bad: output file written on failure"
    echo "ok error: $(head -c 200 "$T/err")"
done
set +e
"$BIN" preprocess --model "$F" --image "$F/images/coco_cats.png" --out "$T/x.f32" --max-pixels 1000 2> "$T/err" > /dev/null
rc=$?
"$BIN" preprocess --model "$F" --image "$F/images/coco_cats.png" 2> /dev/null > /dev/null
rc2=$?
"$BIN" preprocess --bogus 2> /dev/null > /dev/null
rc3=$?
set -e
[ "$rc" -eq 1 ] && grep -q "limit" "$T/err" || fail "--max-pixels not enforced (rc $rc)"
[ "$rc2" -eq 2 ] || fail "missing --out: exit $rc2, want 2"
[ "$rc3" -eq 2 ] || fail "unknown option: exit $rc3, want 2"
"$BIN" preprocess --help | grep -q "usage: clipdex preprocess" || fail "--help"
echo "ok errors and usage"
