/*
 * dot.h - the one small interface to the inner-product kernels used by the
 * exact search (search/topk.c).
 *
 * A kernel computes, for a tile of up to DOT_MAX_QUERIES query vectors and a
 * run of rows, every inner product q . row into out[q * out_ld + r].  Rows
 * are `row_stride` floats apart (the storage pads rows to 64 bytes); only the
 * first `dim` floats of each row and query are read, so dim need not be a
 * multiple of the SIMD width.  Pointers need not be aligned (rows from
 * vecfile are 64-byte aligned, which makes the unaligned loads full speed).
 *
 * Implementations: dot_ref.c (plain C, double accumulation: the reference
 * every other kernel is tested against and the fallback), dot_avx2.c
 * (AVX2+FMA), dot_avx512.c (AVX-512F).  The best one the running CPU
 * supports is chosen at first use with __builtin_cpu_supports(); never
 * assumed from the build machine.  $CLIPDEX_SIMD=scalar|avx2|avx512 forces a
 * kernel (ignored, with the best kernel used, when the CPU lacks it).
 *
 * Workload: the search scans millions of rows per query; kernels are
 * memory-bound for one query and become compute-bound with several queries
 * per scan, which is why they take a tile of queries.
 */
#ifndef CDX_SEARCH_DOT_H
#define CDX_SEARCH_DOT_H

#include <stddef.h>

#define DOT_MAX_QUERIES 4

typedef void (*dot_tile_fn)(const float *const *queries, size_t nq,
                            const float *rows, size_t nrows, size_t row_stride,
                            size_t dim, float *out, size_t out_ld);

typedef struct dot_kernel {
    const char *name;      /* "scalar", "avx2", "avx512" */
    dot_tile_fn tile;
} dot_kernel;

/* The reference kernel (always available). */
const dot_kernel *dot_kernel_ref(void);
/* The best kernel for this CPU (honours $CLIPDEX_SIMD). */
const dot_kernel *dot_kernel_best(void);
/* A kernel by name, or NULL when unknown or not supported by this CPU. */
const dot_kernel *dot_kernel_by_name(const char *name);

/* Implementations (called only after the CPU check in dot_dispatch.c). */
void dot_tile_ref(const float *const *queries, size_t nq, const float *rows,
                  size_t nrows, size_t row_stride, size_t dim, float *out,
                  size_t out_ld);
void dot_tile_avx2(const float *const *queries, size_t nq, const float *rows,
                   size_t nrows, size_t row_stride, size_t dim, float *out,
                   size_t out_ld);
void dot_tile_avx512(const float *const *queries, size_t nq, const float *rows,
                     size_t nrows, size_t row_stride, size_t dim, float *out,
                     size_t out_ld);

#endif
