/*
 * dot_avx512.c - AVX-512F inner-product kernel (see dot.h).
 *
 * Compiled for AVX-512F with a file-wide target pragma and only ever called
 * after dot_dispatch.c has seen avx512f on the running CPU.  Tiles of 4 rows
 * x up to 4 queries keep 16 accumulators in registers, so each row load
 * feeds up to 4 FMAs and each query load feeds 4; a dim that is not a
 * multiple of 16 is finished with one masked load (no reads past dim).
 */
#pragma GCC target("avx512f")
#include "search/dot.h"

#include <immintrin.h>

#define NR_MAX 4

static inline __attribute__((always_inline)) void
tile(const int nq, const int nr, const float *const *q, const float *rows,
     size_t rs, size_t dim, float *out, size_t ld)
{
    __m512 acc[DOT_MAX_QUERIES][NR_MAX];
    for (int i = 0; i < nq; i++)
        for (int r = 0; r < nr; r++) acc[i][r] = _mm512_setzero_ps();
    size_t d = 0;
    for (; d + 16 <= dim; d += 16) {
        __m512 x[NR_MAX];
        for (int r = 0; r < nr; r++) x[r] = _mm512_loadu_ps(rows + r * rs + d);
        for (int i = 0; i < nq; i++) {
            __m512 qq = _mm512_loadu_ps(q[i] + d);
            for (int r = 0; r < nr; r++) acc[i][r] = _mm512_fmadd_ps(qq, x[r], acc[i][r]);
        }
    }
    if (d < dim) {
        __mmask16 m = (__mmask16)((1u << (dim - d)) - 1u);
        __m512 x[NR_MAX];
        for (int r = 0; r < nr; r++) x[r] = _mm512_maskz_loadu_ps(m, rows + r * rs + d);
        for (int i = 0; i < nq; i++) {
            __m512 qq = _mm512_maskz_loadu_ps(m, q[i] + d);
            for (int r = 0; r < nr; r++) acc[i][r] = _mm512_fmadd_ps(qq, x[r], acc[i][r]);
        }
    }
    for (int i = 0; i < nq; i++)
        for (int r = 0; r < nr; r++) out[(size_t)i * ld + (size_t)r] = _mm512_reduce_add_ps(acc[i][r]);
}

#define TILE_NQ(nq, nr) \
    switch (nq) { \
    case 1: tile(1, nr, q, rows, rs, dim, out, ld); break; \
    case 2: tile(2, nr, q, rows, rs, dim, out, ld); break; \
    case 3: tile(3, nr, q, rows, rs, dim, out, ld); break; \
    default: tile(4, nr, q, rows, rs, dim, out, ld); break; \
    }

void dot_tile_avx512(const float *const *q, size_t nq, const float *rows,
                     size_t nrows, size_t rs, size_t dim, float *out, size_t ld)
{
    if (nq == 0 || nq > DOT_MAX_QUERIES) return;
    size_t r = 0;
    for (; r + NR_MAX <= nrows; r += NR_MAX, rows += NR_MAX * rs, out += NR_MAX)
        TILE_NQ(nq, NR_MAX)
    for (; r < nrows; r++, rows += rs, out++)
        TILE_NQ(nq, 1)
}
