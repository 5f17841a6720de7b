/*
 * compact_bench.c - compaction of a library (cdx_library_compact):
 *  1. builds a library of N images with random unit vectors (catalog and
 *     vector file written with the store API, as the ingest does), bound to
 *     a model only for its dimension (a full-size random ViT-B/32 from
 *     bench/make_random_clip.py when given, 512-d; else clip-tiny, 64-d);
 *  2. removes every (1/F)-th image (default F = 0.5: every second one);
 *  3. measures search latency (top-10 by vector, one thread) idle, then
 *     while cdx_library_compact runs in another thread on the same handle,
 *     and reports the compaction time, rows/s, bytes freed and the ratio of
 *     search p50 during / idle (searches keep working, how much slower).
 * Usage:
 *   compact_bench [--model DIR] [--rows N] [--dead F] [--quick] [--json]
 */
#include "clipdex.h"
#include "common/util.h"
#include "store/catalog.h"
#include "store/vecfile.h"
#include "libfill.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static uint64_t rng(uint64_t *s)
{
    uint64_t x = (*s += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void random_unit(uint64_t *s, float *v, int dim)
{
    double n = 0;
    for (int d = 0; d < dim; d++) {
        v[d] = (float)((double)(rng(s) >> 11) / 9007199254740992.0 - 0.5);
        n += (double)v[d] * v[d];
    }
    for (int d = 0; d < dim; d++) v[d] = (float)(v[d] / sqrt(n));
}

/* Row i of the library: a random unit vector from i's own stream. */
static void gen_unit(uint64_t i, float *row, int dim, void *ctx)
{
    uint64_t seed = libfill_mix(i + 1);
    random_unit(&seed, row, dim);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct compactor {
    cdx_library *lib;
    cdx_compact_report rep;
    cdx_result r;
    volatile int done;
} compactor;

static void *compact_main(void *arg)
{
    compactor *c = arg;
    c->r = cdx_library_compact(c->lib, NULL, &c->rep);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* One top-10 search by a random vector; returns ms. */
static double one_search(cdx_library *lib, uint64_t *seed, float *q, int dim)
{
    random_unit(seed, q, dim);
    cdx_search_params sp = cdx_search_default_params();
    cdx_hit hits[10];
    size_t n;
    double t0 = cdx_now();
    if (cdx_library_search_vector(lib, q, &sp, hits, &n, NULL) || n != 10) {
        fprintf(stderr, "search failed: %s\n", cdx_last_error());
        exit(1);
    }
    return (cdx_now() - t0) * 1e3;
}

int main(int argc, char **argv)
{
    long rows = 100000;
    double dead = 0.5;
    int json = 0;
    const char *model = access("/tmp/clipdex-vitb32/config.json", R_OK) == 0 ? "/tmp/clipdex-vitb32" : NULL;
    static char tiny[4096];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dead") && i + 1 < argc) dead = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--quick")) rows = 20000;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: compact_bench [--model DIR] [--rows N] [--dead F] [--quick] [--json]\n");
            return 2;
        }
    }
    if (rows < 100 || rows > 20000000 || !(dead > 0 && dead < 1)) {
        fprintf(stderr, "compact_bench: --rows 100..2e7, --dead in (0, 1)\n");
        return 2;
    }
    if (!model) {
        const char *sh = getenv("CLIPDEX_SHARED");
        snprintf(tiny, sizeof tiny, "%s/fixtures/clip-tiny", sh && *sh ? sh : "../shared");
        model = tiny;
    }
    char dir[] = "/tmp/cdx_compact_bench_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = 1;
    lp.create = 1;
    lp.model_dir = model;
    lp.load_model = 0;
    lp.n_threads = 1;
    lp.compact.dead_fraction = 0;
    cdx_library *lib = NULL;
    cdx_library_info info;
    if (cdx_library_open(dir, &lp, &lib) || cdx_library_get_info(lib, &info)) {
        fprintf(stderr, "create: %s\n", cdx_last_error());
        return 1;
    }
    int dim = info.dim;
    cdx_library_close(lib);
    double t0 = cdx_now();
    if (libfill(dir, rows, dim, gen_unit, NULL)) return 1;
    double t_fill = cdx_now() - t0;
    /* remove every step-th image in a few big transactions (the API commits
     * each removal, too slow for 10^5 rows) */
    t0 = cdx_now();
    long step = (long)(1.0 / dead + 0.5), removed = 0;
    if (step < 2) step = 2;
    char db[600];
    snprintf(db, sizeof db, "%s/catalog.db", dir);
    catalog *cat = NULL;
    if (catalog_open(db, 1, 0, &cat) || catalog_begin(cat)) { fprintf(stderr, "rm: %s\n", cdx_last_error()); return 1; }
    for (long id = 1; id <= rows; id += step)
        if (catalog_image_delete(cat, id) == CDX_OK) removed++;
    if (catalog_commit(cat)) { fprintf(stderr, "rm: %s\n", cdx_last_error()); return 1; }
    catalog_close(cat);
    double t_rm = cdx_now() - t0;
    lp.create = 0;
    if (cdx_library_open(dir, &lp, &lib)) { fprintf(stderr, "open: %s\n", cdx_last_error()); return 1; }
    float *q = malloc(sizeof(float) * (size_t)dim);
    uint64_t seed = 7;
    double idle[41], during[4096];
    for (int i = 0; i < 41; i++) idle[i] = one_search(lib, &seed, q, dim);
    qsort(idle, 41, sizeof idle[0], cmp_d);
    compactor c = {lib, {0}, CDX_OK, 0};
    pthread_t th;
    pthread_create(&th, NULL, compact_main, &c);
    int nd = 0;
    while (!__atomic_load_n(&c.done, __ATOMIC_ACQUIRE) && nd < 4096) during[nd++] = one_search(lib, &seed, q, dim);
    pthread_join(th, NULL);
    if (c.r) { fprintf(stderr, "compact: %s\n", cdx_last_error()); return 1; }
    qsort(during, (size_t)nd, sizeof during[0], cmp_d);
    double after[41];
    for (int i = 0; i < 41; i++) after[i] = one_search(lib, &seed, q, dim);
    qsort(after, 41, sizeof after[0], cmp_d);
    double p50_during = nd ? during[nd / 2] : 0;
    if (json) {
        printf("{\"rows\": %ld, \"dim\": %d, \"removed\": %ld, \"compact_s\": %.3f, \"rows_per_s\": %.0f, "
               "\"bytes_before\": %llu, \"bytes_after\": %llu, \"bytes_freed\": %llu, "
               "\"search_p50_idle_ms\": %.3f, \"search_p50_during_ms\": %.3f, \"searches_during\": %d, "
               "\"search_p50_after_ms\": %.3f, \"during_over_idle\": %.2f, \"fill_s\": %.2f, \"remove_s\": %.2f}\n",
               rows, dim, removed, c.rep.seconds, (double)c.rep.rows_before / c.rep.seconds,
               (unsigned long long)c.rep.bytes_before, (unsigned long long)c.rep.bytes_after,
               (unsigned long long)c.rep.bytes_freed, idle[20], p50_during, nd, after[20],
               nd ? p50_during / idle[20] : 0, t_fill, t_rm);
    } else {
        printf("library: %ld images x %d dims, %ld removed (built in %.1f s, removed in %.1f s)\n", rows, dim,
               removed, t_fill, t_rm);
        printf("compaction: %.2f s (%.0f rows/s read), %llu -> %llu bytes (%llu freed)\n", c.rep.seconds,
               (double)c.rep.rows_before / c.rep.seconds, (unsigned long long)c.rep.bytes_before,
               (unsigned long long)c.rep.bytes_after, (unsigned long long)c.rep.bytes_freed);
        printf("search top-10, 1 thread: p50 idle %.2f ms, during compaction %.2f ms (%d searches, x%.2f), "
               "after %.2f ms\n", idle[20], p50_during, nd, nd ? p50_during / idle[20] : 0, after[20]);
    }
    free(q);
    cdx_library_close(lib);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
