/*
 * quant.h - compressed copies of the float32 vectors: int8 codes and 1-bit
 * codes, optionally after a PCA projection, and their reference scorers.
 *
 * The float32 vectors stay the source of truth; codes only pick candidates
 * that are re-scored exactly (search/qscan.h).  Every code describes the
 * centred vector r = R P (x - mean) (P = the PCA projection or identity, R
 * an optional fixed rotation), so
 * an estimate of q . x is q' . r with q' = R P q: the dropped term q . mean is
 * the same for every row and does not change the ranking.
 *  - int8: per-vector scale s = max|r_i| / 127, codes round(r_i / s) in
 *    [-127, 127]; aux = {s, sum of codes}.  The query is quantised to 7 bits,
 *    qc in [-63, 63], and shifted to u = qc + 64 in [1, 127] for the u8 x s8
 *    kernels: qc . c = u . c - 64 * sum(c).  Estimate = s * sq * (qc . c).
 *  - bit: b_i = (r_i > 0); aux = {f = |r|_2^2 / |r|_1, popcount(b)}.  With
 *    sign(r) = 2b - 1 and the RaBitQ-style correction, q' . r is estimated
 *    as f * (q' . sign(r)) (exact when |r_i| is constant; f rescales the
 *    sign vector to r's length and spread).  The query is quantised to 4
 *    bits, q'_i ~ lo + delta * u_i, u_i in [0,15], kept as 4 bit planes, so
 *    q' . b = lo * popcount(b) + delta * sum_j 2^j popcount(plane_j & b).
 * Codes are padded with zeros to QUANT_PAD bytes (int8) or QUANT_PAD*8 bits
 * (bit), so kernels have no tails; padding never changes a score.
 *
 * Invariants: a model's mean (dim floats) and projection (pdim x dim,
 * row-major, orthonormal rows) are finite; the same model must encode the
 * rows and prepare the queries (the companion file stores it).
 *
 * Workload: encoding runs once per row at index time (~dim*pdim flops with
 * PCA); query preparation once per query; the estimates once per row per
 * query inside the scan.
 */
#ifndef CDX_SEARCH_QUANT_H
#define CDX_SEARCH_QUANT_H

#include "clipdex.h"
#include "common/rows.h"

#include <stddef.h>
#include <stdint.h>

#define QUANT_PAD 64
#define QUANT_MAX_DIM 16384

typedef enum quant_kind {
    QUANT_I8 = 1,
    QUANT_BIT = 2
} quant_kind;

const char *quant_kind_name(quant_kind k);   /* "int8", "bit" */

/* Per-row side data, 8 bytes: int8 {scale, sum of codes}; bit {f, popcount}. */
typedef struct quant_aux {
    float f;
    int32_t n;
} quant_aux;

typedef struct quant_model {
    int dim;         /* source dimension */
    int pdim;        /* dimension after the projection (== dim without PCA) */
    int rotate;      /* 1: a fixed random rotation follows (see below) */
    int cdim;        /* coded dimension: pdim, or the next power of two with rotate */
    float *mean;     /* dim floats */
    float *proj;     /* pdim x dim, or NULL (identity, pdim == dim) */
    float *signs;    /* rotate: 3 x cdim random signs (derived, not stored) */
} quant_model;

/* Fit a model on (a sample of at most max_samples evenly spaced rows of)
 * src: the mean, and when 0 < pdim < dim the top-pdim principal axes of the
 * centred rows (covariance + LAPACK ssyevd from OpenBLAS; CDX_ERR_UNSUPPORTED
 * when built without OpenBLAS).  pdim <= 0 or >= dim: no projection.
 * rotate: follow with a fixed pseudo-random rotation (three rounds of random
 * signs + Walsh-Hadamard transform, zero-padded to a power of two), which
 * spreads the variance evenly over the coded dimensions: needed for sign
 * codes of anisotropic data, harmless for int8. */
cdx_result quant_model_fit(const cdx_rows *src, uint64_t max_samples, int pdim, int rotate,
                           quant_model **out);
/* A model from stored parts (copied; validated: sizes, finite values). */
cdx_result quant_model_new(int dim, int pdim, int rotate, const float *mean, const float *proj,
                           quant_model **out);
void quant_model_free(quant_model *m);

/* Bytes of one row's code for cdim coded dimensions (a multiple of QUANT_PAD). */
size_t quant_code_bytes(quant_kind kind, int cdim);

/* Floats of scratch quant_encode_batch needs for n rows. */
size_t quant_encode_scratch(const quant_model *m, size_t n);
/* Encode n unit vectors x[0..n) (dim floats each): codes code_stride bytes
 * apart (quant_code_bytes each, padding zeroed), aux[0..n). */
void quant_encode_batch(const quant_model *m, quant_kind kind, const float *const *x, size_t n,
                        uint8_t *codes, size_t code_stride, quant_aux *aux, float *scratch);

/* A prepared query.  Buffers sized by quant_query_new for the model/kind. */
typedef struct quant_query {
    quant_kind kind;
    size_t len;          /* int8: code bytes; bit: words (uint64) per row */
    uint8_t *u8;         /* int8: shifted 7-bit query, len bytes */
    uint64_t *planes;    /* bit: 4 planes of len words */
    float *tmp;          /* max(dim, cdim) floats */
    float sq;            /* int8: query step */
    float lo, delta, qsum;   /* bit: query levels; qsum = sum of quantised q' */
} quant_query;

cdx_result quant_query_new(const quant_model *m, quant_kind kind, quant_query **out);
void quant_query_free(quant_query *q);
/* Prepare q (dim floats, finite). */
void quant_query_set(quant_query *qq, const quant_model *m, const float *q);

/* Estimated q' . r from a kernel result (search/qdot.h) and the row's aux. */
static inline float quant_estimate_i8(const quant_query *qq, int32_t dot, const quant_aux *a)
{
    return a->f * qq->sq * (float)(dot - 64 * a->n);
}
static inline float quant_estimate_bit(const quant_query *qq, uint32_t w, const quant_aux *a)
{
    float qb = qq->lo * (float)a->n + qq->delta * (float)w;
    return a->f * (2.0f * qb - qq->qsum);
}

/* In place, n a power of two: v <- H v, the unnormalised Walsh-Hadamard
 * transform (scale by 1/sqrt(n) for the orthonormal one).  Written by hand:
 * no BLAS or FFT routine does it.  Shared by the quantiser's rotation, the
 * IVF index's sign codes (ann_ivf.c) and the ANN bench's synthetic data. */
void quant_fwht(float *v, int n);

#endif
