#!/bin/bash
# e2e_crash.sh - SIGKILL `clipdex index` of ../shared/data/imagenet-sample
# (500 JPEGs + 3 non-image files) at 100 random moments (CRASH_KILLS).  After every
# kill: `clipdex check` passes, and every path an earlier run reported
# (added/moved/duplicate events are emitted only after their commit) is in
# the catalog.  A final uninterrupted run ends with exactly 500 images, no
# duplicate paths or contents, and info's counts agreeing.
# Uses the tiny fixture model so embedding is cheap.  Skips (77) without
# ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
DATA=$SHARED/data/imagenet-sample
MODEL=$SHARED/fixtures/clip-tiny
[ -d "$DATA" ] && [ -d "$MODEL" ] || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
KILLS=${CRASH_KILLS:-100}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
L=$T/lib
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" init --library "$L" --model "$MODEL" >/dev/null || fail "init"

# Reported paths so far (union over all killed runs' logs) must all be catalogued.
verify_reported() {
    python3 - "$L/catalog.db" "$T"/log.* <<'PY' || fail "a reported entry is missing after kill $1"
import json, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
have = {r[0] for r in db.execute("SELECT path FROM images")}
missing = []
for log in sys.argv[2:]:
    for line in open(log, errors="replace"):
        try:
            ev = json.loads(line)
        except ValueError:
            continue   # the line being written when the process died
        if ev.get("event") in ("added", "moved", "duplicate") and ev["path"] not in have:
            missing.append(ev["path"])
if missing:
    print("reported but not in the catalog:", missing[:5], len(missing))
    sys.exit(1)
PY
}

RANDOM=${CRASH_SEED:-$$}
echo "seed/kills: ${CRASH_SEED:-$$} $KILLS"
early=0; mid=0; done_runs=0   # kills before the run's first commit, after it; runs that finished first
for i in $(seq 1 "$KILLS"); do
    "$BIN" index --library "$L" --json --batch 8 "$DATA" >"$T/log.$i" 2>"$T/err.$i" &
    pid=$!
    # Every 4th kill at a random moment from start (often before the first
    # commit); the others a random 0..900 ms after this run's first commit
    # (the start-up time varies a lot on a loaded machine).
    if [ $((i % 4)) -ne 0 ]; then
        for _ in $(seq 1 200); do
            grep -q '"event": "added"' "$T/log.$i" 2>/dev/null && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        ms=$((RANDOM % 900))
    else
        ms=$((RANDOM % 1500))
    fi
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    if ! kill -0 "$pid" 2>/dev/null; then done_runs=$((done_runs + 1))
    elif grep -q '"event": "added"' "$T/log.$i" 2>/dev/null; then mid=$((mid + 1))
    else early=$((early + 1)); fi
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    "$BIN" check --library "$L" >"$T/check.$i" 2>&1 || { cat "$T/check.$i"; fail "check after kill $i (${ms} ms)"; }
    verify_reported "$i"
    echo "kill $i at ${ms} ms: $(tail -1 "$T/check.$i")"
    # Once complete, forget 200 entries so later kills hit work again (their
    # vectors become orphans the next run adopts instead of re-embedding).
    if grep -q '^ok: 500 images' "$T/check.$i" && [ "$i" -lt "$KILLS" ]; then
        ls "$DATA"/*.JPEG | shuf -n 200 --random-source=<(yes "$i") | xargs "$BIN" rm --library "$L" >/dev/null ||
            fail "rm"
        rm -f "$T"/log.*   # those reports are superseded by the removal
    fi
done

echo "kill -9 campaign: $KILLS kills: $mid after the run's first commit, $early before it, $done_runs runs had already finished; check passed and nothing reported was lost after every one"
[ $((mid + early + done_runs)) -eq "$KILLS" ] || fail "kill count"
"$BIN" index --library "$L" --json "$DATA" >"$T/final" 2>"$T/final.err" || { cat "$T/final.err"; fail "final index"; }
tail -1 "$T/final"
"$BIN" check --library "$L" || fail "final check"
python3 - "$L/catalog.db" "$T/final" <<'PY' || fail "final state"
import json, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
n, paths, shas = db.execute("SELECT count(*), count(DISTINCT path), count(DISTINCT sha256) FROM images").fetchone()
contents = db.execute("SELECT count(*) FROM contents").fetchone()[0]
s = json.loads(open(sys.argv[2]).read().splitlines()[-1])
print("images", n, "distinct paths", paths, "distinct contents", shas, "content rows", contents)
assert n == 500 and paths == 500 and shas == 500 and contents == 500, "expected exactly 500"
assert s["event"] == "summary" and s["failed"] == 0 and s["skipped"] == 3, s   # README.md, .json, .csv are skipped
assert s["added"] + s["unchanged"] == 500 - s["moved"] - s["duplicates"], s
PY
info=$("$BIN" info --library "$L" --json) || fail "info"
echo "$info"
echo "$info" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["images"]==500 and d["vectors"]==500, d' || fail "info counts"
# A run after the final one changes nothing.
"$BIN" index --library "$L" --json "$DATA" | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["unchanged"]==500 and d["added"]==0, d' || fail "rerun not unchanged"
echo "PASS"
