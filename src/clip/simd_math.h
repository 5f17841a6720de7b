/*
 * simd_math.h - AVX-512 and AVX2 math shared by the element-wise kernels (ops.c) and
 * the fused GEMM epilogues (gemm_packed.c).
 *
 * exp512: the Cephes expf scheme (range reduction by ln 2 split in two
 * constants, degree-6 polynomial, 2^n by vscalefps), ~1 ulp against libm
 * expf; inputs are clamped to +-88.376 so the result is finite.
 * Only call from functions compiled with target("avx512f") after checking
 * the CPU at run time.
 */
#ifndef CDX_CLIP_SIMD_MATH_H
#define CDX_CLIP_SIMD_MATH_H

#include <immintrin.h>

__attribute__((target("avx512f"))) static inline __m512 cdx_exp512(__m512 x)
{
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.3762626647949f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* x * sigmoid(1.702 x) */
__attribute__((target("avx512f"))) static inline __m512 cdx_quick_gelu512(__m512 v)
{
    __m512 e = cdx_exp512(_mm512_mul_ps(v, _mm512_set1_ps(-1.702f)));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* ---- AVX2 + FMA versions (8 lanes), for target("avx2,fma") functions.
 * exp256: the same Cephes scheme; without vscalefps, 2^n is built in the
 * exponent field, so inputs are clamped to [-87.33, 88.0] (2^n stays a
 * normal float; expf(88) = 1.65e38 stands in for larger results, and
 * 1.2e-38 for smaller ones - both vanish in softmax and quick_gelu). */
__attribute__((target("avx2,fma"))) static inline __m256 cdx_exp256(__m256 x)
{
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365447f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma"))) static inline __m256 cdx_quick_gelu256(__m256 v)
{
    __m256 e = cdx_exp256(_mm256_mul_ps(v, _mm256_set1_ps(-1.702f)));
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* lanes [0, left) set (left clamped to 0..8), for maskload/maskstore */
__attribute__((target("avx2,fma"))) static inline __m256i cdx_mask256(int left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#endif
