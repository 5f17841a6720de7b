/*
 * test_catalog.c - the SQLite catalog alone: schema and version policy,
 * inserts/updates/deletes with content garbage collection, LIKE-escaped
 * prefix filters, date (taken else mtime) and format filters, and the
 * structural check.
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
    catalog_filter f = {prefix, fmt, after, before};
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
    CHECK(catalog_meta_get(c, "schema_version", v, sizeof v) == CDX_OK && !strcmp(v, "1"));

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
    CHECK(sqlite3_exec(db, "INSERT INTO contents VALUES('cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', 7, 1, 1, 1, 'png', 0, '');"
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

    char *like = catalog_like_prefix("a%b_c\\d");
    CHECK(like && !strcmp(like, "a\\%b\\_c\\\\d%"));
    free(like);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
