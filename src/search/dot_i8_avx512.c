/*
 * dot_i8_avx512.c - AVX-512 kernels for compressed vectors (see qdot.h).
 *
 * int8: 64 bytes at a time, either AVX-512BW maddubs + madd (as the AVX2
 * kernel, twice as wide) or, with VNNI, one _mm512_dpbusd_epi32 (u8 x s8
 * summed straight into s32; the 7-bit query keeps results identical to the
 * other kernels).  Four rows share each query load.
 * bit: VPOPCNTDQ counts eight words per instruction; the four plane counts
 * are weighted by shifts and reduced once per row.
 *
 * Compiled with file-wide target attributes per function group and only
 * ever called after qdot_at() has seen the features on the running CPU.
 */
#include "search/qdot.h"

#include <immintrin.h>

/* Twice the AVX2 kernel's distance (dot_i8_avx2.c): rows go twice as
 * fast.  Not tuned: no AVX-512 machine was available. */
#define QDOT_PREFETCH_ROWS 16

#define T_BW __attribute__((target("avx512f,avx512bw")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define T_POP __attribute__((target("avx512f,avx512vpopcntdq")))

T_BW static inline __m512i dot64_bw(__m512i acc, __m512i q, const int8_t *x, __m512i ones)
{
    __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)x));
    return _mm512_add_epi32(acc, _mm512_madd_epi16(p, ones));
}

T_BW void qdot_i8_avx512bw(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len,
                           int32_t *out)
{
    const __m512i ones = _mm512_set1_epi16(1);
    size_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        const int8_t *x = rows + r * len;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t i = 0; i < 4 * len; i += 64)
            _mm_prefetch((const char *)(x + QDOT_PREFETCH_ROWS * len + i), _MM_HINT_T0);
        for (size_t i = 0; i < len; i += 64) {
            __m512i qv = _mm512_loadu_si512((const void *)(q + i));
            a0 = dot64_bw(a0, qv, x + i, ones);
            a1 = dot64_bw(a1, qv, x + len + i, ones);
            a2 = dot64_bw(a2, qv, x + 2 * len + i, ones);
            a3 = dot64_bw(a3, qv, x + 3 * len + i, ones);
        }
        out[r] = _mm512_reduce_add_epi32(a0);
        out[r + 1] = _mm512_reduce_add_epi32(a1);
        out[r + 2] = _mm512_reduce_add_epi32(a2);
        out[r + 3] = _mm512_reduce_add_epi32(a3);
    }
    for (; r < nrows; r++) {
        const int8_t *x = rows + r * len;
        __m512i a = _mm512_setzero_si512();
        for (size_t i = 0; i < len; i += 64)
            a = dot64_bw(a, _mm512_loadu_si512((const void *)(q + i)), x + i, ones);
        out[r] = _mm512_reduce_add_epi32(a);
    }
}

T_VNNI void qdot_i8_avx512vnni(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len,
                               int32_t *out)
{
    size_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        const int8_t *x = rows + r * len;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t i = 0; i < 4 * len; i += 64)
            _mm_prefetch((const char *)(x + QDOT_PREFETCH_ROWS * len + i), _MM_HINT_T0);
        for (size_t i = 0; i < len; i += 64) {
            __m512i qv = _mm512_loadu_si512((const void *)(q + i));
            a0 = _mm512_dpbusd_epi32(a0, qv, _mm512_loadu_si512((const void *)(x + i)));
            a1 = _mm512_dpbusd_epi32(a1, qv, _mm512_loadu_si512((const void *)(x + len + i)));
            a2 = _mm512_dpbusd_epi32(a2, qv, _mm512_loadu_si512((const void *)(x + 2 * len + i)));
            a3 = _mm512_dpbusd_epi32(a3, qv, _mm512_loadu_si512((const void *)(x + 3 * len + i)));
        }
        out[r] = _mm512_reduce_add_epi32(a0);
        out[r + 1] = _mm512_reduce_add_epi32(a1);
        out[r + 2] = _mm512_reduce_add_epi32(a2);
        out[r + 3] = _mm512_reduce_add_epi32(a3);
    }
    for (; r < nrows; r++) {
        const int8_t *x = rows + r * len;
        __m512i a = _mm512_setzero_si512();
        for (size_t i = 0; i < len; i += 64)
            a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512((const void *)(q + i)),
                                    _mm512_loadu_si512((const void *)(x + i)));
        out[r] = _mm512_reduce_add_epi32(a);
    }
}

T_POP void qdot_bit_avx512(const uint64_t *planes, const uint64_t *rows, size_t nrows,
                           size_t words, uint32_t *out)
{
    for (size_t r = 0; r < nrows; r++) {
        const uint64_t *x = rows + r * words;
        for (size_t w = 0; w < words; w += 8)
            _mm_prefetch((const char *)(x + QDOT_PREFETCH_ROWS * words + w), _MM_HINT_T0);
        __m512i acc = _mm512_setzero_si512();
        for (size_t w = 0; w < words; w += 8) {
            __m512i v = _mm512_loadu_si512((const void *)(x + w));
            __m512i c3 = _mm512_popcnt_epi64(_mm512_and_si512(v, _mm512_loadu_si512((const void *)(planes + 3 * words + w))));
            __m512i c2 = _mm512_popcnt_epi64(_mm512_and_si512(v, _mm512_loadu_si512((const void *)(planes + 2 * words + w))));
            __m512i c1 = _mm512_popcnt_epi64(_mm512_and_si512(v, _mm512_loadu_si512((const void *)(planes + words + w))));
            __m512i c0 = _mm512_popcnt_epi64(_mm512_and_si512(v, _mm512_loadu_si512((const void *)(planes + w))));
            __m512i s = _mm512_add_epi64(_mm512_slli_epi64(c3, 1), c2);
            s = _mm512_add_epi64(_mm512_slli_epi64(s, 1), c1);
            s = _mm512_add_epi64(_mm512_slli_epi64(s, 1), c0);
            acc = _mm512_add_epi64(acc, s);
        }
        out[r] = (uint32_t)_mm512_reduce_add_epi64(acc);
    }
}
