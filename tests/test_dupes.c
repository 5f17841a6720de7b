/*
 * test_dupes.c - near-duplicate grouping.
 *  1. dupes_group (search/dupes.c) on hand-made pairs: transitive groups,
 *     singletons left out, the keeper rule (pixels, then date, then id),
 *     the reason (most similar pair), out-of-range pair indexes ignored.
 *  2. cdx_library_dupes on a library of synthetic vectors (added with
 *     cdx_library_add_vectors, hashes written into the catalog here):
 *     planted near pairs with close hashes are grouped; a near pair whose
 *     hashes are far apart is not (an unrelated look-alike); a pair with
 *     a missing hash is not; the same at f32 and int8 scans; parameters
 *     out of range are CDX_ERR_INVALID_ARG with a message.
 * Needs the clip-tiny fixture only for the library's model binding.
 */
#include "testutil.h"

#include "clipdex.h"
#include "search/dupes.h"
#include "store/catalog.h"

#include <stdlib.h>
#include <string.h>

static const cdx_dupe *member(const cdx_dupes *d, int64_t id, size_t *group)
{
    for (size_t g = 0; g < d->n_groups; g++)
        for (size_t m = d->groups[g].first; m < d->groups[g].first + d->groups[g].count; m++)
            if (d->members[m].id == id) {
                *group = g;
                return &d->members[m];
            }
    return NULL;
}

static void test_group(void)
{
    /* ids 10..16; pixels and dates chosen to exercise the keeper rule */
    dupes_image im[7] = {
        {10, 0, 1, 100, 500}, {11, 0, 1, 400, 900}, {12, 0, 1, 400, 300},   /* 12: most pixels, oldest */
        {13, 0, 1, 50, 100},  {14, 0, 1, 50, 100},                          /* tie: smaller id 13 */
        {15, 0, 1, 10, 10},   {16, 0, 1, 10, 10}};                           /* 15, 16 alone */
    dupes_pair pairs[] = {{0, 1, 0.95f, 3}, {1, 2, 0.97f, 2}, {4, 3, 0.99f, -1}, {0, 9, 0.99f, 1}, {5, 5, 1.0f, 0}};
    cdx_dupes *d = NULL;
    CHECK(dupes_group(im, 7, pairs, 5, &d) == CDX_OK && d);
    if (!d) return;
    CHECK(d->n_groups == 2 && d->n_members == 5);
    size_t g = 99, g2 = 98;
    const cdx_dupe *m12 = member(d, 12, &g), *m10 = member(d, 10, &g2);
    CHECK(m12 && m12->keeper && d->groups[g].keeper == 12 && d->groups[g].count == 3);
    CHECK(d->members[d->groups[g].first].id == 12);   /* keeper first */
    CHECK(m10 && !m10->keeper && g2 == g && m10->via == 11 && m10->distance == 3);
    CHECK(m12 && m12->via == 11 && m12->similarity == 0.97f);
    const cdx_dupe *m11 = member(d, 11, &g2);
    CHECK(m11 && m11->via == 12);   /* its most similar pair */
    const cdx_dupe *m13 = member(d, 13, &g), *m14 = member(d, 14, &g2);
    CHECK(m13 && m13->keeper && m14 && !m14->keeper && m14->distance == -1 && m14->via == 13);
    CHECK(!member(d, 15, &g) && !member(d, 16, &g));
    cdx_dupes_free(d);
    CHECK(dupes_group(im, 0, NULL, 0, &d) == CDX_OK && d && d->n_groups == 0);
    cdx_dupes_free(d);
    cdx_dupes_free(NULL);
}

#define N 400

/* Unit vector i of a random-ish set, plus planted near copies. */
static void fill(float *v, int dim, unsigned seed)
{
    for (int j = 0; j < dim; j++) {
        seed = seed * 1103515245u + 12345u;
        v[j] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

static void test_library(void)
{
    char dir[] = "/tmp/test_dupes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char libdir[600];
    snprintf(libdir, sizeof libdir, "%s/lib", dir);
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = test_fixture_dir();
    lp.create = 1;
    lp.writable = 1;
    lp.load_model = 0;
    lp.n_threads = 1;
    cdx_library *lib = NULL;
    CHECK(cdx_library_open(libdir, &lp, &lib) == CDX_OK);
    if (!lib) return;
    cdx_library_info li;
    CHECK(cdx_library_get_info(lib, &li) == CDX_OK);
    int dim = li.dim;
    float *vecs = calloc((size_t)N * dim, sizeof *vecs);
    cdx_image_record *recs = calloc(N, sizeof *recs);
    for (int i = 0; i < N; i++) {
        fill(vecs + (size_t)i * dim, dim, 77u + (unsigned)i * 7919u);
        snprintf(recs[i].path, sizeof recs[i].path, "/photos/img%03d.jpg", i);
        recs[i].width = 100 + i;
        recs[i].height = 100;
        recs[i].mtime = 1000 + i;
        snprintf(recs[i].format, sizeof recs[i].format, "jpeg");
    }
    /* near copies: 1 of 0, 3 of 2, 5 of 4 (similarity ~0.99); 7 of 6 too */
    for (int i = 1; i < 8; i += 2)
        for (int j = 0; j < dim; j++)
            vecs[(size_t)i * dim + j] = vecs[(size_t)(i - 1) * dim + j] + 0.04f * vecs[(size_t)(i + 100) * dim + j];
    CHECK(cdx_library_add_vectors(lib, recs, vecs, N, NULL, NULL) == CDX_OK);

    /* hashes: pairs (0,1), (2,3) close; (4,5) far apart (a look-alike);
     * 7 has none (stays NULL); everything else random */
    catalog *c = NULL;
    char cat[700];
    snprintf(cat, sizeof cat, "%s/catalog.db", libdir);
    CHECK(catalog_open(cat, 1, 0, &c) == CDX_OK);
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int i = 0; c && i < N; i++) {
        if (i == 7) continue;
        cdx_image_record r;
        CHECK(catalog_image_by_path(c, recs[i].path, &r) == CDX_OK);
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t v = h;
        if (i == 1) v = 0x0123456789abcdefull ^ 0x7ull;   /* 3 bits from 0 */
        if (i == 0) v = 0x0123456789abcdefull;
        if (i == 3) v = 0xfedcba9876543210ull ^ 0x100000001ull;   /* 2 bits from 2 */
        if (i == 2) v = 0xfedcba9876543210ull;
        if (i == 4) v = 0x00000000ffffffffull;
        if (i == 5) v = 0xffffffff00000000ull;                     /* 64 bits from 4 */
        CHECK(catalog_content_set_phash(c, r.sha256, v) == CDX_OK);
    }
    catalog_close(c);

    for (int scan = 0; scan < 2; scan++) {
        cdx_dupes_params p = cdx_dupes_default_params();
        p.scan = scan ? CDX_SCAN_INT8 : CDX_SCAN_F32;
        p.rehash = 0;
        p.threshold = 0.95f;
        cdx_dupes *d = NULL;
        CHECK(cdx_library_dupes(lib, &p, &d) == CDX_OK && d);
        if (!d) continue;
        CHECKF(d->n_groups == 2 && d->n_members == 4, "scan %d: %zu groups, %zu members", scan, d->n_groups,
               d->n_members);
        size_t g0 = 9, g1 = 8;
        /* ids follow insertion: id = i + 1; the keeper has more pixels */
        const cdx_dupe *a = member(d, 2, &g0), *b = member(d, 1, &g1);
        CHECK(a && b && g0 == g1 && a->keeper && !b->keeper && b->via == 2 && b->distance == 3 &&
              b->similarity > 0.95f);
        a = member(d, 4, &g0);
        b = member(d, 3, &g1);
        CHECK(a && b && g0 == g1 && a->keeper && b->distance == 2);
        CHECK(!member(d, 5, &g0) && !member(d, 6, &g0));   /* hashes 64 bits apart */
        CHECK(!member(d, 7, &g0) && !member(d, 8, &g0));   /* 7 (id 8) has no hash */
        CHECK(d->images == N && d->unhashed == 1 && d->rejected >= 4 && d->candidates >= 8);
        cdx_dupes_free(d);
    }

    cdx_dupes_params bad = cdx_dupes_default_params();
    cdx_dupes *d = NULL;
    float thresholds[] = {0.0f, -0.5f, 1.01f, NAN};
    for (int i = 0; i < 4; i++) {
        bad.threshold = thresholds[i];
        CHECK(cdx_library_dupes(lib, &bad, &d) == CDX_ERR_INVALID_ARG && !d);
        CHECK(strstr(cdx_last_error(), "out of range") != NULL);
    }
    bad = cdx_dupes_default_params();
    bad.max_distance = 33;
    CHECK(cdx_library_dupes(lib, &bad, &d) == CDX_ERR_INVALID_ARG);
    bad = cdx_dupes_default_params();
    bad.neighbours = 0;
    CHECK(cdx_library_dupes(lib, &bad, &d) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_library_dupes(NULL, NULL, &d) == CDX_ERR_INVALID_ARG);
    cdx_library_close(lib);
    free(vecs);
    free(recs);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    test_shared_dir();
    test_group();
    test_library();
    return test_finish();
}
