/*
 * import.h - importing embeddings computed elsewhere (.npy + CSV/JSONL
 * metadata) into a library, and the metadata reader it uses.
 *
 * Protocol (same as ingest, see pipeline.h): the whole input is validated
 * first (every metadata row parsed, row count = vector count, every vector
 * finite and non-zero), so a bad file writes nothing.  Then per batch:
 * vectors of new contents are appended (fdatasync), and one catalog
 * transaction inserts their contents rows and the images rows.  A kill at
 * any moment loses at most the uncommitted batch; running the same import
 * again skips every path already catalogued with the same vector, and
 * adopts the vectors of the lost batch (unreferenced records at the end of
 * the vector file, found by key) instead of appending them again.
 *
 * Keys: an imported content has no image bytes; its 32-byte key (the
 * catalog's sha256 column and the vecfile record key) is
 * sha256("clipdex-vector-v1\0" || the normalised float32 vector, little
 * endian), so identical vectors share one slot, like identical files do.
 *
 * Invariants: the caller holds the library's write lock and owns the writer
 * catalog and the writable vecfile for the whole run.
 * Workload: 10^3..10^7 rows, batches of ~4096 rows.
 */
#ifndef CDX_INGEST_IMPORT_H
#define CDX_INGEST_IMPORT_H

#include "clipdex.h"
#include "store/catalog.h"
#include "store/vecfile.h"

/* ---- metadata rows */

typedef struct meta_reader meta_reader;

typedef struct meta_row {
    char path[4096];     /* absolute path or URL */
    int64_t width, height, mtime, taken, size;
    char format[16];
    char camera[128];
    uint64_t line;       /* line number in the file (first line = 1) */
    /* source metadata (malloc'd, NULL when absent; free with
     * meta_row_clear): title, description, and tags as a catalog tag list */
    char *title, *description, *tags;
} meta_row;

/* Free a row's source metadata (the row stays usable). */
void meta_row_clear(meta_row *row);

/* format: "csv", "jsonl" or NULL (by extension: .csv, else JSON Lines for
 * .jsonl/.ndjson/.json).  base_dir: relative paths are joined to it (NULL =
 * the current directory). */
cdx_result meta_reader_open(const char *path, const char *format, const char *base_dir,
                            meta_reader **out);
/* Next row: CDX_OK with *got = 1, or *got = 0 at the end.  Errors name the
 * file and line. */
cdx_result meta_reader_next(meta_reader *r, meta_row *row, int *got);
void meta_reader_close(meta_reader *r);

/* ---- the import run */

typedef struct import_target {
    catalog *cat;        /* writer connection */
    vecfile *vf;         /* writable */
    int dim;
    const char *fingerprint;   /* the library's model fingerprint */
} import_target;

cdx_result import_run(import_target *t, const char *vectors_path, const char *meta_path,
                      const cdx_import_params *p, cdx_import_stats *stats);

/* Commit n rows given in memory (vectors n x dim, any length; normalised
 * here) in one batch as the import does.  sha256 (may be NULL; a row's
 * entry may be "") is the image bytes' hex sha256, the key of the content;
 * an empty one keys the row by its vector as imports do.  A row whose path
 * is catalogued with the same key already changes nothing (stats
 * "unchanged"), so committing the same rows twice is harmless. */
cdx_result import_rows(import_target *t, const meta_row *rows, const float *vecs,
                       const char (*sha256)[65], size_t n, cdx_import_stats *st);

#endif
