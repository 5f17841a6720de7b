/*
 * ann_file.h - the approximate index on disk (DIR/ann.cdxi): a checksummed,
 * append-only image of an ann_ivf (search/ann_ivf.h).
 *
 * Layout (little-endian; docs/storage-format.md):
 *   header, 128 bytes: magic "CDXIVF1\0", version, dim, nlist, code bytes,
 *     trained rows, the vector file id it indexes, CRC32C of the
 *     centroids, CRC32C of the header;
 *   centroids: nlist x dim float32;
 *   segments, each covering the next consecutive slots: a 32-byte segment
 *     header (magic, n, first slot, payload CRC32C, header CRC32C) then the
 *     payload: n list numbers (u32), n scales (f32), n codes.
 *
 * The file is never the source of truth.  A bad header or centroids make
 * the whole file unusable (rebuild); a bad or torn segment ends the usable
 * prefix (a crash during an append leaves exactly that): the rows after it
 * are encoded again from the vector file.  A new file is written to
 * PATH.tmp and renamed into place after fsync; an append truncates to the
 * valid prefix first and is fdatasync()ed before it counts.
 *
 * Workload: written once per full build in segments of up to
 * ANN_FILE_SEGMENT rows, appended to after each index run, read once per
 * process that searches with it.
 */
#ifndef CDX_SEARCH_ANN_FILE_H
#define CDX_SEARCH_ANN_FILE_H

#include "clipdex.h"
#include "search/ann_ivf.h"

#include <stdint.h>

#define ANN_FILE_SEGMENT 65536
#define ANN_FILE_ID_BYTES 16

typedef struct ann_file_header {
    int dim, nlist;
    uint64_t trained_rows;                 /* rows the centroids were trained for */
    uint8_t vec_id[ANN_FILE_ID_BYTES];     /* vector file it indexes */
} ann_file_header;

typedef struct ann_file_writer ann_file_writer;

/* Start a new file (written to path.tmp) with the index's centroids. */
cdx_result ann_file_create(const char *path, const ann_file_header *h, const ann_ivf *ix,
                           ann_file_writer **out);
cdx_result ann_file_write_segment(ann_file_writer *w, const ann_segment *seg);
/* fsync, rename over path, fsync the directory; frees w either way. */
cdx_result ann_file_commit(ann_file_writer *w);
/* Drop the temporary file; frees w (NULL accepted). */
void ann_file_abort(ann_file_writer *w);

/* Append one segment at valid_bytes (the end of the usable prefix, as
 * ann_file_load reported; anything after it is cut first).  *new_bytes
 * receives the new end. */
cdx_result ann_file_append(const char *path, uint64_t valid_bytes, const ann_segment *seg,
                           int dim, uint64_t *new_bytes);

typedef struct ann_file_report {
    uint64_t rows;          /* rows loaded (the usable prefix) */
    uint64_t valid_bytes;   /* end of the usable prefix */
    uint64_t file_bytes;
    int tail_dropped;       /* bytes after the prefix were unusable */
} ann_file_report;

/* Load path into a new index.  CDX_ERR_NOT_FOUND when missing,
 * CDX_ERR_FORMAT when the header or centroids are bad or dim differs
 * (message says what).  A damaged segment is not an error: loading stops
 * there and rep says so. */
cdx_result ann_file_load(const char *path, int dim, ann_file_header *h, ann_ivf **out,
                         ann_file_report *rep);

#endif
