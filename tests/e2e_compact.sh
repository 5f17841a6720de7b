#!/bin/bash
# e2e_compact.sh - `clipdex compact` and `info`'s dead rows on a real library
# (clip-tiny, ../shared/data/formats), with a `clipdex serve --read-only`
# process running meanwhile: rm 4 images, info shows 4 dead rows, compact
# frees them (rows 10 -> 6, new file name, old file gone), a second compact
# has nothing to do, check passes, and the same search gives the same ids
# and scores from the CLI and from the server started before the compaction.
# Usage errors: --help, an unknown option, a missing library.  Skips (77)
# without ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
DATA=$SHARED/data/formats
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$DATA" ] && [ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null && command -v curl >/dev/null || { echo "SKIP: python3/curl absent"; exit 77; }
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$T"' EXIT
L=$T/lib
fail() { echo "FAIL: $*"; exit 1; }
. "${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}/tests/serve_testutil.sh"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

"$BIN" compact --help | grep -q "usage: clipdex compact" || fail "--help"
"$BIN" compact --bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option must exit 2"
"$BIN" compact --library "$T/none" >/dev/null 2>"$T/err"; [ $? -eq 1 ] || fail "missing library must exit 1"
grep -q "no library" "$T/err" || fail "missing library message: $(cat "$T/err")"

"$BIN" index --library "$L" --model "$MODEL" "$DATA" >/dev/null 2>&1 || fail "index"
[ "$(ls "$L" | grep -c '^vectors.*\.cdxv$')" = 1 ] && [ -f "$L/vectors.cdxv" ] || fail "initial vector file"

"$BIN" serve --library "$L" --read-only --port 0 --access-log off >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
URL=$(serve_url "$T/serve.out" "$SPID") || { cat "$T/serve.err"; fail "serve did not start"; }
server_search() { curl -sf "$URL/api/search?q=a+photo+of+a+cat&k=20" | json '[(r["id"], round(r["score"], 6)) for r in d["results"]]'; }
cli_search() { "$BIN" search --library "$L" -k 20 --json "a photo of a cat" | json '[(r["id"], round(r["score"], 6)) for r in d["results"]]'; }
server_search >"$T/s0" || fail "server search"

# remove 4 (by path), expect 4 dead rows
ls "$DATA" | grep -v -e README -e '\.json$' -e '\.csv$' | head -4 | sed "s|^|$DATA/|" | xargs "$BIN" rm --library "$L" >/dev/null || fail "rm"
info=$("$BIN" info --library "$L" --json) || fail "info"
echo "$info" | json 'd["images"] == 6 and d["vector_rows"] == 10 and d["dead_rows"] == 4 and d["reclaimable_bytes"] > 0' | grep -q True || fail "info before: $info"
"$BIN" info --library "$L" | grep -q "dead rows:   4 of 10" || fail "info text"
cli_search >"$T/c1" || fail "search before"

out=$("$BIN" compact --library "$L" --json) || fail "compact"
echo "$out"
echo "$out" | json 'd["compacted"] and d["rows_before"] == 10 and d["rows_after"] == 6 and d["bytes_freed"] == d["bytes_before"] - d["bytes_after"] > 0' | grep -q True || fail "compact report"
files=$(ls "$L" | grep '^vectors.*\.cdxv$')
echo "$files" | grep -qx 'vectors-[0-9a-f]\{32\}\.cdxv' || fail "vector files after compaction: $files"
"$BIN" compact --library "$L" | grep -q "nothing to compact" || fail "second compact"
"$BIN" compact --library "$L" --if-needed --json | json 'd["compacted"]' | grep -q False || fail "--if-needed"
"$BIN" check --library "$L" >/dev/null || fail "check"
"$BIN" info --library "$L" --json | json 'd["dead_rows"] == 0 and d["vector_rows"] == 6' | grep -q True || fail "info after"
cli_search >"$T/c2" || fail "search after"
cmp -s "$T/c1" "$T/c2" || { cat "$T/c1" "$T/c2"; fail "CLI results differ after compaction"; }
# the server opened the old file; it must answer like the CLI (the removed
# images gone, the rest with the same scores)
server_search >"$T/s2" || fail "server search after"
cmp -s "$T/c2" "$T/s2" || { cat "$T/c2" "$T/s2"; fail "server results differ after compaction"; }
! cmp -s "$T/s0" "$T/s2" || fail "server still shows removed images"
echo "PASS"
