#!/usr/bin/env bash
# e2e_model_fetch.sh - `clipdex model fetch|path|list` against a real HTTP
# server on 127.0.0.1 (tests/hf_test_server.py) serving the clip-tiny
# fixture the way the Hugging Face hub serves a repository.
#
# Checks: a fetch prints the directory and the files are byte-identical to
# the fixture; a second fetch makes no request; a dropped connection is
# resumed with a Range request (within one run, and across runs from a
# leftover .part); a server ignoring Range and a 416 for a whole .part are
# handled; the token is sent to the hub but not to a redirect target on
# another host; 404 / 401 / missing safetensors / closed port / unresolvable
# host fail with exit 1 and clear messages; bad arguments exit 2.
# All traffic stays on 127.0.0.1 (plus one DNS lookup of a .invalid name).
set -u

if ! command -v python3 >/dev/null 2>&1; then
  echo "SKIP: python3 is missing"
  exit 77
fi
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN must point to the clipdex binary}
SRC=${CLIPDEX_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
SHARED=${CLIPDEX_SHARED:-$SRC/../shared}
FIX=$SHARED/fixtures/clip-tiny
if [ ! -f "$FIX/model.safetensors" ]; then
  echo "SKIP: fixture $FIX is absent"
  exit 77
fi

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

DROP_AFTER=3000000
python3 "$SRC/tests/hf_test_server.py" --root "$FIX" --log "$TMP/server.log" \
  --port-file "$TMP/port" --drop-after $DROP_AFTER --drop-times 1 --timeout 300 \
  >"$TMP/server.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
if [ ! -s "$TMP/port" ]; then
  echo "FAIL: test server did not start"; cat "$TMP/server.out"; exit 1
fi
PORT=$(cat "$TMP/port")
echo "test server on 127.0.0.1:$PORT"

unset HF_TOKEN XDG_DATA_HOME http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY=127.0.0.1,localhost
export CLIPDEX_HOME=$TMP/home
export CLIPDEX_HF_ENDPOINT=http://127.0.0.1:$PORT
CACHE=$CLIPDEX_HOME/models
FILES="config.json preprocessor_config.json vocab.json merges.txt tokenizer_config.json special_tokens_map.json model.safetensors"

failures=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run NAME CMD... : runs with stdout/stderr in $TMP/out / $TMP/err, sets $rc.
run() {
  "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}
expect_rc() { # expect_rc WANT WHAT
  if [ "$rc" -eq "$1" ]; then pass "$2 (exit $rc)"; else
    fail "$2: exit $rc, expected $1"; sed 's/^/  stderr: /' "$TMP/err"; fi
}
expect_err() { # expect_err REGEX WHAT
  if grep -Eqi -- "$1" "$TMP/err"; then pass "$2"; else
    fail "$2: stderr does not match /$1/"; sed 's/^/  stderr: /' "$TMP/err"; fi
}
same_files() { # same_files DIR WHAT
  local f bad=0
  for f in $FILES; do cmp -s "$FIX/$f" "$1/$f" || { fail "$2: $f differs from the fixture"; bad=1; }; done
  [ $bad -eq 0 ] && pass "$2: all files byte-identical to the fixture"
}
log_count() { grep -c -- "$1" "$TMP/server.log"; }

# --- help and usage errors (no network) -----------------------------------
for sub in "" " fetch" " list" " path"; do
  run "$BIN" model$sub --help
  expect_rc 0 "model$sub --help"
done
for bad in "../x" "a/b/c" "-a/b" "a" "a/.." ".a/b" "a/b c" "a--b/c" "a/b-" "/b"; do
  run "$BIN" model fetch "$bad"
  expect_rc 2 "fetch with bad REPO_ID '$bad'"
done
run "$BIN" model fetch test/clip-tiny --revision ../../etc
expect_rc 2 "fetch with revision ../../etc"
run "$BIN" model fetch
expect_rc 2 "fetch without REPO_ID"
run "$BIN" model fetch test/clip-tiny --bogus
expect_rc 2 "fetch with an unknown option"
run "$BIN" model frobnicate
expect_rc 2 "unknown subcommand"
[ -z "$(find "$TMP" -name '*..*' -o -name etc)" ] && pass "nothing written outside the cache" \
  || fail "a path escaped the cache"
[ "$(wc -l <"$TMP/server.log")" -eq 0 ] && pass "usage errors made no request" \
  || fail "usage errors made requests"

# --- a normal fetch, then a second one -------------------------------------
run "$BIN" model path test/clip-tiny
expect_rc 1 "model path before fetch"
run "$BIN" model fetch test/clip-tiny
expect_rc 0 "fetch test/clip-tiny"
DIR=$(cat "$TMP/out")
[ "$DIR" = "$CACHE/test--clip-tiny/main" ] && pass "prints the model directory" \
  || fail "printed '$DIR'"
same_files "$DIR" "first fetch"
[ -f "$DIR/.complete" ] && pass ".complete marker written" || fail "no .complete marker"
[ -z "$(find "$DIR" -name '*.part')" ] && pass "no .part left" || fail ".part files left"
expect_err "model.safetensors" "progress names the weights file"
run "$BIN" model path test/clip-tiny
[ $rc -eq 0 ] && [ "$(cat "$TMP/out")" = "$DIR" ] && pass "model path after fetch" \
  || fail "model path after fetch: exit $rc, '$(cat "$TMP/out")'"

before=$(wc -l <"$TMP/server.log")
run "$BIN" model fetch test/clip-tiny --quiet
expect_rc 0 "second fetch"
[ "$(cat "$TMP/out")" = "$DIR" ] && pass "second fetch prints the same directory" \
  || fail "second fetch printed '$(cat "$TMP/out")'"
[ "$(wc -l <"$TMP/server.log")" -eq "$before" ] && pass "second fetch made no request" \
  || fail "second fetch made $(( $(wc -l <"$TMP/server.log") - before )) requests"
[ ! -s "$TMP/err" ] && pass "--quiet prints nothing on stderr" || fail "--quiet printed: $(cat "$TMP/err")"

# A deleted file makes the directory incomplete again; fetch restores it.
rm "$DIR/vocab.json"
run "$BIN" model path test/clip-tiny
expect_rc 1 "model path with a file missing"
run "$BIN" model fetch test/clip-tiny -q
expect_rc 0 "fetch restores a deleted file"
[ "$(log_count 'clip-tiny/resolve/main/vocab.json')" -eq 2 ] && \
  [ "$(log_count 'clip-tiny/resolve/main/model.safetensors')" -eq 1 ] && \
  pass "only the missing file was downloaded again" || fail "unexpected requests after deleting vocab.json"
same_files "$DIR" "after restoring"

# --- resume ------------------------------------------------------------------
# Within one run: the server drops the first weights download after
# DROP_AFTER bytes; the retry continues with a Range request.
run "$BIN" model fetch test/flaky
expect_rc 0 "fetch through a dropped connection"
same_files "$CACHE/test--flaky/main" "after a dropped connection"
grep -q "flaky/resolve/main/model.safetensors range=bytes=$DROP_AFTER- .*status=206" "$TMP/server.log" \
  && pass "resumed with Range: bytes=$DROP_AFTER-" || fail "no Range request after the drop"
expect_err "broken|retrying" "the drop is reported"

# Across runs: an interrupted earlier run left a .part and no marker.
D2=$CACHE/test--clip-tiny/v1
mkdir -p "$D2"
head -c 5000000 "$FIX/model.safetensors" >"$D2/model.safetensors.part"
run "$BIN" model path test/clip-tiny --revision v1
expect_rc 1 "a directory with a .part is not complete"
run "$BIN" model fetch test/clip-tiny --revision v1 -q
expect_rc 0 "fetch resumes a .part left by an earlier run"
grep -q "clip-tiny/resolve/v1/model.safetensors range=bytes=5000000- .*status=206" "$TMP/server.log" \
  && pass "sent Range: bytes=5000000-" || fail "no Range request for the leftover .part"
same_files "$D2" "after resuming a leftover .part"

# A server that ignores Range: the download restarts from 0.
D3=$CACHE/test--norange/main
mkdir -p "$D3"
head -c 5000000 "$FIX/model.safetensors" >"$D3/model.safetensors.part"
run "$BIN" model fetch test/norange -q
expect_rc 0 "fetch from a server that ignores Range"
same_files "$D3" "after a restart from 0"

# A whole file left as .part: 416, kept without downloading it again.
D4=$CACHE/test--flaky/v1
mkdir -p "$D4"
cp "$FIX/model.safetensors" "$D4/model.safetensors.part"
run "$BIN" model fetch test/flaky --revision v1 -q
expect_rc 0 "fetch with a complete .part"
grep -q "flaky/resolve/v1/model.safetensors range=bytes=16315044- .*status=416" "$TMP/server.log" \
  && pass "416 for a complete .part" || fail "no 416 for the complete .part"
[ "$(log_count 'flaky/resolve/v1/model.safetensors')" -eq 1 ] && pass "a complete .part is not downloaded again" \
  || fail "complete .part downloaded again"
same_files "$D4" "after a 416"

# --- integrity: the sha256 announced by the hub is checked ----------------
grep -q '"model.safetensors.sha256": "'"$(sha256sum "$FIX/model.safetensors" | cut -d' ' -f1)"'"' "$DIR/.complete" \
  && pass "verified sha256 recorded in .complete" || fail "no verified sha256 in .complete"
# A .part of the right length but wrong bytes (a changed file on the hub,
# disk corruption): the 416 says "whole", the sha256 says otherwise.
head -c 16315044 /dev/zero >"$TMP/zeros"
run "$BIN" model fetch test/corrupt -q
expect_rc 1 "wrong sha256 announced"
expect_err "model.safetensors is corrupted: its sha256 is [0-9a-f]{64} but the hub announced 0{64}" \
  "sha256 mismatch reported"
[ ! -e "$CACHE/test--corrupt/main/model.safetensors" ] && [ ! -e "$CACHE/test--corrupt/main/model.safetensors.part" ] \
  && pass "a corrupted download is not kept" || fail "corrupted download kept"
D6=$CACHE/test--clip-tiny/v1
rm -rf "$D6"; mkdir -p "$D6"
cp "$TMP/zeros" "$D6/model.safetensors.part"
run "$BIN" model fetch test/clip-tiny --revision v1 -q
expect_rc 1 "a whole-length .part with wrong bytes"
expect_err "corrupted" "wrong bytes detected"
run "$BIN" model fetch test/clip-tiny --revision v1 -q
expect_rc 0 "the next run downloads it afresh"
same_files "$D6" "after a corrupted .part"

# --- redirect to another host name: the token must not follow -------------
HF_TOKEN=secret-token run "$BIN" model fetch test/redirect -q
expect_rc 0 "fetch through redirects"
same_files "$CACHE/test--redirect/main" "through redirects"
grep -q "GET /test/redirect/resolve/main/config.json range=- auth=yes status=302" "$TMP/server.log" \
  && pass "token sent to the hub" || fail "token not sent to the hub"
[ "$(grep -c 'GET /cdn/.* auth=yes' "$TMP/server.log")" -eq 0 ] && [ "$(log_count 'GET /cdn/')" -ge 7 ] \
  && pass "token not sent to the redirect target" || fail "token leaked to the redirect target"

# --- errors ------------------------------------------------------------------
run "$BIN" model fetch test/no-such-repo
expect_rc 1 "404 repository"
expect_err "repository test/no-such-repo not found" "404 message names the repository"
[ ! -e "$CACHE/test--no-such-repo" ] && pass "a failed fetch leaves no empty directory" \
  || fail "empty directory left after a 404"
run "$BIN" model fetch test/clip-tiny --revision nope
expect_rc 1 "404 revision"
expect_err "revision 'nope' not found" "404 message names the revision"
run "$BIN" model fetch test/gated
expect_rc 1 "401"
expect_err "HF_TOKEN" "401 message mentions HF_TOKEN"
expect_err "gated" "401 message mentions gated models"
run "$BIN" model fetch test/pickle
expect_rc 1 "repository without model.safetensors"
expect_err "only safetensors" "says only safetensors is supported"
expect_err "pytorch_model.bin" "mentions pytorch_model.bin"

CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
CLIPDEX_HF_ENDPOINT=http://127.0.0.1:$CLOSED run timeout 60 "$BIN" model fetch test/clip-tiny --cache-dir "$TMP/other"
expect_rc 1 "closed port"
expect_err "cannot reach http://127.0.0.1:$CLOSED .*offline" "closed port: offline-style message"
CLIPDEX_HF_ENDPOINT=http://nonexistent.invalid run timeout 60 "$BIN" model fetch test/clip-tiny --cache-dir "$TMP/other"
expect_rc 1 "unresolvable host"
expect_err "cannot reach http://nonexistent.invalid .*offline.*--model" "unresolvable host: offline message"
CLIPDEX_HF_ENDPOINT="ftp://127.0.0.1" run "$BIN" model fetch test/clip-tiny --cache-dir "$TMP/other"
expect_rc 2 "non-HTTP endpoint"

# --- list ---------------------------------------------------------------------
mkdir -p "$CACHE/test--partial/main" && head -c 500 "$FIX/config.json" >"$CACHE/test--partial/main/config.json.part"
run "$BIN" model list
expect_rc 0 "model list"
grep -Eq "^test/clip-tiny +main +17\.8 MB +complete +$DIR\$" "$TMP/out" \
  && pass "list shows test/clip-tiny main complete" || { fail "list output"; cat "$TMP/out"; }
grep -Eq "^test/clip-tiny +v1 .* complete" "$TMP/out" && pass "list shows the v1 revision" \
  || fail "list lacks v1"
grep -Eq "^test/partial +main +500 B +partial" "$TMP/out" && pass "list shows a partial download" \
  || { fail "list lacks the partial download"; cat "$TMP/out"; }
[ -z "$(find "$TMP/other" -mindepth 1 2>/dev/null)" ] && pass "failed fetches left nothing in another cache" \
  || fail "failed fetches left files: $(find "$TMP/other")"

echo "$failures failure(s)"
[ $failures -eq 0 ]
