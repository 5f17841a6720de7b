#!/usr/bin/env bash
# e2e_tokenize.sh - drive `clipdex tokenize` and compare with the reference
# ids of the clip-tiny fixture (expected/tokenizer_ids.i32), plus the error
# paths and exit codes (0 ok, 1 failure, 2 usage).
set -u
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN must point at the clipdex binary}
FIX=${CLIPDEX_SHARED:-/nonexistent}/fixtures/clip-tiny
if [ ! -f "$FIX/vocab.json" ]; then
    echo "SKIP: fixture absent ($FIX)"
    exit 77
fi
TMP=$(mktemp -d /tmp/cdx_e2e_tok.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail=0
check() {  # check <description> <condition...>
    local what=$1; shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# 1. Texts through the binary vs. the fixture rows, incl. a dash text after
#    "--", the empty text, a truncated text, special literals and non-ASCII.
python3 - "$BIN" "$FIX" <<'PY' || fail=1
import struct, subprocess, sys
bin_, fix = sys.argv[1], sys.argv[2]
texts = [bytes.fromhex(l.rstrip('\n')).decode('utf-8')
         for l in open(fix + '/expected/tokenizer_texts.hexlines')]
raw = open(fix + '/expected/tokenizer_ids.i32', 'rb').read()
row = lambda i: list(struct.unpack_from('<77i', raw, i * 77 * 4))
want = ['a photo of a cat', '--', '', '-42', 'Hello World!', '<|endoftext|>',
        'İstanbul', 'hello <|endoftext|> world', '&amp;amp;', 'a\tb', '😀']
want.append(next(t for t in texts if t.startswith('A very long caption')))
idx = [texts.index(t) for t in want]
bad = 0
def run(args, texts_, label, expect=None):
    global bad
    p = subprocess.run([bin_, 'tokenize'] + args + texts_, capture_output=True)
    texts_ = expect or texts_
    lines = p.stdout.decode().splitlines()
    if p.returncode != 0 or len(lines) != len(texts_):
        print('FAIL %s: exit %d, %d lines, stderr %r' % (label, p.returncode, len(lines), p.stderr))
        bad += 1
        return
    for t, line in zip(texts_, lines):
        exp = '[' + ','.join(str(v) for v in row(texts.index(t))) + ']'
        if line != exp:
            print('FAIL %s: text %r\n  want %s\n  got  %s' % (label, t, exp, line))
            bad += 1
    print('ok   %s (%d texts)' % (label, len(texts_)))
run(['--model', fix, '--'], want, 'fixture texts after --')
run(['--model=' + fix], ['a photo of a cat', 'Hello World!'], '--model= form')
run(['a photo of a cat', '--model', fix], ['NASA'], 'options after texts',
    ['a photo of a cat', 'NASA'])
sys.exit(1 if bad else 0)
PY

# 2. Context length from config.json (text_config.max_position_embeddings).
mkdir -p "$TMP/ctx16"
ln -s "$FIX/vocab.json" "$TMP/ctx16/vocab.json"
ln -s "$FIX/merges.txt" "$TMP/ctx16/merges.txt"
echo '{"text_config": {"max_position_embeddings": 16}}' > "$TMP/ctx16/config.json"
out=$("$BIN" tokenize --model "$TMP/ctx16" "a a a a a a a a a a a a a a a a a a a a")
check "context length 16 from config.json" \
    test "$out" = "[49406,320,320,320,320,320,320,320,320,320,320,320,320,320,320,49407]"
echo '{"text_config": {"max_position_embeddings": "77"}}' > "$TMP/ctx16/config.json"
"$BIN" tokenize --model "$TMP/ctx16" x >/dev/null 2>"$TMP/err"; rc=$?
check "bad max_position_embeddings -> exit 1" test $rc -eq 1
check "  ... message names config.json" grep -q "config.json" "$TMP/err"

# 3. Error paths.
"$BIN" tokenize --model "$TMP/does-not-exist" hello >"$TMP/out" 2>"$TMP/err"; rc=$?
check "missing model dir -> exit 1" test $rc -eq 1
check "  ... 'clipdex: error:' naming the directory" grep -q "clipdex: error:.*does-not-exist" "$TMP/err"
check "  ... nothing on stdout" test ! -s "$TMP/out"
"$BIN" tokenize --model "$FIX" >/dev/null 2>"$TMP/err"; rc=$?
check "no texts -> exit 2" test $rc -eq 2
"$BIN" tokenize hello >/dev/null 2>&1; rc=$?
check "no --model -> exit 2" test $rc -eq 2
"$BIN" tokenize --model "$FIX" -x >/dev/null 2>&1; rc=$?
check "unknown option -> exit 2" test $rc -eq 2
"$BIN" tokenize --model >/dev/null 2>&1; rc=$?
check "--model without value -> exit 2" test $rc -eq 2
"$BIN" tokenize --help >"$TMP/out" 2>&1; rc=$?
check "--help -> exit 0 with usage" test $rc -eq 0
check "  ... usage text" grep -q "usage: clipdex tokenize" "$TMP/out"
mkdir -p "$TMP/badvocab"
echo '{"a": 0,' > "$TMP/badvocab/vocab.json"
echo '#version: 0.2' > "$TMP/badvocab/merges.txt"
"$BIN" tokenize --model "$TMP/badvocab" hello >/dev/null 2>"$TMP/err"; rc=$?
check "malformed vocab.json -> exit 1" test $rc -eq 1
check "  ... message names vocab.json" grep -q "vocab.json" "$TMP/err"
mkdir -p "$TMP/empty"
"$BIN" tokenize --model "$TMP/empty" hello >/dev/null 2>"$TMP/err"; rc=$?
check "directory without vocabulary -> exit 1" test $rc -eq 1

exit $fail
