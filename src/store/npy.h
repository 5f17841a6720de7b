/*
 * npy.h - NumPy .npy files of embeddings: a hostile-input reader (memory
 * mapped) and a streaming float32 writer.
 *
 * Accepted: magic "\x93NUMPY", versions 1.0, 2.0 and 3.0, a header dict with
 * exactly the keys 'descr' ('<f4' or '<f2'; '|' or '=' byte orders are not
 * accepted), 'fortran_order' (False) and 'shape' (a 1-tuple (D,) or a
 * 2-tuple (N, D)); the data must be exactly N*D*itemsize bytes after the
 * header.  Every size is checked for overflow before the file is mapped.
 * This is what numpy.save and clip-retrieval (float16 img_emb_*.npy) write.
 *
 * The writer emits version 1.0 float32 [N, D] files: the header is written
 * first with a fixed-width shape field and patched with the final N by
 * npy_writer_finish, so rows can be streamed without knowing N up front.
 *
 * Workload: files of 10^3..10^7 rows of 64..1024 values, read sequentially
 * once (import) or a few rows (queries).
 */
#ifndef CDX_STORE_NPY_H
#define CDX_STORE_NPY_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_HEADER (1u << 20)

typedef struct npy_file {
    const uint8_t *map;     /* whole file, read-only */
    size_t map_len;
    const uint8_t *data;    /* first value */
    uint64_t rows;          /* N (1 for a 1-D file) */
    int dim;                /* D */
    int itemsize;           /* 4 (float32) or 2 (float16) */
    int one_d;              /* the shape was (D,) */
} npy_file;

/* Parse the header held in buf[0..len) (the file's first bytes) and check it
 * against file_size.  Fills everything but map/map_len; data is an offset
 * into buf's file.  Errors name `name` and say what is wrong (CDX_ERR_FORMAT,
 * CDX_ERR_UNSUPPORTED for a valid but unsupported dtype/order). */
cdx_result npy_parse_header(const char *name, const uint8_t *buf, size_t len,
                            uint64_t file_size, npy_file *out, size_t *data_offset);

/* Open and map path (read-only). */
cdx_result npy_open(const char *path, npy_file *out);
void npy_close(npy_file *f);

/* Row r (< rows) as float32 into out (dim floats); float16 is widened. */
void npy_row(const npy_file *f, uint64_t r, float *out);

/* IEEE half -> float (subnormals, infinities and NaN preserved). */
float npy_half_to_float(uint16_t h);

/* Streaming writer of a float32 [N, dim] file. */
typedef struct npy_writer npy_writer;
cdx_result npy_writer_open(const char *path, int dim, npy_writer **out);
cdx_result npy_writer_rows(npy_writer *w, const float *rows, size_t n);
/* Patch N into the header, fsync and close.  Frees w in every case. */
cdx_result npy_writer_finish(npy_writer *w);
/* Close and delete the partial file. */
void npy_writer_abort(npy_writer *w);

#endif
