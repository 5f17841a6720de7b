/*
 * test_lib_ann.c - the approximate index inside the library (lib_ann.c), on
 * a clip-tiny library (dim 64) filled with clustered vectors through
 * cdx_library_add_vectors and ann_min_rows = 1000:
 *  - built once the library reaches 1000 vectors, then extended lazily by
 *    later batches while two threads search (the locks under the
 *    sanitizers); every search meanwhile says approximate and returns
 *    ordered exact scores;
 *  - recall@10 against exact above a floor; probing every list gives the
 *    exact results; exact = 1, a selective filter and a deep page are exact;
 *  - check reports "behind" (lazy adds) and extends, then "ok"; a flipped
 *    byte in the centroids: searches of a new handle are exact, check
 *    reports "damaged" and rebuilds;
 *  - a removed image is never returned; compaction rebuilds the index for
 *    the new vector file.
 */
#include "clipdex.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#define DIM 64
#define BATCH 500
#define N_FIRST 1500
#define N_ALL 4500
#define NQ 30

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(urand() + 1e-12)) * cos(6.283185307 * urand()); }

static float cents[40][DIM];
static void gen(float *v, double shift)
{
    int c = (int)(40 * urand() * urand());   /* uneven cluster sizes */
    double n = 0;
    for (int d = 0; d < DIM; d++) {
        v[d] = cents[c][d] + (float)((0.45 + shift) * gauss() * pow(0.97, d));
        n += (double)v[d] * v[d];
    }
    for (int d = 0; d < DIM; d++) v[d] = (float)(v[d] / sqrt(n));
}

static void add(cdx_library *lib, const float *vecs, int first, int n, const char *fp)
{
    cdx_image_record *recs = calloc((size_t)n, sizeof *recs);
    for (int i = 0; i < n; i++) {
        snprintf(recs[i].path, sizeof recs[i].path, "/photos/%02d/img%06d.jpg", (first + i) % 17, first + i);
        snprintf(recs[i].sha256, sizeof recs[i].sha256, "%064x", first + i + 1);
        snprintf(recs[i].format, sizeof recs[i].format, "jpeg");
    }
    CHECK(cdx_library_add_vectors(lib, recs, vecs + (size_t)first * DIM, (size_t)n, fp, NULL) == CDX_OK);
    free(recs);
}

typedef struct searcher {
    cdx_library *lib;
    const float *queries;
    volatile int *stop;
    int runs, approximate, bad;
} searcher;

static void *search_loop(void *arg)
{
    searcher *s = arg;
    cdx_search_info how;
    cdx_search_params p = cdx_search_default_params();
    p.info = &how;
    cdx_hit hits[10];
    for (int i = 0; !*s->stop || s->runs < 5; i++) {
        size_t n = 0;
        uint64_t total = 0;
        if (cdx_library_search_vector(s->lib, s->queries + (size_t)(i % NQ) * DIM, &p, hits, &n, &total)) s->bad++;
        for (size_t j = 1; j < n; j++)
            if (hits[j].score > hits[j - 1].score) s->bad++;
        s->runs++;
        s->approximate += how.approximate;
    }
    return NULL;
}

static double recall(cdx_library *lib, const float *q, const cdx_search_params *ap, int *approx)
{
    cdx_search_params ep = cdx_search_default_params();
    ep.exact = 1;
    cdx_search_info how = {0, 0};
    cdx_search_params p = *ap;
    p.info = &how;
    int found = 0, all = 1;
    for (int i = 0; i < NQ; i++) {
        cdx_hit a[10], e[10];
        size_t na = 0, ne = 0;
        CHECK(cdx_library_search_vector(lib, q + (size_t)i * DIM, &p, a, &na, NULL) == CDX_OK);
        CHECK(cdx_library_search_vector(lib, q + (size_t)i * DIM, &ep, e, &ne, NULL) == CDX_OK);
        all &= how.approximate;
        for (size_t x = 0; x < na; x++)
            for (size_t y = 0; y < ne; y++) found += a[x].id == e[y].id;
    }
    *approx = all;
    return found / (10.0 * NQ);
}

static int flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    int c = fseek(f, at, SEEK_SET) ? EOF : fgetc(f);
    int ok = c != EOF && !fseek(f, at, SEEK_SET) && fputc(c ^ 0x5a, f) != EOF;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(void)
{
    const char *model = test_fixture_dir();
    char dir[] = "/tmp/test_lib_ann_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char libdir[600], annpath[700];
    snprintf(libdir, sizeof libdir, "%s/lib", dir);
    snprintf(annpath, sizeof annpath, "%s/ann.cdxi", libdir);
    for (int c = 0; c < 40; c++)
        for (int d = 0; d < DIM; d++) cents[c][d] = (float)(gauss() * pow(0.97, d) + (d < 8 ? 1.0 : 0));
    float *vecs = malloc((size_t)N_ALL * DIM * sizeof *vecs), *q = malloc((size_t)NQ * DIM * sizeof *q);
    for (int i = 0; i < N_ALL; i++) gen(vecs + (size_t)i * DIM, 0);
    for (int i = 0; i < NQ; i++) gen(q + (size_t)i * DIM, 0.3);

    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = model;
    lp.create = 1;
    lp.writable = 1;
    lp.n_threads = 1;
    lp.load_model = 0;
    lp.ann_min_rows = 1000;
    lp.compact.dead_fraction = 0;   /* compaction only when asked */
    cdx_library *lib = NULL;
    CHECK(cdx_library_open(libdir, &lp, &lib) == CDX_OK);
    if (!lib) return test_finish();
    cdx_library_info li;
    CHECK(cdx_library_get_info(lib, &li) == CDX_OK && li.dim == DIM);

    /* built at 1000 vectors, then extended while two threads search */
    add(lib, vecs, 0, BATCH, li.model_fingerprint);
    CHECK(access(annpath, F_OK) != 0);   /* 500 < 1000: no index */
    for (int f = BATCH; f < N_FIRST; f += BATCH) add(lib, vecs, f, BATCH, li.model_fingerprint);
    CHECK(access(annpath, F_OK) == 0);
    volatile int stop = 0;
    searcher s[2] = {{lib, q, &stop, 0, 0, 0}, {lib, q, &stop, 0, 0, 0}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, search_loop, &s[t]);
    for (int f = N_FIRST; f < N_ALL; f += BATCH) add(lib, vecs, f, BATCH, li.model_fingerprint);
    stop = 1;
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 2; t++)
        CHECKF(s[t].bad == 0 && s[t].approximate == s[t].runs, "searcher %d: %d runs, %d approximate, %d bad", t,
               s[t].runs, s[t].approximate, s[t].bad);

    /* recall, all lists, the exact fallbacks */
    cdx_search_params p = cdx_search_default_params();
    int approx = 0;
    double r = recall(lib, q, &p, &approx);
    printf("recall@10 default probes: %.3f\n", r);
    CHECKF(r >= 0.75 && approx, "recall %.3f (approximate %d)", r, approx);
    p.probes = 65536;
    r = recall(lib, q, &p, &approx);
    CHECKF(r == 1.0 && approx, "every list: recall %.3f", r);
    cdx_search_info how;
    p = cdx_search_default_params();
    p.info = &how;
    cdx_hit hits[10];
    size_t n = 0;
    uint64_t total = 0;
    p.exact = 1;
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_OK && !how.approximate && n == 10);
    p.exact = 0;
    p.path_prefix = "/photos/03/";
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_OK && !how.approximate && n == 10);
    p.path_prefix = NULL;
    p.offset = 5000;
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_OK && !how.approximate);
    p.offset = 0;
    p.probes = -1;
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_ERR_INVALID_ARG);
    p.probes = 0;

    /* check: lazy adds leave it behind; extended, then ok */
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    CHECKF((rep.ann_state == CDX_ANN_BEHIND && rep.ann_rebuilt) || rep.ann_state == CDX_ANN_OK,
           "first check: %s", cdx_ann_state_str(rep.ann_state));
    CHECK(rep.ann_rows == N_ALL);
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.ann_state == CDX_ANN_OK && !rep.ann_rebuilt);

    /* damage: a new handle searches exactly; check rebuilds */
    CHECK(flip_byte(annpath, 300) == 0);
    cdx_library_params rp = cdx_library_default_params();
    rp.load_model = 0;
    rp.n_threads = 1;
    rp.ann_min_rows = 1000;
    cdx_library *ro = NULL;
    CHECK(cdx_library_open(libdir, &rp, &ro) == CDX_OK);
    if (ro) {
        CHECK(cdx_library_search_vector(ro, q, &p, hits, &n, &total) == CDX_OK && !how.approximate && n == 10);
        CHECK(cdx_library_check(ro, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
        CHECKF(rep.ann_state == CDX_ANN_DAMAGED && rep.ann_rebuilt && rep.ann_rows == N_ALL, "damaged: %s",
               cdx_ann_state_str(rep.ann_state));
        cdx_library_close(ro);
    }
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.ann_state == CDX_ANN_OK);

    /* deletions, then compaction */
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_OK && how.approximate && n == 10);
    int64_t victim = hits[0].id;
    CHECK(cdx_library_remove(lib, victim) == CDX_OK);
    for (int i = 0; i < 200; i++) CHECK(cdx_library_remove(lib, i + 1) == CDX_OK || i + 1 == victim);
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_OK && how.approximate && n == 10);
    for (size_t i = 0; i < n; i++) CHECK(hits[i].id != victim && hits[i].id > 200);
    cdx_compact_params cp = cdx_compact_default_params();
    cp.dead_fraction = 0;
    cp.min_dead = 1;
    cdx_compact_report crep;
    CHECK(cdx_library_compact(lib, &cp, &crep) == CDX_OK && crep.compacted);
    CHECK(cdx_library_search_vector(lib, q, &p, hits, &n, &total) == CDX_OK && how.approximate && n == 10);
    for (size_t i = 0; i < n; i++) CHECK(hits[i].id != victim && hits[i].id > 200);
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    CHECKF(rep.ann_state == CDX_ANN_OK && rep.ann_rows == rep.vectors && rep.vectors == crep.rows_after,
           "after compaction: %s, %llu rows, %llu vectors", cdx_ann_state_str(rep.ann_state),
           (unsigned long long)rep.ann_rows, (unsigned long long)rep.vectors);
    cdx_library_close(lib);
    free(vecs);
    free(q);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
