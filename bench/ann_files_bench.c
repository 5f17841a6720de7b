/*
 * ann_files_bench.c - the IVF-over-int8 index on the data files ann_bench
 * writes (DIR/shape.u32, base.f32, queries.f32, gt.u32), with the index
 * saved to and loaded from a file, so that at 1M+ the build runs once
 * (niced, beforehand) and only the query sweep is timed, next to the
 * hnswlib and FAISS HNSW sweeps on the same files
 * (bench/ann_hnswlib.cpp --load, bench/ann_faiss.py --hnsw-load).
 *
 *   ann_files_bench --dir DIR --index FILE [--build-only] [--nlist L]
 *                   [--probes 51,102,204] [--threads T] [--exact] [--json]
 *
 * FILE missing: train and encode over base.f32 (build time measured, kept
 * in FILE.meta), write FILE (ann_file format).  FILE present: load it.
 * Then per probes: recall@10 against gt.u32, p50 / p99 ms of one query at
 * a time on all cores (up to 200 queries), queries/s with T queries in
 * flight (one per thread, all queries), bytes per image of the index, the
 * build time - ann_bench's line format.  base.f32 is mapped read-only.
 * --exact adds, measured the same way on the first 100 queries, the exact
 * float32 scan (search/topk) and the exact scan over int8 codes re-scored
 * in float32 (search/qscan, x2 and x4 candidates; its codes are encoded
 * here, the encoding time is its build time).
 */
#include "search/ann_file.h"
#include "search/ann_ivf.h"
#include "search/qscan.h"
#include "search/topk.h"
#include "common/util.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define K 10

static void die(const char *what)
{
    fprintf(stderr, "ann_files_bench: %s: %s\n", what, cdx_last_error());
    exit(1);
}

static void *map_file(const char *dir, const char *name, size_t want)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size != want) {
        fprintf(stderr, "ann_files_bench: %s missing or not %zu bytes\n", path, want);
        exit(1);
    }
    void *p = mmap(NULL, want, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct run {
    const ann_ivf *ix;           /* IVF search when set, else: */
    const qcodes_view *cv;       /* int8 scan when set, else the float32 scan */
    const quant_model *qm;
    size_t rescore;
    const cdx_rows *src;
    const float *q;
    int dim, probes;
    size_t from, to;
    topk_hit *out;   /* K per query */
} run;

static void one(const run *r, size_t q, int threads, topk_hit *h)
{
    ann_search_params p = ann_default_search_params();
    p.k = K;
    p.probes = r->probes;
    p.n_threads = threads;
    size_t n = 0;
    topk_params tp = topk_default_params();
    tp.k = K;
    tp.n_threads = threads;
    qscan_params qp = qscan_default_params();
    qp.topk = tp;
    qp.rescore = r->rescore;
    const float *x = r->q + q * r->dim;
    if (r->ix ? ann_ivf_search(r->ix, r->src, x, &p, h, &n, NULL)
              : r->cv ? qscan_search(r->cv, r->qm, r->src, x, 1, &qp, h, &n)
                      : topk_search(r->src, x, 1, &tp, h, &n))
        die("search");
    for (size_t i = n; i < K; i++) h[i] = (topk_hit){UINT64_MAX, -2};
}

static void *worker(void *arg)
{
    run *r = arg;
    for (size_t q = r->from; q < r->to; q++) one(r, q, 1, r->out + q * K);
    return NULL;
}

/* Times r on its first nq queries: p50 / p99 of one query at a time on all
 * cores (up to 200), queries/s with one query per thread in flight, recall@10
 * against gt; prints one line. */
static void measure(run *r, size_t nq, int threads, const uint32_t *gt, double *lat, const char *method,
                    const char *knob, double bytes, double build_s, int json)
{
    size_t lat_q = nq < 200 ? nq : 200;
    topk_hit h[K];
    one(r, 0, 0, h);   /* warm-up */
    for (size_t q = 0; q < lat_q; q++) {
        double t0 = cdx_now();
        one(r, q, 0, h);
        lat[q] = (cdx_now() - t0) * 1e3;
    }
    qsort(lat, lat_q, sizeof *lat, cmp_double);
    pthread_t th[64];
    run w[64];
    double t0 = cdx_now();
    for (int t = 0; t < threads; t++) {
        w[t] = *r;
        w[t].from = nq * t / threads;
        w[t].to = nq * (t + 1) / threads;
        pthread_create(&th[t], NULL, worker, &w[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double qps = nq / (cdx_now() - t0);
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                if (r->out[q * K + i].slot == gt[q * K + j]) hit++;
    double rec = (double)hit / (nq * K), p50 = lat[lat_q / 2], p99 = lat[(size_t)(lat_q * 0.99)];
    if (json)
        printf("{\"method\": \"%s\", \"knob\": \"%s\", \"queries\": %zu, \"recall10\": %.4f, "
               "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"qps\": %.1f, \"bytes_per_image\": %.0f, \"build_s\": %.2f}\n",
               method, knob, nq, rec, p50, p99, qps, bytes, build_s);
    else
        printf("%-26s %-14s recall@10 %.4f  p50 %7.3f ms  p99 %7.3f ms  %8.1f q/s  %6.0f B/img  build %.1f s\n",
               method, knob, rec, p50, p99, qps, bytes, build_s);
    fflush(stdout);
}

static ann_ivf *build(const cdx_rows *src, int nlist, const char *path, double *secs)
{
    double t0 = cdx_now();
    ann_ivf *ix;
    ann_ivf_train_params tp = ann_ivf_default_train_params();
    tp.nlist = nlist;
    if (ann_ivf_train(src, src->count, &tp, &ix)) die("train");
    ann_file_header h;
    memset(&h, 0, sizeof h);
    h.dim = src->dim;
    h.nlist = ann_ivf_nlist(ix);
    h.trained_rows = src->count;
    ann_file_writer *w;
    if (ann_file_create(path, &h, ix, &w)) die("create");
    for (uint64_t first = 0; first < src->count; first += ANN_FILE_SEGMENT) {
        ann_segment seg;
        uint64_t left = src->count - first;
        size_t m = left < ANN_FILE_SEGMENT ? (size_t)left : ANN_FILE_SEGMENT;
        if (ann_ivf_encode(ix, src, first, m, &seg) || ann_file_write_segment(w, &seg) ||
            ann_ivf_insert(ix, &seg))
            die("encode");
        ann_segment_free(&seg);
    }
    if (ann_file_commit(w)) die("commit");
    *secs = cdx_now() - t0;
    return ix;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *index = NULL, *probes = "51,102,204";
    int threads = cdx_cpu_count(), nlist = 0, json = 0, build_only = 0, bad = 0, exact = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "--dir") && hv) dir = argv[++i];
        else if (!strcmp(a, "--index") && hv) index = argv[++i];
        else if (!strcmp(a, "--probes") && hv) probes = argv[++i];
        else if (!strcmp(a, "--threads") && hv) threads = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--nlist") && hv) nlist = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--build-only")) build_only = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--exact")) exact = 1;
        else bad = 1;
    }
    if (bad || !dir || !index || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: ann_files_bench --dir DIR --index FILE [--build-only] [--nlist L] "
                        "[--probes LIST] [--threads T] [--exact] [--json]\n");
        return 2;
    }
    const uint32_t *shape = map_file(dir, "shape.u32", 12);
    size_t n = shape[0], dim = shape[1], nq = shape[2];
    const float *base = map_file(dir, "base.f32", n * dim * sizeof(float));
    const float *qs = map_file(dir, "queries.f32", nq * dim * sizeof(float));
    const uint32_t *gt = map_file(dir, "gt.u32", nq * K * sizeof(uint32_t));
    cdx_rows src = cdx_rows_array(base, n, (int)dim, dim * sizeof(float));

    char meta[4200];
    snprintf(meta, sizeof meta, "%s.meta", index);
    double build_s = 0;
    ann_ivf *ix = NULL;
    if (access(index, R_OK) == 0) {
        ann_file_header h;
        ann_file_report rep;
        if (ann_file_load(index, (int)dim, &h, &ix, &rep)) die("load");
        if (rep.rows != n) {
            fprintf(stderr, "ann_files_bench: %s covers %llu rows, not %zu\n", index, (unsigned long long)rep.rows, n);
            return 1;
        }
        FILE *f = fopen(meta, "r");
        if (!f || fscanf(f, "%lf", &build_s) != 1) build_s = 0;
        if (f) fclose(f);
    } else {
        ix = build(&src, nlist, index, &build_s);
        FILE *f = fopen(meta, "w");
        if (f) {
            fprintf(f, "%.2f\n", build_s);
            fclose(f);
        }
        fprintf(stderr, "ann_files_bench: %s built in %.1f s\n", index, build_s);
    }
    if (build_only) {
        ann_ivf_free(ix);
        return 0;
    }
    topk_hit *got = malloc(nq * K * sizeof *got);
    double *lat = malloc(nq * sizeof *lat);
    if (!got || !lat) die("out of memory");
    for (const char *p = probes; *p;) {
        char *end;
        int pr = (int)strtol(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (pr < 1) break;
        run r = {ix, NULL, NULL, 0, &src, qs, (int)dim, pr, 0, 0, got};
        char knob[64];
        snprintf(knob, sizeof knob, "probes=%d/%d", pr, ann_ivf_nlist(ix));
        measure(&r, nq, threads, gt, lat, "clipdex-ivf", knob, (double)ann_ivf_bytes(ix) / n, build_s, json);
    }
    ann_ivf_free(ix);
    if (exact) {
        /* The exact scans take ~n * dim * 4 bytes of reads per query: 100 queries. */
        size_t eq = nq < 100 ? nq : 100;
        run r = {NULL, NULL, NULL, 0, &src, qs, (int)dim, 0, 0, 0, got};
        measure(&r, eq, threads, gt, lat, "clipdex-exact-f32", "-", (double)dim * sizeof(float), 0, json);
        double t0 = cdx_now();
        quant_model *qm;
        if (quant_model_fit(&src, 50000, 0, 0, &qm)) die("quant fit");
        size_t cb = quant_code_bytes(QUANT_I8, qm->cdim), bb = QSCAN_BLOCK * (cb + sizeof(quant_aux));
        uint64_t nb = ((uint64_t)n + QSCAN_BLOCK - 1) / QSCAN_BLOCK;
        uint8_t *codes = cdx_alloc_aligned((size_t)nb * bb, 1);
        if (!codes) die("out of memory");
        if (qcodes_encode_rows(qm, QUANT_I8, &src, 0, (uint64_t)n, codes)) die("encode");
        double enc_s = cdx_now() - t0;
        qcodes_view cv = {QUANT_I8, codes, (uint64_t)n, cb, bb};
        for (size_t rs = 2; rs <= 4; rs += 2) {
            run ri = {NULL, &cv, qm, rs, &src, qs, (int)dim, 0, 0, 0, got};
            char knob[32];
            snprintf(knob, sizeof knob, "rescore=x%zu", rs);
            measure(&ri, eq, threads, gt, lat, "clipdex-exact-int8", knob, (double)bb / QSCAN_BLOCK, enc_s, json);
        }
        cdx_free_aligned(codes);
        quant_model_free(qm);
    }
    free(got);
    free(lat);
    return 0;
}
