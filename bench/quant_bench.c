/*
 * quant_bench.c - exact search over compressed vectors against the float32
 * scan, on CLIP-like synthetic data (bench/clipgen.h).
 *
 * Generates n unit vectors of dim floats (clustered, uneven clusters, shared
 * mean, decaying spread; queries from a shifted distribution), computes the
 * exact top-10 of every query with the float32 scan (topk_search), then for
 * each method - int8 codes, 1-bit codes, each optionally after PCA to --pca
 * dimensions, at several re-scoring depths - measures, one query at a time
 * on --threads threads: ms per query (median), speedup vs the float32 scan
 * timed in the same run, recall@10 vs exact, and resident bytes per image
 * (codes + per-row aux; the float32 rows are only touched for re-scoring).
 * Also the CPU time per query (process CPU clock, all threads) and its
 * ratio, the fairer figure on a loaded machine (use --threads 1 there:
 * idle OpenMP threads spin and count as CPU).
 * Options: --n (default 1000000) --dim (512) --queries (50) --threads (0 =
 * all) --pca (128; 0 = no PCA rows) --only METHOD (one method name, e.g.
 * int8 or bit-rot) --seed --json.  Memory: about
 * n * (dim*4 + dim + 72) bytes.
 */
#include "clipgen.h"
#include "common/util.h"
#include "search/qscan.h"
#include "search/topk.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* CPU seconds used by the process (all threads): on a loaded machine the
 * fair measure of compute, as wall time includes time the scheduler gave
 * to other processes. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct method {
    const char *name;
    quant_kind kind;
    int pca, rot;
    size_t rescore;
} method;

int main(int argc, char **argv)
{
    long n = 1000000, dim = 512, nq = 50, threads = 0, pca = 128, seed = 1;
    int json = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        long *dst = NULL, lo = 1, hi = 0;
        if (!strcmp(argv[i], "--json")) { json = 1; continue; }
        if (!strcmp(argv[i], "--only") && i + 1 < argc) { only = argv[++i]; continue; }
        if (!strcmp(argv[i], "--n")) { dst = &n; lo = 1000; hi = 20000000; }
        else if (!strcmp(argv[i], "--dim")) { dst = &dim; lo = 16; hi = 4096; }
        else if (!strcmp(argv[i], "--queries")) { dst = &nq; lo = 1; hi = 10000; }
        else if (!strcmp(argv[i], "--threads")) { dst = &threads; lo = 0; hi = 1024; }
        else if (!strcmp(argv[i], "--pca")) { dst = &pca; lo = 0; hi = 4096; }
        else if (!strcmp(argv[i], "--seed")) { dst = &seed; lo = 0; hi = 1L << 40; }
        if (!dst || i + 1 >= argc || !parse_long(argv[i + 1], lo, hi, dst)) {
            fprintf(stderr, "usage: quant_bench [--n N] [--dim D] [--queries Q] [--threads T] "
                            "[--pca P] [--seed S] [--only METHOD] [--json]\n");
            return 2;
        }
        i++;
    }
    if (pca >= dim) pca = 0;
    if (threads > 0) omp_set_num_threads((int)threads);
    const int K = 10;
    clipgen *g = clipgen_new((int)dim, (int)(n / 1000 > 16 ? n / 1000 : 16), (uint64_t)seed);
    size_t rs = (size_t)dim * 4;
    float *rows = cdx_alloc_aligned((size_t)n * rs, 1);
    float *qs = malloc((size_t)nq * rs);
    if (!g || !rows || !qs) { fprintf(stderr, "out of memory\n"); return 1; }
    double t0 = cdx_now();
    #pragma omp parallel for schedule(dynamic, 4096)
    for (long i = 0; i < n; i++) clipgen_row(g, (uint64_t)i, rows + (size_t)i * dim);
    for (long i = 0; i < nq; i++) clipgen_query(g, (uint64_t)i, qs + (size_t)i * dim);
    double gen_s = cdx_now() - t0;
    cdx_rows src = cdx_rows_array(rows, (uint64_t)n, (int)dim, rs);

    /* Exact answers: one batched scan. */
    topk_params tp = topk_default_params();
    tp.k = K;
    tp.n_threads = (int)threads;
    topk_hit *exact = malloc((size_t)nq * K * sizeof *exact), *got = malloc((size_t)nq * K * sizeof *got);
    size_t *ne = malloc((size_t)nq * sizeof *ne), *ng = malloc((size_t)nq * sizeof *ng);
    double *ms = malloc((size_t)nq * sizeof *ms);
    if (!exact || !got || !ne || !ng || !ms || topk_search(&src, qs, (size_t)nq, &tp, exact, ne)) {
        fprintf(stderr, "exact search failed\n");
        return 1;
    }
    /* Each method's queries are timed interleaved with float32 scans of
     * the same queries, so a shared machine's load hits both alike; the
     * speedup is the ratio of the two medians. */
    double *fms = malloc((size_t)nq * sizeof *fms);
    double *cms = malloc((size_t)nq * sizeof *cms), *fcms = malloc((size_t)nq * sizeof *fcms);
    if (!fms || !cms || !fcms) return 1;
    if (json) printf("{\"n\": %ld, \"dim\": %ld, \"queries\": %ld, \"threads\": %d, \"kernels\": \"%s\", "
                     "\"gen_s\": %.2f, \"f32_bytes_per_image\": %zu, \"methods\": [",
                     n, dim, nq, threads ? (int)threads : omp_get_max_threads(), qdot_best()->name,
                     gen_s, rs);
    else printf("quant_bench: n=%ld dim=%ld queries=%ld kernels=%s (generation %.1f s)\n"
                "float32: %zu bytes/image; each row timed against float32 scans interleaved with it\n"
                "%-20s %8s %8s %8s %8s %8s %9s %8s %8s\n",
                n, dim, nq, qdot_best()->name, gen_s, rs, "method", "ms", "f32 ms", "speedup",
                "cpu ms", "cpu-x", "recall@10", "B/image", "build_s");

    method methods[] = {
        {"int8", QUANT_I8, 0, 0, 1}, {"int8", QUANT_I8, 0, 0, 2}, {"int8", QUANT_I8, 0, 0, 4},
        {"int8-rot", QUANT_I8, 0, 1, 2},
        {"bit-rot", QUANT_BIT, 0, 1, 10}, {"bit-rot", QUANT_BIT, 0, 1, 30},
        {"bit", QUANT_BIT, 0, 0, 30},
        {"pca-int8", QUANT_I8, 1, 0, 4}, {"pca-int8", QUANT_I8, 1, 0, 10},
        {"pca-bit-rot", QUANT_BIT, 1, 1, 30},
    };
    int first = 1;
    quant_model *models[4] = {NULL, NULL, NULL, NULL};
    double fit_s[4] = {0, 0, 0, 0};
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        const method *me = &methods[mi];
        if ((me->pca && !pca) || (only && strcmp(only, me->name))) continue;
        int mk = me->pca * 2 + me->rot;
        if (!models[mk]) {
            double a = cdx_now();
            if (quant_model_fit(&src, 50000, me->pca ? (int)pca : 0, me->rot, &models[mk])) {
                fprintf(stderr, "fit failed: %s\n", cdx_last_error());
                return 1;
            }
            fit_s[mk] = cdx_now() - a;
        }
        const quant_model *m = models[mk];
        /* Codes for this (model, kind), rebuilt per method: cheap next to the scans. */
        size_t cb = quant_code_bytes(me->kind, m->cdim), bb = QSCAN_BLOCK * (cb + sizeof(quant_aux));
        uint64_t nb = ((uint64_t)n + QSCAN_BLOCK - 1) / QSCAN_BLOCK;
        uint8_t *codes = cdx_alloc_aligned((size_t)nb * bb, 1);
        if (!codes) { fprintf(stderr, "out of memory\n"); return 1; }
        double a = cdx_now();
        if (qcodes_encode_rows(m, me->kind, &src, 0, (uint64_t)n, codes)) return 1;
        double build_s = cdx_now() - a + fit_s[mk];
        qcodes_view cv = {me->kind, codes, (uint64_t)n, cb, bb};
        qscan_params qp = qscan_default_params();
        qp.topk = tp;
        qp.rescore = me->rescore;
        double hit = 0;
        qscan_search(&cv, m, &src, qs, 1, &qp, got, ng);   /* warm-up */
        for (long q = 0; q < nq; q++) {
            double b = cdx_now(), c = cpu_now();
            topk_search(&src, qs + (size_t)q * dim, 1, &tp, got, ng);
            fms[q] = (cdx_now() - b) * 1e3;
            fcms[q] = (cpu_now() - c) * 1e3;
            b = cdx_now();
            c = cpu_now();
            if (qscan_search(&cv, m, &src, qs + (size_t)q * dim, 1, &qp, got, ng)) {
                fprintf(stderr, "qscan failed: %s\n", cdx_last_error());
                return 1;
            }
            ms[q] = (cdx_now() - b) * 1e3;
            cms[q] = (cpu_now() - c) * 1e3;
            for (size_t i = 0; i < ng[0]; i++)
                for (size_t j = 0; j < ne[q]; j++)
                    if (got[i].slot == exact[(size_t)q * K + j].slot) { hit++; break; }
        }
        qsort(ms, (size_t)nq, sizeof *ms, cmp_double);
        qsort(fms, (size_t)nq, sizeof *fms, cmp_double);
        qsort(cms, (size_t)nq, sizeof *cms, cmp_double);
        qsort(fcms, (size_t)nq, sizeof *fcms, cmp_double);
        double cpu_ms = cms[nq / 2], f32_cpu_ms = fcms[nq / 2];
        double f32_ms = fms[nq / 2];
        double mq = ms[nq / 2], recall = hit / ((double)nq * K);
        size_t bpi = cb + sizeof(quant_aux);
        char label[64];
        if (me->pca) snprintf(label, sizeof label, "%s/%ld x%zu", me->name, pca, me->rescore);
        else snprintf(label, sizeof label, "%s x%zu", me->name, me->rescore);
        if (json) printf("%s\n  {\"method\": \"%s\", \"pca\": %ld, \"rescore\": %zu, \"ms\": %.3f, "
                         "\"f32_ms\": %.3f, \"speedup\": %.2f, \"cpu_ms\": %.3f, \"f32_cpu_ms\": %.3f, "
                         "\"cpu_speedup\": %.2f, \"recall10\": %.4f, \"bytes_per_image\": %zu, "
                         "\"build_s\": %.2f}", first ? "" : ",",
                         me->name, me->pca ? pca : 0L, me->rescore, mq, f32_ms, f32_ms / mq, cpu_ms, f32_cpu_ms,
                         f32_cpu_ms / cpu_ms, recall, bpi, build_s);
        else printf("%-20s %8.3f %8.3f %8.2f %8.3f %8.2f %9.4f %8zu %8.2f\n", label, mq, f32_ms, f32_ms / mq,
                    cpu_ms, f32_cpu_ms / cpu_ms, recall, bpi, build_s);
        first = 0;
        fflush(stdout);
        cdx_free_aligned(codes);
    }
    if (json) printf("\n]}\n");
    for (int i = 0; i < 4; i++) quant_model_free(models[i]);
    clipgen_free(g);
    cdx_free_aligned(rows);
    free(qs); free(exact); free(got); free(ne); free(ng); free(ms); free(fms); free(cms); free(fcms);
    return 0;
}
