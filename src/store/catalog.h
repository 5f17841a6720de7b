/*
 * catalog.h - the SQLite catalog of an image library: which paths/URLs are
 * indexed, which content (sha256) each has, and which vecfile slot holds
 * that content's embedding.
 *
 * Schema (version CATALOG_SCHEMA_VERSION, see docs/library.md):
 *   meta(key TEXT PRIMARY KEY, value TEXT)      schema_version, model_*, dim,
 *                                               vec_file_id, created
 *   contents(sha256 TEXT PRIMARY KEY, slot INTEGER UNIQUE, size, width,
 *            height, format, taken, camera)     one row per embedded content
 *   images(id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT UNIQUE,
 *          sha256 TEXT, mtime, added)           one row per path or URL
 * Imported vectors (ingest/import.h) have no image bytes: their contents
 * sha256 is sha256("clipdex-vector-v1\0" || normalised vector), size 0
 * unless given.
 * Version 2 adds text: images.title, description, tags (source
 * metadata); contents.meta_text, keywords (embedded EXIF/IPTC/XMP), ocr_text;
 * and the FTS5 table fts(path, name, title, description, tags, embedded,
 * ocr), rowid = images.id, kept in step by triggers (see catalog.c).
 * Version 3 adds contents.ocr_lang (NULL until read by OCR) and
 * ocr_skipped (the text-likeness test found nothing to read), and
 * contents.phash (INTEGER, NULL = not computed): the 64-bit perceptual hash
 * of near-duplicate detection (image/phash.h).
 * Invariants (verified by catalog_check_refs / cdx_library_check):
 *  - every images.sha256 has a contents row; every contents row has at least
 *    one image (the last image's removal deletes its content row);
 *  - contents.slot < the vecfile's count and that slot's key is the sha256
 *    (the vector is appended and fsynced before the transaction that
 *    inserts the contents row commits: the vecfile protocol).
 *  - Ids are never reused (AUTOINCREMENT), so a client holding an id never
 *    sees it name another image.
 *
 * Migrations policy: meta.schema_version is checked at open.  An older
 * version is migrated in place inside one transaction by the writer (each
 * step vN -> vN+1 is a function in catalog.c); a newer version is refused
 * (CDX_ERR_UNSUPPORTED) and never written.  Read-only opens of an older
 * catalog fail with a message asking to run a writing command once.
 *
 * Connections: one catalog handle = one SQLite connection (WAL,
 * synchronous=FULL, busy timeout) with its statements prepared once; a
 * handle is used by one thread at a time (library.c keeps a writer and a
 * reader connection, each behind a mutex).  WAL lets readers run while the
 * writer commits.
 *
 * Workload: ingest inserts in batches of ~32..1000 rows per transaction;
 * lookups by path and by sha256 per candidate file; filter queries over all
 * rows per filtered search.
 */
#ifndef CDX_STORE_CATALOG_H
#define CDX_STORE_CATALOG_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

#define CATALOG_SCHEMA_VERSION 3

typedef struct catalog catalog;

/* Open (create when create != 0 and the file is missing) the catalog at path.
 * Read-only handles use SQLITE_OPEN_READONLY. */
cdx_result catalog_open(const char *path, int writable, int create, catalog **out);
void catalog_close(catalog *c);

/* Incremented by SQLite whenever another connection committed (PRAGMA
 * data_version), plus our own commits: a cheap "did anything change".
 * Fails (CDX_ERR_IO) when it cannot be read: callers must then treat
 * anything cached as stale. */
cdx_result catalog_version(catalog *c, uint64_t *out);

cdx_result catalog_meta_get(catalog *c, const char *key, char *out, size_t cap);
cdx_result catalog_meta_set(catalog *c, const char *key, const char *value);

cdx_result catalog_begin(catalog *c);    /* BEGIN IMMEDIATE */
cdx_result catalog_begin_read(catalog *c);   /* BEGIN (a consistent read snapshot) */
cdx_result catalog_commit(catalog *c);
void catalog_rollback(catalog *c);

/* Contents.  rec: sha256, size, width, height, format, taken, camera. */
cdx_result catalog_content_slot(catalog *c, const char *sha256, int64_t *slot);
cdx_result catalog_content_insert(catalog *c, const cdx_image_record *rec, int64_t slot);

/* Images.  Lookups fill rec (content fields joined) or return NOT_FOUND. */
cdx_result catalog_image_by_path(catalog *c, const char *path, cdx_image_record *rec);
cdx_result catalog_image_by_id(catalog *c, int64_t id, cdx_image_record *rec);
/* Any image with this content (lowest id), NOT_FOUND if none. */
cdx_result catalog_image_by_content(catalog *c, const char *sha256, cdx_image_record *rec);
cdx_result catalog_image_insert(catalog *c, const char *path, const char *sha256,
                                int64_t mtime, int64_t added, int64_t *id);
/* Point image id at path/sha256/mtime (a move, or a changed file). */
cdx_result catalog_image_update(catalog *c, int64_t id, const char *path,
                                const char *sha256, int64_t mtime);
/* Delete image id, and its content row when no other image refers to it. */
cdx_result catalog_image_delete(catalog *c, int64_t id);
/* Delete the content row if unreferenced (after an update changed it). */
cdx_result catalog_content_gc(catalog *c, const char *sha256);

/* Calls fn(user, id, path, mtime) for every image whose path starts with
 * prefix (NULL = all), in path order; non-zero from fn stops. */
cdx_result catalog_each_image(catalog *c, const char *prefix,
                              int (*fn)(void *user, int64_t id, const char *path,
                                        int64_t mtime),
                              void *user);

/* Every image with this content: fn(user, id, path, mtime), id order. */
cdx_result catalog_each_image_of_content(catalog *c, const char *sha256,
                                         int (*fn)(void *user, int64_t id, const char *path,
                                                   int64_t mtime),
                                         void *user);

/* Images in id order: skip offset, then at most limit (< 0 = all) rows:
 * fn(user, rec, slot) with the record and its content's vector slot;
 * non-zero from fn stops. */
cdx_result catalog_images_page(catalog *c, uint64_t offset, int64_t limit,
                               int (*fn)(void *user, const cdx_image_record *rec, int64_t slot),
                               void *user);

/* Search filters -> (slot, id) pairs sorted by slot then id. */
typedef struct catalog_filter {
    const char *path_prefix;   /* NULL = any */
    const char *format;        /* NULL = any */
    int64_t after, before;     /* 0 = unbounded; date = taken, else mtime;
                                  after inclusive, before exclusive */
    const char *tag;           /* NULL = any; else a source tag or an embedded
                                  keyword, ASCII case-insensitive */
} catalog_filter;

typedef struct catalog_pair {
    int64_t slot;
    int64_t id;
} catalog_pair;

/* *pairs is malloc'd (caller frees). */
cdx_result catalog_query(catalog *c, const catalog_filter *f, catalog_pair **pairs,
                         size_t *n);

cdx_result catalog_counts(catalog *c, uint64_t *images, uint64_t *contents);
/* The highest slot any content refers to, -1 when there is none. */
cdx_result catalog_max_slot(catalog *c, int64_t *slot);

/* Every content row: fn(user, sha256, slot); non-zero from fn stops. */
cdx_result catalog_each_content(catalog *c,
                                int (*fn)(void *user, const char *sha256, int64_t slot),
                                void *user);

/* Compaction: move the content at old_slot to new_slot (inside the
 * caller's transaction).  Renumbering in increasing old_slot order with
 * new_slot <= old_slot (what compaction produces) never collides with the
 * UNIQUE constraint. */
cdx_result catalog_content_reslot(catalog *c, int64_t old_slot, int64_t new_slot);

/* Structural checks inside the catalog (SQLite integrity, dangling image
 * references, contents without images, duplicate slots); each problem goes
 * to fn.  Returns the number of problems in *problems. */
cdx_result catalog_check(catalog *c, void (*fn)(void *user, const char *problem),
                         void *user, uint64_t *problems);

/* Escape % _ and \ for a LIKE ... ESCAPE '\' prefix pattern and append '%'.
 * Returns a malloc'd string or NULL. */
char *catalog_like_prefix(const char *prefix);

/* ---- text (schema version 2) ----------------------------------------------
 * Tag lists are stored as "\ntag1\ntag2\n" ("" for none). */
#define CATALOG_TAG_MAX 256              /* bytes per tag */
#define CATALOG_TAGS_BYTES_MAX 16384     /* bytes per tag list */
#define CATALOG_TEXT_MAX 65536           /* bytes per text field */

/* Build a stored tag list from tags (NULL entries skipped; each trimmed,
 * control characters as spaces, empty and repeated ones dropped).  *out is
 * malloc'd.  CDX_ERR_INVALID_ARG / TOO_LARGE beyond the limits above. */
cdx_result catalog_tag_list(const char *const *tags, size_t n, char **out);
/* 1 when s is valid UTF-8 of at most max bytes without control characters
 * other than tab, newline and carriage return (text the catalog accepts
 * from outside: source metadata, imports). */
int catalog_text_ok(const char *s, size_t max);
/* "\n" + ASCII-lowercased tag + "\n" (malloc'd) or NULL. */
char *catalog_tag_pattern(const char *tag);

/* Metadata read from the bytes at indexing time (per content). */
cdx_result catalog_content_set_text(catalog *c, const char *sha256, const char *meta_text,
                                    const char *keywords);
/* Text read from the pixels (per content; for a later OCR pass). */
cdx_result catalog_content_set_ocr(catalog *c, const char *sha256, const char *text);
/* (ocr branch, schema 3) Text read from the pixels with languages lang,
 * or nothing read when skipped (the text-likeness test said no text);
 * marks the content as read with lang. */
cdx_result catalog_content_set_ocr_read(catalog *c, const char *sha256, const char *text,
                                       const char *lang, int skipped);
/* Images whose content has OCR text; contents read; contents skipped. */
cdx_result catalog_ocr_counts(catalog *c, uint64_t *images_with_text, uint64_t *read,
                              uint64_t *skipped);
typedef struct catalog_ocr_job {
    char sha256[65];
    char *path;          /* malloc'd: the content's first image (path or URL) */
} catalog_ocr_job;
/* How many contents catalog_ocr_todo would list from the start. */
cdx_result catalog_ocr_todo_count(catalog *c, const char *lang, int force, uint64_t *n);
/* Up to limit contents with sha256 > after (in sha256 order) that were not
 * read with lang (all of them when force), each with one image path. */
cdx_result catalog_ocr_todo(catalog *c, const char *lang, int force, const char *after,
                            size_t limit, catalog_ocr_job *out, size_t *n);
/* Source metadata of one image (feeds, imports, the API); tags is a stored
 * tag list.  NOT_FOUND for an unknown id. */
cdx_result catalog_image_set_source(catalog *c, int64_t id, const char *title,
                                    const char *description, const char *tags);

typedef struct catalog_text {
    char *title, *description, *tags;         /* source (per image) */
    char *meta_text, *keywords, *ocr_text;    /* embedded / OCR (per content) */
} catalog_text;

/* All text of image id (malloc'd strings; catalog_text_free). */
cdx_result catalog_image_text(catalog *c, int64_t id, catalog_text *out);
void catalog_text_free(catalog_text *t);

/* *yes = 1 when any image has text beyond its path (source metadata,
 * embedded metadata or OCR text). */
cdx_result catalog_has_text(catalog *c, int *yes);

typedef struct catalog_fts_hit {
    int64_t id;
    double score;     /* -bm25 with the column weights: higher is better */
} catalog_fts_hit;

/* Keyword query (FTS5 syntax) with filters: hits offset..offset+limit-1 in
 * rank order (ties by id) into out; *total (may be NULL) = all matches.
 * Malformed syntax is CDX_ERR_INVALID_ARG with SQLite's message. */
cdx_result catalog_fts_query(catalog *c, const char *match, const catalog_filter *f,
                             size_t offset, size_t limit, catalog_fts_hit *out, size_t *n,
                             uint64_t *total);

/* ---- perceptual hashes (dupes) ---- */

cdx_result catalog_content_set_phash(catalog *c, const char *sha256, uint64_t phash);

typedef struct catalog_dupe_row {
    int64_t id, slot;
    uint64_t phash;
    int has_phash;
    uint64_t pixels;          /* width x height as stored */
    int64_t date;             /* EXIF date, else mtime */
    const char *path, *sha256;   /* valid during the callback */
} catalog_dupe_row;

/* Every image with its content's slot and hash, in id order; fn returns
 * non-zero to stop. */
cdx_result catalog_each_dupe_row(catalog *c, int (*fn)(void *user, const catalog_dupe_row *row),
                                 void *user);
/* Fleet side tables (created by every writable open): an image's source
 * record (JSON text; NULL deletes it) and the thumbnail JPEG of a content
 * whose bytes are not stored.  The getters return CDX_ERR_NOT_FOUND (no
 * message) when there is none; *json / *jpeg are malloc'd. */
cdx_result catalog_source_set(catalog *c, int64_t id, const char *json);
cdx_result catalog_source_get(catalog *c, int64_t id, char **json);
cdx_result catalog_thumb_put(catalog *c, const char *sha256, const void *jpeg, size_t len);
cdx_result catalog_thumb_get(catalog *c, const char *sha256, void **jpeg, size_t *len);

/* ---- fleet outbox (lib_fleet.c): the changes an owning library must
 * publish to its read replicas, recorded by TEMP triggers of this
 * connection inside the writer's own transaction (so no commit can lose
 * one): an image inserted ("add" path sha256), deleted ("del") or given
 * another path or content ("add" of the new pair, then "del" of the old
 * one).  A trigger records only while active() returns non-zero (the
 * calling thread is not muted).  The table fleet_outbox persists; seq
 * grows forever (AUTOINCREMENT), so a row republished after a crash keeps
 * its message id. */
typedef struct catalog_outbox_row {
    int64_t seq;
    int64_t at;               /* unix seconds of the change */
    int add;                  /* 1 add, 0 del */
    char path[4096];
    char sha256[65];
} catalog_outbox_row;

cdx_result catalog_outbox_attach(catalog *c, int (*active)(void));
/* Up to max rows with seq > after, in seq order; *n = rows read. */
cdx_result catalog_outbox_rows(catalog *c, int64_t after, int max, catalog_outbox_row *rows, int *n);
/* Forget the rows up to seq (published). */
cdx_result catalog_outbox_done(catalog *c, int64_t seq);
/* Rows not yet published (0 when the table does not exist). */
cdx_result catalog_outbox_count(catalog *c, uint64_t *n);

#endif
