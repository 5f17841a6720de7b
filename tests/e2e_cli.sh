#!/usr/bin/env bash
# e2e_cli.sh - the clipdex binary's global behaviour: help, version, unknown
# commands and per-command --help, with the documented exit statuses
# (0 ok, 1 failure, 2 usage error).
set -u
bin=${CLIPDEX_BIN:?CLIPDEX_BIN is not set}
fail=0
pass=0
expect() { # expect STATUS DESCRIPTION -- CMD...
  local want=$1 desc=$2; shift 3
  "$@" >/tmp/e2e_cli.out 2>/tmp/e2e_cli.err
  local got=$?
  if [ "$got" -eq "$want" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: $desc: exit $got, want $want"; cat /tmp/e2e_cli.err; fi
}
expect 0 "--help" -- "$bin" --help
grep -q "usage: clipdex" /tmp/e2e_cli.out || { fail=$((fail + 1)); echo "FAIL: --help prints no usage"; }
expect 0 "--version" -- "$bin" --version
grep -q "^clipdex [0-9]" /tmp/e2e_cli.out || { fail=$((fail + 1)); echo "FAIL: --version output"; }
expect 2 "no command" -- "$bin"
expect 2 "unknown command" -- "$bin" frobnicate
grep -q "unknown command 'frobnicate'" /tmp/e2e_cli.err || { fail=$((fail + 1)); echo "FAIL: unknown command message"; }
for c in tokenize preprocess embed model; do
  expect 0 "$c --help" -- "$bin" "$c" --help
  grep -qi "usage" /tmp/e2e_cli.out || { fail=$((fail + 1)); echo "FAIL: $c --help prints no usage"; }
  expect 2 "$c with an unknown option" -- "$bin" "$c" --no-such-option
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
