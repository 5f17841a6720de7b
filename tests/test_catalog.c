/*
 * test_catalog.c - the SQLite catalog alone: schema and version policy,
 * inserts/updates/deletes with content garbage collection, LIKE-escaped
 * prefix filters, date (taken else mtime) and format filters, and the
 * structural check; the full-text index (schema 2): kept in step with
 * inserts, moves, content text and deletes, tag filters, malformed FTS5
 * syntax, and the in-place upgrade of a version 1 catalog.
 */
#include "store/catalog.h"
#include "testutil.h"

#include <sqlite3.h>
#include <unistd.h>

static cdx_image_record content(const char *sha_char, const char *fmt, int64_t taken)
{
    cdx_image_record r;
    memset(&r, 0, sizeof r);
    memset(r.sha256, sha_char[0], 64);
    r.sha256[64] = '\0';
    r.size = 100;
    r.width = 10;
    r.height = 20;
    snprintf(r.format, sizeof r.format, "%s", fmt);
    r.taken = taken;
    return r;
}

static size_t query(catalog *c, const char *prefix, const char *fmt, int64_t after, int64_t before)
{
    catalog_filter f = {prefix, fmt, after, before, NULL};
    catalog_pair *p = NULL;
    size_t n = 0;
    CHECK(catalog_query(c, &f, &p, &n) == CDX_OK);
    for (size_t i = 1; i < n; i++) CHECK(p[i - 1].slot < p[i].slot || (p[i - 1].slot == p[i].slot && p[i - 1].id < p[i].id));
    free(p);
    return n;
}

static void on_problem(void *u, const char *line)
{
    (*(int *)u)++;
    fprintf(stderr, "  (expected) %s\n", line);
}

/* Ids matching an FTS5 query (with an optional tag filter), in rank order,
 * as "id,id,..."; "ERR" on failure. */
static const char *fts(catalog *c, const char *match, const char *tag)
{
    static char out[256];
    catalog_filter f = {NULL, NULL, 0, 0, tag};
    catalog_fts_hit h[16];
    size_t n = 0;
    uint64_t total = 0;
    if (catalog_fts_query(c, match, &f, 0, 16, h, &n, &total) != CDX_OK) return "ERR";
    size_t j = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        j += (size_t)snprintf(out + j, sizeof out - j, "%s%lld", i ? "," : "", (long long)h[i].id);
    if (total != n) return "TOTAL";
    return out;
}

static void test_fts(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/fts.db", dir);
    catalog *c = NULL;
    CHECK(catalog_open(path, 1, 1, &c) == CDX_OK);
    cdx_image_record a = content("a", "jpeg", 0), b = content("b", "png", 0);
    snprintf(a.camera, sizeof a.camera, "Canon EOS 5D");
    int64_t id1, id2, id3;
    char *kw = NULL;
    const char *kws[] = {"Holiday", " sea ", "holiday", "", NULL};
    CHECK(catalog_tag_list(kws, 5, &kw) == CDX_OK && !strcmp(kw, "\nHoliday\nsea\n"));
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_content_insert(c, &a, 0) == CDX_OK);
    CHECK(catalog_content_set_text(c, a.sha256, "Sunset over Brighton pier\nJane Doe", kw) == CDX_OK);
    CHECK(catalog_content_insert(c, &b, 1) == CDX_OK);
    CHECK(catalog_image_insert(c, "/photos/2024/beach_trip.jpg", a.sha256, 1, 1, &id1) == CDX_OK);
    CHECK(catalog_image_insert(c, "/photos/cats/tabby.png", b.sha256, 1, 1, &id2) == CDX_OK);
    CHECK(catalog_image_insert(c, "https://example.org/pics/copy.jpg", a.sha256, 1, 1, &id3) == CDX_OK);
    CHECK(catalog_commit(c) == CDX_OK);
    free(kw);
    char want[64];
    /* path words, file names, embedded text, keywords, camera; stemming */
    snprintf(want, sizeof want, "%lld", (long long)id2);
    CHECK(!strcmp(fts(c, "tabby", NULL), want));
    CHECK(!strcmp(fts(c, "name:cats", NULL), ""));           /* folder, not file name */
    CHECK(!strcmp(fts(c, "path:cats", NULL), want));
    snprintf(want, sizeof want, "%lld,%lld", (long long)id1, (long long)id3);
    CHECK(!strcmp(fts(c, "sunsets", NULL), want));           /* porter: sunsets ~ sunset */
    CHECK(!strcmp(fts(c, "\"brighton pier\"", NULL), want)); /* phrase */
    CHECK(!strcmp(fts(c, "brigh*", NULL), want));             /* prefix */
    CHECK(!strcmp(fts(c, "canon AND holiday", NULL), want));
    snprintf(want, sizeof want, "%lld", (long long)id3);
    CHECK(!strcmp(fts(c, "holiday NOT beach", NULL), want));
    CHECK(!strcmp(fts(c, "tabby OR nothing", NULL), fts(c, "tabby", NULL)));
    CHECK(!strcmp(fts(c, "zebra", NULL), ""));
    /* malformed syntax: INVALID_ARG with SQLite's reason, nothing else */
    catalog_filter none = {NULL, NULL, 0, 0, NULL};
    catalog_fts_hit h[4];
    size_t n = 9;
    uint64_t total = 9;
    static const char *const bad[] = {"\"unclosed", "AND", "sea AND", "(sea", "nosuchcol:sea", "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(catalog_fts_query(c, bad[i], &none, 0, 4, h, &n, &total) == CDX_ERR_INVALID_ARG &&
               n == 0 && strstr(cdx_last_error(), "is not valid"), "%s: %s", bad[i], cdx_last_error());
    }
    /* tags: source tags and embedded keywords, case-insensitive, whole tags */
    const char *st[] = {"Cats", "pets"};
    char *tags = NULL;
    CHECK(catalog_tag_list(st, 2, &tags) == CDX_OK);
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_set_source(c, id2, "Tabby on the sofa", "our cat Felix", tags) == CDX_OK);
    CHECK(catalog_image_set_source(c, 999, "x", "", "") == CDX_ERR_NOT_FOUND);
    CHECK(catalog_commit(c) == CDX_OK);
    free(tags);
    snprintf(want, sizeof want, "%lld", (long long)id2);
    CHECK(!strcmp(fts(c, "felix", NULL), want));
    CHECK(!strcmp(fts(c, "sofa", "CATS"), want));
    CHECK(!strcmp(fts(c, "sofa", "cat"), ""));                /* a tag is matched whole */
    CHECK(!strcmp(fts(c, "pier", "cats"), ""));
    snprintf(want, sizeof want, "%lld,%lld", (long long)id1, (long long)id3);
    CHECK(!strcmp(fts(c, "pier", "SEA"), want));
    catalog_filter tf = {NULL, NULL, 0, 0, "holiday"};
    catalog_pair *pairs = NULL;
    CHECK(catalog_query(c, &tf, &pairs, &n) == CDX_OK && n == 2);   /* semantic filter too */
    free(pairs);
    int has = 0;
    CHECK(catalog_has_text(c, &has) == CDX_OK && has == 1);
    /* a move, new content text (OCR) and deletes keep the index in step */
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_update(c, id1, "/photos/2025/harbour.jpg", a.sha256, 2) == CDX_OK);
    CHECK(catalog_content_set_ocr(c, b.sha256, "FELIX MEOW 42") == CDX_OK);
    CHECK(catalog_commit(c) == CDX_OK);
    CHECK(!strcmp(fts(c, "beach", NULL), ""));
    snprintf(want, sizeof want, "%lld", (long long)id1);
    CHECK(!strcmp(fts(c, "harbour", NULL), want));
    CHECK(!strcmp(fts(c, "harbour AND sunset", NULL), want));   /* content text kept */
    snprintf(want, sizeof want, "%lld", (long long)id2);
    CHECK(!strcmp(fts(c, "ocr:meow", NULL), want));
    CHECK(!strcmp(fts(c, "sofa", NULL), want));                 /* source text kept */
    /* a rolled-back change leaves the index as it was */
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_delete(c, id2) == CDX_OK);
    catalog_rollback(c);
    CHECK(!strcmp(fts(c, "tabby", NULL), want));
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_delete(c, id2) == CDX_OK);
    CHECK(catalog_image_delete(c, id3) == CDX_OK);
    CHECK(catalog_commit(c) == CDX_OK);
    CHECK(!strcmp(fts(c, "tabby OR meow OR copy OR example", NULL), ""));
    snprintf(want, sizeof want, "%lld", (long long)id1);
    CHECK(!strcmp(fts(c, "pier", NULL), want));
    uint64_t problems = 9;
    CHECK(catalog_check(c, NULL, NULL, &problems) == CDX_OK && problems == 0);
    catalog_close(c);
    /* damage from outside: an image missing from the index is reported */
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM fts", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(catalog_open(path, 0, 0, &c) == CDX_OK);
    int seen = 0;
    CHECK(catalog_check(c, on_problem, &seen, &problems) == CDX_OK && problems == 2 && seen == 2);
    catalog_close(c);
}

/* A version 1 catalog (as written by clipdex before the full-text index)
 * is upgraded in place by the first writer: rows kept, index filled. */
static void test_upgrade(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/v1.db", dir);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE contents(sha256 TEXT PRIMARY KEY, slot INTEGER NOT NULL UNIQUE, size INTEGER NOT NULL,"
        "  width INTEGER NOT NULL, height INTEGER NOT NULL, format TEXT NOT NULL,"
        "  taken INTEGER NOT NULL DEFAULT 0, camera TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE images(id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE,"
        "  sha256 TEXT NOT NULL, mtime INTEGER NOT NULL, added INTEGER NOT NULL);"
        "CREATE INDEX images_sha256 ON images(sha256);"
        "INSERT INTO meta VALUES('schema_version', '1'), ('dim', '512');"
        "INSERT INTO contents VALUES('dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', 0, 5, 2, 2, 'jpeg', 0, 'Nikon D90');"
        "INSERT INTO images(path, sha256, mtime, added) VALUES('/old/lighthouse_dawn.jpg',"
        "  'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', 1, 1);",
        NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    catalog *c = NULL;
    CHECK(catalog_open(path, 0, 0, &c) == CDX_ERR_UNSUPPORTED);   /* a reader does not migrate */
    CHECK(catalog_open(path, 1, 0, &c) == CDX_OK);
    char v[32];
    CHECK(catalog_meta_get(c, "schema_version", v, sizeof v) == CDX_OK && !strcmp(v, "3"));
    CHECK(catalog_meta_get(c, "dim", v, sizeof v) == CDX_OK && !strcmp(v, "512"));
    CHECK(!strcmp(fts(c, "lighthouse", NULL), "1"));
    CHECK(!strcmp(fts(c, "nikon", NULL), "1"));
    cdx_image_record rec;
    CHECK(catalog_image_by_id(c, 1, &rec) == CDX_OK && !strcmp(rec.camera, "Nikon D90"));
    uint64_t problems = 9;
    CHECK(catalog_check(c, NULL, NULL, &problems) == CDX_OK && problems == 0);
    catalog_close(c);
    CHECK(catalog_open(path, 0, 0, &c) == CDX_OK);   /* now current */
    catalog_close(c);
}

int main(void)
{
    char dir[] = "/tmp/cdx_test_catalog_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/catalog.db", dir);
    catalog *c = NULL;
    CHECK(catalog_open(path, 0, 0, &c) != CDX_OK);   /* missing, read-only */
    CHECK(catalog_open(path, 1, 1, &c) == CDX_OK);
    char v[32];
    CHECK(catalog_meta_get(c, "schema_version", v, sizeof v) == CDX_OK && !strcmp(v, "3"));

    /* contents a (jpeg, taken 2001), b (png, no EXIF date) */
    cdx_image_record a = content("a", "jpeg", 978307200), b = content("b", "png", 0);
    int64_t ida, idb, idb2, idx;
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_content_insert(c, &a, 0) == CDX_OK);
    CHECK(catalog_content_insert(c, &b, 1) == CDX_OK);
    CHECK(catalog_content_insert(c, &b, 2) != CDX_OK);   /* same sha256 twice */
    CHECK(catalog_image_insert(c, "/x/a%b/1.jpg", a.sha256, 1600000000, 1, &ida) == CDX_OK);
    CHECK(catalog_image_insert(c, "/x/a_b/2.png", b.sha256, 1000000000, 1, &idb) == CDX_OK);
    CHECK(catalog_image_insert(c, "/x/aXb/3.png", b.sha256, 1700000000, 1, &idb2) == CDX_OK);
    CHECK(catalog_image_insert(c, "/x/aXb/3.png", b.sha256, 1, 1, &idx) != CDX_OK);   /* unique path */
    CHECK(catalog_commit(c) == CDX_OK);

    int64_t slot = -1;
    CHECK(catalog_content_slot(c, b.sha256, &slot) == CDX_OK && slot == 1);
    cdx_image_record rec;
    CHECK(catalog_image_by_path(c, "/x/a%b/1.jpg", &rec) == CDX_OK && rec.id == ida &&
          rec.taken == 978307200 && !strcmp(rec.format, "jpeg") && rec.width == 10);
    CHECK(catalog_image_by_id(c, idb2, &rec) == CDX_OK && !strcmp(rec.path, "/x/aXb/3.png"));
    CHECK(catalog_image_by_path(c, "/nope", &rec) == CDX_ERR_NOT_FOUND);

    /* filters: % and _ are literal in prefixes */
    CHECK(query(c, NULL, NULL, 0, 0) == 3);
    CHECK(query(c, "/x/a%b/", NULL, 0, 0) == 1);
    CHECK(query(c, "/x/a_b/", NULL, 0, 0) == 1);
    CHECK(query(c, "/x/a", NULL, 0, 0) == 3);
    CHECK(query(c, "/X/", NULL, 0, 0) == 0);   /* case-sensitive */
    CHECK(query(c, NULL, "png", 0, 0) == 2);
    CHECK(query(c, NULL, "jpeg", 0, 0) == 1);
    /* dates: a's EXIF date (2001) wins over its mtime (2020) */
    CHECK(query(c, NULL, NULL, 0, 978307200) == 0);             /* before is exclusive */
    CHECK(query(c, NULL, NULL, 0, 978307201) == 1);             /* a taken 2001-01-01 */
    CHECK(query(c, NULL, NULL, 0, 1000000001) == 2);            /* + b (mtime 2001-09-09) */
    CHECK(query(c, NULL, NULL, 0, 1600000000) == 2);            /* a's mtime (2020) is not used */
    CHECK(query(c, NULL, NULL, 1600000000, 0) == 1);            /* only 3.png (2023) */
    CHECK(query(c, NULL, "png", 978307200, 1600000000) == 1);

    /* a move keeps the id; deleting the last image of a content drops it */
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_update(c, idb, "/y/moved.png", b.sha256, 5) == CDX_OK);
    CHECK(catalog_image_delete(c, idb2) == CDX_OK);
    CHECK(catalog_commit(c) == CDX_OK);
    CHECK(catalog_image_by_path(c, "/y/moved.png", &rec) == CDX_OK && rec.id == idb);
    CHECK(catalog_content_slot(c, b.sha256, &slot) == CDX_OK);   /* still referenced */
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_delete(c, idb) == CDX_OK);
    CHECK(catalog_image_delete(c, idb) == CDX_ERR_NOT_FOUND);
    CHECK(catalog_commit(c) == CDX_OK);
    CHECK(catalog_content_slot(c, b.sha256, &slot) == CDX_ERR_NOT_FOUND);
    uint64_t ni, nc;
    CHECK(catalog_counts(c, &ni, &nc) == CDX_OK && ni == 1 && nc == 1);
    /* a new image never reuses an old id */
    CHECK(catalog_begin(c) == CDX_OK);
    CHECK(catalog_image_insert(c, "/z.jpg", a.sha256, 1, 1, &idx) == CDX_OK);
    CHECK(catalog_commit(c) == CDX_OK);
    CHECK(idx > idb2);

    uint64_t problems = 9;
    int seen = 0;
    CHECK(catalog_check(c, on_problem, &seen, &problems) == CDX_OK && problems == 0);
    uint64_t v0 = 0, v1 = 0;
    CHECK(catalog_version(c, &v0) == CDX_OK);
    CHECK(catalog_begin(c) == CDX_OK && catalog_meta_set(c, "x", "1") == CDX_OK && catalog_commit(c) == CDX_OK);
    CHECK(catalog_version(c, &v1) == CDX_OK && v1 != v0);   /* our own commit counts */
    catalog_close(c);

    /* damage from outside: a content row without images, an image without content */
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "INSERT INTO contents(sha256, slot, size, width, height, format, taken, camera) "
                           "VALUES('cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', 7, 1, 1, 1, 'png', 0, '');"
                           "DELETE FROM contents WHERE slot = 0;", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(catalog_open(path, 0, 0, &c) == CDX_OK);
    (void)v0;
    seen = 0;
    CHECK(catalog_check(c, on_problem, &seen, &problems) == CDX_OK);
    CHECK(problems == 3 && seen == 3);   /* 2 images lost content a; content c has no image */
    catalog_close(c);
    /* a newer schema is refused, read-only or not */
    CHECK(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(catalog_open(path, 1, 0, &c) == CDX_ERR_UNSUPPORTED);
    CHECK(catalog_open(path, 0, 0, &c) == CDX_ERR_UNSUPPORTED);

    test_fts(dir);
    test_upgrade(dir);

    char *like = catalog_like_prefix("a%b_c\\d");
    CHECK(like && !strcmp(like, "a\\%b\\_c\\\\d%"));
    free(like);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
