/*
 * dot_avx2.c - AVX2+FMA inner-product kernel (see dot.h).
 *
 * Compiled for AVX2/FMA with a file-wide target pragma and only ever called
 * after dot_dispatch.c has seen avx2 and fma on the running CPU.  Same shape
 * as dot_avx512.c (one row at a time, a single sequential stream; per query
 * NACC independent accumulators, fixed so that scores do not depend on the
 * batch size); NACC is 2 so that 4 queries fit the 16 ymm registers.  A dim
 * that is not a multiple of 8 is finished with one masked load.
 */
/* File-wide target: GCC's pragma, or clang's equivalent (fuzz builds). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#include "search/dot.h"

#include <immintrin.h>

#define NACC 2

static inline __attribute__((always_inline)) float hsum256(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

static inline __attribute__((always_inline)) void
row_dots(const int nq, const float *const *q, const float *row, size_t dim,
         float *out, size_t ld)
{
    __m256 acc[DOT_MAX_QUERIES][NACC];
    for (int i = 0; i < nq; i++)
        for (int a = 0; a < NACC; a++) acc[i][a] = _mm256_setzero_ps();
    size_t d = 0;
    for (; d + 8 * NACC <= dim; d += 8 * NACC)
        for (int a = 0; a < NACC; a++) {
            __m256 x = _mm256_loadu_ps(row + d + 8 * a);
            for (int i = 0; i < nq; i++)
                acc[i][a] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + d + 8 * a), x, acc[i][a]);
        }
    for (; d + 8 <= dim; d += 8) {
        __m256 x = _mm256_loadu_ps(row + d);
        for (int i = 0; i < nq; i++)
            acc[i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + d), x, acc[i][0]);
    }
    if (d < dim) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(dim - d)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 x = _mm256_maskload_ps(row + d, m);
        for (int i = 0; i < nq; i++)
            acc[i][0] = _mm256_fmadd_ps(_mm256_maskload_ps(q[i] + d, m), x, acc[i][0]);
    }
    for (int i = 0; i < nq; i++) out[(size_t)i * ld] = hsum256(_mm256_add_ps(acc[i][0], acc[i][1]));
}

void dot_tile_avx2(const float *const *q, size_t nq, const float *rows,
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
