/*
 * dot_avx2.c - AVX2+FMA inner-product kernel (see dot.h).
 *
 * Compiled for AVX2/FMA with a file-wide target pragma and only ever called
 * after dot_dispatch.c has seen avx2 and fma on the running CPU.  With 16
 * ymm registers the tile is 2 rows x up to 4 queries (8 accumulators); a dim
 * that is not a multiple of 8 is finished with one masked load.
 */
#pragma GCC target("avx2,fma")
#include "search/dot.h"

#include <immintrin.h>

#define NR_MAX 2

static inline __attribute__((always_inline)) float hsum256(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

static inline __attribute__((always_inline)) void
tile(const int nq, const int nr, const float *const *q, const float *rows,
     size_t rs, size_t dim, float *out, size_t ld)
{
    __m256 acc[DOT_MAX_QUERIES][NR_MAX];
    for (int i = 0; i < nq; i++)
        for (int r = 0; r < nr; r++) acc[i][r] = _mm256_setzero_ps();
    size_t d = 0;
    for (; d + 8 <= dim; d += 8) {
        __m256 x[NR_MAX];
        for (int r = 0; r < nr; r++) x[r] = _mm256_loadu_ps(rows + r * rs + d);
        for (int i = 0; i < nq; i++) {
            __m256 qq = _mm256_loadu_ps(q[i] + d);
            for (int r = 0; r < nr; r++) acc[i][r] = _mm256_fmadd_ps(qq, x[r], acc[i][r]);
        }
    }
    if (d < dim) {
        int rem = (int)(dim - d);
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 x[NR_MAX];
        for (int r = 0; r < nr; r++) x[r] = _mm256_maskload_ps(rows + r * rs + d, m);
        for (int i = 0; i < nq; i++) {
            __m256 qq = _mm256_maskload_ps(q[i] + d, m);
            for (int r = 0; r < nr; r++) acc[i][r] = _mm256_fmadd_ps(qq, x[r], acc[i][r]);
        }
    }
    for (int i = 0; i < nq; i++)
        for (int r = 0; r < nr; r++) out[(size_t)i * ld + (size_t)r] = hsum256(acc[i][r]);
}

#define TILE_NQ(nq, nr) \
    switch (nq) { \
    case 1: tile(1, nr, q, rows, rs, dim, out, ld); break; \
    case 2: tile(2, nr, q, rows, rs, dim, out, ld); break; \
    case 3: tile(3, nr, q, rows, rs, dim, out, ld); break; \
    default: tile(4, nr, q, rows, rs, dim, out, ld); break; \
    }

void dot_tile_avx2(const float *const *q, size_t nq, const float *rows,
                   size_t nrows, size_t rs, size_t dim, float *out, size_t ld)
{
    if (nq == 0 || nq > DOT_MAX_QUERIES) return;
    size_t r = 0;
    for (; r + NR_MAX <= nrows; r += NR_MAX, rows += NR_MAX * rs, out += NR_MAX)
        TILE_NQ(nq, NR_MAX)
    for (; r < nrows; r++, rows += rs, out++)
        TILE_NQ(nq, 1)
}
