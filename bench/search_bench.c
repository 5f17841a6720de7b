/*
 * search_bench.c - exact top-k search speed next to this machine's memory
 * bandwidth.
 *
 * Builds n random unit vectors of dim floats in memory with exactly the
 * vecfile layout (blocks of 64 rows padded to 64 bytes, followed by the 4 KB
 * of metadata the scan must skip), generated in parallel with a per-row
 * splitmix/xorshift PRNG.  Then:
 *  - mem_gbps: best of 3 multi-threaded streaming reads (sum with the widest
 *    SIMD loads the CPU has) over the same buffer;
 *  - p50/p99 latency of exact top-10 over --queries single queries after
 *    warm-up, on --threads threads;
 *  - scan_gbps = vector bytes scanned per query / p50, ratio = scan/mem;
 *    also from the fastest query (scan_best_gbps, ratio_best), which is the
 *    fair comparison with the best-of-3 bandwidth on a shared machine;
 *  - the per-query cost when 4 queries share one scan (batched evaluation).
 *  - the library path on the same vectors (--library MODEL_DIR, default
 *    /tmp/clipdex-vitb32 when it exists and --dim matches; "--library none"
 *    skips it): a real library (catalog + file-backed vector map, built
 *    with bench/libfill.h) answers cdx_library_search_vector for the same
 *    queries, unfiltered and with a path-prefix filter keeping ~10% of the
 *    images; p50 of each and library/kernel ratios, and every answer is
 *    checked: unfiltered ids and scores equal the kernel's, filtered ones
 *    equal a brute-force top-10 over the kept rows.
 * Options: --n --dim --queries --threads --library --quick --json.  Memory:
 * about n * (row bytes + 64) (2.1 GB for the default 1M x 512), twice with
 * the library section (the map shares the page cache).
 */
#include "common/util.h"
#include "search/dot.h"
#include "search/topk.h"
#include "libfill.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BLOCK 64
#define META_GAP 4096

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void gen_row(uint64_t slot, float *row, int dim)
{
    uint64_t st = slot * 2654435761u + 1;
    float s = 0;
    for (int d = 0; d < dim; d += 2) {
        uint64_t r = splitmix(&st);
        float a = (float)(int32_t)(uint32_t)r * (1.0f / 2147483648.0f);
        float b = (float)(int32_t)(uint32_t)(r >> 32) * (1.0f / 2147483648.0f);
        row[d] = a;
        s += a * a;
        if (d + 1 < dim) { row[d + 1] = b; s += b * b; }
    }
    float inv = 1.0f / sqrtf(s);
    for (int d = 0; d < dim; d++) row[d] *= inv;
}

__attribute__((target("avx512f"))) static double sum512(const float *p, size_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    double s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

__attribute__((target("avx2"))) static double sum256(const float *p, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    double s = 0;
    for (int k = 0; k < 8; k++) s += t[k];
    for (; i < n; i++) s += p[i];
    return s;
}

static double sum_plain(const float *p, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

/* Best-of-3 all-core streaming read of nfloats floats; GB/s. */
static double mem_bandwidth(const float *buf, size_t nfloats, int threads, double *sink)
{
    __builtin_cpu_init();
    double (*sum)(const float *, size_t) = __builtin_cpu_supports("avx512f") ? sum512
                                         : __builtin_cpu_supports("avx2") ? sum256 : sum_plain;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cdx_now(), total = 0;
        #pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t chunk = (nfloats / (size_t)nt) & ~(size_t)63;
            size_t a = (size_t)t * chunk, b = t == nt - 1 ? nfloats : a + chunk;
            total += sum(buf + a, b - a);
        }
        double dt = cdx_now() - t0, gbps = (double)nfloats * 4 / dt / 1e9;
        *sink += total;
        if (gbps > best) best = gbps;
    }
    return best;
}

static void gen_row_cb(uint64_t i, float *row, int dim, void *ctx) { gen_row(i, row, dim); }

typedef struct lib_result {
    int ran;
    double p50, p50_filtered;
    long checked, mismatches;
    long kept;                 /* rows the filter keeps */
    char prefix[32];
} lib_result;

static int cmp_hit_desc(const void *a, const void *b)
{
    const topk_hit *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

/* The library path: build, search, check (see the header comment). */
static int library_section(const char *model, long n, long dim, long queries, long threads,
                           const cdx_rows *src, lib_result *out)
{
    memset(out, 0, sizeof *out);
    char dir[] = "/tmp/cdx_search_bench_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return -1; }
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = 1;
    lp.create = 1;
    lp.model_dir = model;
    lp.load_model = 0;
    lp.n_threads = (int)threads;
    cdx_library *lib = NULL;
    cdx_library_info info;
    int rc = -1;
    if (cdx_library_open(dir, &lp, &lib) || cdx_library_get_info(lib, &info)) {
        fprintf(stderr, "search_bench: library: %s\n", cdx_last_error());
        goto done;
    }
    cdx_library_close(lib);
    lib = NULL;
    if (info.dim != dim) {
        fprintf(stderr, "search_bench: the model in %s embeds %d dims, not --dim %ld: library section skipped\n",
                model, info.dim, dim);
        rc = 0;
        goto done;
    }
    if (libfill(dir, n, (int)dim, gen_row_cb, NULL)) goto done;
    lp.create = 0;
    lp.writable = 0;
    if (cdx_library_open(dir, &lp, &lib)) {
        fprintf(stderr, "search_bench: library: %s\n", cdx_last_error());
        goto done;
    }
    /* a prefix keeping about 10%: rows [0, 10^k) with 10^k ~ n/10 */
    long span = 1;
    int digits = 8;
    while (span * 10 <= n / 10 && digits > 0) { span *= 10; digits--; }
    snprintf(out->prefix, sizeof out->prefix, "/bench/%.*s", digits, "00000000");
    out->kept = span < n ? span : n;

    float *q = malloc((size_t)dim * sizeof *q);
    double *lat = malloc((size_t)queries * sizeof *lat), *latf = malloc((size_t)queries * sizeof *latf);
    topk_hit *ref = malloc((size_t)out->kept * sizeof *ref);
    if (!q || !lat || !latf || !ref) { free(q); free(lat); free(latf); free(ref); goto done; }
    topk_params p = topk_default_params();
    p.k = 10;
    p.n_threads = (int)threads;
    for (long i = 0; i < queries; i++) {
        gen_row((uint64_t)n + 7 + (uint64_t)i, q, (int)dim);
        cdx_search_params sp = cdx_search_default_params();
        cdx_hit hits[10];
        size_t nh = 0;
        double t = cdx_now();
        cdx_result r = cdx_library_search_vector(lib, q, &sp, hits, &nh, NULL);
        lat[i] = (cdx_now() - t) * 1e3;
        /* check: the kernel over anonymous memory, same query */
        topk_hit kh[10];
        size_t knh = 0;
        if (r || topk_search(src, q, 1, &p, kh, &knh) || nh != knh) {
            out->mismatches++;
        } else {
            for (size_t j = 0; j < nh; j++)
                if (hits[j].id != (int64_t)kh[j].slot + 1 || fabsf(hits[j].score - kh[j].score) > 1e-5f) {
                    out->mismatches++;
                    break;
                }
        }
        /* filtered by path prefix, checked against brute force over the kept rows */
        sp.path_prefix = out->prefix;
        t = cdx_now();
        r = cdx_library_search_vector(lib, q, &sp, hits, &nh, NULL);
        latf[i] = (cdx_now() - t) * 1e3;
        for (long row = 0; row < out->kept; row++) {
            const float *v = cdx_rows_at(src, (uint64_t)row);
            double d = 0;
            for (long e = 0; e < dim; e++) d += (double)v[e] * q[e];
            ref[row] = (topk_hit){(uint64_t)row, (float)d};
        }
        qsort(ref, (size_t)out->kept, sizeof *ref, cmp_hit_desc);
        size_t want = out->kept < 10 ? (size_t)out->kept : 10;
        if (r || nh != want) {
            out->mismatches++;
        } else {
            for (size_t j = 0; j < nh; j++)
                if (fabsf(hits[j].score - ref[j].score) > 1e-5f ||
                    (hits[j].id != (int64_t)ref[j].slot + 1 && fabsf(hits[j].score - ref[j].score) > 1e-7f)) {
                    out->mismatches++;
                    break;
                }
        }
        out->checked++;
    }
    qsort(lat, (size_t)queries, sizeof *lat, cmp_double);
    qsort(latf, (size_t)queries, sizeof *latf, cmp_double);
    out->p50 = lat[(queries - 1) / 2];
    out->p50_filtered = latf[(queries - 1) / 2];
    out->ran = 1;
    rc = 0;
    free(q);
    free(lat);
    free(latf);
    free(ref);
done:
    cdx_library_close(lib);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "search_bench: could not remove %s\n", dir);
    return rc;
}

int main(int argc, char **argv)
{
    long n = 1000000, dim = 512, queries = 50, threads = 0;
    int json = 0;
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--library") && i + 1 < argc) {
            model = argv[++i];
            continue;
        }
        long *dst = !strcmp(a, "--n") ? &n : !strcmp(a, "--dim") ? &dim : !strcmp(a, "--queries") ? &queries
                  : !strcmp(a, "--threads") ? &threads : NULL;
        if (dst) {
            if (i + 1 >= argc || !parse_long(argv[++i], dst == &threads ? 0 : 1,
                                             dst == &n ? 100000000L : dst == &dim ? 16384 : 100000, dst)) {
                fprintf(stderr, "search_bench: bad value for %s\n", a);
                return 2;
            }
        } else if (!strcmp(a, "--quick")) {
            n = 100000; queries = 20;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "usage: search_bench [--n N] [--dim D] [--queries Q] [--threads T] [--library MODEL_DIR|none] [--quick] [--json]\n");
            return !strcmp(a, "--help") ? 0 : 2;
        }
    }
    if (threads == 0) threads = cdx_cpu_count();
    if (!model && dim == 512 && access("/tmp/clipdex-vitb32/config.json", R_OK) == 0) model = "/tmp/clipdex-vitb32";
    if (model && !strcmp(model, "none")) model = NULL;

    size_t stride = ((size_t)dim * 4 + 63) & ~(size_t)63;
    size_t block = BLOCK * stride + META_GAP;
    size_t nblocks = ((size_t)n + BLOCK - 1) / BLOCK, bytes = nblocks * block;
    float *buf = cdx_alloc_aligned(bytes, 1);
    if (!buf) { fprintf(stderr, "search_bench: cannot allocate %zu bytes\n", bytes); return 1; }
    madvise(buf, bytes, MADV_HUGEPAGE);

    double t0 = cdx_now();
    #pragma omp parallel for num_threads((int)threads) schedule(static)
    for (size_t b = 0; b < nblocks; b++) {
        char *blk = (char *)buf + b * block;
        memset(blk + BLOCK * stride, 0, META_GAP);
        for (size_t r = 0; r < BLOCK; r++) {
            float *row = (float *)(blk + r * stride);
            memset(row, 0, stride);
            if (b * BLOCK + r < (size_t)n) gen_row(b * BLOCK + r, row, (int)dim);
        }
    }
    double gen_s = cdx_now() - t0;

    double sink = 0;
    double mem_gbps = mem_bandwidth(buf, bytes / 4, (int)threads, &sink);

    cdx_rows src = {buf, (uint64_t)n, (int)dim, stride, BLOCK, block};
    topk_params p = topk_default_params();
    p.k = 10;
    p.n_threads = (int)threads;
    float *qs = malloc(4 * (size_t)dim * 4);
    topk_hit hits[40];
    size_t nh[4];
    double *lat = malloc((size_t)queries * sizeof *lat);
    for (int w = 0; w < 3; w++) {   /* warm-up */
        gen_row((uint64_t)n + 1000 + (uint64_t)w, qs, (int)dim);
        if (topk_search(&src, qs, 1, &p, hits, nh) != CDX_OK) {
            fprintf(stderr, "search_bench: %s\n", cdx_last_error());
            return 1;
        }
    }
    for (long q = 0; q < queries; q++) {
        gen_row((uint64_t)n + 7 + (uint64_t)q, qs, (int)dim);
        double s = cdx_now();
        topk_search(&src, qs, 1, &p, hits, nh);
        lat[q] = (cdx_now() - s) * 1e3;
        sink += hits[0].score;
    }
    qsort(lat, (size_t)queries, sizeof *lat, cmp_double);
    double p50 = lat[(queries - 1) / 2];
    long i99 = (long)ceil(0.99 * (double)queries) - 1;
    double p99 = lat[i99 < 0 ? 0 : i99];

    double batch_best = INFINITY;
    for (int rep = 0; rep < 5; rep++) {
        for (int i = 0; i < 4; i++) gen_row((uint64_t)n + 500 + (uint64_t)(rep * 4 + i), qs + i * dim, (int)dim);
        double s = cdx_now();
        topk_search(&src, qs, 4, &p, hits, nh);
        double dt = (cdx_now() - s) * 1e3 / 4;
        if (dt < batch_best) batch_best = dt;
    }

    lib_result lr;
    memset(&lr, 0, sizeof lr);
    if (model && library_section(model, n, dim, queries, threads, &src, &lr)) return 1;
    if (lr.ran && lr.mismatches) {
        fprintf(stderr, "search_bench: the library answered %ld of %ld queries differently from the kernel\n",
                lr.mismatches, lr.checked);
        return 1;
    }

    double scan_gbps = (double)n * (double)stride / (p50 / 1e3) / 1e9;
    double scan_best_gbps = (double)n * (double)stride / (lat[0] / 1e3) / 1e9;
    const char *kern = dot_kernel_best()->name;
    if (json) {
        printf("{\"n\": %ld, \"dim\": %ld, \"threads\": %ld, \"kernel\": \"%s\", \"queries\": %ld, "
               "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"scan_gbps\": %.2f, \"mem_gbps\": %.2f, "
               "\"ratio\": %.3f, \"min_ms\": %.3f, \"scan_best_gbps\": %.2f, \"ratio_best\": %.3f, "
               "\"batch4_ms_per_query\": %.3f, \"gen_s\": %.2f",
               n, dim, threads, kern, queries, p50, p99, scan_gbps, mem_gbps, scan_gbps / mem_gbps,
               lat[0], scan_best_gbps, scan_best_gbps / mem_gbps, batch_best, gen_s);
        if (lr.ran)
            printf(", \"library_p50_ms\": %.3f, \"library_over_kernel\": %.3f, \"library_filtered_p50_ms\": %.3f, "
                   "\"filter_kept\": %ld, \"library_checked_queries\": %ld",
                   lr.p50, lr.p50 / p50, lr.p50_filtered, lr.kept, lr.checked);
        printf("}\n");
    } else {
        printf("exact top-10 search, vecfile layout in memory\n");
        printf("  vectors            %ld x %ld float32 (%.2f GB incl. metadata gaps)\n", n, dim, (double)bytes / 1e9);
        printf("  kernel / threads   %s / %ld\n", kern, threads);
        printf("  generation         %.2f s\n", gen_s);
        printf("  latency p50 / p99  %.2f / %.2f ms over %ld queries\n", p50, p99, queries);
        printf("  batched (4/scan)   %.2f ms per query\n", batch_best);
        printf("  scan rate          %.2f GB/s\n", scan_gbps);
        printf("  memory bandwidth   %.2f GB/s (best of 3 all-core streaming reads)\n", mem_gbps);
        printf("  scan / bandwidth   %.0f %% (p50), %.0f %% (fastest query, %.2f ms)\n",
               100 * scan_gbps / mem_gbps, 100 * scan_best_gbps / mem_gbps, lat[0]);
        if (lr.ran) {
            printf("  library path       p50 %.2f ms (x%.2f the kernel): catalog + file-backed map\n", lr.p50, lr.p50 / p50);
            printf("  library, filtered  p50 %.2f ms with path prefix %s (%ld rows kept)\n", lr.p50_filtered,
                   lr.prefix, lr.kept);
            printf("  checked            %ld queries: library = kernel, filtered = brute force\n", lr.checked);
        } else {
            printf("  library path       not measured (--library MODEL_DIR with a %ld-d model)\n", dim);
        }
    }
    if (sink == 12345.678) puts("");   /* keep the reads alive */
    free(lat);
    free(qs);
    cdx_free_aligned(buf);
    return 0;
}
