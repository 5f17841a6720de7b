/*
 * dot_avx512.c - AVX-512F inner-product kernel (see dot.h).
 *
 * Compiled for AVX-512F with a file-wide target pragma and only ever called
 * after dot_dispatch.c has seen avx512f on the running CPU.
 *
 * Rows are scanned one at a time, front to back: a single sequential stream
 * is what the hardware prefetchers follow best (a tile of 4 interleaved rows
 * measured ~20% slower at one query per scan).  Each query keeps NACC
 * independent accumulators so the FMA latency chain does not limit the
 * in-cache speed, and each row load feeds up to 4 queries.  NACC and the
 * summation order do not depend on how many queries share the scan, so a
 * query's scores are bit-identical whether it is searched alone or batched.
 * A dim that is not a multiple of 16 is finished with one masked load (no
 * reads past dim).
 */
/* File-wide target: GCC's pragma, or clang's equivalent (fuzz builds). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC target("avx512f")
#endif
#include "search/dot.h"

#include <immintrin.h>

#define NACC 4

static inline __attribute__((always_inline)) void
row_dots(const int nq, const float *const *q, const float *row, size_t dim,
         float *out, size_t ld)
{
    __m512 acc[DOT_MAX_QUERIES][NACC];
    for (int i = 0; i < nq; i++)
        for (int a = 0; a < NACC; a++) acc[i][a] = _mm512_setzero_ps();
    size_t d = 0;
    for (; d + 16 * NACC <= dim; d += 16 * NACC)
        for (int a = 0; a < NACC; a++) {
            __m512 x = _mm512_loadu_ps(row + d + 16 * a);
            for (int i = 0; i < nq; i++)
                acc[i][a] = _mm512_fmadd_ps(_mm512_loadu_ps(q[i] + d + 16 * a), x, acc[i][a]);
        }
    for (; d + 16 <= dim; d += 16) {
        __m512 x = _mm512_loadu_ps(row + d);
        for (int i = 0; i < nq; i++)
            acc[i][0] = _mm512_fmadd_ps(_mm512_loadu_ps(q[i] + d), x, acc[i][0]);
    }
    if (d < dim) {
        __mmask16 m = (__mmask16)((1u << (dim - d)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(m, row + d);
        for (int i = 0; i < nq; i++)
            acc[i][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q[i] + d), x, acc[i][0]);
    }
    for (int i = 0; i < nq; i++) {
        __m512 s = _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3]));
        out[(size_t)i * ld] = _mm512_reduce_add_ps(s);
    }
}

void dot_tile_avx512(const float *const *q, size_t nq, const float *rows,
                     size_t nrows, size_t rs, size_t dim, float *out, size_t ld)
{
    for (size_t r = 0; r < nrows; r++, rows += rs, out++) {
        switch (nq) {
        case 1: row_dots(1, q, rows, dim, out, ld); break;
        case 2: row_dots(2, q, rows, dim, out, ld); break;
        case 3: row_dots(3, q, rows, dim, out, ld); break;
        case 4: row_dots(4, q, rows, dim, out, ld); break;
        default: return;
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
