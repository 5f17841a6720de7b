/*
 * safetensors.h - a reader for the safetensors format, treating every byte as
 * hostile.
 *
 * Format: u64 little-endian header length N, N bytes of JSON (an object
 * mapping tensor name -> {"dtype", "shape", "data_offsets": [begin, end)},
 * plus an ignored "__metadata__"), then the data region; offsets are relative
 * to the start of the data region.
 *
 * Invariants after a successful cdx_st_parse()/cdx_st_open():
 *  - every tensor's [data, data + nbytes) lies inside the buffer's data
 *    region, no two non-empty tensors overlap, and for known dtypes
 *    nbytes == numel * element size (all products overflow-checked);
 *  - tensors are sorted by name (names are unique), so lookup is a bsearch;
 *  - the header length is at most CDX_ST_MAX_HEADER bytes.
 * Tensor data is NOT copied: it points into the caller's buffer (parse) or
 * the read-only memory map (open), so it is only valid while that lives, and
 * may be unaligned.
 *
 * Expected workload: one parse per model load; headers are a few hundred KB
 * at most, data regions up to a few GB (mapped, never read here).
 */
#ifndef CDX_CLIP_SAFETENSORS_H
#define CDX_CLIP_SAFETENSORS_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

#define CDX_ST_MAX_DIMS 8
#define CDX_ST_MAX_HEADER ((uint64_t)100 << 20)   /* 100 MB of JSON */
#define CDX_ST_MAX_TENSORS 1000000

typedef enum cdx_st_dtype {
    CDX_ST_UNKNOWN = 0,   /* a dtype string we do not know: size unchecked */
    CDX_ST_F32, CDX_ST_F16, CDX_ST_BF16, CDX_ST_F64,
    CDX_ST_I64, CDX_ST_I32, CDX_ST_I16, CDX_ST_I8,
    CDX_ST_U64, CDX_ST_U32, CDX_ST_U16, CDX_ST_U8,
    CDX_ST_BOOL, CDX_ST_F8_E4M3, CDX_ST_F8_E5M2
} cdx_st_dtype;

typedef struct cdx_st_tensor {
    char *name;              /* owned by the cdx_st_file */
    cdx_st_dtype dtype;
    int ndim;                /* 0 for a scalar */
    int64_t shape[CDX_ST_MAX_DIMS];
    size_t numel;            /* product of shape (1 for a scalar) */
    const uint8_t *data;     /* inside the buffer; possibly unaligned */
    size_t nbytes;
} cdx_st_tensor;

typedef struct cdx_st_file {
    char *name;                 /* file name used in error messages */
    cdx_st_tensor *tensors;     /* sorted by name */
    int n_tensors;
    const uint8_t *base;        /* the whole file / buffer */
    size_t len;
    size_t data_start;          /* 8 + header length */
    void *map;                  /* mmap owned by this struct (cdx_st_open) */
    size_t map_len;
} cdx_st_file;

/* Parse a safetensors image held in memory (not copied; must outlive *out).
 * `name` is used in error messages.  On failure *out is left empty. */
cdx_result cdx_st_parse(const void *buf, size_t len, const char *name,
                        cdx_st_file *out);

/* Memory-map `path` read-only and parse it.  The map is owned by *out (a
 * caller may take it over by copying map/map_len and setting map = NULL). */
cdx_result cdx_st_open(const char *path, cdx_st_file *out);

/* Free names/tensors and unmap an owned map.  Safe on a zeroed struct. */
void cdx_st_close(cdx_st_file *f);

/* The tensor called `name`, or NULL. */
const cdx_st_tensor *cdx_st_find(const cdx_st_file *f, const char *name);

/* "F32", "I64", ... ("unknown" for CDX_ST_UNKNOWN). */
const char *cdx_st_dtype_name(cdx_st_dtype d);
/* Bytes per element; 0 for CDX_ST_UNKNOWN. */
size_t cdx_st_dtype_size(cdx_st_dtype d);

/* Convert a F32/F16/BF16 tensor to float32 into dst[numel] (dst need not be
 * aligned, the source may be unaligned).  Other dtypes: CDX_ERR_UNSUPPORTED. */
cdx_result cdx_st_to_f32(const cdx_st_file *f, const cdx_st_tensor *t, float *dst);

/* IEEE half / bfloat16 -> float32, exact for every input (subnormals,
 * infinities, NaN payloads preserved). */
float cdx_f16_to_f32(uint16_t h);
float cdx_bf16_to_f32(uint16_t h);

#endif
