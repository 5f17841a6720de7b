/*
 * dot_i8_ref.c - reference kernels for compressed vectors (see qdot.h), and
 * the run-time choice of the fast ones.
 *
 * The references are plain C, obviously correct, and the yardstick every
 * fast kernel is tested against (tests/test_quant.c); they are also the
 * fallback on CPUs without AVX2.
 */
#include "search/qdot.h"

#include <stdlib.h>
#include <string.h>

static unsigned popcount64(uint64_t x)
{
    unsigned n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

void qdot_i8_ref(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len, int32_t *out)
{
    for (size_t r = 0; r < nrows; r++) {
        const int8_t *x = rows + r * len;
        int32_t s = 0;
        for (size_t i = 0; i < len; i++) s += (int32_t)q[i] * (int32_t)x[i];
        out[r] = s;
    }
}

void qdot_bit_ref(const uint64_t *planes, const uint64_t *rows, size_t nrows, size_t words,
                  uint32_t *out)
{
    for (size_t r = 0; r < nrows; r++) {
        const uint64_t *x = rows + r * words;
        uint32_t s = 0;
        for (int j = 0; j < 4; j++)
            for (size_t w = 0; w < words; w++) s += popcount64(planes[(size_t)j * words + w] & x[w]) << j;
        out[r] = s;
    }
}

/* ---------------------------------------------------------------- dispatch */

static const qdot_kernels k_ref = {"scalar", QDOT_SCALAR, qdot_i8_ref, qdot_bit_ref};
static const qdot_kernels k_avx2 = {"avx2", QDOT_AVX2, qdot_i8_avx2, qdot_bit_popcnt};
/* AVX-512 variants by (VNNI, VPOPCNTDQ). */
static const qdot_kernels k_512[2][2] = {
    {{"avx512", QDOT_AVX512, qdot_i8_avx512bw, qdot_bit_popcnt},
     {"avx512+vpopcntdq", QDOT_AVX512, qdot_i8_avx512bw, qdot_bit_avx512}},
    {{"avx512-vnni", QDOT_AVX512, qdot_i8_avx512vnni, qdot_bit_popcnt},
     {"avx512-vnni+vpopcntdq", QDOT_AVX512, qdot_i8_avx512vnni, qdot_bit_avx512}}};

qdot_level qdot_cpu_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return QDOT_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return QDOT_AVX2;
    return QDOT_SCALAR;
}

const qdot_kernels *qdot_at(qdot_level level)
{
    if (level > qdot_cpu_level()) return NULL;
    switch (level) {
    case QDOT_SCALAR: return &k_ref;
    case QDOT_AVX2: return &k_avx2;
    case QDOT_AVX512:
        return &k_512[__builtin_cpu_supports("avx512vnni") ? 1 : 0]
                     [__builtin_cpu_supports("avx512vpopcntdq") ? 1 : 0];
    }
    return NULL;
}

const qdot_kernels *qdot_best(void)
{
    static const qdot_kernels *best;   /* benign race: every thread computes the same */
    const qdot_kernels *b = __atomic_load_n(&best, __ATOMIC_ACQUIRE);
    if (b) return b;
    qdot_level lv = qdot_cpu_level();
    const char *cap = getenv("CLIPDEX_MAX_ISA");
    if (cap && !strcmp(cap, "scalar")) lv = QDOT_SCALAR;
    else if (cap && !strcmp(cap, "avx2") && lv > QDOT_AVX2) lv = QDOT_AVX2;
    b = qdot_at(lv);
    __atomic_store_n(&best, b, __ATOMIC_RELEASE);
    return b;
}
