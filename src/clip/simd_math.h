/*
 * simd_math.h - AVX-512 math shared by the element-wise kernels (ops.c) and
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

#endif
