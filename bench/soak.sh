#!/bin/bash
# soak.sh - mixed load against one `clipdex serve` for a while: searches of
# every kind (text GET/POST, semantic, keyword, hybrid, image_id, vector,
# parts, image upload), uploads, deletions, thumbnails, image records and
# lists, stats and metrics, from several client threads.  Checks:
#   - no 5xx answer, no dropped connection (4xx only where expected;
#     uploads and deletions run one at a time, beside the searches, so that
#     the script knows which images must be there);
#   - RSS of the server sampled every --interval seconds: the curve is
#     printed as a table and written as CSV (--csv); the run fails when the
#     RSS of the last quarter exceeds the largest of the first half by more
#     than --max-growth-mb (default 64);
#   - at the end, every upload still present is found by a search for its
#     own vector (top hit) and has its record; every deletion is gone (404
#     for the record and the image_id search, absent from a k=1000 search).
#
# Usage: bench/soak.sh [--duration S] [--clients N] [--interval S]
#                      [--model DIR] [--images DIR] [--csv FILE] [--keep DIR]
# Defaults: 1800 s (30 min), 4 clients, 10 s, the clip-tiny model and
# ../shared/data/imagenet-sample (uploads), ../shared/data/formats (the
# initial library).  $CLIPDEX_BIN (default build/clipdex) is the binary.
# Exit status: 0 all checks passed, 1 a check failed, 2 usage.
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CLIPDEX_BIN:-$HERE/build/clipdex}
SHARED=${CLIPDEX_SHARED:-$HERE/../shared}
DURATION=1800 CLIENTS=4 INTERVAL=10 GROWTH=64
MODEL=$SHARED/fixtures/clip-tiny
IMAGES=$SHARED/data/imagenet-sample
BASE=$SHARED/data/formats
CSV= KEEP=
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --max-growth-mb) GROWTH=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --csv) CSV=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "soak.sh: no binary $BIN (set CLIPDEX_BIN)" >&2; exit 2; }
[ -d "$MODEL" ] && [ -d "$IMAGES" ] && [ -d "$BASE" ] || { echo "soak.sh: model/images not found under $SHARED" >&2; exit 2; }
T=${KEEP:-$(mktemp -d)}
mkdir -p "$T"
SPID=
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; [ -z "$KEEP" ] && rm -rf "$T"; }
trap cleanup EXIT

"$BIN" index --library "$T/lib" --model "$MODEL" "$BASE" >/dev/null 2>&1 || { echo "soak.sh: index failed" >&2; exit 1; }
"$BIN" serve --library "$T/lib" --port 0 --access-log off >"$T/serve.out" 2>"$T/serve.err" &
SPID=$!
for _ in $(seq 1 100); do grep -q '^listening on' "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$T/serve.out" | head -1)
[ -n "$URL" ] || { cat "$T/serve.err"; echo "soak.sh: serve did not start" >&2; exit 1; }

python3 - "$URL" "$SPID" "$DURATION" "$CLIENTS" "$INTERVAL" "$GROWTH" "$IMAGES" "${CSV:-$T/rss.csv}" <<'EOF'
import json, os, random, sys, threading, time, urllib.error, urllib.request, uuid

url, pid, duration, clients, interval, growth, images, csv_path = sys.argv[1:]
pid, duration, clients, interval, growth = int(pid), float(duration), int(clients), float(interval), float(growth)
files = sorted(os.path.join(images, f) for f in os.listdir(images) if f.lower().endswith((".jpeg", ".jpg", ".png")))
lock = threading.Lock()
wlock = threading.Lock()               # uploads and deletions, one at a time (searches run beside them)
live, deleted = set(), set()           # uploaded ids still present / deleted
base_ids = []
counts, errors = {}, []
next_file = [0]
stop = time.monotonic() + duration

def req(method, path, body=None, ctype=None):
    r = urllib.request.Request(url + path, data=body, method=method)
    if ctype: r.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:            # dropped connection, timeout
        return 0, str(e).encode()

def multipart(name, path):
    b = uuid.uuid4().hex
    data = open(path, "rb").read()
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x.jpg\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, "multipart/form-data; boundary=" + b

def note(kind, status, body, ok=(200,)):
    with lock:
        counts[kind] = counts.get(kind, 0) + 1
        if status not in ok:
            errors.append((kind, status, body[:200].decode("utf-8", "replace")))

st, b = req("GET", "/api/images?limit=100")
base_ids = [r["id"] for r in json.loads(b)["images"]]
st, b = req("GET", "/api/search?q=photo&k=1")
dim = None
words = ["a photo of a cat", "a dog", "a rocket", "coffee", "an astronaut", "a horse", "fish", "red car"]

def pick_id():
    with lock:
        pool = base_ids + sorted(live)
    return random.choice(pool)

def one():
    k = random.randrange(16)
    w = random.choice(words)
    if k == 0:
        st, b = req("GET", "/api/search?q=" + urllib.request.quote(w) + "&k=5"); note("search_get", st, b)
    elif k == 1:
        st, b = req("POST", "/api/search", json.dumps({"text": w, "mode": "semantic", "k": 10}).encode(), "application/json"); note("search_semantic", st, b)
    elif k == 2:
        st, b = req("POST", "/api/search", json.dumps({"text": w.split()[-1], "mode": "keyword"}).encode(), "application/json"); note("search_keyword", st, b)
    elif k == 3:
        st, b = req("POST", "/api/search", json.dumps({"text": w, "mode": "hybrid"}).encode(), "application/json"); note("search_hybrid", st, b)
    elif k == 4:
        i = pick_id()
        st, b = req("GET", f"/api/search?image_id={i}&k=5")
        note("search_image_id", st, b, (200, 404))     # 404: deleted meanwhile
    elif k == 5:
        v = [random.gauss(0, 1) for _ in range(dim)]
        st, b = req("POST", "/api/search", json.dumps({"vector": v, "k": 5}).encode(), "application/json"); note("search_vector", st, b)
    elif k == 6:
        body = {"parts": [{"text": w, "weight": 1}, {"image_id": pick_id(), "weight": 0.5}], "mode": "semantic"}
        st, b = req("POST", "/api/search", json.dumps(body).encode(), "application/json"); note("search_parts", st, b, (200, 404))
    elif k == 7:
        body, ct = multipart("image", random.choice(files))
        st, b = req("POST", "/api/search", body, ct); note("search_upload", st, b)
    elif k == 8:
        st, b = req("GET", f"/api/images/{pick_id()}/thumb?size=128"); note("thumbnail", st, b, (200, 404))
    elif k == 9:
        st, b = req("GET", "/metrics"); note("metrics", st, b)
    elif k == 10:
        st, b = req("GET", "/api/stats"); note("stats", st, b)
    elif k == 11:
        st, b = req("GET", f"/api/images?limit=20&offset={random.randrange(50)}"); note("list", st, b)
    elif k == 12:
        st, b = req("GET", f"/api/images/{pick_id()}"); note("record", st, b, (200, 404))
    elif k in (13, 14):
        with lock:
            f = files[next_file[0] % len(files)]
            next_file[0] += 1
        body, ct = multipart("image", f)
        with wlock:   # an upload answering an existing id must not race its deletion
            st, b = req("POST", "/api/images", body, ct)
            note("upload", st, b, (200, 201))
            if st in (200, 201):
                i = json.loads(b)["id"]
                with lock:
                    if i not in base_ids:
                        live.add(i)
                        deleted.discard(i)
    else:
        with wlock:
            with lock:
                i = random.choice(sorted(live)) if len(live) > 3 else None
                if i is not None: live.discard(i)
            if i is None: return
            st, b = req("DELETE", f"/api/images/{i}")
            note("delete", st, b)
            with lock:
                (deleted.add(i) if st == 200 else live.add(i))

def client():
    while time.monotonic() < stop:
        one()

def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"): return int(l.split()[1])
    return 0

# the model's dimension: the self-search of a base image needs none, a vector query does
st, b = req("GET", "/api/stats")
stats = json.loads(b)
dim = stats.get("dim") or stats.get("model", {}).get("dim") or 512
t0 = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads: t.start()
samples = []
csv = open(csv_path, "w")               # written as it goes: a long run can be watched
csv.write("seconds,rss_kb,requests\n")
def sample():
    with lock: n = sum(counts.values())
    samples.append((round(time.monotonic() - t0, 1), rss_kb(), n))
    csv.write("%s,%d,%d\n" % samples[-1])
    csv.flush()
while any(t.is_alive() for t in threads):
    sample()
    time.sleep(min(interval, max(0.1, stop - time.monotonic() + 0.1)))
for t in threads: t.join()
sample()
csv.close()
print("%8s %10s %9s" % ("seconds", "rss_MB", "requests"))
step = max(1, len(samples) // 30)
for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
    print("%8.1f %10.1f %9d" % (s[0], s[1] / 1024, s[2]))

fail = []
# end checks: uploads searchable, deletions gone
for i in sorted(live):
    st, b = req("GET", f"/api/search?image_id={i}&k=1&mode=semantic")
    if st != 200 or not json.loads(b)["results"] or json.loads(b)["results"][0]["id"] != i:
        # an identical image (same content) would tie: accept it when the score is 1
        r = json.loads(b)["results"] if st == 200 else []
        if not (r and r[0]["score"] > 0.9999):
            fail.append(f"upload {i} not found by its own vector: {st} {b[:200]!r}")
    st, b = req("GET", f"/api/images/{i}")
    if st != 200: fail.append(f"upload {i}: record answered {st}")
st, b = req("POST", "/api/search", json.dumps({"text": "a photo", "k": 1000, "mode": "semantic"}).encode(), "application/json")
found = {r["id"] for r in json.loads(b)["results"]} if st == 200 else set()
for i in sorted(deleted):
    s1, _ = req("GET", f"/api/images/{i}")
    s2, _ = req("GET", f"/api/search?image_id={i}")
    if s1 != 404 or s2 != 404 or i in found:
        fail.append(f"deleted {i} still there (record {s1}, image_id search {s2}, in results {i in found})")
half = [s[1] for s in samples[: max(1, len(samples) // 2)]]
last = [s[1] for s in samples[len(samples) * 3 // 4:]]
grow_mb = (max(last) - max(half)) / 1024
total = sum(counts.values())
five = [e for e in errors if e[1] == 0 or e[1] >= 500]
print(f"requests: {total} in {samples[-1][0]:.0f} s ({total / max(samples[-1][0], 1):.1f}/s); "
      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
print(f"uploads live at the end: {len(live)}, deleted: {len(deleted)}; unexpected answers: {len(errors)}, "
      f"5xx or dropped: {len(five)}")
print(f"RSS: first half max {max(half) / 1024:.1f} MB, last quarter max {max(last) / 1024:.1f} MB "
      f"(growth {grow_mb:+.1f} MB, limit {growth:.0f}); CSV: {csv_path}")
for e in errors[:20]: print("  unexpected:", e)
if five: fail.append(f"{len(five)} answers were 5xx or dropped connections")
if errors and not five: fail.append(f"{len(errors)} unexpected 4xx answers")
if grow_mb > growth: fail.append(f"RSS grew by {grow_mb:.1f} MB")
for f in fail[:20]: print("FAIL:", f)
sys.exit(1 if fail else 0)
EOF
rc=$?
kill "$SPID"; wait "$SPID"; src=$?; SPID=
[ $src = 0 ] || { echo "soak.sh: the server exited with status $src"; tail -5 "$T/serve.err"; exit 1; }
[ $rc = 0 ] && "$BIN" check --library "$T/lib" >/dev/null || { echo "soak.sh: FAILED"; exit 1; }
echo "soak.sh: PASS (check passes on the library afterwards)"
