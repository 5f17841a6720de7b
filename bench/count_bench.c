/*
 * count_bench.c - what counting `total` costs with min_score set.
 *
 * Before the vecio branch, cdx_library_search_vector answered `total` under
 * a min_score with a second, single-threaded pass over the allowed rows
 * (one kernel call per row); now topk_search counts while it scans.  This
 * measures, on n random unit vectors of dim floats (contiguous rows, every
 * row allowed, each slot weighted as the library does when images share
 * vectors), the median over --reps runs of:
 *   scan        top-10 alone (no total),
 *   in_scan     top-10 with the in-scan count (today),
 *   two_pass    top-10 then the old separate counting pass (before),
 * and prints the ratios two_pass / in_scan and in_scan / scan, all from one
 * run.  Options: --n (default 200000) --dim (512) --reps (7) --threads (0 =
 * all) --json.  Memory: n * dim * 4 bytes.
 */
#include "common/util.h"
#include "search/dot.h"
#include "search/topk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The pre-vecio count: one kernel call per allowed row, one thread. */
static uint64_t count_two_pass(const cdx_rows *src, const float *q, float min_score, const uint32_t *w)
{
    const dot_kernel *k = dot_kernel_best();
    uint64_t total = 0;
    for (uint64_t i = 0; i < src->count; i++) {
        float s;
        k->tile(&q, 1, cdx_rows_at(src, i), 1, src->row_stride / 4, (size_t)src->dim, &s, 1);
        if (s >= min_score) total += w[i];
    }
    return total;
}

int main(int argc, char **argv)
{
    size_t n = 200000;
    int dim = 512, reps = 7, threads = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) dim = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: count_bench [--n N] [--dim D] [--reps R] [--threads T] [--json]\n");
            return 2;
        }
    }
    if (n < 64 || dim < 1 || dim > 4096 || reps < 1 || reps > 101) return 2;
    float *rows = cdx_alloc_aligned(n * (size_t)dim, sizeof(float));
    uint32_t *w = malloc(n * sizeof *w);
    float *q = malloc((size_t)dim * sizeof *q);
    if (!rows || !w || !q) return 1;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        float *r = rows + i * (size_t)dim;
        for (int d = 0; d < dim; d++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            r[d] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
            s += (double)r[d] * r[d];
        }
        for (int d = 0; d < dim; d++) r[d] = (float)(r[d] / sqrt(s));
        w[i] = 1 + (uint32_t)(i % 3 == 0);
    }
    for (int d = 0; d < dim; d++) q[d] = rows[d] * 0.7f + rows[dim + d] * 0.3f;
    cdx_rows src = cdx_rows_array(rows, n, dim, (size_t)dim * 4);
    const float min_score = 0.02f;
    double *t[3];
    for (int m = 0; m < 3; m++) t[m] = malloc((size_t)reps * sizeof(double));
    uint64_t c_in = 0, c_two = 0;
    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < 3; m++) {
            topk_params p = topk_default_params();
            p.k = 10;
            p.min_score = min_score;
            p.n_threads = threads;
            p.weight = w;
            uint64_t cnt = 0;
            if (m == 1) p.counts = &cnt;
            topk_hit hits[10];
            size_t nh;
            double t0 = cdx_now();
            if (topk_search(&src, q, 1, &p, hits, &nh)) return 1;
            if (m == 2) c_two = count_two_pass(&src, q, min_score, w);
            t[m][r] = cdx_now() - t0;
            if (m == 1) c_in = cnt;
        }
    }
    for (int m = 0; m < 3; m++) qsort(t[m], (size_t)reps, sizeof(double), cmp_double);
    double scan = t[0][reps / 2] * 1e3, in_scan = t[1][reps / 2] * 1e3, two = t[2][reps / 2] * 1e3;
    if (c_in != c_two) {
        fprintf(stderr, "count mismatch: in-scan %llu, two-pass %llu\n", (unsigned long long)c_in,
                (unsigned long long)c_two);
        return 1;
    }
    if (json)
        printf("{\"n\": %zu, \"dim\": %d, \"total\": %llu, \"scan_ms\": %.3f, \"in_scan_ms\": %.3f, "
               "\"two_pass_ms\": %.3f, \"two_pass_over_in_scan\": %.2f, \"in_scan_over_scan\": %.3f}\n",
               n, dim, (unsigned long long)c_in, scan, in_scan, two, two / in_scan, in_scan / scan);
    else
        printf("n %zu dim %d total %llu: scan %.2f ms, in-scan count %.2f ms, two passes %.2f ms\n"
               "two_pass / in_scan = %.2fx, in_scan / scan = %.3f\n",
               n, dim, (unsigned long long)c_in, scan, in_scan, two, two / in_scan, in_scan / scan);
    cdx_free_aligned(rows);
    free(w);
    free(q);
    for (int m = 0; m < 3; m++) free(t[m]);
    return 0;
}
