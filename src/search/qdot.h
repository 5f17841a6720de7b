/*
 * qdot.h - kernels that score compressed vectors (search/quant.h): the
 * integer inner product of an int8 query with int8 codes, and the weighted
 * popcount of a 4-bit-plane query against 1-bit codes.
 *
 * Both kernels are exact integer arithmetic, so every implementation returns
 * bit-identical results and the tests compare them with ==:
 *  - i8:  out[r] = sum_i q[i] * row_r[i], q[i] in [0, 127] (unsigned), codes
 *         signed in [-127, 127].  The 7-bit query keeps the AVX2 pairwise
 *         u8 x s8 -> s16 product (maddubs) from saturating: 2*127*127 < 2^15.
 *  - bit: out[r] = sum_{j<4} 2^j * popcount(plane_j & row_r), plane j of the
 *         query at planes + j*words.
 * Lengths are padded by the encoder: len is a multiple of 64 bytes, words a
 * multiple of 8 (one 512-bit register), so no kernel has a tail loop.  Rows
 * are `len` bytes (`words` words) apart.
 *
 * Implementations: dot_i8_ref.c (plain C: the reference and the fallback),
 * dot_i8_avx2.c (AVX2 maddubs/madd, popcnt), dot_i8_avx512.c (AVX-512BW
 * maddubs or VNNI dpbusd; VPOPCNTDQ popcount when present).  The level is
 * chosen at first use from the running CPU (__builtin_cpu_supports), capped
 * by $CLIPDEX_MAX_ISA=scalar|avx2|avx512 (the cap only lowers the level; an
 * unknown value is ignored) - the same variable and meaning as the CLIP
 * engine's dispatch.
 *
 * Workload: one call per 64-row block of a scan over up to ~10^7 rows.
 */
#ifndef CDX_SEARCH_QDOT_H
#define CDX_SEARCH_QDOT_H

#include <stddef.h>
#include <stdint.h>

typedef void (*qdot_i8_fn)(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len,
                           int32_t *out);
typedef void (*qdot_bit_fn)(const uint64_t *planes, const uint64_t *rows, size_t nrows,
                            size_t words, uint32_t *out);

typedef enum qdot_level {
    QDOT_SCALAR = 0,
    QDOT_AVX2 = 1,
    QDOT_AVX512 = 2
} qdot_level;

typedef struct qdot_kernels {
    const char *name;       /* "scalar", "avx2", "avx512", "avx512-vnni", ... */
    qdot_level level;
    qdot_i8_fn i8;
    qdot_bit_fn bit;
} qdot_kernels;

/* The kernels for min(CPU level, $CLIPDEX_MAX_ISA). */
const qdot_kernels *qdot_best(void);
/* The kernels of one level, or NULL when the CPU lacks it (tests). */
const qdot_kernels *qdot_at(qdot_level level);
/* The best level this CPU supports (ignoring the cap). */
qdot_level qdot_cpu_level(void);

void qdot_i8_ref(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len, int32_t *out);
void qdot_bit_ref(const uint64_t *planes, const uint64_t *rows, size_t nrows, size_t words,
                  uint32_t *out);
void qdot_i8_avx2(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len, int32_t *out);
void qdot_bit_popcnt(const uint64_t *planes, const uint64_t *rows, size_t nrows, size_t words,
                     uint32_t *out);
void qdot_i8_avx512bw(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len,
                      int32_t *out);
void qdot_i8_avx512vnni(const uint8_t *q, const int8_t *rows, size_t nrows, size_t len,
                        int32_t *out);
void qdot_bit_avx512(const uint64_t *planes, const uint64_t *rows, size_t nrows, size_t words,
                     uint32_t *out);

#endif
