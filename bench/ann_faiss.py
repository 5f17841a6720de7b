#!/usr/bin/env python3
"""ann_faiss.py - FAISS (Debian python3-faiss) on the data ann_bench wrote.

Reads DIR/shape.u32 (n, dim, nq), base.f32, queries.f32, gt.u32 (exact
top-10 slots per query) and prints, for IndexHNSWFlat M=32, IndexIVFFlat,
IndexIVFScalarQuantizer SQ8 and IndexIVFPQ (inner product, the same list
count as clipdex) at each knob setting: recall@10, p50/p99 ms of one query
at a time (FAISS's own threads: all cores), queries/s of one batched call
of all queries on all cores (FAISS's fastest mode for many queries), index
bytes per image (serialised size) and build time - one line each, in
ann_bench's format.  Exits 3 when faiss is not installed.

The HNSW graph takes long to build at 1M: --hnsw-save FILE writes it (its
build time to FILE.meta), --hnsw-build-only stops there, and --hnsw-load
FILE reads it back for the ef sweep (--hnsw-m / --hnsw-efc set the build).
"""
import argparse
import json
import sys
import time

try:
    import faiss
    import numpy as np
except ImportError as e:
    print("ann_faiss.py: %s (apt-get install python3-faiss python3-numpy)" % e, file=sys.stderr)
    sys.exit(3)

K = 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nlist", type=int, default=256)
    ap.add_argument("--probes", default="4,8,16,32,64")
    ap.add_argument("--hnsw-ef", default="16,32,64,128,256")
    ap.add_argument("--only", default="hnsw,ivfflat,ivfsq8,ivfpq")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--hnsw-efc", type=int, default=40)   # FAISS's default
    ap.add_argument("--hnsw-save")
    ap.add_argument("--hnsw-load")
    ap.add_argument("--hnsw-build-only", action="store_true")
    ap.add_argument("--base", help="read the base vectors from this file (mapped) instead of DIR/base.f32")
    ap.add_argument("--base-offset", type=int, default=0)
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    n, dim, nq = np.fromfile(a.dir + "/shape.u32", dtype=np.uint32)
    if a.base:   # larger than memory: mapped, added in chunks (see add())
        xb = np.memmap(a.base, dtype=np.float32, mode="r", offset=a.base_offset, shape=(int(n), int(dim)))
    else:
        xb = np.fromfile(a.dir + "/base.f32", dtype=np.float32).reshape(int(n), int(dim))
    xq = np.fromfile(a.dir + "/queries.f32", dtype=np.float32).reshape(int(nq), int(dim))
    gt = np.fromfile(a.dir + "/gt.u32", dtype=np.uint32).reshape(int(nq), K).astype(np.int64)
    probes = [int(p) for p in a.probes.split(",") if p]
    efs = [int(e) for e in a.hnsw_ef.split(",") if e]
    ip = faiss.METRIC_INNER_PRODUCT

    def report(method, knob, index, build_s, nbytes=None):
        lat = []
        for i in range(min(200, int(nq))):
            t0 = time.perf_counter()
            index.search(xq[i:i + 1], K)
            lat.append((time.perf_counter() - t0) * 1e3)
        lat.sort()
        t0 = time.perf_counter()
        _, I = index.search(xq, K)
        qps = nq / (time.perf_counter() - t0)
        hits = sum(len(set(I[q]) & set(gt[q])) for q in range(int(nq)))
        r = {"method": method, "knob": knob, "n": int(n), "dim": int(dim),
             "recall10": hits / (nq * K), "p50_ms": lat[len(lat) // 2],
             "p99_ms": lat[int(len(lat) * 0.99)], "qps": qps,
             "bytes_per_image": (nbytes or index_bytes(index)) / n, "build_s": build_s}
        if a.json:
            print(json.dumps(r))
        else:
            print("%-26s %-14s recall@10 %.4f  p50 %7.3f ms  p99 %7.3f ms  %8.1f q/s  %6.0f B/img  build %.1f s"
                  % (method, knob, r["recall10"], r["p50_ms"], r["p99_ms"], qps, r["bytes_per_image"], build_s))
        sys.stdout.flush()

    def index_bytes(index):
        if n <= 2000000 or not hasattr(index, "code_size"):
            return len(faiss.serialize_index(index))
        # serialising 10M codes would need their size again in memory
        return int(n) * (index.code_size + 8) + index.nlist * int(dim) * 4

    def add(index):
        for i in range(0, int(n), 262144):
            index.add(np.ascontiguousarray(xb[i:i + 262144]))

    only = a.only.split(",")
    if "hnsw" in only:
        method = "faiss-hnswflat-m%d-efc%d" % (a.hnsw_m, a.hnsw_efc)
        if a.hnsw_load:
            index = faiss.read_index(a.hnsw_load)
            with open(a.hnsw_load + ".meta") as f:
                meta = f.read().split()
            b, method = float(meta[0]), meta[1]
            if index.ntotal != n:
                sys.exit("ann_faiss.py: %s holds %d vectors, not %d" % (a.hnsw_load, index.ntotal, n))
        else:
            t0 = time.perf_counter()
            index = faiss.IndexHNSWFlat(int(dim), a.hnsw_m, ip)
            index.hnsw.efConstruction = a.hnsw_efc
            for i in range(0, int(n), 100000):
                index.add(xb[i:i + 100000])
                print("ann_faiss.py: HNSW %d of %d added, %.0f s" % (index.ntotal, n, time.perf_counter() - t0),
                      file=sys.stderr, flush=True)
            b = time.perf_counter() - t0
            if a.hnsw_save:
                faiss.write_index(index, a.hnsw_save)
                with open(a.hnsw_save + ".meta", "w") as f:
                    f.write("%.2f %s\n" % (b, method))
        if not a.hnsw_build_only:
            nbytes = len(faiss.serialize_index(index))   # once: a 1M graph is 2 GB
            for ef in efs:
                index.hnsw.efSearch = ef
                report(method, "ef=%d" % ef, index, b, nbytes)
        del index
        if a.hnsw_build_only:
            return
    for name, make in (("ivfflat", lambda q: faiss.IndexIVFFlat(q, int(dim), a.nlist, ip)),
                       ("ivfsq8", lambda q: faiss.IndexIVFScalarQuantizer(
                           q, int(dim), a.nlist, faiss.ScalarQuantizer.QT_8bit, ip)),
                       ("ivfpq", lambda q: faiss.IndexIVFPQ(q, int(dim), a.nlist, int(dim) // 8, 8, ip)),
                       # 10M: the lists' routing through an HNSW of the centroids (FAISS's
                       # recipe for large n: assignment without a flat scan of every centroid)
                       # and 8 k-means iterations like clipdex's
                       ("ivfsq8hnsw", lambda q: faiss.index_factory(int(dim), "IVF%d_HNSW32,SQ8" % a.nlist, ip))):
        if name not in only:
            continue
        t0 = time.perf_counter()
        quant = faiss.IndexFlatIP(int(dim))
        index = make(quant)
        if name == "ivfsq8hnsw":
            index.cp.niter = 8
        train = xb[np.sort(np.random.default_rng(1).choice(int(n), min(int(n), a.nlist * 40), replace=False))]
        index.train(train)
        add(index)
        b = time.perf_counter() - t0
        for p in probes:
            index.nprobe = p
            report("faiss-" + name + ("-m%d" % (int(dim) // 8) if name == "ivfpq" else ""),
                   "probes=%d/%d" % (p, a.nlist), index, b)
        del index, quant


if __name__ == "__main__":
    main()
