#!/usr/bin/env bash
# e2e_eval.sh - `clipdex eval` end to end on real data with the random
# clip-tiny fixture: index coco-mini + imagenet-sample into one library, then
#  - eval captions on coco-mini (keys like "val2017/x.jpg" mapped to library
#    paths), eval zero-shot on imagenet-sample (labels from manifest.csv,
#    CLIP's templates), eval queries with generated JSONL and CSV files;
#  - every report is well-formed (JSON fields, table, SVG parses as XML);
#  - random weights give chance-level numbers (binomial / chance bounds), so
#    a leak of labels into scores would fail this test;
#  - positive controls: an image used as its own query ({"image_id": X} and
#    {"image": path} with relevant [X]) must give P@1 = 1 and MRR = 1, so the
#    harness demonstrably detects signal;
#  - usage errors and hostile query files fail with the line number.
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
S=${CLIPDEX_SHARED:-}
if [ -z "$S" ] || [ ! -d "$S/fixtures/clip-tiny" ] || [ ! -d "$S/data/coco-mini" ] \
   || [ ! -d "$S/data/imagenet-sample" ]; then
    echo "SKIP: ../shared (fixtures, coco-mini, imagenet-sample) absent"; exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
M=$S/fixtures/clip-tiny
C=$S/data/coco-mini
I=$S/data/imagenet-sample
L=$T/lib

"$BIN" index --library "$L" --model "$M" "$C/images" "$I" > "$T/index.out" 2> "$T/index.err" \
    || fail "index: $(tail -3 "$T/index.err")"
"$BIN" search --library "$L" --json -k 10000 "x" > "$T/all.json"

# ---------------------------------------------------------------- captions
"$BIN" eval captions --library "$L" --captions "$C/captions.json" > "$T/cap.txt"
grep -q "text->image" "$T/cap.txt" || fail "captions table: $(cat "$T/cap.txt")"
"$BIN" eval captions --library "$L" --captions "$C/captions.json" --json --plot "$T/cap.svg" \
    > "$T/cap.json"

# ---------------------------------------------------------------- zero-shot
# CLIP's templates file is {"classes": [...], "templates": [80]}; 10 of them
# keep the run short (500 classes x 10 prompts) and exercise the format.
python3 - "$I/clip_imagenet_classes_templates.json" "$T/templates.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
json.dump({"templates": d["templates"][:10]}, open(sys.argv[2], "w"))
PY
"$BIN" eval zero-shot --library "$L" --labels "$I/manifest.csv" --label-column clip_classname \
    --templates "$T/templates.json" --json --plot "$T/zs.svg" > "$T/zs.json"
"$BIN" eval zero-shot --library "$L" --labels "$I/manifest.csv" --label-column clip_classname \
    > "$T/zs.txt"
grep -q "top-1 accuracy" "$T/zs.txt" || fail "zero-shot table"
# labels named through a symlinked folder find the images indexed through
# the real one (the library falls back to the resolved path)
# (only when $I itself has no symlink in it: the library keeps paths as named)
if [ "$(cd "$I" && pwd -P)" = "$(python3 -c 'import os,sys; print(os.path.normpath(os.path.abspath(sys.argv[1])))' "$I")" ]; then
ln -s "$I" "$T/imgs-link"
"$BIN" eval zero-shot --library "$L" --labels "$T/imgs-link/manifest.csv" \
    --label-column clip_classname --templates "$T/templates.json" --json > "$T/zsl.json"
python3 - "$T/zs.json" "$T/zsl.json" <<'PY' || fail "zero-shot through a symlink differs"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert a["images"] == b["images"] == 500, (a["images"], b["images"])
PY
else
    echo "note: $I goes through a symlink; the symlinked-labels check is skipped"
fi
# folder labels: coco-mini's val2017/ and train2017/, and imagenet-sample/
"$BIN" eval zero-shot --library "$L" --labels-from-folders --json > "$T/zsf.json"

# ---------------------------------------------------------------- queries
python3 - "$T" "$I" <<'PY'
import csv, json, os, random, sys
T, I = sys.argv[1], sys.argv[2]
hits = json.load(open(T + "/all.json"))["results"]
ids = {h["path"]: h["id"] for h in hits}
rows = list(csv.DictReader(open(I + "/manifest.csv")))
rnd = random.Random(7)
# chance: a text query per class, relevant = that class's image (by path,
# relative to the query file's folder -> written as absolute paths here)
with open(T + "/text.jsonl", "w") as f:
    for r in rows:
        p = os.path.normpath(os.path.abspath(os.path.join(I, r["path"])))
        f.write(json.dumps({"text": "a photo of a %s." % r["clip_classname"],
                            "relevant": [p]}) + "\n")
# positive controls: the image itself, by id and by path (relevant by id)
sample = rnd.sample(rows, 20)
with open(T + "/self.jsonl", "w") as f:
    for r in sample:
        p = os.path.normpath(os.path.abspath(os.path.join(I, r["path"])))
        f.write(json.dumps({"image_id": ids[p], "relevant": [ids[p]], "id": r["wnid"]}) + "\n")
        f.write(json.dumps({"image": p, "relevant": [ids[p]]}) + "\n")
# CSV + label queries (labels from the manifest) + graded judgments
with open(T + "/q.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "text", "label", "grades"])
    for r in sample:
        w.writerow([r["wnid"], "a photo of a %s, with, commas" % r["clip_classname"],
                    r["clip_classname"], "%d=2" % ids[os.path.normpath(os.path.abspath(os.path.join(I, r["path"])))]])
PY
"$BIN" eval queries --library "$L" --queries "$T/text.jsonl" --k 1,5,10,100 --json \
    --plot "$T/q.svg" > "$T/text.json"
"$BIN" eval queries --library "$L" --queries "$T/text.jsonl" > "$T/text.txt"
grep -q "nDCG@K" "$T/text.txt" || fail "queries table"
"$BIN" eval queries --library "$L" --queries "$T/self.jsonl" --k 1,5 --json > "$T/self.json"
"$BIN" eval queries --library "$L" --queries "$T/self.jsonl" --k 1,5 --exclude-self --json \
    > "$T/self_ex.json"
"$BIN" eval queries --library "$L" --queries "$T/q.csv" --labels "$I/manifest.csv" \
    --label-column clip_classname --json > "$T/csv.json"

python3 - "$T" <<'PY'
import json, math, sys
import xml.etree.ElementTree as ET
T = sys.argv[1]
def load(n): return json.load(open(T + "/" + n))
def binom_upper(n, p, alpha=1e-6):
    """Smallest c with P(X >= c) < alpha for X ~ Binomial(n, p)."""
    pmf = [math.comb(n, k) * p**k * (1 - p)**(n - k) for k in range(n + 1)]
    tail = 0.0
    for c in range(n, -1, -1):
        tail += pmf[c]
        if tail >= alpha: return c + 1
    return 0
def check(cond, msg):
    if not cond: sys.exit("FAIL: " + msg)
    print("ok", msg)
for svg in ("cap.svg", "zs.svg", "q.svg"):
    root = ET.parse(T + "/" + svg).getroot()
    check(root.tag.endswith("svg") and len(root) > 10, svg + " is an SVG document")

cap = load("cap.json")
N, M = cap["images"], cap["captions"]
check(N == 159 and M == 795 and cap["missing_images"] == 0, "captions: 159 images, 795 captions")
for k in (1, 5, 10):
    t2i, i2t = cap["text_to_image_r@%d" % k], cap["image_to_text_r@%d" % k]
    ch = cap["chance"]["text_to_image_r@%d" % k]
    check(abs(ch - k / N) < 1e-9, "captions chance t2i R@%d = K/N" % k)
    # Captions of one image share its rank, so count hits in units of images
    # (5 captions each): at most binom_upper(N, K/N) images' captions.
    bound = binom_upper(N, k / N) / N
    check(0 <= t2i <= bound, "captions t2i R@%d = %.4f <= chance bound %.4f (chance %.4f)"
          % (k, t2i, bound, ch))
    bi = binom_upper(N, cap["chance"]["image_to_text_r@%d" % k]) / N
    check(0 <= i2t <= bi, "captions i2t R@%d = %.4f <= chance bound %.4f" % (k, i2t, bi))

zs = load("zs.json")
C, n = zs["classes_count"], zs["images"]
check(C == 500 and n == 500 and zs["templates"] == 10 and zs["missing"] == 0,
      "zero-shot: 500 images, 500 classes, 10 templates")
check(len(zs["classes"]) == C and all("top1" in c and "top5" in c for c in zs["classes"]),
      "zero-shot: per-class accuracies")
check(abs(zs["chance"]["top1"] - 1 / C) < 1e-12, "zero-shot chance = 1/C")
b1, b5 = binom_upper(n, 1 / C), binom_upper(n, 5 / C)
check(zs["top1"] * n <= b1, "zero-shot top-1 %.4f (%d correct) <= binomial bound %d of %d"
      % (zs["top1"], round(zs["top1"] * n), b1, n))
check(zs["top5"] * n <= b5, "zero-shot top-5 %.4f <= binomial bound %d/%d" % (zs["top5"], b5, n))
check(sum(c["top1"] * c["images"] for c in zs["classes"]) == round(zs["top1"] * n),
      "zero-shot per-class counts add up to the overall top-1")

f = load("zsf.json")
check(f["classes_count"] == 3 and f["images"] == f["classes"][0]["images"] + f["classes"][1]["images"]
      + f["classes"][2]["images"] and sorted(c["name"] for c in f["classes"])
      == ["imagenet-sample", "train2017", "val2017"], "zero-shot --labels-from-folders: 3 folder classes")

q = load("text.json")
check(q["queries_total"] == 500 and q["queries_judged"] == 500 and q["k"] == [1, 5, 10, 100],
      "queries: 500 judged text queries, K = 1,5,10,100")
for key in ("precision@1", "recall@10", "ndcg@100", "mrr", "map"):
    check(key in q["mean"], "queries mean has " + key)
check(len(q["queries"]) == 500 and len(q["queries"][0]["top"]) == 100, "per-query results")
lib_n = q["library_images"]
b = binom_upper(500, 1 / lib_n)
check(q["mean"]["precision@1"] * 500 <= b, "text queries P@1 %.4f <= chance bound %d/500 (1/%d)"
      % (q["mean"]["precision@1"], b, lib_n))
b100 = binom_upper(500, 100 / lib_n)
check(q["mean"]["recall@100"] * 500 <= b100, "text queries R@100 %.4f <= chance bound %.4f"
      % (q["mean"]["recall@100"], b100 / 500))
check(q["mean"]["mrr"] < 0.1 and q["mean"]["map"] < 0.1, "text queries MRR/mAP at chance")
check(q["latency_ms"]["p50"] > 0 and q["latency_ms"]["p95"] >= q["latency_ms"]["p50"],
      "latency p50/p95")

s = load("self.json")
check(s["queries_total"] == 40 and s["mean"]["precision@1"] == 1 and s["mean"]["mrr"] == 1
      and s["mean"]["map"] == 1 and s["mean"]["precision@5"] == 0.2,
      "positive control: self queries P@1 = MRR = mAP = 1, P@5 = 0.2")
check(s["queries"][0]["id"] == s["queries"][0]["id"] and s["queries"][0]["kind"] == "image_id"
      and s["queries"][1]["kind"] == "image", "query kinds and ids echoed")
x = load("self_ex.json")
check(x["queries_judged"] == 0 and x["queries_without_relevant"] == 40,
      "--exclude-self: the image itself is no longer a relevant result")

c = load("csv.json")
check(c["queries_total"] == 20 and c["queries_judged"] == 20, "CSV label queries all judged")
check(all(e["n_relevant"] == 1 and e["label"] for e in c["queries"]),
      "label queries: one image per ImageNet class in the sample")
PY

# ---------------------------------------------------------------- errors
printf '{"text": "a"}\n\n{"txt": "b"}\n' > "$T/bad.jsonl"
if "$BIN" eval queries --library "$L" --queries "$T/bad.jsonl" 2> "$T/err"; then fail "bad query file accepted"; fi
grep -q "bad.jsonl:3: unknown field \"txt\"" "$T/err" || fail "error names the line: $(cat "$T/err")"
printf '{"text": "a", "relevant": [1]}\n{"text": "b", "image_id": 3}\n' > "$T/bad2.jsonl"
if "$BIN" eval queries --library "$L" --queries "$T/bad2.jsonl" 2> "$T/err"; then fail "two inputs accepted"; fi
grep -q "bad2.jsonl:2:" "$T/err" || fail "two inputs: $(cat "$T/err")"
printf '{"text": "a", "label": "tench"}\n' > "$T/lab.jsonl"
if "$BIN" eval queries --library "$L" --queries "$T/lab.jsonl" 2> "$T/err"; then fail "label without --labels"; fi
grep -q "needs --labels" "$T/err" || fail "label without labels: $(cat "$T/err")"
set +e
"$BIN" eval zero-shot --library "$L" 2> "$T/err"; rc=$?
[ $rc -eq 2 ] || fail "zero-shot without labels: exit $rc"
"$BIN" eval nonsense 2> /dev/null; rc=$?
[ $rc -eq 2 ] || fail "unknown subcommand: exit $rc"
"$BIN" eval queries --library "$L" --queries "$T/text.jsonl" --k 0 2> /dev/null; rc=$?
[ $rc -eq 2 ] || fail "--k 0: exit $rc"
"$BIN" eval captions --library "$T/nolib" --captions "$C/captions.json" 2> "$T/err"; rc=$?
[ $rc -eq 1 ] || fail "missing library: exit $rc"
set -e
"$BIN" eval --help | grep -q "zero-shot" || fail "--help"
echo "e2e_eval: all checks passed"
