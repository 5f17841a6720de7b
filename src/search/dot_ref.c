/*
 * dot_ref.c - reference inner-product kernel (see dot.h).
 *
 * Plain C with double accumulation: obviously correct, and the yardstick the
 * SIMD kernels are tested against (tests/test_topk.c).  It is also the
 * fallback on CPUs without AVX2.
 */
#include "search/dot.h"

void dot_tile_ref(const float *const *queries, size_t nq, const float *rows,
                  size_t nrows, size_t row_stride, size_t dim, float *out,
                  size_t out_ld)
{
    for (size_t q = 0; q < nq; q++) {
        const float *qv = queries[q];
        for (size_t r = 0; r < nrows; r++) {
            const float *row = rows + r * row_stride;
            double s = 0.0;
            for (size_t d = 0; d < dim; d++)
                s += (double)qv[d] * (double)row[d];
            out[q * out_ld + r] = (float)s;
        }
    }
}
