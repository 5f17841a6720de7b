/*
 * catalog.c - the SQLite catalog (see catalog.h for schema and invariants).
 *
 * Every statement used more than once is prepared at open and reset after
 * use; strings from the database are copied into bounded caller buffers
 * (snprintf truncation is impossible for values we wrote, and harmless for
 * hostile ones).  Errors carry SQLite's message and the catalog path.
 */
#include "store/catalog.h"

#include "common/error.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    ST_META_GET, ST_META_SET, ST_CONTENT_SLOT, ST_CONTENT_INS, ST_IMG_BY_PATH,
    ST_IMG_BY_ID, ST_IMG_BY_CONTENT, ST_IMG_INS, ST_IMG_UPD, ST_IMG_DEL,
    ST_IMG_SHA, ST_CONTENT_GC, ST_CONTENT_RESLOT, ST_COUNT
};

#define IMG_COLS "i.id, i.path, i.sha256, c.size, i.mtime, c.width, c.height, " \
                 "c.format, c.taken, c.camera, i.added"
#define IMG_FROM " FROM images i JOIN contents c ON c.sha256 = i.sha256 "

static const char *const sql_text[ST_COUNT] = {
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_CONTENT_SLOT] = "SELECT slot FROM contents WHERE sha256 = ?1",
    [ST_CONTENT_INS] = "INSERT INTO contents(sha256, slot, size, width, height, format, "
                       "taken, camera) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_IMG_BY_PATH] = "SELECT " IMG_COLS IMG_FROM "WHERE i.path = ?1",
    [ST_IMG_BY_ID] = "SELECT " IMG_COLS IMG_FROM "WHERE i.id = ?1",
    [ST_IMG_BY_CONTENT] = "SELECT " IMG_COLS IMG_FROM "WHERE i.sha256 = ?1 ORDER BY i.id LIMIT 1",
    [ST_IMG_INS] = "INSERT INTO images(path, sha256, mtime, added) VALUES(?1, ?2, ?3, ?4)",
    [ST_IMG_UPD] = "UPDATE images SET path = ?2, sha256 = ?3, mtime = ?4 WHERE id = ?1",
    [ST_IMG_DEL] = "DELETE FROM images WHERE id = ?1",
    [ST_IMG_SHA] = "SELECT sha256 FROM images WHERE id = ?1",
    [ST_CONTENT_GC] = "DELETE FROM contents WHERE sha256 = ?1 AND NOT EXISTS "
                      "(SELECT 1 FROM images WHERE sha256 = ?1)",
    [ST_CONTENT_RESLOT] = "UPDATE contents SET slot = ?2 WHERE slot = ?1",
};

/* Version 1 schema.  Later versions add a migrate_vN() step below. */
static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS contents("
    "  sha256 TEXT PRIMARY KEY, slot INTEGER NOT NULL UNIQUE, size INTEGER NOT NULL,"
    "  width INTEGER NOT NULL, height INTEGER NOT NULL, format TEXT NOT NULL,"
    "  taken INTEGER NOT NULL DEFAULT 0, camera TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS images("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE,"
    "  sha256 TEXT NOT NULL, mtime INTEGER NOT NULL, added INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256);";

/* ---- version 2: text columns and the full-text index (fts branch) --------
 * images gain the source metadata (title, description, tags), contents the
 * metadata embedded in the bytes (meta_text: EXIF/IPTC/XMP title,
 * description, artist, places; keywords) and ocr_text (filled by a later
 * OCR pass).  Tag lists are stored as "\ntag1\ntag2\n" so that a tag
 * filter is an instr() on "\ntag\n".  The FTS5 table `fts` holds one row
 * per image (rowid = images.id); triggers keep it in step with every
 * insert, update and delete of images and contents, inside the writer's
 * transaction, so it can never disagree with the catalog after a commit or
 * a crash.  FTS_NAME(p) is the file-name part of a path or URL. */
#define FTS_NAME(p) "substr(" p ", length(rtrim(" p ", replace(" p ", '/', ''))) + 1)"
#define FTS_COLS "rowid, path, name, title, description, tags, embedded, ocr"
#define FTS_EMBEDDED(c) "coalesce(" c ".camera || char(10) || " c ".meta_text || " c ".keywords, '')"
#define FTS_ROW_OF_NEW \
    "INSERT INTO fts(" FTS_COLS ") SELECT new.id, new.path, " FTS_NAME("new.path") ", " \
    "new.title, new.description, new.tags, " FTS_EMBEDDED("c") ", coalesce(c.ocr_text, '') " \
    "FROM (SELECT 1) LEFT JOIN contents c ON c.sha256 = new.sha256;"
#define FTS_ROWS_OF_CONTENT \
    "DELETE FROM fts WHERE rowid IN (SELECT id FROM images WHERE sha256 = new.sha256);" \
    "INSERT INTO fts(" FTS_COLS ") SELECT i.id, i.path, " FTS_NAME("i.path") ", i.title, " \
    "i.description, i.tags, " FTS_EMBEDDED("new") ", new.ocr_text FROM images i " \
    "WHERE i.sha256 = new.sha256;"

static const char migrate_v2_sql[] =
    "ALTER TABLE images ADD COLUMN title TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE images ADD COLUMN description TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE images ADD COLUMN tags TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE contents ADD COLUMN meta_text TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE contents ADD COLUMN keywords TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE contents ADD COLUMN ocr_text TEXT NOT NULL DEFAULT '';"
    "CREATE VIRTUAL TABLE fts USING fts5(path, name, title, description, tags, embedded, ocr, "
    "  tokenize = 'porter unicode61 remove_diacritics 2');"
    /* column weights of the ranking (docs/search.md): a word in a title or
     * tag counts more than one somewhere in a long path */
    "INSERT INTO fts(fts, rank) VALUES('rank', 'bm25(0.5, 2.0, 4.0, 1.5, 3.0, 1.5, 1.0)');"
    "CREATE TRIGGER fts_image_insert AFTER INSERT ON images BEGIN " FTS_ROW_OF_NEW " END;"
    "CREATE TRIGGER fts_image_delete AFTER DELETE ON images BEGIN "
    "  DELETE FROM fts WHERE rowid = old.id; END;"
    "CREATE TRIGGER fts_image_update AFTER UPDATE OF path, sha256, title, description, tags "
    "  ON images BEGIN DELETE FROM fts WHERE rowid = old.id; " FTS_ROW_OF_NEW " END;"
    "CREATE TRIGGER fts_content_insert AFTER INSERT ON contents BEGIN " FTS_ROWS_OF_CONTENT " END;"
    "CREATE TRIGGER fts_content_update AFTER UPDATE OF camera, meta_text, keywords, ocr_text "
    "  ON contents BEGIN " FTS_ROWS_OF_CONTENT " END;"
    /* existing images (an upgraded library): paths, names and cameras */
    "INSERT INTO fts(" FTS_COLS ") SELECT i.id, i.path, " FTS_NAME("i.path") ", i.title, "
    "  i.description, i.tags, " FTS_EMBEDDED("c") ", coalesce(c.ocr_text, '') "
    "  FROM images i LEFT JOIN contents c ON c.sha256 = i.sha256;"
    "UPDATE meta SET value = '2' WHERE key = 'schema_version';";

/* ---- version 3: OCR state and perceptual hashes ----------------------------
 * contents.ocr_lang is NULL until the content was read by OCR, then the
 * languages used ("eng+deu"); ocr_skipped = 1 when the text-likeness test
 * found nothing worth reading (ocr_text stays '').  `clipdex ocr` reads
 * what is NULL or was read with other languages, so it resumes.  Neither
 * column is in the full-text index (its triggers ignore them).
 * contents.phash: the 64-bit DCT hash of the image (image/phash.h) as a
 * signed INTEGER (the same 64 bits), NULL when not computed (upgraded
 * libraries, imported vectors, undecodable bytes): `clipdex dupes` or
 * `dupes --rehash` fill it in from the files. */
static const char migrate_v3_sql[] =
    "ALTER TABLE contents ADD COLUMN ocr_lang TEXT;"
    "ALTER TABLE contents ADD COLUMN ocr_skipped INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE contents ADD COLUMN phash INTEGER;"
    "UPDATE meta SET value = '3' WHERE key = 'schema_version';";
/* ---- fleet side tables (no schema version: created by every writable
 * open, IF NOT EXISTS; a read-only handle on a library no writer of this
 * version has opened sees none).  image_sources: the source record of an
 * image (JSON: owner, licence, page, geo, ...), dropped with the image;
 * thumbs: a thumbnail JPEG made by a worker for a content whose bytes are
 * not stored (URLs), dropped with the content. */
static const char sources_sql[] =
    "CREATE TABLE IF NOT EXISTS image_sources(id INTEGER PRIMARY KEY, json TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS thumbs(sha256 TEXT PRIMARY KEY, jpeg BLOB NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS image_sources_delete AFTER DELETE ON images BEGIN "
    "  DELETE FROM image_sources WHERE id = old.id; END;"
    "CREATE TRIGGER IF NOT EXISTS thumbs_delete AFTER DELETE ON contents BEGIN "
    "  DELETE FROM thumbs WHERE sha256 = old.sha256; END;";

struct catalog {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char *path;
    uint64_t own_commits;
};

static cdx_result db_fail(catalog *c, const char *what)
{
    return cdx_error(CDX_ERR_IO, "%s: %s: %s", c->path, what, sqlite3_errmsg(c->db));
}

static cdx_result exec(catalog *c, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cdx_result r = cdx_error(CDX_ERR_IO, "%s: %s", c->path, msg ? msg : "SQL error");
        sqlite3_free(msg);
        return r;
    }
    return CDX_OK;
}

/* Schema version as stored, 0 when the meta table is absent (fresh file). */
static cdx_result schema_version(catalog *c, long *v)
{
    *v = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
                           &s, NULL) != SQLITE_OK) {
        /* no meta table yet */
        return CDX_OK;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        char *end = NULL;
        *v = t ? strtol(t, &end, 10) : -1;
        if (!t || end == t || *end || *v < 1) *v = -1;
    }
    sqlite3_finalize(s);
    if (*v < 0) return cdx_error(CDX_ERR_FORMAT, "%s: bad schema_version in meta", c->path);
    return CDX_OK;
}

static cdx_result setup_schema(catalog *c, int writable)
{
    long v;
    cdx_result r = schema_version(c, &v);
    if (r) return r;
    if (v > CATALOG_SCHEMA_VERSION)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: catalog schema version %ld is newer than "
                         "this clipdex (%d)", c->path, v, CATALOG_SCHEMA_VERSION);
    if (v == CATALOG_SCHEMA_VERSION) return CDX_OK;
    if (!writable)
        return cdx_error(v == 0 ? CDX_ERR_NOT_FOUND : CDX_ERR_UNSUPPORTED,
                         v == 0 ? "%s: not a clipdex catalog (no schema)"
                                : "%s: catalog schema is old; run a writing command "
                                  "(e.g. clipdex index) once to migrate it", c->path);
    if ((r = exec(c, "BEGIN IMMEDIATE"))) return r;
    /* Another writer may have migrated between our read and the lock. */
    if ((r = schema_version(c, &v))) {
        exec(c, "ROLLBACK");
        return r;
    }
    /* v == 0: create version 1, then every step vN -> vN+1 in this same
     * transaction (a crash leaves the old schema, never half a migration),
     * so a new catalog and an upgraded one have the same schema. */
    if (v == 0 &&
        ((r = exec(c, schema_v1)) ||
         (r = exec(c, "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', '1')")))) {
        exec(c, "ROLLBACK");
        return r;
    }
    if (v < 2 && (r = exec(c, migrate_v2_sql))) {
        exec(c, "ROLLBACK");
        return cdx_error_prefix(r, "upgrading the catalog to schema version 2");
    }
    if (v < 3 && (r = exec(c, migrate_v3_sql))) {
        exec(c, "ROLLBACK");
        return cdx_error_prefix(r, "upgrading the catalog to schema version 3");
    }
    return exec(c, "COMMIT");
}

cdx_result catalog_open(const char *path, int writable, int create, catalog **out)
{
    *out = NULL;
    catalog *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    int flags = writable ? SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)
                         : SQLITE_OPEN_READONLY;
    flags |= SQLITE_OPEN_NOMUTEX;   /* one thread at a time per handle */
    cdx_result r;
    if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
        r = cdx_error(sqlite3_errcode(c->db) == SQLITE_CANTOPEN ? CDX_ERR_NOT_FOUND : CDX_ERR_IO,
                      "%s: cannot open catalog: %s", path,
                      c->db ? sqlite3_errmsg(c->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(c->db, 10000);
    sqlite3_extended_result_codes(c->db, 0);
    if (writable && (r = exec(c, "PRAGMA journal_mode=WAL"))) goto fail;
    if ((r = exec(c, "PRAGMA synchronous=FULL; PRAGMA case_sensitive_like=ON;"))) goto fail;
    if ((r = setup_schema(c, writable))) goto fail;
    if (writable && (r = exec(c, sources_sql))) goto fail;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(c->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
                               NULL) != SQLITE_OK) {
            r = cdx_error(CDX_ERR_FORMAT, "%s: catalog does not have the expected schema: %s",
                          path, sqlite3_errmsg(c->db));
            goto fail;
        }
    }
    *out = c;
    return CDX_OK;
fail:
    catalog_close(c);
    return r;
}

void catalog_close(catalog *c)
{
    if (!c) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c->path);
    free(c);
}

cdx_result catalog_version(catalog *c, uint64_t *out)
{
    sqlite3_stmt *s = NULL;
    cdx_result r = CDX_OK;
    if (sqlite3_prepare_v2(c->db, "PRAGMA data_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        *out = ((uint64_t)sqlite3_column_int64(s, 0) << 32) + c->own_commits;
    else
        r = cdx_error(CDX_ERR_IO, "%s: cannot read the catalog's data version: %s", c->path,
                      sqlite3_errmsg(c->db));
    sqlite3_finalize(s);
    return r;
}

/* Checked binds.  A failed sqlite3_bind_* (SQLITE_NOMEM, SQLITE_TOOBIG,
 * SQLITE_RANGE) leaves the parameter NULL, and stepping anyway would insert
 * or match the wrong row.  The bind helpers record the first failure of this
 * thread; step() then returns it instead of running the statement, so every
 * caller's existing "step failed" path reports it.  Every statement that is
 * bound is stepped through step() (a handle is used by one thread at a time). */
static _Thread_local int bind_failed;

static void bind_note(int rc)
{
    if (rc != SQLITE_OK && !bind_failed) bind_failed = rc;
}
static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    bind_note(sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC));
}
static void bind_text_copy(sqlite3_stmt *s, int i, const char *v)
{
    bind_note(sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT));
}
static void bind_i64(sqlite3_stmt *s, int i, sqlite3_int64 v) { bind_note(sqlite3_bind_int64(s, i, v)); }
static void bind_int(sqlite3_stmt *s, int i, int v) { bind_note(sqlite3_bind_int(s, i, v)); }
static void bind_blob(sqlite3_stmt *s, int i, const void *v, sqlite3_uint64 n)
{
    bind_note(sqlite3_bind_blob64(s, i, v, n, SQLITE_STATIC));
}

/* Step a bound statement (see the checked binds above). */
static int step(sqlite3_stmt *s)
{
    if (bind_failed) {
        int rc = bind_failed;
        bind_failed = 0;
        return rc;
    }
    return sqlite3_step(s);
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", t ? t : "");
}

cdx_result catalog_meta_get(catalog *c, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *s = c->st[ST_META_GET];
    bind_text(s, 1, key);
    int rc = step(s);
    cdx_result r = CDX_OK;
    if (rc == SQLITE_ROW) copy_text(out, cap, s, 0);
    else if (rc == SQLITE_DONE) r = cdx_error(CDX_ERR_NOT_FOUND, "%s: no '%s' in meta", c->path, key);
    else r = db_fail(c, "reading meta");
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_meta_set(catalog *c, const char *key, const char *value)
{
    sqlite3_stmt *s = c->st[ST_META_SET];
    bind_text(s, 1, key);
    bind_text(s, 2, value);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "writing meta");
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_begin(catalog *c) { return exec(c, "BEGIN IMMEDIATE"); }
cdx_result catalog_begin_read(catalog *c) { return exec(c, "BEGIN"); }

cdx_result catalog_commit(catalog *c)
{
    cdx_result r = exec(c, "COMMIT");
    if (!r) c->own_commits++;
    return r;
}

void catalog_rollback(catalog *c)
{
    if (!sqlite3_get_autocommit(c->db)) exec(c, "ROLLBACK");
}

cdx_result catalog_content_slot(catalog *c, const char *sha256, int64_t *slot)
{
    sqlite3_stmt *s = c->st[ST_CONTENT_SLOT];
    bind_text(s, 1, sha256);
    int rc = step(s);
    cdx_result r = CDX_OK;
    if (rc == SQLITE_ROW) *slot = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE) r = CDX_ERR_NOT_FOUND;   /* common: no message */
    else r = db_fail(c, "looking up content");
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_content_insert(catalog *c, const cdx_image_record *rec, int64_t slot)
{
    sqlite3_stmt *s = c->st[ST_CONTENT_INS];
    bind_text(s, 1, rec->sha256);
    bind_i64(s, 2, slot);
    bind_i64(s, 3, (sqlite3_int64)rec->size);
    bind_int(s, 4, rec->width);
    bind_int(s, 5, rec->height);
    bind_text(s, 6, rec->format);
    bind_i64(s, 7, rec->taken);
    bind_text(s, 8, rec->camera);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "inserting content");
    sqlite3_reset(s);
    return r;
}

static void read_record(sqlite3_stmt *s, cdx_image_record *rec)
{
    memset(rec, 0, sizeof *rec);
    rec->id = sqlite3_column_int64(s, 0);
    copy_text(rec->path, sizeof rec->path, s, 1);
    copy_text(rec->sha256, sizeof rec->sha256, s, 2);
    rec->size = (uint64_t)sqlite3_column_int64(s, 3);
    rec->mtime = sqlite3_column_int64(s, 4);
    rec->width = sqlite3_column_int(s, 5);
    rec->height = sqlite3_column_int(s, 6);
    copy_text(rec->format, sizeof rec->format, s, 7);
    rec->taken = sqlite3_column_int64(s, 8);
    copy_text(rec->camera, sizeof rec->camera, s, 9);
    rec->added = sqlite3_column_int64(s, 10);
}

static cdx_result image_lookup(catalog *c, sqlite3_stmt *s, cdx_image_record *rec)
{
    int rc = step(s);
    cdx_result r = CDX_OK;
    if (rc == SQLITE_ROW) read_record(s, rec);
    else if (rc == SQLITE_DONE) r = CDX_ERR_NOT_FOUND;
    else r = db_fail(c, "looking up image");
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_image_by_path(catalog *c, const char *path, cdx_image_record *rec)
{
    sqlite3_stmt *s = c->st[ST_IMG_BY_PATH];
    bind_text(s, 1, path);
    return image_lookup(c, s, rec);
}

cdx_result catalog_image_by_id(catalog *c, int64_t id, cdx_image_record *rec)
{
    sqlite3_stmt *s = c->st[ST_IMG_BY_ID];
    bind_i64(s, 1, id);
    return image_lookup(c, s, rec);
}

cdx_result catalog_image_by_content(catalog *c, const char *sha256, cdx_image_record *rec)
{
    sqlite3_stmt *s = c->st[ST_IMG_BY_CONTENT];
    bind_text(s, 1, sha256);
    return image_lookup(c, s, rec);
}

cdx_result catalog_image_insert(catalog *c, const char *path, const char *sha256,
                                int64_t mtime, int64_t added, int64_t *id)
{
    sqlite3_stmt *s = c->st[ST_IMG_INS];
    bind_text(s, 1, path);
    bind_text(s, 2, sha256);
    bind_i64(s, 3, mtime);
    bind_i64(s, 4, added);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "inserting image");
    sqlite3_reset(s);
    if (!r && id) *id = sqlite3_last_insert_rowid(c->db);
    return r;
}

cdx_result catalog_image_update(catalog *c, int64_t id, const char *path,
                                const char *sha256, int64_t mtime)
{
    sqlite3_stmt *s = c->st[ST_IMG_UPD];
    bind_i64(s, 1, id);
    bind_text(s, 2, path);
    bind_text(s, 3, sha256);
    bind_i64(s, 4, mtime);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "updating image");
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_content_gc(catalog *c, const char *sha256)
{
    sqlite3_stmt *s = c->st[ST_CONTENT_GC];
    bind_text_copy(s, 1, sha256);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "deleting content");
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_image_delete(catalog *c, int64_t id)
{
    char sha[65] = "";
    sqlite3_stmt *s = c->st[ST_IMG_SHA];
    bind_i64(s, 1, id);
    int rc = step(s);
    if (rc == SQLITE_ROW) copy_text(sha, sizeof sha, s, 0);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return cdx_error(CDX_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    if (rc != SQLITE_ROW) return db_fail(c, "looking up image");
    s = c->st[ST_IMG_DEL];
    bind_i64(s, 1, id);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "deleting image");
    sqlite3_reset(s);
    if (r) return r;
    return catalog_content_gc(c, sha);
}

char *catalog_like_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    char *p = malloc(2 * n + 2);
    if (!p) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (prefix[i] == '%' || prefix[i] == '_' || prefix[i] == '\\') p[j++] = '\\';
        p[j++] = prefix[i];
    }
    p[j++] = '%';
    p[j] = '\0';
    return p;
}

/* Hands each (id, path, mtime) row of a prepared and bound statement to fn
 * until fn returns non-zero, then finalizes the statement. */
static cdx_result each_image_row(catalog *c, sqlite3_stmt *s,
                                 int (*fn)(void *user, int64_t id, const char *path,
                                           int64_t mtime),
                                 void *user)
{
    int rc;
    cdx_result r = CDX_OK;
    while ((rc = step(s)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(s, 1);
        if (fn(user, sqlite3_column_int64(s, 0), path ? path : "", sqlite3_column_int64(s, 2)))
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) r = db_fail(c, "listing images");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_each_image(catalog *c, const char *prefix,
                              int (*fn)(void *user, int64_t id, const char *path,
                                        int64_t mtime),
                              void *user)
{
    sqlite3_stmt *s = NULL;
    char *like = prefix ? catalog_like_prefix(prefix) : NULL;
    if (prefix && !like) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    const char *sql = prefix ? "SELECT id, path, mtime FROM images WHERE path LIKE ?1 ESCAPE '\\' "
                               "ORDER BY path"
                             : "SELECT id, path, mtime FROM images ORDER BY path";
    cdx_result r = CDX_OK;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        free(like);
        return db_fail(c, "listing images");
    }
    if (like) bind_text(s, 1, like);
    r = each_image_row(c, s, fn, user);
    free(like);
    return r;
}

cdx_result catalog_each_image_of_content(catalog *c, const char *sha256,
                                         int (*fn)(void *user, int64_t id, const char *path,
                                                   int64_t mtime),
                                         void *user)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT id, path, mtime FROM images WHERE sha256 = ?1 ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "listing images");
    bind_text(s, 1, sha256);
    return each_image_row(c, s, fn, user);
}

cdx_result catalog_images_page(catalog *c, uint64_t offset, int64_t limit,
                               int (*fn)(void *user, const cdx_image_record *rec, int64_t slot),
                               void *user)
{
    sqlite3_stmt *s = NULL;
    if (offset > INT64_MAX) return cdx_error(CDX_ERR_INVALID_ARG, "offset too large");
    if (sqlite3_prepare_v2(c->db, "SELECT " IMG_COLS ", c.slot" IMG_FROM
                           "ORDER BY i.id LIMIT ?1 OFFSET ?2", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "listing images");
    bind_i64(s, 1, limit < 0 ? -1 : limit);
    bind_i64(s, 2, (sqlite3_int64)offset);
    cdx_image_record *rec = malloc(sizeof *rec);
    if (!rec) {
        sqlite3_finalize(s);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    int rc;
    cdx_result r = CDX_OK;
    while ((rc = step(s)) == SQLITE_ROW) {
        read_record(s, rec);
        if (fn(user, rec, sqlite3_column_int64(s, 11))) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) r = db_fail(c, "listing images");
    sqlite3_finalize(s);
    free(rec);
    return r;
}

#define PAIRS_MAX ((size_t)1 << 31)

/* The WHERE clauses of a filter over `images i JOIN contents c`, as
 * parameters ?1..?5; *like and *tag are malloc'd patterns (caller frees). */
static cdx_result filter_sql(const catalog_filter *f, char *sql, size_t cap, char **like, char **tag)
{
    *like = f->path_prefix ? catalog_like_prefix(f->path_prefix) : NULL;
    *tag = f->tag ? catalog_tag_pattern(f->tag) : NULL;
    if ((f->path_prefix && !*like) || (f->tag && !*tag)) {
        free(*like);
        free(*tag);
        *like = *tag = NULL;
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    /* Each filter is its own clause so SQLite can use the path index for
     * the LIKE prefix (case_sensitive_like is on). */
    snprintf(sql, cap, "%s %s %s %s %s",
             *like ? "AND i.path LIKE ?1 ESCAPE '\\'" : "",
             f->format ? "AND c.format = ?2" : "",
             f->after ? "AND (CASE WHEN c.taken <> 0 THEN c.taken ELSE i.mtime END) >= ?3" : "",
             f->before ? "AND (CASE WHEN c.taken <> 0 THEN c.taken ELSE i.mtime END) < ?4" : "",
             *tag ? "AND (instr(lower(i.tags), ?5) > 0 OR instr(lower(c.keywords), ?5) > 0)" : "");
    return CDX_OK;
}

static void filter_bind(sqlite3_stmt *s, const catalog_filter *f, const char *like, const char *tag)
{
    if (like) bind_text(s, 1, like);
    if (f->format) bind_text(s, 2, f->format);
    if (f->after) bind_i64(s, 3, f->after);
    if (f->before) bind_i64(s, 4, f->before);
    if (tag) bind_text(s, 5, tag);
}

cdx_result catalog_query(catalog *c, const catalog_filter *f, catalog_pair **pairs, size_t *n)
{
    *pairs = NULL;
    *n = 0;
    char where[640], sql[1024], *like, *tag;
    cdx_result r = filter_sql(f, where, sizeof where, &like, &tag);
    if (r) return r;
    snprintf(sql, sizeof sql,
             "SELECT c.slot, i.id FROM images i JOIN contents c ON c.sha256 = i.sha256 "
             "WHERE 1 %s ORDER BY c.slot, i.id", where);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        free(like);
        free(tag);
        return db_fail(c, "filter query");
    }
    filter_bind(s, f, like, tag);
    size_t cap = 0, cnt = 0;
    catalog_pair *v = NULL;
    int rc;
    while ((rc = step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            if (nc > PAIRS_MAX) { r = cdx_error(CDX_ERR_TOO_LARGE, "too many images"); break; }
            catalog_pair *nv = realloc(v, nc * sizeof *nv);
            if (!nv) { r = cdx_error(CDX_ERR_NOMEM, "out of memory"); break; }
            v = nv;
            cap = nc;
        }
        v[cnt].slot = sqlite3_column_int64(s, 0);
        v[cnt].id = sqlite3_column_int64(s, 1);
        cnt++;
    }
    if (!r && rc != SQLITE_DONE) r = db_fail(c, "filter query");
    sqlite3_finalize(s);
    free(like);
    free(tag);
    if (r) {
        free(v);
        return r;
    }
    *pairs = v;
    *n = cnt;
    return CDX_OK;
}

static cdx_result count_rows(catalog *c, const char *sql, uint64_t *out)
{
    sqlite3_stmt *s = NULL;
    *out = 0;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) return db_fail(c, "counting");
    int rc = step(s);
    if (rc == SQLITE_ROW) *out = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? CDX_OK : db_fail(c, "counting");
}

cdx_result catalog_counts(catalog *c, uint64_t *images, uint64_t *contents)
{
    cdx_result r = count_rows(c, "SELECT count(*) FROM images", images);
    if (!r) r = count_rows(c, "SELECT count(*) FROM contents", contents);
    return r;
}

cdx_result catalog_max_slot(catalog *c, int64_t *slot)
{
    uint64_t v = 0;
    cdx_result r = count_rows(c, "SELECT coalesce(max(slot) + 1, 0) FROM contents", &v);
    *slot = (int64_t)v - 1;
    return r;
}

cdx_result catalog_each_content(catalog *c,
                                int (*fn)(void *user, const char *sha256, int64_t slot),
                                void *user)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT sha256, slot FROM contents ORDER BY slot", -1, &s,
                           NULL) != SQLITE_OK)
        return db_fail(c, "listing contents");
    int rc;
    cdx_result r = CDX_OK;
    while ((rc = step(s)) == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(s, 0);
        if (fn(user, sha ? sha : "", sqlite3_column_int64(s, 1))) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) r = db_fail(c, "listing contents");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_content_reslot(catalog *c, int64_t old_slot, int64_t new_slot)
{
    sqlite3_stmt *s = c->st[ST_CONTENT_RESLOT];
    bind_i64(s, 1, old_slot);
    bind_i64(s, 2, new_slot);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "renumbering a slot");
    if (!r && sqlite3_changes(c->db) != 1)
        r = cdx_error(CDX_ERR_INTERNAL, "%s: slot %lld to renumber is not in contents", c->path,
                      (long long)old_slot);
    sqlite3_reset(s);
    return r;
}

cdx_result catalog_check(catalog *c, void (*fn)(void *user, const char *problem),
                         void *user, uint64_t *problems)
{
    static const struct {
        const char *sql, *what;
    } q[] = {
        {"PRAGMA integrity_check", "sqlite integrity"},
        {"SELECT 'image ' || i.id || ' (' || i.path || ') refers to missing content ' || i.sha256 "
         "FROM images i WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.sha256 = i.sha256)",
         NULL},
        {"SELECT 'content ' || c.sha256 || ' (slot ' || c.slot || ') has no image' FROM contents c "
         "WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.sha256 = c.sha256)", NULL},
        {"SELECT 'content ' || sha256 || ' has a bad slot ' || quote(slot) FROM contents "
         "WHERE typeof(slot) <> 'integer' OR slot < 0", NULL},
        {"SELECT 'content ' || sha256 || ' is not a sha256' FROM contents "
         "WHERE length(sha256) <> 64 OR sha256 GLOB '*[^0-9a-f]*'", NULL},
        {"SELECT 'the full-text index has ' || n || ' rows for ' || m || ' images' FROM "
         "(SELECT (SELECT count(*) FROM fts) AS n, (SELECT count(*) FROM images) AS m) WHERE n <> m",
         NULL},
        {"SELECT 'image ' || i.id || ' is missing from the full-text index' FROM images i "
         "WHERE NOT EXISTS (SELECT 1 FROM fts WHERE fts.rowid = i.id) LIMIT 100", NULL},
    };
    *problems = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v2(c->db, q[i].sql, -1, &s, NULL) != SQLITE_OK)
            return db_fail(c, "checking");
        int rc;
        while ((rc = step(s)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            if (q[i].what && t && !strcmp(t, "ok")) continue;
            char line[1024];
            snprintf(line, sizeof line, "catalog: %s%s%s", q[i].what ? q[i].what : "",
                     q[i].what ? ": " : "", t ? t : "?");
            (*problems)++;
            if (fn) fn(user, line);
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) return db_fail(c, "checking");
    }
    return CDX_OK;
}

/* ---- text: source metadata, embedded metadata, keyword queries ----------- */

/* ASCII-lower "\ntag\n" (what a tags column is searched for). */
char *catalog_tag_pattern(const char *tag)
{
    size_t n = strlen(tag);
    char *p = malloc(n + 3);
    if (!p) return NULL;
    p[0] = '\n';
    for (size_t i = 0; i < n; i++) p[i + 1] = (tag[i] >= 'A' && tag[i] <= 'Z') ? tag[i] + 32 : tag[i];
    p[n + 1] = '\n';
    p[n + 2] = '\0';
    return p;
}

/* Append one tag (trimmed, control characters as spaces) to the list being
 * built in buf ("\nt1\nt2\n", len bytes used, cap bytes) unless it is
 * empty or already there (ASCII case-insensitive). */
static cdx_result tag_append(char *buf, size_t *len, size_t cap, const char *tag)
{
    while (*tag == ' ' || (*tag > 0 && *tag < 0x20)) tag++;
    size_t n = strlen(tag);
    while (n && (tag[n - 1] == ' ' || (tag[n - 1] > 0 && tag[n - 1] < 0x20))) n--;
    if (!n) return CDX_OK;
    if (n > CATALOG_TAG_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "tag '%.40s...' is longer than %d bytes", tag,
                         CATALOG_TAG_MAX);
    char probe[CATALOG_TAG_MAX + 3];
    probe[0] = '\n';
    for (size_t i = 0; i < n; i++) probe[i + 1] = (unsigned char)tag[i] < 0x20 ? ' ' : tag[i];
    probe[n + 1] = '\n';
    probe[n + 2] = '\0';
    for (size_t i = 0; i + n + 2 <= *len; i++)
        if (buf[i] == '\n' && !strncasecmp(buf + i, probe, n + 2)) return CDX_OK;
    size_t add = *len ? n + 1 : n + 2;
    if (*len + add + 1 > cap)
        return cdx_error(CDX_ERR_TOO_LARGE, "tag list is longer than %zu bytes", cap - 1);
    memcpy(buf + *len, *len ? probe + 1 : probe, add + 1);
    *len += add;
    return CDX_OK;
}

cdx_result catalog_tag_list(const char *const *tags, size_t n, char **out)
{
    *out = NULL;
    size_t cap = CATALOG_TAGS_BYTES_MAX + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        cdx_result r = tags[i] ? tag_append(buf, &len, cap, tags[i]) : CDX_OK;
        if (r) {
            free(buf);
            return r;
        }
    }
    *out = buf;
    return CDX_OK;
}

cdx_result catalog_content_set_text(catalog *c, const char *sha256, const char *meta_text,
                                    const char *keywords)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "UPDATE contents SET meta_text = ?2, keywords = ?3 "
                           "WHERE sha256 = ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "storing embedded metadata");
    bind_text(s, 1, sha256);
    bind_text(s, 2, meta_text ? meta_text : "");
    bind_text(s, 3, keywords ? keywords : "");
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing embedded metadata");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_content_set_ocr(catalog *c, const char *sha256, const char *text)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "UPDATE contents SET ocr_text = ?2 WHERE sha256 = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return db_fail(c, "storing OCR text");
    bind_text(s, 1, sha256);
    bind_text(s, 2, text ? text : "");
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing OCR text");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_content_set_ocr_read(catalog *c, const char *sha256, const char *text,
                                       const char *lang, int skipped)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "UPDATE contents SET ocr_text = ?2, ocr_lang = ?3, "
                           "ocr_skipped = ?4 WHERE sha256 = ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "storing OCR text");
    bind_text(s, 1, sha256);
    bind_text(s, 2, text ? text : "");
    bind_text(s, 3, lang);
    bind_int(s, 4, skipped != 0);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing OCR text");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_ocr_counts(catalog *c, uint64_t *images_with_text, uint64_t *read,
                              uint64_t *skipped)
{
    cdx_result r = count_rows(c, "SELECT count(*) FROM images i JOIN contents c ON "
                              "c.sha256 = i.sha256 WHERE c.ocr_text <> ''", images_with_text);
    if (!r) r = count_rows(c, "SELECT count(*) FROM contents WHERE ocr_lang IS NOT NULL", read);
    if (!r) r = count_rows(c, "SELECT count(*) FROM contents WHERE ocr_skipped <> 0", skipped);
    return r;
}

cdx_result catalog_ocr_todo_count(catalog *c, const char *lang, int force, uint64_t *n)
{
    *n = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM contents WHERE ?2 OR ocr_lang IS NULL "
                           "OR ocr_lang <> ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "counting images for OCR");
    bind_text(s, 1, lang);
    bind_int(s, 2, force != 0);
    int rc = step(s);
    if (rc == SQLITE_ROW) *n = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? CDX_OK : db_fail(c, "counting images for OCR");
}

cdx_result catalog_ocr_todo(catalog *c, const char *lang, int force, const char *after,
                            size_t limit, catalog_ocr_job *out, size_t *n)
{
    *n = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT c.sha256, (SELECT path FROM images i WHERE "
                           "i.sha256 = c.sha256 ORDER BY i.id LIMIT 1) FROM contents c "
                           "WHERE c.sha256 > ?1 AND (?3 OR c.ocr_lang IS NULL OR c.ocr_lang <> ?2) "
                           "ORDER BY c.sha256 LIMIT ?4", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "listing images for OCR");
    bind_text(s, 1, after ? after : "");
    bind_text(s, 2, lang);
    bind_int(s, 3, force != 0);
    bind_i64(s, 4, (sqlite3_int64)limit);
    int rc;
    cdx_result r = CDX_OK;
    while ((rc = step(s)) == SQLITE_ROW && *n < limit) {
        const char *sha = (const char *)sqlite3_column_text(s, 0);
        const char *path = (const char *)sqlite3_column_text(s, 1);
        catalog_ocr_job *j = &out[*n];
        snprintf(j->sha256, sizeof j->sha256, "%s", sha ? sha : "");
        if (!path || !(j->path = strdup(path))) continue;   /* no image: nothing to read */
        (*n)++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) r = db_fail(c, "listing images for OCR");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_image_set_source(catalog *c, int64_t id, const char *title,
                                    const char *description, const char *tags)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "UPDATE images SET title = ?2, description = ?3, tags = ?4 "
                           "WHERE id = ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "storing source metadata");
    bind_i64(s, 1, id);
    bind_text(s, 2, title ? title : "");
    bind_text(s, 3, description ? description : "");
    bind_text(s, 4, tags ? tags : "");
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing source metadata");
    sqlite3_finalize(s);
    if (!r && sqlite3_changes(c->db) == 0)
        r = cdx_error(CDX_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    return r;
}

cdx_result catalog_image_text(catalog *c, int64_t id, catalog_text *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT i.title, i.description, i.tags, c.meta_text, c.keywords, "
                           "c.ocr_text FROM images i LEFT JOIN contents c ON c.sha256 = i.sha256 "
                           "WHERE i.id = ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "reading image text");
    bind_i64(s, 1, id);
    int rc = step(s);
    cdx_result r = CDX_OK;
    if (rc == SQLITE_ROW) {
        char **dst[6] = {&out->title, &out->description, &out->tags, &out->meta_text,
                         &out->keywords, &out->ocr_text};
        for (int i = 0; i < 6 && !r; i++) {
            const char *t = (const char *)sqlite3_column_text(s, i);
            if (!(*dst[i] = strdup(t ? t : ""))) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        }
    } else if (rc == SQLITE_DONE) {
        r = cdx_error(CDX_ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    } else {
        r = db_fail(c, "reading image text");
    }
    sqlite3_finalize(s);
    if (r) catalog_text_free(out);
    return r;
}

void catalog_text_free(catalog_text *t)
{
    free(t->title);
    free(t->description);
    free(t->tags);
    free(t->meta_text);
    free(t->keywords);
    free(t->ocr_text);
    memset(t, 0, sizeof *t);
}

cdx_result catalog_has_text(catalog *c, int *yes)
{
    uint64_t v = 0;
    cdx_result r = count_rows(c, "SELECT EXISTS(SELECT 1 FROM images WHERE title <> '' OR "
                              "description <> '' OR tags <> '') OR EXISTS(SELECT 1 FROM contents "
                              "WHERE meta_text <> '' OR keywords <> '' OR ocr_text <> '')", &v);
    *yes = !r && v != 0;
    return r;
}

/* A failed step of a MATCH query: a plain SQLITE_ERROR is the query's
 * fault (FTS5 syntax, unknown column filter), anything else the file's. */
static cdx_result fts_fail(catalog *c, int rc, const char *match)
{
    if (rc == SQLITE_ERROR)
        return cdx_error(CDX_ERR_INVALID_ARG, "keyword query \"%.200s\" is not valid: %s (see "
                         "docs/search.md for the syntax)", match, sqlite3_errmsg(c->db));
    return db_fail(c, "keyword query");
}

/* "a ranks before b": higher score, then lower id. */
static int fts_before(const catalog_fts_hit *a, const catalog_fts_hit *b)
{
    return a->score > b->score || (a->score == b->score && a->id < b->id);
}

/* Bounded heap of the best `cap` hits; h[0] is the worst kept. */
static void heap_push(catalog_fts_hit *h, size_t *n, size_t cap, catalog_fts_hit x)
{
    size_t i;
    if (*n < cap) {
        i = (*n)++;
        while (i && fts_before(&h[(i - 1) / 2], &x)) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = x;
        return;
    }
    if (!fts_before(&x, &h[0])) return;
    i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const catalog_fts_hit *mv = &x;
        if (l < *n && fts_before(mv, &h[l])) { m = l; mv = &h[l]; }
        if (r < *n && fts_before(mv, &h[r])) { m = r; mv = &h[r]; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
}

static int fts_cmp(const void *a, const void *b)
{
    const catalog_fts_hit *x = a, *y = b;
    return fts_before(x, y) ? -1 : fts_before(y, x) ? 1 : 0;
}

/* Filtered: one pass over the matches that pass the filters (the join and
 * the rank are computed once per such row), best offset + limit kept in a
 * heap, all counted. */
static cdx_result fts_filtered(catalog *c, sqlite3_stmt *s, const char *match, size_t offset,
                               size_t limit, catalog_fts_hit *out, size_t *n, uint64_t *total)
{
    size_t want = offset + limit, kept = 0;
    catalog_fts_hit *h = want ? malloc(want * sizeof *h) : NULL;
    if (want && !h) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    uint64_t count = 0;
    int rc;
    while ((rc = step(s)) == SQLITE_ROW) {
        count++;
        if (want)
            heap_push(h, &kept, want, (catalog_fts_hit){sqlite3_column_int64(s, 0), -sqlite3_column_double(s, 1)});
    }
    cdx_result r = rc == SQLITE_DONE ? CDX_OK : fts_fail(c, rc, match);
    if (!r) {
        qsort(h, kept, sizeof *h, fts_cmp);
        for (size_t i = offset; i < kept; i++) out[(*n)++] = h[i];
        if (total) *total = count;
    }
    free(h);
    return r;
}

cdx_result catalog_fts_query(catalog *c, const char *match, const catalog_filter *f,
                             size_t offset, size_t limit, catalog_fts_hit *out, size_t *n,
                             uint64_t *total)
{
    *n = 0;
    if (total) *total = 0;
    char where[640], sql[1400], *like, *tag;
    cdx_result r = filter_sql(f, where, sizeof where, &like, &tag);
    if (r) return r;
    /* Without filters the index alone answers (every fts row is an image,
     * the triggers see to it): no join per match, and a count that never
     * computes a rank. */
    int filtered = like || tag || f->format || f->after || f->before;
    const char *from = filtered ? "FROM fts JOIN images i ON i.id = fts.rowid "
                                  "JOIN contents c ON c.sha256 = i.sha256 WHERE fts MATCH ?6 "
                                : "FROM fts WHERE fts MATCH ?6 ";
    sqlite3_stmt *s = NULL;
    int rc = SQLITE_DONE;
    if (filtered) {
        snprintf(sql, sizeof sql, "SELECT fts.rowid, fts.rank %s %s", from, where);
        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
            r = db_fail(c, "keyword query");
            goto done;
        }
        filter_bind(s, f, like, tag);
        bind_text(s, 6, match);
        r = fts_filtered(c, s, match, offset, limit, out, n, total);
        sqlite3_finalize(s);
        goto done;
    }
    if (limit) {
        snprintf(sql, sizeof sql, "SELECT fts.rowid, fts.rank %s %s ORDER BY fts.rank, fts.rowid "
                 "LIMIT ?7 OFFSET ?8", from, where);
        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
            r = db_fail(c, "keyword query");
            goto done;
        }
        filter_bind(s, f, like, tag);
        bind_text(s, 6, match);
        bind_i64(s, 7, (sqlite3_int64)limit);
        bind_i64(s, 8, (sqlite3_int64)offset);
        while ((rc = step(s)) == SQLITE_ROW && *n < limit) {
            out[*n].id = sqlite3_column_int64(s, 0);
            out[*n].score = -sqlite3_column_double(s, 1);
            (*n)++;
        }
        sqlite3_finalize(s);
        s = NULL;
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
            r = fts_fail(c, rc, match);
            goto done;
        }
    }
    if (total) {
        snprintf(sql, sizeof sql, "SELECT count(*) %s %s", from, where);
        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
            r = db_fail(c, "keyword query");
            goto done;
        }
        filter_bind(s, f, like, tag);
        bind_text(s, 6, match);
        rc = step(s);
        if (rc == SQLITE_ROW) *total = (uint64_t)sqlite3_column_int64(s, 0);
        else r = fts_fail(c, rc, match);
        sqlite3_finalize(s);
    }
done:
    free(like);
    free(tag);
    if (r) *n = 0;
    return r;
}

/* ---- perceptual hashes (dupes) -------------------------------------------- */

cdx_result catalog_content_set_phash(catalog *c, const char *sha256, uint64_t phash)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "UPDATE contents SET phash = ?2 WHERE sha256 = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return db_fail(c, "storing a perceptual hash");
    bind_text(s, 1, sha256);
    bind_i64(s, 2, (int64_t)phash);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing a perceptual hash");
    sqlite3_finalize(s);
    return r;
}

/* ---- fleet side tables (sources_sql) */

cdx_result catalog_source_set(catalog *c, int64_t id, const char *json)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, json ? "INSERT OR REPLACE INTO image_sources(id, json) VALUES(?1, ?2)"
                                       : "DELETE FROM image_sources WHERE id = ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "storing a source record");
    bind_i64(s, 1, id);
    if (json) bind_text(s, 2, json);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing a source record");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_thumb_put(catalog *c, const char *sha256, const void *jpeg, size_t len)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO thumbs(sha256, jpeg) VALUES(?1, ?2)", -1, &s,
                           NULL) != SQLITE_OK)
        return db_fail(c, "storing a thumbnail");
    bind_text(s, 1, sha256);
    bind_blob(s, 2, jpeg, (sqlite3_uint64)len);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "storing a thumbnail");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_each_dupe_row(catalog *c, int (*fn)(void *user, const catalog_dupe_row *row),
                                 void *user)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT i.id, c.slot, c.phash, c.width, c.height, "
                           "  CASE WHEN c.taken > 0 THEN c.taken ELSE i.mtime END, i.path, c.sha256 "
                           "FROM images i JOIN contents c ON c.sha256 = i.sha256 ORDER BY i.id",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "listing images for duplicates");
    cdx_result r = CDX_OK;
    int rc;
    while ((rc = step(s)) == SQLITE_ROW) {
        catalog_dupe_row row;
        row.id = sqlite3_column_int64(s, 0);
        row.slot = sqlite3_column_int64(s, 1);
        row.has_phash = sqlite3_column_type(s, 2) != SQLITE_NULL;
        row.phash = (uint64_t)sqlite3_column_int64(s, 2);
        row.pixels = (uint64_t)(sqlite3_column_int64(s, 3) > 0 ? sqlite3_column_int64(s, 3) : 0) *
                     (uint64_t)(sqlite3_column_int64(s, 4) > 0 ? sqlite3_column_int64(s, 4) : 0);
        row.date = sqlite3_column_int64(s, 5);
        const char *path = (const char *)sqlite3_column_text(s, 6);
        const char *sha = (const char *)sqlite3_column_text(s, 7);
        row.path = path ? path : "";
        row.sha256 = sha ? sha : "";
        if (fn(user, &row)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) r = db_fail(c, "listing images for duplicates");
    sqlite3_finalize(s);
    return r;
}
/* One column of one row into a malloc'd copy (+ NUL); CDX_ERR_NOT_FOUND
 * when there is no row or no table (a library no writer has opened yet). */
static cdx_result side_get(catalog *c, const char *sql, int64_t id, const char *key, void **out, size_t *len)
{
    *out = NULL;
    if (len) *len = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return CDX_ERR_NOT_FOUND;
    }
    if (key) bind_text(s, 1, key);
    else bind_i64(s, 1, id);
    int rc = step(s);
    cdx_result r = CDX_OK;
    if (rc == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        char *copy = malloc(n + 1);
        if (!copy) {
            r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        } else {
            if (n) memcpy(copy, p, n);
            copy[n] = '\0';
            *out = copy;
            if (len) *len = n;
        }
    } else {
        r = rc == SQLITE_DONE ? CDX_ERR_NOT_FOUND : db_fail(c, "reading a side table");
    }
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_source_get(catalog *c, int64_t id, char **json)
{
    return side_get(c, "SELECT json FROM image_sources WHERE id = ?1", id, NULL, (void **)json, NULL);
}

cdx_result catalog_thumb_get(catalog *c, const char *sha256, void **jpeg, size_t *len)
{
    return side_get(c, "SELECT jpeg FROM thumbs WHERE sha256 = ?1", 0, sha256, jpeg, len);
}

int catalog_text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) return 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return 0;
        if (len == 1 && c < 0x20 && c != '\t' && c != '\n' && c != '\r') return 0;
        for (size_t k = 1; k < len; k++)
            if ((u[i + k] & 0xc0) != 0x80) return 0;
        if (len == 2 && c < 0xc2) return 0;                       /* overlong */
        if (len == 3 && c == 0xe0 && u[i + 1] < 0xa0) return 0;
        if (len == 3 && c == 0xed && u[i + 1] >= 0xa0) return 0;  /* surrogates */
        if (len == 4 && (c > 0xf4 || (c == 0xf0 && u[i + 1] < 0x90) || (c == 0xf4 && u[i + 1] >= 0x90)))
            return 0;
        i += len;
    }
    return 1;
}

/* ---- fleet outbox (catalog.h; docs/fleet.md "Deletions") */

#define OUTBOX_NOW "CAST(strftime('%s', 'now') AS INTEGER)"
#define OUTBOX_ROW(op, pfx) \
    "INSERT INTO fleet_outbox(op, path, sha256, at) VALUES('" op "', " pfx ".path, " pfx ".sha256, " OUTBOX_NOW ");"

static const char outbox_sql[] =
    "CREATE TABLE IF NOT EXISTS main.fleet_outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "  op TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, at INTEGER NOT NULL);"
    "CREATE TEMP TRIGGER IF NOT EXISTS fleet_outbox_insert AFTER INSERT ON main.images "
    "  WHEN clipdex_outbox_active() BEGIN " OUTBOX_ROW("add", "new") " END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS fleet_outbox_delete AFTER DELETE ON main.images "
    "  WHEN clipdex_outbox_active() BEGIN " OUTBOX_ROW("del", "old") " END;"
    "CREATE TEMP TRIGGER IF NOT EXISTS fleet_outbox_update AFTER UPDATE OF path, sha256 ON main.images "
    "  WHEN clipdex_outbox_active() AND (old.path IS NOT new.path OR old.sha256 IS NOT new.sha256) "
    "  BEGIN " OUTBOX_ROW("add", "new") OUTBOX_ROW("del", "old") " END;";

static void outbox_active_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    int (*active)(void) = (int (*)(void))sqlite3_user_data(ctx);
    sqlite3_result_int(ctx, active ? active() != 0 : 1);
}

cdx_result catalog_outbox_attach(catalog *c, int (*active)(void))
{
    if (sqlite3_create_function(c->db, "clipdex_outbox_active", 0, SQLITE_UTF8,
                                (void *)active, outbox_active_fn, NULL, NULL) != SQLITE_OK)
        return db_fail(c, "registering the outbox function");
    return exec(c, outbox_sql);
}

cdx_result catalog_outbox_rows(catalog *c, int64_t after, int max, catalog_outbox_row *rows, int *n)
{
    *n = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT seq, op, path, sha256, at FROM fleet_outbox WHERE seq > ?1 "
                                  "ORDER BY seq LIMIT ?2", -1, &s, NULL) != SQLITE_OK)
        return strstr(sqlite3_errmsg(c->db), "no such table") ? CDX_OK : db_fail(c, "reading the outbox");
    bind_i64(s, 1, after);
    bind_int(s, 2, max);
    int rc;
    while ((rc = step(s)) == SQLITE_ROW && *n < max) {
        catalog_outbox_row *o = &rows[(*n)++];
        o->seq = sqlite3_column_int64(s, 0);
        const char *op = (const char *)sqlite3_column_text(s, 1);
        o->add = op && !strcmp(op, "add");
        copy_text(o->path, sizeof o->path, s, 2);
        copy_text(o->sha256, sizeof o->sha256, s, 3);
        o->at = sqlite3_column_int64(s, 4);
    }
    cdx_result r = rc == SQLITE_DONE || rc == SQLITE_ROW ? CDX_OK : db_fail(c, "reading the outbox");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_outbox_done(catalog *c, int64_t seq)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM fleet_outbox WHERE seq <= ?1", -1, &s, NULL) != SQLITE_OK)
        return db_fail(c, "clearing the outbox");
    bind_i64(s, 1, seq);
    cdx_result r = step(s) == SQLITE_DONE ? CDX_OK : db_fail(c, "clearing the outbox");
    sqlite3_finalize(s);
    return r;
}

cdx_result catalog_outbox_count(catalog *c, uint64_t *n)
{
    *n = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM fleet_outbox", -1, &s, NULL) != SQLITE_OK)
        return CDX_OK;   /* no table: nothing recorded */
    cdx_result r = CDX_OK;
    if (step(s) == SQLITE_ROW) *n = (uint64_t)sqlite3_column_int64(s, 0);
    else r = db_fail(c, "counting the outbox");
    sqlite3_finalize(s);
    return r;
}
