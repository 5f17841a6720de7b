/*
 * gemm_small.c - hand-written AVX-512 kernels for GEMMs whose A has few rows:
 * C = A B^T with B a Linear weight [n, k] (a text query, one image), and
 * C = A B with B [k, n] (attention: Q x K^T with K transposed, P x V).
 *
 * Why: with M <= ~100 a GEMM is bound by streaming the weights from memory
 * (a ViT-B/32 text query reads 151 MB of weights for ~8 rows).  oneDNN's
 * sgemm packs B on every call, which costs as much again; this kernel reads
 * every weight row exactly once, straight from the model's [n, k] layout,
 * and keeps A in L1/L2.  For large M the packed, cache-blocked oneDNN/OpenBLAS
 * kernels win, so gemm.c only routes M <= CDX_GEMM_SMALL_M here.
 *
 * A B^T kernel: tiles of 6 rows of A x 4 rows of B, 24 accumulators of 16
 * lanes along k (masked tail), reduced with a 4-way transpose-add at the end;
 * k in chunks of <= 512 (A tile in L1), B rows in groups that fit L2 (the
 * unit of work of a thread, so each thread streams its own share of B once).
 * Edge tiles in n re-use the last valid B row (computed, not stored); the
 * row count of a tile (1..6) is a compile-time constant of its instantiation.
 * Measured in cache on one Zen 5 core: ~180 GFLOP/s (oneDNN's large-GEMM
 * peak is ~205).
 *
 * A B kernel: A elements broadcast against rows of B, tiles of 6 rows x up to
 * 64 columns.
 *
 * AVX2 + FMA variants (same drivers, 8 lanes, 16 ymm registers): A B^T in
 * tiles of 6 rows of A x 2 rows of B (12 accumulators, the 2 B vectors in
 * registers, A read as a memory operand), reduced by horizontal adds; A B
 * in tiles of 6 rows x 16 columns.  The level comes from cdx_cpu_level()
 * (common/cpu.h) at each call; at the scalar level the kernels are not
 * offered (cdx_gemm_small_available() = 0) and a direct call runs a plain
 * loop.
 *
 * Every level is tested against the reference loop in tests/test_gemm.c.
 */
#include "clip/gemm.h"
#include "clip/simd_math.h"
#include "common/cpu.h"

#include <immintrin.h>
#include <omp.h>

#define AVX512 __attribute__((target("avx512f")))

/* [sum a0, sum a1, sum a2, sum a3] */
AVX512 static inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    /* per 128-bit lane: s01 = [a0 a1 a0 a1], s23 = [a2 a3 a2 a3] partial sums */
    __m512 t = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, 0x44), _mm512_shuffle_ps(s01, s23, 0xEE));
    /* per lane: [a0 a1 a2 a3]; add the four 128-bit lanes */
    __m256 u = _mm256_add_ps(_mm512_castps512_ps256(t),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

#define MR 6   /* rows of A per tile: 24 accumulators + 4 B vectors + 1 A vector */

/* mr is a compile-time constant in each instantiation below, so the
 * accumulators of unused rows disappear. */
AVX512 static inline __attribute__((always_inline)) void tile(int mr, int nr, int k, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc,
                        const float *pf)
{
    const float *a[MR], *b[4];
    for (int i = 0; i < mr; i++) a[i] = A + (size_t)i * lda;
    for (int j = 0; j < 4; j++) b[j] = B + (size_t)(j < nr ? j : nr - 1) * ldb;
    __m512 acc[MR][4];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    int p = 0;
    for (; p + 16 <= k; p += 16) {
        __m512 vb[4];
        for (int j = 0; j < 4; j++) vb[j] = _mm512_loadu_ps(b[j] + p);
        if (pf)
            for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(pf + (size_t)j * ldb + p), _MM_HINT_T0);
        for (int i = 0; i < mr; i++) {
            __m512 va = _mm512_loadu_ps(a[i] + p);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(va, vb[j], acc[i][j]);
        }
    }
    if (p < k) {
        __mmask16 msk = (__mmask16)((1u << (k - p)) - 1u);
        __m512 vb[4];
        for (int j = 0; j < 4; j++) vb[j] = _mm512_maskz_loadu_ps(msk, b[j] + p);
        for (int i = 0; i < mr; i++) {
            __m512 va = _mm512_maskz_loadu_ps(msk, a[i] + p);
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(va, vb[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++) {
        float out[4];
        _mm_storeu_ps(out, _mm_mul_ps(reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]),
                                      _mm_set1_ps(alpha)));
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) c[j] = beta == 0.0f ? out[j] : out[j] + beta * c[j];
    }
}

#define TILE_MR(R) \
    AVX512 static void tile##R(int nr, int k, float alpha, const float *A, int lda, \
                               const float *B, int ldb, float beta, float *C, int ldc, \
                               const float *pf) \
    { tile(R, nr, k, alpha, A, lda, B, ldb, beta, C, ldc, pf); }
TILE_MR(1) TILE_MR(2) TILE_MR(3) TILE_MR(4) TILE_MR(5) TILE_MR(6)

typedef void (*tile_fn)(int, int, float, const float *, int, const float *, int, float,
                        float *, int, const float *);
static const tile_fn tiles[MR + 1] = {NULL, tile1, tile2, tile3, tile4, tile5, tile6};

/* ---- C = alpha A B + beta C with B [k, n] (attention: Q x K^T with K
 * transposed, probabilities x V).  Tiles of up to 6 rows x up to 4 vectors
 * of 16 columns (masked at the right edge); A elements are broadcast, B rows
 * streamed.  Row and vector counts are compile-time constants of each
 * instantiation, so no FMA is spent on absent rows or columns. */
#define MR_NN 6

AVX512 static inline __attribute__((always_inline)) void tile_nn(
    int mr, int nv, int nc, int k, float alpha, const float *A, int lda, const float *B,
    int ldb, float beta, float *C, int ldc)
{
    __m512 acc[MR_NN][4];
    __mmask16 msk[4];
    for (int c = 0; c < nv; c++) {
        int left = nc - 16 * c;
        msk[c] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    }
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < nv; c++) acc[i][c] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m512 vb[4];
        for (int c = 0; c < nv; c++) vb[c] = _mm512_maskz_loadu_ps(msk[c], B + (size_t)p * ldb + 16 * c);
        for (int i = 0; i < mr; i++) {
            __m512 va = _mm512_set1_ps(A[(size_t)i * lda + p]);
            for (int c = 0; c < nv; c++) acc[i][c] = _mm512_fmadd_ps(va, vb[c], acc[i][c]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < nv; c++) {
            float *dst = C + (size_t)i * ldc + 16 * c;
            __m512 v = _mm512_mul_ps(acc[i][c], _mm512_set1_ps(alpha));
            if (beta != 0.0f)
                v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(msk[c], dst), _mm512_set1_ps(beta), v);
            _mm512_mask_storeu_ps(dst, msk[c], v);
        }
}

typedef void (*tile_nn_fn)(int, int, float, const float *, int, const float *, int, float,
                           float *, int);
#define TILE_NN(R, V) \
    AVX512 static void tile_nn##R##_##V(int nc, int k, float alpha, const float *A, int lda, \
                                        const float *B, int ldb, float beta, float *C, int ldc) \
    { tile_nn(R, V, nc, k, alpha, A, lda, B, ldb, beta, C, ldc); }
#define TILE_NN_ROW(R) TILE_NN(R, 1) TILE_NN(R, 2) TILE_NN(R, 3) TILE_NN(R, 4)
TILE_NN_ROW(1) TILE_NN_ROW(2) TILE_NN_ROW(3) TILE_NN_ROW(4) TILE_NN_ROW(5) TILE_NN_ROW(6)
#define TILE_NN_REF(R) {NULL, tile_nn##R##_1, tile_nn##R##_2, tile_nn##R##_3, tile_nn##R##_4}
static const tile_nn_fn tiles_nn[MR_NN + 1][5] = {
    {NULL}, TILE_NN_REF(1), TILE_NN_REF(2), TILE_NN_REF(3), TILE_NN_REF(4), TILE_NN_REF(5),
    TILE_NN_REF(6)};

/* ---- AVX2 A B kernel: tiles of up to 6 rows x 16 columns (2 vectors,
 * masked at the right edge). */
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __attribute__((always_inline)) void tnn_avx2(
    int mr, int nc, int k, float alpha, const float *A, int lda, const float *B, int ldb,
    float beta, float *C, int ldc)
{
    const __m256i m0 = cdx_mask256(nc), m1 = cdx_mask256(nc - 8);
    const int full = nc >= 16;
    /* accumulators as named locals: GCC keeps an indexed array on the stack
     * in these loops (a store per FMA); locals stay in the 16 ymm */
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
#define NN_ROW(i)                                                            \
    if (mr > i) {                                                            \
        __m256 va = _mm256_broadcast_ss(A + (size_t)i * lda + p);            \
        c##i##0 = _mm256_fmadd_ps(va, b0, c##i##0);                          \
        c##i##1 = _mm256_fmadd_ps(va, b1, c##i##1);                          \
    }
    for (int p = 0; p < k; p++) {
        const float *b = B + (size_t)p * ldb;
        __m256 b0 = full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
        __m256 b1 = full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
        NN_ROW(0) NN_ROW(1) NN_ROW(2) NN_ROW(3) NN_ROW(4) NN_ROW(5)
    }
#undef NN_ROW
    const __m256 acc[MR_NN][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        float *c = C + (size_t)i * ldc;
        __m256 v0 = _mm256_mul_ps(acc[i][0], va), v1 = _mm256_mul_ps(acc[i][1], va);
        if (full) {
            if (beta != 0.0f) {
                v0 = _mm256_fmadd_ps(_mm256_loadu_ps(c), vb, v0);
                v1 = _mm256_fmadd_ps(_mm256_loadu_ps(c + 8), vb, v1);
            }
            _mm256_storeu_ps(c, v0);
            _mm256_storeu_ps(c + 8, v1);
        } else {
            if (beta != 0.0f) {
                v0 = _mm256_fmadd_ps(_mm256_maskload_ps(c, m0), vb, v0);
                v1 = _mm256_fmadd_ps(_mm256_maskload_ps(c + 8, m1), vb, v1);
            }
            _mm256_maskstore_ps(c, m0, v0);
            _mm256_maskstore_ps(c + 8, m1, v1);
        }
    }
}

typedef void (*tnn_avx2_fn)(int, int, float, const float *, int, const float *, int, float,
                            float *, int);
#define TNN_AVX2(R) \
    AVX2 static void tnn_avx2_##R(int nc, int k, float alpha, const float *A, int lda, \
                                  const float *B, int ldb, float beta, float *C, int ldc) \
    { tnn_avx2(R, nc, k, alpha, A, lda, B, ldb, beta, C, ldc); }
TNN_AVX2(1) TNN_AVX2(2) TNN_AVX2(3) TNN_AVX2(4) TNN_AVX2(5) TNN_AVX2(6)
static const tnn_avx2_fn tnn_avx2_tab[MR_NN + 1] = {NULL, tnn_avx2_1, tnn_avx2_2, tnn_avx2_3,
                                                 tnn_avx2_4, tnn_avx2_5, tnn_avx2_6};

/* plain loop for a direct call at the scalar level */
static void gemm_plain(int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                       int ldb, int b_trans, float beta, float *C, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0;
            for (int p = 0; p < k; p++)
                s += A[(size_t)i * lda + p] * (b_trans ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

/* row block mb (MR_NN rows) of the nn product */
static void nn_rows(int mb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc, cdx_isa isa)
{
    int i0 = mb * MR_NN, mr = m - i0 < MR_NN ? m - i0 : MR_NN;
    const int nb = isa >= CDX_ISA_AVX512 ? 64 : 16;
    for (int n0 = 0; n0 < n; n0 += nb) {
        int nc = n - n0 < nb ? n - n0 : nb;
        if (isa >= CDX_ISA_AVX512)
            tiles_nn[mr][(nc + 15) / 16](nc, k, alpha, A + (size_t)i0 * lda, lda, B + n0, ldb, beta,
                                         C + (size_t)i0 * ldc + n0, ldc);
        else
            tnn_avx2_tab[mr](nc, k, alpha, A + (size_t)i0 * lda, lda, B + n0, ldb, beta,
                          C + (size_t)i0 * ldc + n0, ldc);
    }
}

void cdx_gemm_small_nn(int m, int n, int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    const cdx_isa isa = cdx_cpu_level();
    if (isa < CDX_ISA_AVX2) {
        gemm_plain(m, n, k, alpha, A, lda, B, ldb, 0, beta, C, ldc);
        return;
    }
    const int mblocks = (m + MR_NN - 1) / MR_NN;
    /* small calls (attention, already inside a parallel region) must not
     * even enter an inactive parallel construct: libgomp builds a team for
     * it, measured at ~0.3 ms per 8-token text query */
    if ((long)m * n * k > 1000000 && cdx_par_threads() > 1) {
#pragma omp parallel for schedule(dynamic, 4)
        for (int mb = 0; mb < mblocks; mb++)
            nn_rows(mb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, isa);
    } else {
        for (int mb = 0; mb < mblocks; mb++)
            nn_rows(mb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, isa);
    }
}

int cdx_gemm_small_available(void)
{
    return cdx_cpu_level() >= CDX_ISA_AVX2;
}

/* ---- AVX2 A B^T kernel: up to 6 rows of A x 2 rows of B, 8 lanes along k
 * (masked tail); nr = 1 re-uses the same B row (computed, not stored). */
AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

AVX2 static inline __attribute__((always_inline)) void tile_avx2(int mr, int nr, int k, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        float *C, int ldc, const float *pf)
{
    const float *b0p = B, *b1p = B + (size_t)(nr > 1 ? 1 : 0) * ldb;
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
#define NT_ROW(i, LOAD)                                                      \
    if (mr > i) {                                                            \
        __m256 va = LOAD;                                                    \
        c##i##0 = _mm256_fmadd_ps(va, b0, c##i##0);                          \
        c##i##1 = _mm256_fmadd_ps(va, b1, c##i##1);                          \
    }
#define NT_ROWS(LOAD_OF) \
    NT_ROW(0, LOAD_OF(0)) NT_ROW(1, LOAD_OF(1)) NT_ROW(2, LOAD_OF(2)) \
    NT_ROW(3, LOAD_OF(3)) NT_ROW(4, LOAD_OF(4)) NT_ROW(5, LOAD_OF(5))
#define A_FULL(i) _mm256_loadu_ps(A + (size_t)(i) * lda + p)
#define A_MASK(i) _mm256_maskload_ps(A + (size_t)(i) * lda + p, msk)
    int p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 b0 = _mm256_loadu_ps(b0p + p), b1 = _mm256_loadu_ps(b1p + p);
        if (pf && !(p & 15)) {
            _mm_prefetch((const char *)(pf + p), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + ldb + p), _MM_HINT_T0);
        }
        NT_ROWS(A_FULL)
    }
    if (p < k) {
        const __m256i msk = cdx_mask256(k - p);
        __m256 b0 = _mm256_maskload_ps(b0p + p, msk), b1 = _mm256_maskload_ps(b1p + p, msk);
        NT_ROWS(A_MASK)
    }
#undef NT_ROW
#undef NT_ROWS
#undef A_FULL
#undef A_MASK
    const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < mr; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) {
            float v = alpha * hsum8(acc[i][j]);
            c[j] = beta == 0.0f ? v : v + beta * c[j];
        }
    }
}

#define TILE_AVX2_MR(R) \
    AVX2 static void tile_avx2_##R(int nr, int k, float alpha, const float *A, int lda, \
                               const float *B, int ldb, float beta, float *C, int ldc, \
                               const float *pf) \
    { tile_avx2(R, nr, k, alpha, A, lda, B, ldb, beta, C, ldc, pf); }
TILE_AVX2_MR(1) TILE_AVX2_MR(2) TILE_AVX2_MR(3) TILE_AVX2_MR(4) TILE_AVX2_MR(5) TILE_AVX2_MR(6)
static const tile_fn tiles_avx2[MR + 1] = {NULL, tile_avx2_1, tile_avx2_2, tile_avx2_3, tile_avx2_4, tile_avx2_5, tile_avx2_6};

void cdx_gemm_small_nt(int m, int n, int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    const cdx_isa isa = cdx_cpu_level();
    if (isa < CDX_ISA_AVX2) {
        gemm_plain(m, n, k, alpha, A, lda, B, ldb, 1, beta, C, ldc);
        return;
    }
    const tile_fn *tl = isa >= CDX_ISA_AVX512 ? tiles : tiles_avx2;
    const int nb = isa >= CDX_ISA_AVX512 ? 4 : 2;   /* B rows per tile */
    /* k is processed in chunks of <= KC so a 6-row A tile stays in L1
     * (6 x 512 floats = 12 KB); later chunks accumulate into C.  Work unit: a
     * group of B rows whose chunk stays in L2 (<= 256 KB): the first A tile
     * streams it from memory (prefetching one block ahead), later A tiles
     * re-read it from L2. */
    enum { KC = 512 };
    const int nchunks = (k + KC - 1) / KC;
    const int kc = (k + nchunks - 1) / nchunks;   /* balanced chunks */
    int group = (int)((65536 / (kc > 0 ? kc : 1)) & ~3);
    if (group < 4) group = 4;   /* a multiple of nb */
    const int ngroups = (n + group - 1) / group;
    const int par = (long)n * k > 65536 && cdx_par_threads() > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int g = 0; g < ngroups; g++) {
        int g0 = g * group, g1 = g0 + group < n ? g0 + group : n;
        for (int k0 = 0; k0 < k; k0 += kc) {
            int kl = k - k0 < kc ? k - k0 : kc;
            float bt = k0 == 0 ? beta : 1.0f;
            for (int i0 = 0; i0 < m; i0 += MR) {
                tile_fn fn = tl[m - i0 < MR ? m - i0 : MR];
                for (int n0 = g0; n0 < g1; n0 += nb) {
                    int nr = g1 - n0 < nb ? g1 - n0 : nb;
                    const float *pf = i0 == 0 && n0 + 2 * nb <= n ? B + (size_t)(n0 + nb) * ldb + k0 : NULL;
                    fn(nr, kl, alpha, A + (size_t)i0 * lda + k0, lda, B + (size_t)n0 * ldb + k0, ldb,
                       bt, C + (size_t)i0 * ldc + n0, ldc, pf);
                }
            }
        }
    }
}
