/*
 * codes.h - companion files holding compressed copies (int8 or 1-bit codes,
 * search/quant.h) of a vector file's rows.
 *
 * A companion is a cache: the float32 vector file stays the source of truth
 * and a companion can always be rebuilt from it.  It is therefore never
 * trusted blindly: it names the vector file it was made from (its 16-byte
 * file id, which compaction changes) and the number of rows it covers, and
 * the caller compares both with the vector file before use - a companion of
 * another file id, or with more rows than the file, is stale; one with
 * fewer rows is extended.
 *
 * Layout (little-endian; docs/search.md):
 *   0      header, 4096 bytes: magic "CDXCODES", version, kind, dim, pdim,
 *          cdim, rotate, has_proj, code_bytes, block_bytes, source file id,
 *          rows, model bytes, model CRC, data CRC, data offset, header CRC
 *   4096   the quantiser model (float32 mean [dim], then the projection
 *          [pdim x dim] when has_proj), padded to a multiple of 4096
 *   data   64-row blocks: 64 codes of code_bytes, then 64 x 8 bytes aux;
 *          the last block may be partly filled (the file always holds
 *          whole blocks).
 * CRCs are CRC-32 (zlib); the data CRC runs over each row's code then aux
 * in row order, so appends extend it without rereading.
 *
 * Crash safety: a file is created as a temp file + fsync + rename + dir
 * fsync.  An append writes the new rows, fdatasyncs, then rewrites the
 * header (rows, data CRC) and fdatasyncs; a torn header fails its CRC and
 * the companion is rebuilt.  Writers hold an exclusive flock on a lock file
 * next to the companion (the caller's), readers map the file and use the
 * row count they read.  Open checks the header, the model and the sizes;
 * codes_verify() checks the data CRC (a full read).
 *
 * Workload: one companion per code kind per library, 10^4..10^7 rows;
 * created once, extended after each indexing run, mapped for every search.
 */
#ifndef CDX_STORE_CODES_H
#define CDX_STORE_CODES_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

#define CODES_BLOCK_ROWS 64
#define CODES_AUX_BYTES 8
#define CODES_ID_BYTES 16
#define CODES_MAX_DIM 16384

typedef struct codes_meta {
    uint32_t kind;              /* 1 int8, 2 bit (search/quant.h quant_kind) */
    uint32_t dim, pdim, cdim;   /* source, projected and coded dimensions */
    uint32_t rotate, has_proj;
    uint32_t code_bytes;        /* per row, multiple of 64 */
    uint8_t source_id[CODES_ID_BYTES];
    uint64_t rows;
} codes_meta;

typedef struct codes_file codes_file;

/* Open and map path read-only, validating the header, the model and the
 * file size: CDX_ERR_NOT_FOUND, CDX_ERR_IO, CDX_ERR_FORMAT (what is wrong),
 * CDX_ERR_UNSUPPORTED (newer version). */
cdx_result codes_open(const char *path, codes_file **out);
void codes_close(codes_file *cf);

const codes_meta *codes_meta_get(const codes_file *cf);
/* The model: mean (dim floats) then, with has_proj, pdim x dim floats. */
const float *codes_model(const codes_file *cf);
/* Block 0 of the data (rows 0..meta.rows). */
const uint8_t *codes_data(const codes_file *cf);
/* Bytes per block: 64 * (code_bytes + 8). */
size_t codes_block_bytes(const codes_meta *m);
/* On-disk size of the file. */
uint64_t codes_file_bytes(const codes_file *cf);

/* Read every row and compare the data CRC: CDX_ERR_FORMAT when damaged. */
cdx_result codes_verify(const codes_file *cf);

/* Write a new companion atomically: meta (rows = number of rows in data),
 * the model floats, and the data as whole blocks (rows .. end of the last
 * block are ignored and written as zeros). */
cdx_result codes_create(const char *path, const codes_meta *meta, const float *model,
                        const uint8_t *data);

/* Append rows [meta.rows, new_rows) to the companion at path whose header
 * must still match cf's (same rows, file id, geometry; else
 * CDX_ERR_MISMATCH: reopen).  blocks holds the blocks from block
 * meta.rows/64 on, in the data layout; only the new rows' codes and aux are
 * written.  The caller holds the writer lock.  cf is not changed: reopen to
 * see the new rows. */
cdx_result codes_append(const char *path, const codes_file *cf, uint64_t new_rows,
                        const uint8_t *blocks);

#endif
