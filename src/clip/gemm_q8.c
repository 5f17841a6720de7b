/*
 * gemm_q8.c - int8 GEMM for Linear layers: C = act(A W^T + bias (+ C)),
 * A float32 quantised per row on the fly, W int8 quantised once per output
 * channel (the int8 precision of docs/engine.md).
 *
 * Numbers:
 *  - W [n,k] (times the SmoothQuant factors smooth[k], see encoder.c) is
 *    quantised symmetrically per output row j: w8 = round(W / ws[j]),
 *    ws[j] = max|W[j,:]| / qmax, w8 in [-qmax, qmax]; qmax = 127 where the
 *    VNNI kernel runs, 63 (7 bits) for AVX2: vpmaddubsw adds two u8 x s8
 *    products into a saturating int16, and 2 x 255 x 63 = 32130 fits where
 *    2 x 255 x 127 does not (cdx_q8_weight_max());
 *  - a row of A (times 1/smooth[k]) is quantised asymmetrically to 8 bits:
 *    a ~= as[i] * (q - zp[i]), q in [0, 255], zp in [0, 255] (the range
 *    always contains 0).  On the clip-tiny fixture 8-bit activations with
 *    7-bit weights measured better than the other way round (min text cosine
 *    0.994 vs 0.987): activation error dominates;
 *  - C[i,j] = as[i] ws[j] (sum_k q w8 - zp[i] colsum[j]) + bias[j],
 *    colsum[j] = sum_k w8[j,k] (made at pack time).  int32 sums cannot
 *    overflow for k < 2^31 / (255 x 127) = 66k.
 * Every kernel computes the same integer sums exactly; weights packed with
 * qmax 127 never go to the AVX2 kernel (the scalar one runs instead).
 *
 * Layout (the same for every level): panels of 16 output columns, k in
 * groups of 4 (k padded with zero weights to a multiple of 4):
 *   P[((p * kq + g) * 16 + j) * 4 + t] = w8[p*16 + j][4g + t],  kq = kp / 4
 * so one k-group of a panel is 64 contiguous bytes: two ymm of 8 columns x
 * 4 k (vpmaddubsw + vpmaddwd) or one zmm of 16 columns x 4 k (vpdpbusd).
 *
 * Levels (common/cpu.h): avx512 with AVX512_VNNI + BW: vpdpbusd, tiles of
 * 8 rows x 16 columns; avx2 (and avx512 without VNNI): vpmaddubsw/vpmaddwd,
 * tiles of 4 rows x 16 columns, weights of at most 7 bits; scalar: plain C.  fast = 0 is the reference
 * (64-bit sums, double epilogue) over the same data; tests compare every
 * level with it and the reference with the float32 GEMM (tests/test_gemm_q8.c).
 * Nothing allocates; threads claim (panel group, row group) items from the
 * pool of common/pool.h.
 */
#include "clip/gemm.h"
#include "clip/simd_math.h"
#include "common/cpu.h"
#include "common/pool.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define NQ CDX_Q8_NR
#define RGQ 96      /* rows per work item */
/* panels per work item (16 columns each): 4 when all rows fit one item (a
 * text query, one image: more items to share between threads); 16 when
 * there are several row groups, so that each row group's codes (in L2) are
 * reused over 256 columns before the next panels are read */
#define PGQ_FEW 4
#define PGQ_MANY 16
#define AVX2Q __attribute__((target("avx2,fma")))

int cdx_q8_kpad(int k) { return (k + 3) & ~3; }

size_t cdx_q8_pack_bytes(int n, int k)
{
    if (n <= 0 || k <= 0) return 0;
    return (size_t)((n + NQ - 1) / NQ) * NQ * (size_t)cdx_q8_kpad(k);
}

void cdx_q8_pack_weights(int n, int k, const float *W, int ldw, const float *smooth, int qmax,
                         int8_t *P, float *scale, int32_t *colsum)
{
    const int kp = cdx_q8_kpad(k), kq = kp / 4, np = (n + NQ - 1) / NQ;
    memset(P, 0, cdx_q8_pack_bytes(n, k));
    for (int j = 0; j < np * NQ; j++) {
        scale[j] = 0.0f;
        colsum[j] = 0;
        if (j >= n) continue;
        const float *w = W + (size_t)j * ldw;
        float mx = 0.0f;
        for (int kk = 0; kk < k; kk++) {
            float v = fabsf(w[kk] * (smooth ? smooth[kk] : 1.0f));
            if (v > mx) mx = v;
        }
        if (mx == 0.0f) continue;
        float s = mx / qmax, inv = 1.0f / s;
        int32_t sum = 0;
        int8_t *dst = P + (size_t)(j / NQ) * kq * NQ * 4 + (size_t)(j % NQ) * 4;
        for (int kk = 0; kk < k; kk++) {
            long q = lrintf(w[kk] * (smooth ? smooth[kk] : 1.0f) * inv);
            q = q > qmax ? qmax : q < -qmax ? -qmax : q;
            dst[(size_t)(kk / 4) * NQ * 4 + kk % 4] = (int8_t)q;
            sum += (int32_t)q;
        }
        scale[j] = s;
        colsum[j] = sum;
    }
}

/* One row's range and codes (scalar level): the reference every other
 * level matches bit for bit (same float operations, lrintf = the
 * round-to-nearest-even of vcvtps2dq). */
static float q8_row_scale(float lo, float hi, int qa, int32_t *zp)
{
    float s = (hi - lo) / (float)qa;
    if (!(s > 0.0f) || !isfinite(s)) {   /* all zero (or not finite: a zero row) */
        *zp = 0;
        return 0.0f;
    }
    long z = lrintf(-lo * (1.0f / s));
    *zp = (int32_t)(z > qa ? qa : z < 0 ? 0 : z);
    return s;
}

static inline uint8_t q8_code(float v, float inv, int32_t zp, int qa)
{
    long x = lrintf(v * inv) + zp;
    return (uint8_t)(x > qa ? qa : x < 0 ? 0 : x);
}

static void q8_quantize_row_scalar(int k, int kp, const float *a, const float *inv_smooth, int qa,
                                   uint8_t *q, float *as, int32_t *azp)
{
    float lo = 0.0f, hi = 0.0f;
    for (int kk = 0; kk < k; kk++) {
        float v = inv_smooth ? a[kk] * inv_smooth[kk] : a[kk];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    float s = q8_row_scale(lo, hi, qa, azp);
    memset(q, 0, (size_t)kp);
    if (s == 0.0f) {
        *as = 0.0f;
        return;
    }
    const float inv = 1.0f / s;
    for (int kk = 0; kk < k; kk++) q[kk] = q8_code(inv_smooth ? a[kk] * inv_smooth[kk] : a[kk], inv, *azp, qa);
    *as = s;
}

/* AVX2: 32 codes per step (4 x vcvtps2dq, packed down with unsigned
 * saturation after the clamp), the tail in the scalar way */
AVX2Q static void q8_quantize_row_avx2(int k, int kp, const float *a, const float *inv_smooth, int qa,
                                      uint8_t *q, float *as, int32_t *azp)
{
    __m256 lo8 = _mm256_setzero_ps(), hi8 = _mm256_setzero_ps();
    int kk = 0;
    for (; kk + 8 <= k; kk += 8) {
        __m256 v = _mm256_loadu_ps(a + kk);
        if (inv_smooth) v = _mm256_mul_ps(v, _mm256_loadu_ps(inv_smooth + kk));
        lo8 = _mm256_min_ps(v, lo8);   /* (v, acc): a NaN v leaves acc, like the scalar compare */
        hi8 = _mm256_max_ps(v, hi8);
    }
    float l8[8], h8[8], lo = 0.0f, hi = 0.0f;
    _mm256_storeu_ps(l8, lo8);
    _mm256_storeu_ps(h8, hi8);
    for (int i = 0; i < 8; i++) {
        lo = l8[i] < lo ? l8[i] : lo;
        hi = h8[i] > hi ? h8[i] : hi;
    }
    for (; kk < k; kk++) {
        float v = inv_smooth ? a[kk] * inv_smooth[kk] : a[kk];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    float s = q8_row_scale(lo, hi, qa, azp);
    if (s == 0.0f) {
        memset(q, 0, (size_t)kp);
        *as = 0.0f;
        return;
    }
    const float inv = 1.0f / s;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i vzp = _mm256_set1_epi32(*azp), vmax = _mm256_set1_epi32(qa), zero = _mm256_setzero_si256();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (kk = 0; kk + 32 <= k; kk += 32) {
        __m256i x[4];
        for (int t = 0; t < 4; t++) {
            __m256 v = _mm256_loadu_ps(a + kk + 8 * t);
            if (inv_smooth) v = _mm256_mul_ps(v, _mm256_loadu_ps(inv_smooth + kk + 8 * t));
            __m256i c = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v, vinv)), vzp);
            x[t] = _mm256_min_epi32(_mm256_max_epi32(c, zero), vmax);
        }
        __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(x[0], x[1]), _mm256_packus_epi32(x[2], x[3]));
        _mm256_storeu_si256((__m256i *)(q + kk), _mm256_permutevar8x32_epi32(b, order));
    }
    for (; kk < k; kk++) q[kk] = q8_code(inv_smooth ? a[kk] * inv_smooth[kk] : a[kk], inv, *azp, qa);
    for (; kk < kp; kk++) q[kk] = 0;
    *as = s;
}

void cdx_q8_quantize_rows_bits(int m, int k, const float *A, int lda, const float *inv_smooth,
                               int bits, uint8_t *Q, int ldq, float *ascale, int32_t *azp)
{
    const int kp = cdx_q8_kpad(k), avx2 = cdx_cpu_level() >= CDX_ISA_AVX2;
    const int qa = bits == 7 ? 127 : 255;
    for (int i = 0; i < m; i++) {
        const float *a = A + (size_t)i * lda;
        uint8_t *q = Q + (size_t)i * ldq;
        if (avx2) q8_quantize_row_avx2(k, kp, a, inv_smooth, qa, q, ascale + i, azp + i);
        else q8_quantize_row_scalar(k, kp, a, inv_smooth, qa, q, ascale + i, azp + i);
    }
}

void cdx_q8_quantize_rows(int m, int k, const float *A, int lda, const float *inv_smooth,
                          uint8_t *Q, int ldq, float *ascale, int32_t *azp)
{
    cdx_q8_quantize_rows_bits(m, k, A, lda, inv_smooth, 8, Q, ldq, ascale, azp);
}

/* ---- shared epilogue (scalar): one value */
static inline float q8_out(int32_t acc, int32_t zp, int32_t cs, float as, float ws,
                           const float *bias, int j, int act, int accumulate, const float *c)
{
    float v = (float)(acc - zp * cs) * (as * ws);
    if (bias) v += bias[j];
    if (accumulate) v += *c;
    return act == CDX_PACK_ACT_QUICK_GELU ? v / (1.0f + expf(-1.702f * v)) : v;
}

typedef struct q8_job {
    int m, n, k, ldq, ldc, act, accumulate, ng, np, pgq;
    const uint8_t *Q;
    const float *as;
    const int32_t *zp;
    const int8_t *P;
    const float *ws;
    const int32_t *cs;
    const float *bias;
    float *C;
} q8_job;

/* ---- reference: 64-bit sums, double epilogue */
static void q8_reference(const q8_job *j)
{
    const int kq = cdx_q8_kpad(j->k) / 4;
    for (int i = 0; i < j->m; i++)
        for (int c = 0; c < j->n; c++) {
            const int8_t *w = j->P + (size_t)(c / NQ) * kq * NQ * 4 + (size_t)(c % NQ) * 4;
            const uint8_t *q = j->Q + (size_t)i * j->ldq;
            int64_t s = 0;
            for (int kk = 0; kk < j->k; kk++) s += (int64_t)q[kk] * w[(size_t)(kk / 4) * NQ * 4 + kk % 4];
            s -= (int64_t)j->zp[i] * j->cs[c];
            double v = (double)s * j->as[i] * j->ws[c];
            if (j->bias) v += j->bias[c];
            float *out = j->C + (size_t)i * j->ldc + c;
            if (j->accumulate) v += *out;
            if (j->act == CDX_PACK_ACT_QUICK_GELU) v = v / (1.0 + exp(-1.702 * v));
            *out = (float)v;
        }
}

/* ---- scalar level: rows [r0,r1) x panel p */
static void q8_panel_scalar(const q8_job *j, int r0, int r1, int p)
{
    const int kq = cdx_q8_kpad(j->k) / 4, c0 = p * NQ, nc = j->n - c0 < NQ ? j->n - c0 : NQ;
    const int8_t *Pp = j->P + (size_t)p * kq * NQ * 4;
    for (int i = r0; i < r1; i++) {
        const uint8_t *q = j->Q + (size_t)i * j->ldq;
        int32_t acc[NQ] = {0};
        for (int g = 0; g < kq; g++) {
            const int8_t *b = Pp + (size_t)g * NQ * 4;
            const uint8_t *a = q + 4 * g;
            for (int c = 0; c < NQ; c++)
                acc[c] += a[0] * b[4 * c] + a[1] * b[4 * c + 1] + a[2] * b[4 * c + 2] + a[3] * b[4 * c + 3];
        }
        float *out = j->C + (size_t)i * j->ldc + c0;
        for (int c = 0; c < nc; c++)
            out[c] = q8_out(acc[c], j->zp[i], j->cs[c0 + c], j->as[i], j->ws[c0 + c],
                            j->bias ? j->bias + c0 : NULL, c, j->act, j->accumulate, out + c);
    }
}

/* ---- AVX2: vpmaddubsw (u8 x s7 pairs, no saturation) + vpmaddwd (x 1) */
#define AVX2 __attribute__((target("avx2,fma")))
#define MRQ2 4

/* 8 output columns: v = (acc - zp cs) as ws + bias (+ C), act, store */
AVX2 static inline __attribute__((always_inline)) void q8_store8(
    __m256i acc, int32_t zp, const int32_t *cs, float as, const float *ws, const float *bias,
    int act, int accumulate, float *C, int nc)
{
    __m256i msk = cdx_mask256(nc);
    int full = nc >= 8;
    __m256i csv = full ? _mm256_loadu_si256((const __m256i *)cs) : _mm256_maskload_epi32((const int *)cs, msk);
    __m256 wsv = full ? _mm256_loadu_ps(ws) : _mm256_maskload_ps(ws, msk);
    __m256i x = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(zp), csv));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(x), _mm256_mul_ps(_mm256_set1_ps(as), wsv));
    if (bias) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, msk));
    if (accumulate) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(C) : _mm256_maskload_ps(C, msk));
    if (act == CDX_PACK_ACT_QUICK_GELU) v = cdx_quick_gelu256(v);
    if (full) _mm256_storeu_ps(C, v);
    else _mm256_maskstore_ps(C, msk, v);
}

/* pair = 1 (7-bit activation codes, cdx_gemm_q8_a7): the int16 outputs of
 * two k-groups are added before the one vpmaddwd, 3 multiplies per 8 k
 * instead of 4: |sum| <= 4 x 127 x 63 = 32004 still fits an int16. */
AVX2 static inline __attribute__((always_inline)) void q8_tile_avx2(const q8_job *j, int mr, int i0,
                                                                    int p, int kq, int pair)
{
    const int c0 = p * NQ, nc = j->n - c0 < NQ ? j->n - c0 : NQ;
    const int8_t *Pp = j->P + (size_t)p * kq * NQ * 4;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i z = _mm256_setzero_si256();
    __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
    const uint8_t *a0 = j->Q + (size_t)i0 * j->ldq, *a1 = a0 + j->ldq, *a2 = a1 + j->ldq,
                  *a3 = a2 + j->ldq;
#define ROWQ(i)                                                                            \
    if (mr > i) {                                                                          \
        int32_t av;                                                                        \
        memcpy(&av, a##i + 4 * g, 4);                                                      \
        __m256i va = _mm256_set1_epi32(av);                                                \
        c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(_mm256_maddubs_epi16(va, b0), ones)); \
        c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(_mm256_maddubs_epi16(va, b1), ones)); \
    }
#define ROWQ2(i)                                                                           \
    if (mr > i) {                                                                          \
        int32_t av, aw;                                                                    \
        memcpy(&av, a##i + 4 * g, 4);                                                      \
        memcpy(&aw, a##i + 4 * g + 4, 4);                                                  \
        __m256i va = _mm256_set1_epi32(av), vb = _mm256_set1_epi32(aw);                    \
        c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(_mm256_add_epi16(          \
            _mm256_maddubs_epi16(va, b0), _mm256_maddubs_epi16(vb, b2)), ones));            \
        c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(_mm256_add_epi16(          \
            _mm256_maddubs_epi16(va, b1), _mm256_maddubs_epi16(vb, b3)), ones));            \
    }
    int g = 0;
    if (pair)
        for (; g + 2 <= kq; g += 2) {
            const int8_t *b = Pp + (size_t)g * NQ * 4;
            __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
            __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 32));
            __m256i b2 = _mm256_loadu_si256((const __m256i *)(b + 64));
            __m256i b3 = _mm256_loadu_si256((const __m256i *)(b + 96));
            _mm_prefetch((const char *)(b + 16 * NQ * 4), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + 17 * NQ * 4), _MM_HINT_T0);
            ROWQ2(0) ROWQ2(1) ROWQ2(2) ROWQ2(3)
        }
    for (; g < kq; g++) {
        const int8_t *b = Pp + (size_t)g * NQ * 4;
        __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 32));
        _mm_prefetch((const char *)(b + 16 * NQ * 4), _MM_HINT_T0);
        ROWQ(0) ROWQ(1) ROWQ(2) ROWQ(3)
    }
#undef ROWQ
#undef ROWQ2
    __m256i acc[MRQ2][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    for (int i = 0; i < mr; i++) {
        int r = i0 + i;
        float *out = j->C + (size_t)r * j->ldc + c0;
        for (int h = 0; h < 2 && 8 * h < nc; h++)
            q8_store8(acc[i][h], j->zp[r], j->cs + c0 + 8 * h, j->as[r], j->ws + c0 + 8 * h,
                      j->bias ? j->bias + c0 + 8 * h : NULL, j->act, j->accumulate, out + 8 * h,
                      nc - 8 * h);
    }
}

#define QT2(R) AVX2 static void q8_tile2_##R(const q8_job *j, int i0, int p, int kq) \
    { q8_tile_avx2(j, R, i0, p, kq, 0); }                                          \
    AVX2 static void q8_tile2p_##R(const q8_job *j, int i0, int p, int kq)          \
    { q8_tile_avx2(j, R, i0, p, kq, 1); }
QT2(1) QT2(2) QT2(3) QT2(4)
typedef void (*q8_tile_fn)(const q8_job *, int, int, int);
static const q8_tile_fn q8_tiles2[MRQ2 + 1] = {NULL, q8_tile2_1, q8_tile2_2, q8_tile2_3, q8_tile2_4};
static const q8_tile_fn q8_tiles2p[MRQ2 + 1] = {NULL, q8_tile2p_1, q8_tile2p_2, q8_tile2p_3, q8_tile2p_4};

static void q8_panel_avx2(const q8_job *j, int r0, int r1, int p)
{
    const int kq = cdx_q8_kpad(j->k) / 4;
    for (int i0 = r0; i0 < r1; i0 += MRQ2) q8_tiles2[r1 - i0 < MRQ2 ? r1 - i0 : MRQ2](j, i0, p, kq);
}

static void q8_panel_avx2_pair(const q8_job *j, int r0, int r1, int p)
{
    const int kq = cdx_q8_kpad(j->k) / 4;
    for (int i0 = r0; i0 < r1; i0 += MRQ2) q8_tiles2p[r1 - i0 < MRQ2 ? r1 - i0 : MRQ2](j, i0, p, kq);
}

/* ---- AVX-512 VNNI: vpdpbusd, 8 rows x 16 columns */
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma")))
#define MRQ5 8

VNNI static inline __attribute__((always_inline)) void q8_tile_vnni(const q8_job *j, int mr, int i0,
                                                                    int p, int kq)
{
    const int c0 = p * NQ, nc = j->n - c0 < NQ ? j->n - c0 : NQ;
    const __mmask16 msk = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
    const int8_t *Pp = j->P + (size_t)p * kq * NQ * 4;
    __m512i acc[MRQ5];
    const uint8_t *a[MRQ5];
    for (int i = 0; i < mr; i++) {
        acc[i] = _mm512_setzero_si512();
        a[i] = j->Q + (size_t)(i0 + i) * j->ldq;
    }
    for (int g = 0; g < kq; g++) {
        __m512i b = _mm512_loadu_si512((const void *)(Pp + (size_t)g * NQ * 4));
        _mm_prefetch((const char *)(Pp + (size_t)(g + 16) * NQ * 4), _MM_HINT_T0);
        for (int i = 0; i < mr; i++) {
            int32_t av;
            memcpy(&av, a[i] + 4 * g, 4);
            acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(av), b);
        }
    }
    __m512i csv = _mm512_maskz_loadu_epi32(msk, j->cs + c0);
    __m512 wsv = _mm512_maskz_loadu_ps(msk, j->ws + c0);
    __m512 bv = j->bias ? _mm512_maskz_loadu_ps(msk, j->bias + c0) : _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        int r = i0 + i;
        float *out = j->C + (size_t)r * j->ldc + c0;
        __m512i x = _mm512_sub_epi32(acc[i], _mm512_mullo_epi32(_mm512_set1_epi32(j->zp[r]), csv));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(x), _mm512_mul_ps(_mm512_set1_ps(j->as[r]), wsv));
        v = _mm512_add_ps(v, bv);
        if (j->accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(msk, out));
        if (j->act == CDX_PACK_ACT_QUICK_GELU) v = cdx_quick_gelu512(v);
        _mm512_mask_storeu_ps(out, msk, v);
    }
}

#define QT5(R) VNNI static void q8_tile5_##R(const q8_job *j, int i0, int p, int kq) \
    { q8_tile_vnni(j, R, i0, p, kq); }
QT5(1) QT5(2) QT5(3) QT5(4) QT5(5) QT5(6) QT5(7) QT5(8)
static const q8_tile_fn q8_tiles5[MRQ5 + 1] = {NULL, q8_tile5_1, q8_tile5_2, q8_tile5_3, q8_tile5_4,
                                               q8_tile5_5, q8_tile5_6, q8_tile5_7, q8_tile5_8};

static void q8_panel_vnni(const q8_job *j, int r0, int r1, int p)
{
    const int kq = cdx_q8_kpad(j->k) / 4;
    for (int i0 = r0; i0 < r1; i0 += MRQ5) q8_tiles5[r1 - i0 < MRQ5 ? r1 - i0 : MRQ5](j, i0, p, kq);
}

/* ---- dispatch */
typedef void (*q8_panel_fn)(const q8_job *, int, int, int);

int cdx_q8_vnni_supported(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

int cdx_q8_weight_max(void)
{
    return cdx_cpu_level() >= CDX_ISA_AVX512 && cdx_q8_vnni_supported() ? 127 : 63;
}

static q8_panel_fn q8_kernel(int wmax, int a7, const char **name)
{
    cdx_isa isa = cdx_cpu_level();
    if (isa >= CDX_ISA_AVX512 && cdx_q8_vnni_supported()) {
        *name = "vnni";
        return q8_panel_vnni;
    }
    if (isa >= CDX_ISA_AVX2 && wmax <= 63) {
        *name = a7 ? "avx2-a7" : "avx2";
        return a7 ? q8_panel_avx2_pair : q8_panel_avx2;
    }
    *name = "scalar";
    return q8_panel_scalar;
}

const char *cdx_q8_kernel_name(int wmax)
{
    const char *name;
    (void)q8_kernel(wmax, 0, &name);
    return name;
}

typedef struct q8_par {
    const q8_job *j;
    q8_panel_fn fn;
} q8_par;

static void q8_item(void *arg, int w, int slot)
{
    const q8_par *pp = arg;
    const q8_job *j = pp->j;
    (void)slot;
    int pg = w / j->ng, g = w % j->ng;
    int r0 = g * RGQ, r1 = r0 + RGQ < j->m ? r0 + RGQ : j->m;
    int p1 = (pg + 1) * j->pgq < j->np ? (pg + 1) * j->pgq : j->np;
    for (int p = pg * j->pgq; p < p1; p++) pp->fn(j, r0, r1, p);
}

static void q8_gemm(int m, int n, int k, const uint8_t *Q, int ldq, const float *ascale,
                    const int32_t *azp, const int8_t *P, const float *wscale, const int32_t *colsum,
                    int wmax, const float *bias, int act, int accumulate, float *C, int ldc, int fast,
                    int a7)
{
    if (m <= 0 || n <= 0 || k <= 0) return;
    const int ng = (m + RGQ - 1) / RGQ;
    q8_job j = {m, n, k, ldq, ldc, act, accumulate, ng, (n + NQ - 1) / NQ, ng > 1 ? PGQ_MANY : PGQ_FEW,
                Q, ascale, azp, P, wscale, colsum, bias, C};
    if (!fast) {
        q8_reference(&j);
        return;
    }
    const char *name;
    q8_par pp = {&j, q8_kernel(wmax, a7, &name)};
    int items = (j.np + j.pgq - 1) / j.pgq * j.ng;
    cdx_par_for(items, (long)n * k > 65536 ? cdx_par_threads() : 1, q8_item, &pp);
}

void cdx_gemm_q8(int m, int n, int k, const uint8_t *Q, int ldq, const float *ascale,
                 const int32_t *azp, const int8_t *P, const float *wscale, const int32_t *colsum,
                 int wmax, const float *bias, int act, int accumulate, float *C, int ldc, int fast)
{
    q8_gemm(m, n, k, Q, ldq, ascale, azp, P, wscale, colsum, wmax, bias, act, accumulate, C, ldc, fast, 0);
}

void cdx_gemm_q8_a7(int m, int n, int k, const uint8_t *Q, int ldq, const float *ascale,
                    const int32_t *azp, const int8_t *P, const float *wscale, const int32_t *colsum,
                    int wmax, const float *bias, int act, int accumulate, float *C, int ldc, int fast)
{
    q8_gemm(m, n, k, Q, ldq, ascale, azp, P, wscale, colsum, wmax, bias, act, accumulate, C, ldc, fast, 1);
}
