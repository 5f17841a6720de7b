/*
 * st_write.h - a small streaming safetensors writer (F32 tensors only).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [...],
 * "data_offsets": [begin, end]}, ...} padded with spaces to a multiple of 8
 * (so the data region is 8-byte aligned), then the tensors' bytes in the
 * order given.  The file is written to "<path>.tmp", fsynced and renamed
 * over path, so a reader sees either the old file or the complete new one.
 *
 * Names come from the caller's own tables (trainer.c); they are still
 * JSON-escaped.  Workload: a few files per training run, up to a few GB.
 */
#ifndef CDX_TRAIN_ST_WRITE_H
#define CDX_TRAIN_ST_WRITE_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cdx_st_out {
    const char *name;
    int ndim;                 /* 0 = scalar */
    const int64_t *shape;
    const float *data;        /* numel floats */
} cdx_st_out;

cdx_result cdx_st_write_f32(const char *path, const cdx_st_out *t, int n,
                            const char *metadata_json /* an object or NULL */);

#endif
