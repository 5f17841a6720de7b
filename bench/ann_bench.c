/*
 * ann_bench.c - the approximate index against the exact scan and against
 * FAISS and hnswlib, on the same generated CLIP-like data in the same run.
 *
 *   ann_bench [--n N] [--dim D] [--nq Q] [--probes 8,16,32,64] [--nlist L] [--threads T]
 *             [--dir DIR] [--no-faiss] [--faiss-only hnsw,ivfflat,ivfsq8,ivfpq]
 *             [--no-hnswlib] [--hnsw-ef LIST]
 *             [--crossover] [--json]
 *
 * Data (bench/ann_synth.h): clustered with Zipf-sized clusters, a shared
 * mean direction, decaying variance, text-like queries from a shifted
 * distribution, unit length.  Ground truth: the exact top-10 (search/topk).
 * For every method and knob setting it prints recall@10 against exact,
 * p50 / p99 latency of one query at a time using all cores, queries/s with
 * T queries in flight (one per thread), resident bytes per image of the
 * index, and build time.  Competitors run as child processes on the same
 * files written to DIR: bench/ann_faiss.py (python3-faiss: IndexHNSWFlat
 * M=32, IndexIVFFlat, IndexIVFScalarQuantizer SQ8, IndexIVFPQ) and
 * bench/ann_hnswlib.cpp (libhnswlib-dev, compiled here with g++ -O3
 * -march=native); each is skipped with a message when missing.
 * --crossover measures where the index starts to beat the exact scan (the
 * library's ann_min_rows).  Every line of --json output is one JSON object.
 */
#include "search/ann_ivf.h"
#include "search/topk.h"
#include "common/util.h"

#include "ann_synth.h"

#include <errno.h>
#include <libgen.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define K 10
#define MAX_KNOBS 16

static int json;
static int T;

static void die(const char *what)
{
    fprintf(stderr, "ann_bench: %s: %s\n", what, cdx_last_error());
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    const char *method;
    char knob[64];
    double recall, p50, p99, qps, bytes, build_s;
} result;

static void print_result(const result *r, uint64_t n, int dim)
{
    if (json)
        printf("{\"method\": \"%s\", \"knob\": \"%s\", \"n\": %llu, \"dim\": %d, \"recall10\": %.4f, "
               "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"qps\": %.1f, \"bytes_per_image\": %.0f, "
               "\"build_s\": %.2f}\n", r->method, r->knob, (unsigned long long)n, dim, r->recall,
               r->p50, r->p99, r->qps, r->bytes, r->build_s);
    else
        printf("%-26s %-14s recall@10 %.4f  p50 %7.3f ms  p99 %7.3f ms  %8.1f q/s  %6.0f B/img  build %.1f s\n",
               r->method, r->knob, r->recall, r->p50, r->p99, r->qps, r->bytes, r->build_s);
    fflush(stdout);
}

/* ---------------------------------------------------------------- searchers */

typedef struct bench_ctx {
    const cdx_rows *src;
    const float *queries;
    int dim;
    size_t nq;
    const ann_ivf *ix;      /* NULL = exact scan */
    int probes;
    int threads_per_query;
    topk_hit *out;          /* nq x K */
} bench_ctx;

static void one_query(const bench_ctx *b, size_t q, int threads, topk_hit *h)
{
    size_t n = 0;
    cdx_result r;
    if (b->ix) {
        ann_search_params p = ann_default_search_params();
        p.k = K;
        p.probes = b->probes;
        p.n_threads = threads;
        r = ann_ivf_search(b->ix, b->src, b->queries + q * b->dim, &p, h, &n, NULL);
    } else {
        topk_params p = topk_default_params();
        p.k = K;
        p.n_threads = threads;
        r = topk_search(b->src, b->queries + q * b->dim, 1, &p, h, &n);
    }
    if (r) die("search");
    for (size_t i = n; i < K; i++) h[i] = (topk_hit){UINT64_MAX, -2};
}

typedef struct worker {
    const bench_ctx *b;
    size_t from, to;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (size_t q = w->from; q < w->to; q++) one_query(w->b, q, 1, w->b->out + q * K);
    return NULL;
}

/* Latency (one query at a time, all cores) over up to lat_q queries, then
 * throughput with T threads each running its share of all queries (results
 * kept for recall). */
static void measure(bench_ctx *b, size_t lat_q, double *p50, double *p99, double *qps)
{
    double *lat = malloc(lat_q * sizeof *lat);
    topk_hit h[K];
    for (size_t q = 0; q < lat_q; q++) {
        double t0 = cdx_now();
        one_query(b, q % b->nq, b->threads_per_query, h);
        lat[q] = (cdx_now() - t0) * 1e3;
    }
    qsort(lat, lat_q, sizeof *lat, cmp_double);
    *p50 = lat[lat_q / 2];
    *p99 = lat[(size_t)(lat_q * 0.99)];
    free(lat);
    pthread_t th[64];
    worker w[64];
    double t0 = cdx_now();
    for (int t = 0; t < T; t++) {
        w[t] = (worker){b, b->nq * t / T, b->nq * (t + 1) / T};
        pthread_create(&th[t], NULL, worker_main, &w[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    *qps = b->nq / (cdx_now() - t0);
}

static double recall_of(const topk_hit *got, const topk_hit *truth, size_t nq)
{
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                if (got[q * K + i].slot == truth[q * K + j].slot) hit++;
    return (double)hit / (nq * K);
}

static int opt_nlist;   /* --nlist: 0 = the library's automatic choice */

static ann_ivf *build_ivf(const cdx_rows *src, uint64_t n, double *secs)
{
    double t0 = cdx_now();
    ann_ivf *ix;
    ann_ivf_train_params tp = ann_ivf_default_train_params();
    tp.nlist = opt_nlist;
    if (ann_ivf_train(src, n, &tp, &ix)) die("train");
    for (uint64_t first = 0; first < n; first += 65536) {
        ann_segment seg;
        size_t m = n - first < 65536 ? (size_t)(n - first) : 65536;
        if (ann_ivf_encode(ix, src, first, m, &seg) || ann_ivf_insert(ix, &seg)) die("encode");
        ann_segment_free(&seg);
    }
    *secs = cdx_now() - t0;
    return ix;
}

/* ---------------------------------------------------------------- competitors */

static int write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, bytes, f);
    return fclose(f) == 0 && w == bytes ? 0 : -1;
}

/* Run argv, forwarding its stdout lines; nonzero on failure. */
static int run(char *const argv[])
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "ann_bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *faiss_only = "hnsw,ivfflat,ivfsq8,ivfpq";

static void competitors(const char *dir, int do_faiss, int do_hnsw, const char *probes,
                        const char *hnsw_ef, int nlist)
{
    /* the drivers sit next to this file; __FILE__ is relative when ccache
     * rewrote paths (CCACHE_BASEDIR): then $CLIPDEX_SRC/bench, if set */
    char here[4096];
    snprintf(here, sizeof here, "%s", __FILE__);
    const char *bdir = dirname(here);
    char probe[4200], alt[4096];
    snprintf(probe, sizeof probe, "%s/ann_faiss.py", bdir);
    if (access(probe, R_OK) != 0 && getenv("CLIPDEX_SRC")) {
        snprintf(alt, sizeof alt, "%s/bench", getenv("CLIPDEX_SRC"));
        bdir = alt;
    }
    char nthr[16], nl[16], script[4200], cpp[4200], exe[4200];
    snprintf(nthr, sizeof nthr, "%d", T);
    snprintf(nl, sizeof nl, "%d", nlist);
    if (do_faiss) {
        snprintf(script, sizeof script, "%s/ann_faiss.py", bdir);
        /* Debian's python3-faiss lives in the system interpreter */
        char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
        char *argv[] = {py, script, "--dir", (char *)dir, "--threads", nthr, "--nlist", nl,
                        "--probes", (char *)probes, "--hnsw-ef", (char *)hnsw_ef,
                        "--only", (char *)faiss_only, json ? "--json" : NULL, NULL};
        if (run(argv)) fprintf(stderr, "ann_bench: FAISS skipped (python3-faiss missing or failed)\n");
    }
    if (do_hnsw) {
        snprintf(cpp, sizeof cpp, "%s/ann_hnswlib.cpp", bdir);
        snprintf(exe, sizeof exe, "%s/ann_hnswlib", dir);
        if (access("/usr/include/hnswlib/hnswlib.h", R_OK) != 0) {
            fprintf(stderr, "ann_bench: hnswlib skipped (apt-get install libhnswlib-dev)\n");
            return;
        }
        char *cc[] = {"g++", "-O3", "-march=native", "-fopenmp", "-o", exe, cpp, "-lpthread", NULL};
        if (run(cc)) {
            fprintf(stderr, "ann_bench: hnswlib skipped (compiling %s failed)\n", cpp);
            return;
        }
        char *argv[] = {exe, "--dir", (char *)dir, "--threads", nthr, "--ef", (char *)hnsw_ef,
                        json ? "--json" : NULL, NULL};
        if (run(argv)) fprintf(stderr, "ann_bench: hnswlib failed\n");
    }
}

/* ---------------------------------------------------------------- main */

static void crossover(const cdx_rows *all, const float *queries, int dim)
{
    static const uint64_t sizes[] = {1000, 2000, 5000, 10000, 25000, 50000, 100000, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes && sizes[i] <= all->count; i++) {
        cdx_rows src = *all;
        src.count = sizes[i];
        double bs;
        ann_ivf *ix = build_ivf(&src, sizes[i], &bs);
        bench_ctx b = {&src, queries, dim, 200, NULL, 0, 1, NULL};   /* one thread per query */
        b.out = malloc(200 * K * sizeof *b.out);
        double e50, e99, eq, a50, a99, aq;
        measure(&b, 200, &e50, &e99, &eq);
        b.ix = ix;
        b.probes = ann_ivf_default_probes(ann_ivf_nlist(ix));
        measure(&b, 200, &a50, &a99, &aq);
        if (json)
            printf("{\"crossover\": %llu, \"exact_p50_ms\": %.3f, \"ann_p50_ms\": %.3f, \"exact_qps\": %.1f, "
                   "\"ann_qps\": %.1f}\n", (unsigned long long)sizes[i], e50, a50, eq, aq);
        else
            printf("crossover n=%-8llu exact p50 %.3f ms (%.0f q/s)  ann p50 %.3f ms (%.0f q/s)\n",
                   (unsigned long long)sizes[i], e50, eq, a50, aq);
        free(b.out);
        ann_ivf_free(ix);
    }
}

int main(int argc, char **argv)
{
    uint64_t n = 100000;
    int dim = 512, do_faiss = 1, do_hnsw = 1, do_cross = 0;
    size_t nq = 1000;
    const char *probes_arg = "4,8,16,32,64", *dir = "/tmp/clipdex-ann-bench", *hnsw_ef = "16,32,64,128,256";
    T = cdx_cpu_count();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "--n") && hv) n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--dim") && hv) dim = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--nq") && hv) nq = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--probes") && hv) probes_arg = argv[++i];
        else if (!strcmp(a, "--nlist") && hv) opt_nlist = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--hnsw-ef") && hv) hnsw_ef = argv[++i];
        else if (!strcmp(a, "--threads") && hv) T = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--dir") && hv) dir = argv[++i];
        else if (!strcmp(a, "--no-faiss")) do_faiss = 0;
        else if (!strcmp(a, "--faiss-only") && hv) faiss_only = argv[++i];
        else if (!strcmp(a, "--no-hnswlib")) do_hnsw = 0;
        else if (!strcmp(a, "--crossover")) do_cross = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else {
            fprintf(stderr, "usage: ann_bench [--n N] [--dim D] [--nq Q] [--probes LIST] [--nlist L] [--hnsw-ef LIST] "
                            "[--threads T] [--dir DIR] [--no-faiss] [--faiss-only LIST] [--no-hnswlib] [--crossover] [--json]\n");
            return 2;
        }
    }
    if (n < 1000 || n > 100000000 || dim < 8 || dim > 4096 || nq < 10 || nq > 100000 || T < 1 || T > 64) {
        fprintf(stderr, "ann_bench: argument out of range\n");
        return 2;
    }
    omp_set_num_threads(T);
    /* data */
    double t0 = cdx_now();
    ann_synth g;
    if (synth_init(&g, dim, n, 2024)) die("synth");
    float *base = cdx_alloc_aligned(n * (size_t)dim, sizeof(float));
    float *queries = malloc(nq * (size_t)dim * sizeof(float));
    if (!base || !queries) die("out of memory");
    #pragma omp parallel for schedule(static)
    for (uint64_t i = 0; i < n; i++) synth_image(&g, i, base + i * dim);
    for (size_t i = 0; i < nq; i++) synth_query(&g, i, queries + i * dim);
    synth_free(&g);
    cdx_rows src = cdx_rows_array(base, n, dim, (size_t)dim * sizeof(float));
    fprintf(stderr, "ann_bench: %llu x %d generated in %.1f s, %zu queries, %d threads\n",
            (unsigned long long)n, dim, cdx_now() - t0, nq, T);
    /* ground truth (batched exact scan) */
    t0 = cdx_now();
    topk_hit *truth = malloc(nq * K * sizeof *truth);
    size_t *nh = malloc(nq * sizeof *nh);
    topk_params tp = topk_default_params();
    tp.k = K;
    for (size_t q = 0; q < nq; q += 64) {
        size_t m = nq - q < 64 ? nq - q : 64;
        if (topk_search(&src, queries + q * dim, m, &tp, truth + q * K, nh + q)) die("truth");
    }
    fprintf(stderr, "ann_bench: ground truth in %.1f s\n", cdx_now() - t0);
    if (do_cross) crossover(&src, queries, dim);
    /* exact scan */
    topk_hit *got = malloc(nq * K * sizeof *got);
    bench_ctx b = {&src, queries, dim, nq, NULL, 0, 0, got};
    size_t lat_q = nq < 200 ? nq : 200;
    result r = {"clipdex-exact-f32", "-", 0, 0, 0, 0, (double)dim * 4, 0};
    bench_ctx be = b;
    be.nq = nq < 200 ? nq : 200;   /* the exact scan is slow: fewer queries */
    measure(&be, nq < 50 ? nq : 50, &r.p50, &r.p99, &r.qps);
    r.recall = recall_of(got, truth, be.nq);
    print_result(&r, n, dim);
    /* ours */
    double bs;
    ann_ivf *ix = build_ivf(&src, n, &bs);
    b.ix = ix;
    int nlist = ann_ivf_nlist(ix);
    const char *p = probes_arg;
    while (*p) {
        int pr = (int)strtol(p, (char **)&p, 10);
        if (*p == ',') p++;
        if (pr < 1) break;
        b.probes = pr;
        result o = {"clipdex-ivf-int8", "", 0, 0, 0, 0, (double)ann_ivf_bytes(ix) / n, bs};
        snprintf(o.knob, sizeof o.knob, "probes=%d/%d", pr, nlist);
        measure(&b, lat_q, &o.p50, &o.p99, &o.qps);
        o.recall = recall_of(got, truth, nq);
        print_result(&o, n, dim);
    }
    ann_ivf_free(ix);
    /* competitors on the same data */
    if (do_faiss || do_hnsw) {
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) die("mkdir");
        uint32_t *gt = malloc(nq * K * sizeof *gt);
        for (size_t i = 0; i < nq * K; i++) gt[i] = (uint32_t)truth[i].slot;
        uint32_t hdr[3] = {(uint32_t)n, (uint32_t)dim, (uint32_t)nq};
        if (write_file(dir, "shape.u32", hdr, sizeof hdr) ||
            write_file(dir, "base.f32", base, n * (size_t)dim * sizeof(float)) ||
            write_file(dir, "queries.f32", queries, nq * (size_t)dim * sizeof(float)) ||
            write_file(dir, "gt.u32", gt, nq * K * sizeof *gt)) {
            fprintf(stderr, "ann_bench: cannot write the data to %s: competitors skipped\n", dir);
        } else {
            cdx_free_aligned(base);   /* the children need the memory */
            base = NULL;
            competitors(dir, do_faiss, do_hnsw, probes_arg, hnsw_ef, nlist);
        }
        free(gt);
    }
    cdx_free_aligned(base);
    free(queries);
    free(truth);
    free(got);
    free(nh);
    return 0;
}
