/*
 * gemm_packed.c - GEMM against Linear weights pre-packed at model load:
 * C[m,n] = act(A[m,k] W^T + bias) (+ C when accumulating), W [n,k].
 *
 * Why: a text query (M = 1..77 rows per sequence) is bound by streaming the
 * weights (8 tokens: 151 MB for ViT-B/32) or by FMA throughput with only a few
 * row tiles to amortise loads over (77 tokens).  Packing W once into panels
 * of 64 output columns, k-major ([panel][k][64], zero-padded), makes every
 * weight read a contiguous, aligned 256-byte row that the hardware
 * prefetcher streams at full bandwidth, and lets the kernel broadcast A
 * elements against 4 vectors of W: tiles of 6 rows x 64 columns, 24
 * accumulators, no horizontal reduction.  bias, quick_gelu and the residual
 * add are applied in registers at the store, so C is written once.
 *
 * Work split: threads claim (panel, 96-row group) items from the pool of
 * common/pool.h (each weight byte is read by one thread, once per row group); k runs in chunks of
 * <= 512 so a 6-row A tile stays in L1 and the panel chunk (<= 128 KB) in
 * L2 while it is re-used by the row tiles.
 *
 * One layout for every instruction-set level (common/cpu.h), so packed
 * weights never depend on the CPU or on $CLIPDEX_MAX_ISA:
 *  - avx512: the kernel above;
 *  - avx2: tiles of 6 rows x 16 columns (12 accumulators, 2 weight vectors,
 *    1 broadcast: the 16 ymm registers), so a panel is done as 4 strips of
 *    16 columns over the same k chunk: the first strip's first row tile
 *    prefetches the whole 256-byte k-row, the 3 other strips read it from
 *    L1/L2;
 *  - scalar: plain C, float accumulation, 4 rows x 64 columns.
 * The reference (fast = 0) is a plain double-precision loop over the same
 * packed layout; tests compare every level with the reference GEMM on the
 * unpacked weights (tests/test_gemm.c).
 * Nothing allocates; safe to call concurrently and from inside OpenMP
 * regions (then it runs on the calling thread).
 */
#include "clip/gemm.h"
#include "clip/simd_math.h"
#include "common/cpu.h"
#include "common/pool.h"

#include <immintrin.h>
#include <math.h>

#define NR CDX_PACK_NR
#define MRP 6       /* rows per tile */
#define KC 512      /* k chunk */
#define RG 96       /* rows per work item (multiple of MRP) */
#ifndef PFD
#define PFD 16      /* software prefetch distance, k steps (x 256 bytes) */
#endif

size_t cdx_pack_floats(int n, int k)
{
    if (n <= 0 || k <= 0) return 0;
    return (size_t)((n + NR - 1) / NR) * NR * (size_t)k;
}

void cdx_pack_weights(int n, int k, const float *W, int ldw, float *P)
{
    const int np = (n + NR - 1) / NR;
#pragma omp parallel for schedule(static) if ((long)n * k > 262144)
    for (int p = 0; p < np; p++) {
        float *dst = P + (size_t)p * k * NR;
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < NR; j++) {
                int r = p * NR + j;
                dst[(size_t)kk * NR + j] = r < n ? W[(size_t)r * ldw + kk] : 0.0f;
            }
    }
}

void cdx_unpack_weights(int n, int k, const float *P, float *W, int ldw)
{
    for (int r = 0; r < n; r++) {
        const float *src = P + (size_t)(r / NR) * k * NR + r % NR;
        for (int kk = 0; kk < k; kk++) W[(size_t)r * ldw + kk] = src[(size_t)kk * NR];
    }
}

static float act_ref(double v, int act)
{
    if (act == CDX_PACK_ACT_QUICK_GELU) return (float)(v / (1.0 + exp(-1.702 * v)));
    return (float)v;
}

static void packed_reference(int m, int n, int k, const float *A, int lda, const float *P,
                             const float *bias, int act, int accumulate, float *C, int ldc)
{
#pragma omp parallel for schedule(static) if ((long)m * n * k > 100000)
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            const float *pw = P + (size_t)(j / NR) * k * NR + j % NR;
            double s = 0;
            for (int kk = 0; kk < k; kk++) s += (double)A[(size_t)i * lda + kk] * pw[(size_t)kk * NR];
            if (bias) s += bias[j];
            if (accumulate) s += C[(size_t)i * ldc + j];
            C[(size_t)i * ldc + j] = act_ref(s, act);
        }
}

#define AVX512 __attribute__((target("avx512f")))

/* One tile: mr (compile-time) rows x one 64-column panel, kl steps of k.
 * acc starts from C when load_c; at the last chunk bias/act are applied. */
AVX512 static inline __attribute__((always_inline)) void ptile(
    int mr, int kl, const float *A, int lda, const float *Pp, float *C, int ldc,
    const __mmask16 *msk, int load_c, const float *bias, int act, int pf)
{
    __m512 acc[MRP][4];
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < 4; c++)
            acc[i][c] = load_c ? _mm512_maskz_loadu_ps(msk[c], C + (size_t)i * ldc + 16 * c)
                               : _mm512_setzero_ps();
    const float *a[MRP];
    for (int i = 0; i < mr; i++) a[i] = A + (size_t)i * lda;
    for (int kk = 0; kk < kl; kk++) {
        const float *b = Pp + (size_t)kk * NR;
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        __m512 b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
        if (pf) {
            _mm_prefetch((const char *)(b + PFD * NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PFD * NR + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PFD * NR + 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PFD * NR + 48), _MM_HINT_T0);
        }
        for (int i = 0; i < mr; i++) {
            __m512 va = _mm512_set1_ps(a[i][kk]);
            acc[i][0] = _mm512_fmadd_ps(va, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(va, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(va, b2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(va, b3, acc[i][3]);
        }
    }
    if (bias) {
        __m512 vb[4];
        for (int c = 0; c < 4; c++) vb[c] = _mm512_maskz_loadu_ps(msk[c], bias + 16 * c);
        for (int i = 0; i < mr; i++)
            for (int c = 0; c < 4; c++) acc[i][c] = _mm512_add_ps(acc[i][c], vb[c]);
    }
    if (act == CDX_PACK_ACT_QUICK_GELU)
        for (int i = 0; i < mr; i++)
            for (int c = 0; c < 4; c++) acc[i][c] = cdx_quick_gelu512(acc[i][c]);
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < 4; c++)
            _mm512_mask_storeu_ps(C + (size_t)i * ldc + 16 * c, msk[c], acc[i][c]);
}

typedef void (*ptile_fn)(int, const float *, int, const float *, float *, int, const __mmask16 *,
                         int, const float *, int, int);
#define PTILE(R) \
    AVX512 static void ptile##R(int kl, const float *A, int lda, const float *Pp, float *C, int ldc, \
                                const __mmask16 *msk, int load_c, const float *bias, int act, int pf) \
    { ptile(R, kl, A, lda, Pp, C, ldc, msk, load_c, bias, act, pf); }
PTILE(1) PTILE(2) PTILE(3) PTILE(4) PTILE(5) PTILE(6)
static const ptile_fn ptiles[MRP + 1] = {NULL, ptile1, ptile2, ptile3, ptile4, ptile5, ptile6};

/* Rows [r0, r1) x panel p, all of k. */
static void panel_rows(int r0, int r1, int p, int n, int k, const float *A, int lda,
                       const float *P, const float *bias, int act, int accumulate, float *C,
                       int ldc)
{
    const int nchunks = (k + KC - 1) / KC, kc = (k + nchunks - 1) / nchunks;
    const int j0 = p * NR, nc = n - j0 < NR ? n - j0 : NR;
    __mmask16 msk[4];
    for (int c = 0; c < 4; c++) {
        int left = nc - 16 * c;
        msk[c] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    }
    const float *Pp = P + (size_t)p * k * NR;
    for (int k0 = 0; k0 < k; k0 += kc) {
        int kl = k - k0 < kc ? k - k0 : kc, last = k0 + kl >= k;
        for (int i0 = r0; i0 < r1; i0 += MRP) {
            int mr = r1 - i0 < MRP ? r1 - i0 : MRP;
            ptiles[mr](kl, A + (size_t)i0 * lda + k0, lda, Pp + (size_t)k0 * NR,
                       C + (size_t)i0 * ldc + j0, ldc, msk, k0 > 0 || accumulate,
                       last && bias ? bias + j0 : NULL, last ? act : CDX_PACK_ACT_NONE,
                       i0 == r0);
        }
    }
}

/* ---- AVX2 + FMA: one 16-column strip of a panel, mr rows, kl steps of k.
 * Pp points at the strip's first column (row stride NR floats). */
#define AVX2 __attribute__((target("avx2,fma")))
#ifndef MR2
#define MR2 6
#endif
#ifndef KC2
#define KC2 256     /* k chunk (measured: 32..512 on Zen 3, 256 best) */
#endif

AVX2 static inline __attribute__((always_inline)) void ptile_avx2(
    int mr, int kl, const float *A, int lda, const float *Pp, float *C, int ldc, int nc,
    int load_c, const float *bias, int act, int pf)
{
    const __m256i msk[2] = {cdx_mask256(nc), cdx_mask256(nc - 8)};
    const int full = nc >= 16;
    __m256 acc[MR2][2];
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < 2; c++)
            acc[i][c] = !load_c ? _mm256_setzero_ps()
                        : full  ? _mm256_loadu_ps(C + (size_t)i * ldc + 8 * c)
                                : _mm256_maskload_ps(C + (size_t)i * ldc + 8 * c, msk[c]);
    /* the k loop on named locals: GCC keeps an indexed accumulator array
     * on the stack here (one store per FMA), locals stay in the 16 ymm */
    __m256 z = _mm256_setzero_ps();
    __m256 c00 = mr > 0 ? acc[0][0] : z, c01 = mr > 0 ? acc[0][1] : z;
    __m256 c10 = mr > 1 ? acc[1][0] : z, c11 = mr > 1 ? acc[1][1] : z;
    __m256 c20 = mr > 2 ? acc[2][0] : z, c21 = mr > 2 ? acc[2][1] : z;
    __m256 c30 = mr > 3 ? acc[3][0] : z, c31 = mr > 3 ? acc[3][1] : z;
    __m256 c40 = mr > 4 ? acc[4][0] : z, c41 = mr > 4 ? acc[4][1] : z;
    __m256 c50 = mr > 5 ? acc[5][0] : z, c51 = mr > 5 ? acc[5][1] : z;
    const float *a0 = A, *a1 = A + (size_t)lda, *a2 = A + 2 * (size_t)lda;
    const float *a3 = A + 3 * (size_t)lda, *a4 = A + 4 * (size_t)lda, *a5 = A + 5 * (size_t)lda;
#define ROW2(i)                                                  \
    if (mr > i) {                                                \
        __m256 va = _mm256_broadcast_ss(a##i + kk);              \
        c##i##0 = _mm256_fmadd_ps(va, b0, c##i##0);              \
        c##i##1 = _mm256_fmadd_ps(va, b1, c##i##1);              \
    }
    for (int kk = 0; kk < kl; kk++) {
        const float *b = Pp + (size_t)kk * NR;
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        if (pf) {   /* the whole 256-byte k-row, for all 4 strips */
            _mm_prefetch((const char *)(b + PFD * NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PFD * NR + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PFD * NR + 32), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PFD * NR + 48), _MM_HINT_T0);
        }
        ROW2(0) ROW2(1) ROW2(2) ROW2(3) ROW2(4) ROW2(5)
    }
#undef ROW2
    if (mr > 0) acc[0][0] = c00, acc[0][1] = c01;
    if (mr > 1) acc[1][0] = c10, acc[1][1] = c11;
    if (mr > 2) acc[2][0] = c20, acc[2][1] = c21;
    if (mr > 3) acc[3][0] = c30, acc[3][1] = c31;
    if (mr > 4) acc[4][0] = c40, acc[4][1] = c41;
    if (mr > 5) acc[5][0] = c50, acc[5][1] = c51;
    if (bias)
        for (int c = 0; c < 2; c++) {
            __m256 vb = full ? _mm256_loadu_ps(bias + 8 * c) : _mm256_maskload_ps(bias + 8 * c, msk[c]);
            for (int i = 0; i < mr; i++) acc[i][c] = _mm256_add_ps(acc[i][c], vb);
        }
    if (act == CDX_PACK_ACT_QUICK_GELU)
        for (int i = 0; i < mr; i++)
            for (int c = 0; c < 2; c++) acc[i][c] = cdx_quick_gelu256(acc[i][c]);
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < 2; c++) {
            if (full) _mm256_storeu_ps(C + (size_t)i * ldc + 8 * c, acc[i][c]);
            else _mm256_maskstore_ps(C + (size_t)i * ldc + 8 * c, msk[c], acc[i][c]);
        }
}

typedef void (*ptile2_fn)(int, const float *, int, const float *, float *, int, int, int,
                          const float *, int, int);
#define PTILE2(R) \
    AVX2 static void ptile2_##R(int kl, const float *A, int lda, const float *Pp, float *C, int ldc, \
                                int nc, int load_c, const float *bias, int act, int pf) \
    { ptile_avx2(R, kl, A, lda, Pp, C, ldc, nc, load_c, bias, act, pf); }
PTILE2(1) PTILE2(2) PTILE2(3) PTILE2(4) PTILE2(5) PTILE2(6)
static const ptile2_fn ptiles2[7] = {NULL, ptile2_1, ptile2_2, ptile2_3, ptile2_4, ptile2_5,
                                           ptile2_6};

static void panel_rows_avx2(int r0, int r1, int p, int n, int k, const float *A, int lda,
                            const float *P, const float *bias, int act, int accumulate, float *C,
                            int ldc)
{
    const int nchunks = (k + KC2 - 1) / KC2, kc = (k + nchunks - 1) / nchunks;
    const int j0 = p * NR, nc = n - j0 < NR ? n - j0 : NR;
    const float *Pp = P + (size_t)p * k * NR;
    for (int k0 = 0; k0 < k; k0 += kc) {
        int kl = k - k0 < kc ? k - k0 : kc, last = k0 + kl >= k;
        for (int s = 0; s * 16 < nc; s++) {
            int j = j0 + 16 * s;
            for (int i0 = r0; i0 < r1; i0 += MR2) {
                int mr = r1 - i0 < MR2 ? r1 - i0 : MR2;
                ptiles2[mr](kl, A + (size_t)i0 * lda + k0, lda, Pp + (size_t)k0 * NR + 16 * s,
                            C + (size_t)i0 * ldc + j, ldc, nc - 16 * s, k0 > 0 || accumulate,
                            last && bias ? bias + j : NULL, last ? act : CDX_PACK_ACT_NONE,
                            s == 0 && i0 == r0);
            }
        }
    }
}

/* ---- scalar level: plain C over the packed layout, float accumulation,
 * 4 rows x one 64-column panel (the compiler may vectorise the j loops). */
#define MRS 4

static void panel_rows_scalar(int r0, int r1, int p, int n, int k, const float *A, int lda,
                              const float *P, const float *bias, int act, int accumulate,
                              float *C, int ldc)
{
    const int j0 = p * NR, nc = n - j0 < NR ? n - j0 : NR;
    const float *Pp = P + (size_t)p * k * NR;
    for (int i0 = r0; i0 < r1; i0 += MRS) {
        int mr = r1 - i0 < MRS ? r1 - i0 : MRS;
        float acc[MRS][NR] = {{0}};
        for (int kk = 0; kk < k; kk++) {
            const float *b = Pp + (size_t)kk * NR;
            for (int i = 0; i < mr; i++) {
                float a = A[(size_t)(i0 + i) * lda + kk];
                for (int j = 0; j < NR; j++) acc[i][j] += a * b[j];
            }
        }
        for (int i = 0; i < mr; i++) {
            float *c = C + (size_t)(i0 + i) * ldc + j0;
            for (int j = 0; j < nc; j++) {
                float v = acc[i][j] + (bias ? bias[j0 + j] : 0.0f) + (accumulate ? c[j] : 0.0f);
                c[j] = act == CDX_PACK_ACT_QUICK_GELU ? v / (1.0f + expf(-1.702f * v)) : v;
            }
        }
    }
}

typedef void (*panel_fn)(int, int, int, int, int, const float *, int, const float *,
                         const float *, int, int, float *, int);

typedef struct packed_job {
    panel_fn fn;
    int m, n, k, lda, ldc, act, accumulate, ng;
    const float *A, *P, *bias;
    float *C;
} packed_job;

/* work item w: panel w / ng, row group w % ng */
static void packed_item(void *arg, int w, int slot)
{
    const packed_job *j = arg;
    (void)slot;
    int p = w / j->ng, g = w % j->ng;
    int r0 = g * RG, r1 = r0 + RG < j->m ? r0 + RG : j->m;
    j->fn(r0, r1, p, j->n, j->k, j->A, j->lda, j->P, j->bias, j->act, j->accumulate, j->C, j->ldc);
}

void cdx_gemm_packed(int m, int n, int k, const float *A, int lda, const float *P,
                     const float *bias, int act, int accumulate, float *C, int ldc, int fast)
{
    if (m <= 0 || n <= 0 || k <= 0) return;
    if (!fast) {
        packed_reference(m, n, k, A, lda, P, bias, act, accumulate, C, ldc);
        return;
    }
    const cdx_isa isa = cdx_cpu_level();
    packed_job j = {isa >= CDX_ISA_AVX512 ? panel_rows
                    : isa == CDX_ISA_AVX2 ? panel_rows_avx2
                                          : panel_rows_scalar,
                    m, n, k, lda, ldc, act, accumulate, (m + RG - 1) / RG, A, P, bias, C};
    const int items = (n + NR - 1) / NR * j.ng;
    /* the claim-counter pool (common/pool.h), not an OpenMP team: a thread
     * that is not running never holds up the call */
    cdx_par_for(items, (long)n * k > 65536 ? cdx_par_threads() : 1, packed_item, &j);
}
