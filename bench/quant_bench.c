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
 * Options: --n (default 1000000) --dim (512) --queries (50) --threads (0 =
 * all) --pca (128; 0 = no PCA rows) --seed --json.  Memory: about
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

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct method {
    const char *name;
    quant_kind kind;
    int pca;
    size_t rescore;
} method;

int main(int argc, char **argv)
{
    long n = 1000000, dim = 512, nq = 50, threads = 0, pca = 128, seed = 1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        long *dst = NULL, lo = 1, hi = 0;
        if (!strcmp(argv[i], "--json")) { json = 1; continue; }
        if (!strcmp(argv[i], "--n")) { dst = &n; lo = 1000; hi = 20000000; }
        else if (!strcmp(argv[i], "--dim")) { dst = &dim; lo = 16; hi = 4096; }
        else if (!strcmp(argv[i], "--queries")) { dst = &nq; lo = 1; hi = 10000; }
        else if (!strcmp(argv[i], "--threads")) { dst = &threads; lo = 0; hi = 1024; }
        else if (!strcmp(argv[i], "--pca")) { dst = &pca; lo = 0; hi = 4096; }
        else if (!strcmp(argv[i], "--seed")) { dst = &seed; lo = 0; hi = 1L << 40; }
        if (!dst || i + 1 >= argc || !parse_long(argv[i + 1], lo, hi, dst)) {
            fprintf(stderr, "usage: quant_bench [--n N] [--dim D] [--queries Q] [--threads T] "
                            "[--pca P] [--seed S] [--json]\n");
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
    /* float32 scan timing, one query at a time. */
    topk_search(&src, qs, 1, &tp, got, ng);   /* warm-up */
    for (long q = 0; q < nq; q++) {
        double a = cdx_now();
        topk_search(&src, qs + (size_t)q * dim, 1, &tp, got, ng);
        ms[q] = (cdx_now() - a) * 1e3;
    }
    qsort(ms, (size_t)nq, sizeof *ms, cmp_double);
    double f32_ms = ms[nq / 2];
    if (json) printf("{\"n\": %ld, \"dim\": %ld, \"queries\": %ld, \"threads\": %d, \"kernels\": \"%s\", "
                     "\"gen_s\": %.2f, \"methods\": [\n  {\"method\": \"f32\", \"ms\": %.3f, \"speedup\": 1.0, "
                     "\"recall10\": 1.0, \"bytes_per_image\": %zu}",
                     n, dim, nq, threads ? (int)threads : omp_get_max_threads(), qdot_best()->name,
                     gen_s, f32_ms, rs);
    else printf("quant_bench: n=%ld dim=%ld queries=%ld kernels=%s (generation %.1f s)\n"
                "%-22s %9s %8s %9s %8s %8s\n%-22s %9.3f %8.2f %9.4f %8zu %8s\n",
                n, dim, nq, qdot_best()->name, gen_s, "method", "ms/query", "speedup", "recall@10",
                "B/image", "build_s", "f32 scan", f32_ms, 1.0, 1.0, rs, "-");

    method methods[] = {
        {"int8", QUANT_I8, 0, 1}, {"int8", QUANT_I8, 0, 2}, {"int8", QUANT_I8, 0, 4},
        {"bit", QUANT_BIT, 0, 4}, {"bit", QUANT_BIT, 0, 10}, {"bit", QUANT_BIT, 0, 30},
        {"pca-int8", QUANT_I8, 1, 4}, {"pca-int8", QUANT_I8, 1, 10},
        {"pca-bit", QUANT_BIT, 1, 10}, {"pca-bit", QUANT_BIT, 1, 50},
    };
    quant_model *models[2] = {NULL, NULL};
    double fit_s[2] = {0, 0};
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        const method *me = &methods[mi];
        if (me->pca && !pca) continue;
        if (!models[me->pca]) {
            double a = cdx_now();
            if (quant_model_fit(&src, 50000, me->pca ? (int)pca : 0, &models[me->pca])) {
                fprintf(stderr, "fit failed: %s\n", cdx_last_error());
                return 1;
            }
            fit_s[me->pca] = cdx_now() - a;
        }
        const quant_model *m = models[me->pca];
        /* Codes for this (model, kind), rebuilt per method: cheap next to the scans. */
        size_t cb = quant_code_bytes(me->kind, m->pdim), bb = QSCAN_BLOCK * (cb + sizeof(quant_aux));
        uint64_t nb = ((uint64_t)n + QSCAN_BLOCK - 1) / QSCAN_BLOCK;
        uint8_t *codes = cdx_alloc_aligned((size_t)nb * bb, 1);
        if (!codes) { fprintf(stderr, "out of memory\n"); return 1; }
        double a = cdx_now();
        if (qcodes_encode_rows(m, me->kind, &src, 0, (uint64_t)n, codes)) return 1;
        double build_s = cdx_now() - a + fit_s[me->pca];
        qcodes_view cv = {me->kind, codes, (uint64_t)n, cb, bb};
        qscan_params qp = qscan_default_params();
        qp.topk = tp;
        qp.rescore = me->rescore;
        double hit = 0;
        qscan_search(&cv, m, &src, qs, 1, &qp, got, ng);   /* warm-up */
        for (long q = 0; q < nq; q++) {
            double b = cdx_now();
            if (qscan_search(&cv, m, &src, qs + (size_t)q * dim, 1, &qp, got, ng)) {
                fprintf(stderr, "qscan failed: %s\n", cdx_last_error());
                return 1;
            }
            ms[q] = (cdx_now() - b) * 1e3;
            for (size_t i = 0; i < ng[0]; i++)
                for (size_t j = 0; j < ne[q]; j++)
                    if (got[i].slot == exact[(size_t)q * K + j].slot) { hit++; break; }
        }
        qsort(ms, (size_t)nq, sizeof *ms, cmp_double);
        double mq = ms[nq / 2], recall = hit / ((double)nq * K);
        size_t bpi = cb + sizeof(quant_aux);
        char label[64];
        snprintf(label, sizeof label, "%s%s%ld x%zu", me->name, me->pca ? "/" : "",
                 me->pca ? pca : 0L, me->rescore);
        if (!me->pca) snprintf(label, sizeof label, "%s x%zu", me->name, me->rescore);
        if (json) printf(",\n  {\"method\": \"%s\", \"pca\": %ld, \"rescore\": %zu, \"ms\": %.3f, "
                         "\"speedup\": %.2f, \"recall10\": %.4f, \"bytes_per_image\": %zu, \"build_s\": %.2f}",
                         me->name, me->pca ? pca : 0L, me->rescore, mq, f32_ms / mq, recall, bpi, build_s);
        else printf("%-22s %9.3f %8.2f %9.4f %8zu %8.2f\n", label, mq, f32_ms / mq, recall, bpi, build_s);
        fflush(stdout);
        cdx_free_aligned(codes);
    }
    if (json) printf("\n]}\n");
    quant_model_free(models[0]);
    quant_model_free(models[1]);
    clipgen_free(g);
    cdx_free_aligned(rows);
    free(qs); free(exact); free(got); free(ne); free(ng); free(ms);
    return 0;
}
