/*
 * rows.h - a read-only view of float32 vector rows laid out in blocks.
 *
 * The neutral type between the stores that own vectors (store/vecfile.c,
 * compressed companions) and the code that scans them (search/): neither
 * side includes the other.  A view never owns its memory; whoever hands one
 * out says how long it stays valid.
 *
 * Invariants: rows are grouped in blocks of block_rows rows (a multiple of
 * 64); row r of block b starts at base + b*block_stride + r*row_stride
 * bytes; row_stride and block_stride are multiples of 4 (64 for full-speed
 * SIMD loads).  The first dim floats of a row are its vector.
 */
#ifndef CDX_COMMON_ROWS_H
#define CDX_COMMON_ROWS_H

#include <stddef.h>
#include <stdint.h>

#define CDX_ROWS_CHUNK 64

typedef struct cdx_rows {
    const void *base;        /* start of block 0 */
    uint64_t count;          /* number of rows */
    int dim;                 /* floats per row that are scored */
    size_t row_stride;       /* bytes between consecutive rows of a block */
    uint32_t block_rows;     /* rows per block, multiple of 64 */
    size_t block_stride;     /* bytes between consecutive blocks */
} cdx_rows;

/* Row i of a view (i < v->count). */
static inline const float *cdx_rows_at(const cdx_rows *v, uint64_t i)
{
    return (const float *)((const char *)v->base + (i / v->block_rows) * v->block_stride +
                           (i % v->block_rows) * v->row_stride);
}

/* A view of a plain contiguous array of count rows, row_stride_bytes apart
 * (tests and benchmarks). */
static inline cdx_rows cdx_rows_array(const float *rows, uint64_t count, int dim,
                                      size_t row_stride_bytes)
{
    cdx_rows s;
    s.base = rows;
    s.count = count;
    s.dim = dim;
    s.row_stride = row_stride_bytes;
    s.block_rows = CDX_ROWS_CHUNK;
    s.block_stride = CDX_ROWS_CHUNK * row_stride_bytes;
    return s;
}

#endif
