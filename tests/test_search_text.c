/*
 * test_search_text.c - keyword, hybrid and combined search through the
 * library API on the clip-tiny fixture (docs/search.md):
 *  - cdx_query_combine equals the weighted sum computed by hand, and
 *    refuses zero weights, zero vectors and parts that cancel out;
 *  - indexing reads embedded metadata (EXIF description, XP keywords, XMP)
 *    into the full-text index; keyword search with FTS5 syntax; malformed
 *    syntax is CDX_ERR_INVALID_ARG with a clear message;
 *  - tag filters (embedded keywords and source tags) in keyword and
 *    semantic search; source metadata set through the API;
 *  - the index follows moves (re-index after a rename) and removals;
 *  - hybrid results equal a reciprocal rank fusion computed here from the
 *    two separate rankings, for several keyword weights;
 *  - a library whose catalog is at schema version 1 is upgraded in place,
 *    even by a read-only open.
 */
#include "clipdex.h"
#include "testutil.h"

#include <sqlite3.h>
#include <unistd.h>
#include <vips/vips.h>

static char g_dir[64];

static void test_combine(void)
{
    /* a = (3,0,0,4) |a| = 5, b = (0,2,0,0) |b| = 2, c = (1,1,1,1) |c| = 2 */
    const float v[12] = {3, 0, 0, 4, 0, 2, 0, 0, 1, 1, 1, 1};
    const float w[3] = {1.0f, -0.5f, 2.0f};
    float out[4];
    CHECK(cdx_query_combine(v, w, 3, 4, out) == CDX_OK);
    double s[4] = {0.6 + 1.0, -0.5 + 1.0, 1.0, 0.8 + 1.0}, norm = 0;
    for (int d = 0; d < 4; d++) norm += s[d] * s[d];
    for (int d = 0; d < 4; d++)
        CHECKF(fabs(out[d] - s[d] / sqrt(norm)) < 1e-6, "dim %d: %f vs %f", d, out[d], s[d] / sqrt(norm));
    /* one part: its normalised vector */
    CHECK(cdx_query_combine(v, w, 1, 4, out) == CDX_OK && fabsf(out[0] - 0.6f) < 1e-6f && fabsf(out[3] - 0.8f) < 1e-6f);
    const float zero[4] = {0, 0, 0, 0}, nan4[4] = {NAN, 0, 0, 0};
    float bad_w[2] = {1, 0};
    CHECK(cdx_query_combine(v, bad_w, 2, 4, out) == CDX_ERR_INVALID_ARG && strstr(cdx_last_error(), "weight 2"));
    CHECK(cdx_query_combine(zero, w, 1, 4, out) == CDX_ERR_INVALID_ARG && strstr(cdx_last_error(), "no direction"));
    CHECK(cdx_query_combine(nan4, w, 1, 4, out) == CDX_ERR_INVALID_ARG);
    const float same[8] = {3, 0, 0, 4, 6, 0, 0, 8};
    const float cancel[2] = {1, -1};
    CHECK(cdx_query_combine(same, cancel, 2, 4, out) == CDX_ERR_INVALID_ARG && strstr(cdx_last_error(), "cancel"));
    float big[2] = {1, 11};
    CHECK(cdx_query_combine(v, big, 2, 4, out) == CDX_ERR_INVALID_ARG);
}

/* A small JPEG at path with metadata (NULL = none); size makes the bytes differ. */
static void make_jpeg(const char *path, int size, const char *desc, const char *xpkeywords, const char *xmp)
{
    VipsImage *black = NULL, *im = NULL;
    CHECK(vips_black(&black, size, size, "bands", 3, NULL) == 0);
    CHECK(vips_linear1(black, &im, 1.0, (double)(size * 7 % 200), "uchar", TRUE, NULL) == 0);
    if (desc) vips_image_set_string(im, "exif-ifd0-ImageDescription", desc);
    if (xpkeywords) vips_image_set_string(im, "exif-ifd0-XPKeywords", xpkeywords);
    if (xmp) vips_image_set_blob_copy(im, VIPS_META_XMP_NAME, xmp, strlen(xmp));
    CHECKF(vips_jpegsave(im, path, NULL) == 0, "%s", vips_error_buffer());
    g_object_unref(black);
    g_object_unref(im);
}

static int64_t find(cdx_library *lib, const char *path)
{
    int64_t id = 0;
    return cdx_library_find(lib, path, &id) == CDX_OK ? id : -1;
}

/* The ids of a keyword search, or -1 in [0] on failure. */
static size_t kw(cdx_library *lib, const char *q, const char *tag, int64_t *ids)
{
    cdx_search_params sp = cdx_search_default_params();
    sp.k = 32;
    sp.tag = tag;
    cdx_hit h[32];
    size_t n = 0;
    uint64_t total = 0;
    ids[0] = -1;
    cdx_result r = cdx_library_search_keyword(lib, q, &sp, h, &n, &total);
    CHECKF(r == CDX_OK && total == n, "%s: %s", q, cdx_last_error());
    for (size_t i = 0; i < n; i++) ids[i] = h[i].id;
    return n;
}

typedef struct rrf {
    int64_t id;
    double score;
} rrf;

static int rrf_cmp(const void *a, const void *b)
{
    const rrf *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Hybrid = RRF of the separate rankings, computed here. */
static void check_fusion(cdx_library *lib, const char *text, float w)
{
    float q[64];
    CHECK(cdx_library_embed_text(lib, text, q) == CDX_OK);
    cdx_search_params sp = cdx_search_default_params();
    sp.k = 100;   /* the candidate count for k + offset <= 50 */
    cdx_hit sem[100], kwh[100], hy[100];
    size_t ns = 0, nk = 0, nh = 0;
    uint64_t sem_total = 0;
    CHECK(cdx_library_search_vector(lib, q, &sp, sem, &ns, &sem_total) == CDX_OK);
    CHECK(cdx_library_search_keyword(lib, text, &sp, kwh, &nk, NULL) == CDX_OK);   /* one word: same query */
    CHECK(nk > 0);
    rrf all[200];
    size_t m = 0;
    for (size_t i = 0; i < ns; i++) all[m++] = (rrf){sem[i].id, (1.0 - w) / (60.0 + (double)(i + 1))};
    for (size_t i = 0; i < nk; i++) {
        size_t j = 0;
        while (j < m && all[j].id != kwh[i].id) j++;
        if (j == m) all[m++] = (rrf){kwh[i].id, 0};
        all[j].score += w / (60.0 + (double)(i + 1));
    }
    qsort(all, m, sizeof *all, rrf_cmp);
    sp.k = 12;
    sp.keyword_weight = w;
    uint64_t total = 0;
    CHECK(cdx_library_search_hybrid(lib, q, text, &sp, hy, &nh, &total) == CDX_OK);
    CHECK(nh == 12 && total == sem_total);
    for (size_t i = 0; i < nh; i++)
        CHECKF(hy[i].id == all[i].id && fabs(hy[i].score - all[i].score) < 1e-6,
               "w %.2f rank %zu: %lld %g vs %lld %g", (double)w, i, (long long)hy[i].id, hy[i].score,
               (long long)all[i].id, all[i].score);
    sp.offset = 5;
    sp.k = 3;
    CHECK(cdx_library_search_hybrid(lib, q, text, &sp, hy, &nh, NULL) == CDX_OK);
    CHECK(nh == 3 && hy[0].id == all[5].id && hy[2].id == all[7].id);
    /* a threshold: only images whose cosine passes it, total = their count */
    sp.offset = 0;
    sp.k = 100;
    sp.min_score = sem[19].score;
    uint64_t above = 0;
    CHECK(cdx_library_search_vector(lib, q, &sp, sem, &ns, &above) == CDX_OK && above >= 20);
    CHECK(cdx_library_search_hybrid(lib, q, text, &sp, hy, &nh, &total) == CDX_OK);
    CHECK(total == above && nh == ns);
    for (size_t i = 0; i < nh; i++) {
        size_t j = 0;
        while (j < ns && sem[j].id != hy[i].id) j++;
        CHECKF(j < ns, "hybrid result %lld is below the threshold", (long long)hy[i].id);
    }
}

static void test_library_text(const char *shared, const char *model)
{
    char imgs[128], lib_dir[128], p[4][256];
    snprintf(imgs, sizeof imgs, "%s/imgs", g_dir);
    snprintf(lib_dir, sizeof lib_dir, "%s/lib", g_dir);
    CHECK(mkdir(imgs, 0777) == 0);
    snprintf(p[0], sizeof p[0], "%s/pier.jpg", imgs);
    snprintf(p[1], sizeof p[1], "%s/plain.jpg", imgs);
    snprintf(p[2], sizeof p[2], "%s/street.jpg", imgs);
    make_jpeg(p[0], 20, "Sunset over the old pier", "holiday;sea", NULL);
    make_jpeg(p[1], 24, NULL, NULL, NULL);
    make_jpeg(p[2], 28, NULL, NULL,
              "<rdf:Description photoshop:City='Lisbon'><dc:subject><rdf:Bag><rdf:li>tram</rdf:li>"
              "<rdf:li>Holiday</rdf:li></rdf:Bag></dc:subject></rdf:Description>");
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = 1;
    lp.create = 1;
    lp.model_dir = model;
    cdx_library *lib = NULL;
    CHECK(cdx_library_open(lib_dir, &lp, &lib) == CDX_OK);
    if (!lib) return;
    int has = 1;
    CHECK(cdx_library_has_text(lib, &has) == CDX_OK && has == 0);   /* empty library */
    char formats[512], imagenet[512];
    snprintf(formats, sizeof formats, "%s/data/formats", shared);
    snprintf(imagenet, sizeof imagenet, "%s/data/imagenet-sample", shared);
    const char *paths[] = {imgs, formats, imagenet};
    cdx_index_params ip = cdx_index_default_params();
    cdx_index_stats st;
    CHECK(cdx_library_index(lib, paths, 3, &ip, &st) == CDX_OK);
    CHECK(st.added >= 3 + 10 + 400);
    CHECK(cdx_library_has_text(lib, &has) == CDX_OK && has == 1);
    int64_t pier = find(lib, p[0]), plain = find(lib, p[1]), street = find(lib, p[2]);
    CHECK(pier > 0 && plain > 0 && street > 0);

    int64_t ids[32];
    CHECK(kw(lib, "sunset", NULL, ids) == 1 && ids[0] == pier);           /* EXIF description */
    CHECK(kw(lib, "\"old pier\"", NULL, ids) == 1 && ids[0] == pier);     /* phrase */
    CHECK(kw(lib, "lisbo*", NULL, ids) == 1 && ids[0] == street);         /* XMP place, prefix */
    CHECK(kw(lib, "holiday", NULL, ids) == 2);                            /* XP keywords + dc:subject */
    CHECK(kw(lib, "holiday NOT tram", NULL, ids) == 1 && ids[0] == pier);
    CHECK(kw(lib, "plain", NULL, ids) == 1 && ids[0] == plain);           /* file name */
    CHECK(kw(lib, "tench", NULL, ids) == 1);                              /* imagenet file name */
    CHECK(kw(lib, "holiday", "SEA", ids) == 1 && ids[0] == pier);         /* keyword as tag */
    CHECK(kw(lib, "holiday OR plain", "holiday", ids) == 2);
    /* malformed syntax and empty queries */
    static const char *const bad[] = {"\"sunset", "sunset AND", "(a OR b", "nocolumn:x", "NEAR(a b"};
    cdx_search_params sp = cdx_search_default_params();
    cdx_hit h[16];
    size_t n = 7;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(cdx_library_search_keyword(lib, bad[i], &sp, h, &n, NULL) == CDX_ERR_INVALID_ARG && n == 0 &&
               strstr(cdx_last_error(), "is not valid"), "%s: %s", bad[i], cdx_last_error());
    CHECK(cdx_library_search_keyword(lib, "  ", &sp, h, &n, NULL) == CDX_ERR_INVALID_ARG &&
          strstr(cdx_last_error(), "empty"));
    sp.keyword_weight = 1.5f;
    CHECK(cdx_library_search_keyword(lib, "x", &sp, h, &n, NULL) == CDX_ERR_INVALID_ARG);
    sp.keyword_weight = 0.5f;

    /* tags in semantic search too */
    float q[64];
    CHECK(cdx_library_embed_text(lib, "a photo", q) == CDX_OK);
    sp.k = 16;
    sp.tag = "holiday";
    uint64_t total = 0;
    CHECK(cdx_library_search_vector(lib, q, &sp, h, &n, &total) == CDX_OK && n == 2 && total == 2);
    CHECK((h[0].id == pier && h[1].id == street) || (h[0].id == street && h[1].id == pier));
    sp.tag = NULL;

    /* source metadata through the API */
    int64_t tench = ids[0];
    CHECK(kw(lib, "tench", NULL, ids) == 1);
    tench = ids[0];
    const char *tags[] = {"Pets", " fish ", "pets"};
    cdx_source_meta sm = {"Fluffy the fish", "caught in 2019", tags, 3};
    CHECK(cdx_library_set_source_meta(lib, tench, &sm) == CDX_OK);
    CHECK(kw(lib, "fluffy AND caught", NULL, ids) == 1 && ids[0] == tench);
    CHECK(kw(lib, "title:fluffy", "PETS", ids) == 1 && ids[0] == tench);
    cdx_image_text tx;
    CHECK(cdx_library_get_text(lib, tench, &tx) == CDX_OK);
    CHECKF(!strcmp(tx.tags, "Pets\nfish") && !strcmp(tx.title, "Fluffy the fish"), "[%s]", tx.tags);
    cdx_image_text_free(&tx);
    CHECK(cdx_library_get_text(lib, pier, &tx) == CDX_OK);
    CHECKF(!strcmp(tx.keywords, "holiday\nsea") && strstr(tx.embedded, "Sunset over the old pier"), "[%s]", tx.keywords);
    cdx_image_text_free(&tx);
    const char *badtag[] = {"ok", "bad\xff"};
    cdx_source_meta bm = {NULL, NULL, badtag, 2};
    CHECK(cdx_library_set_source_meta(lib, tench, &bm) == CDX_ERR_INVALID_ARG);
    CHECK(kw(lib, "fluffy", NULL, ids) == 1);   /* unchanged */
    cdx_source_meta none = {NULL, NULL, NULL, 0};
    CHECK(cdx_library_set_source_meta(lib, 999999, &none) == CDX_ERR_NOT_FOUND);

    /* stopwords only: no keyword side, the semantic order */
    {
        cdx_search_params hp = cdx_search_default_params();
        hp.k = 10;
        cdx_hit a[10], b[10];
        size_t na = 0, nb = 0;
        CHECK(cdx_library_search_vector(lib, q, &hp, a, &na, NULL) == CDX_OK);
        CHECK(cdx_library_search_hybrid(lib, q, "A photo of THE", &hp, b, &nb, NULL) == CDX_OK);
        CHECK(na == 10 && nb == 10);
        for (size_t i = 0; i < nb; i++) CHECK(a[i].id == b[i].id);
    }
    /* fusion */
    check_fusion(lib, "holiday", 0.5f);
    check_fusion(lib, "holiday", 0.9f);
    check_fusion(lib, "tench", 0.2f);

    /* a rename (moved: same id, new name) and a removal keep the index in step */
    char moved[256];
    snprintf(moved, sizeof moved, "%s/harbour.jpg", imgs);
    CHECK(rename(p[0], moved) == 0);
    const char *one[] = {imgs};
    ip.prune = 1;
    CHECK(cdx_library_index(lib, one, 1, &ip, &st) == CDX_OK && st.moved == 1);
    CHECK(kw(lib, "harbour", NULL, ids) == 1 && ids[0] == pier);
    CHECK(kw(lib, "sunset", NULL, ids) == 1 && ids[0] == pier);   /* description kept */
    size_t np = kw(lib, "name:pier", NULL, ids);                  /* only imagenet's pier now */
    CHECK(np == 1 && ids[0] != pier);
    CHECK(cdx_library_remove(lib, street) == CDX_OK);
    CHECK(kw(lib, "lisbon OR tram", NULL, ids) == 0);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    cdx_library_close(lib);

    /* back to schema version 1 by hand, then a read-only open upgrades it */
    char cat[256];
    snprintf(cat, sizeof cat, "%s/catalog.db", lib_dir);
    sqlite3 *db;
    CHECK(sqlite3_open(cat, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
        "DROP TRIGGER fts_image_insert; DROP TRIGGER fts_image_delete; DROP TRIGGER fts_image_update;"
        "DROP TRIGGER fts_content_insert; DROP TRIGGER fts_content_update; DROP TABLE fts;"
        "ALTER TABLE images DROP COLUMN title; ALTER TABLE images DROP COLUMN description;"
        "ALTER TABLE images DROP COLUMN tags; ALTER TABLE contents DROP COLUMN meta_text;"
        "ALTER TABLE contents DROP COLUMN keywords; ALTER TABLE contents DROP COLUMN ocr_text;"
        "ALTER TABLE contents DROP COLUMN phash;"   /* schema 3 (dupes) */
        "UPDATE meta SET value = '1' WHERE key = 'schema_version';", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    lp = cdx_library_default_params();
    lp.load_model = 0;
    CHECK(cdx_library_open(lib_dir, &lp, &lib) == CDX_OK);
    if (!lib) return;
    CHECK(kw(lib, "harbour", NULL, ids) == 1 && ids[0] == pier);   /* paths indexed at upgrade */
    CHECK(kw(lib, "tench", NULL, ids) == 1);
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    cdx_library_close(lib);
}

int main(void)
{
    test_combine();
    const char *shared = test_shared_dir();
    const char *model = test_fixture_dir();
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx_test_search_text_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    CHECK(VIPS_INIT("test_search_text") == 0);
    test_library_text(shared, model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
