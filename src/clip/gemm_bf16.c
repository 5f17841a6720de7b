/*
 * gemm_bf16.c - bf16 GEMM for Linear layers: C = act(A W^T + bias (+ C)),
 * A and W rounded to bfloat16 (round to nearest even), products summed in
 * float32 (the bf16 precision of docs/engine.md).
 *
 * Layout (made once per Linear at the first bf16 use): panels of 16 output
 * columns, k in pairs (k padded with zeros to an even count):
 *   P[((p * kh + h) * 16 + j) * 2 + t] = bf16(W[p*16 + j][2h + t]),  kh = kp / 2
 * so one k-pair of a panel is one zmm of 16 columns x 2 bf16, the operand
 * of vdpbf16ps (AVX512_BF16).  A bf16 weight file gives the same values as
 * its own (float32 of a bf16 is exact, and rounding it back returns it).
 *
 * Kernels: AVX512_BF16 (vdpbf16ps, tiles of 8 rows x 16 columns), run when
 * cdx_bf16_native(); the reference (plain C, float32 sums in k order) runs
 * otherwise - only reached under $CLIPDEX_PRECISION_EMULATE=1 or fast = 0,
 * since bf16 is refused on CPUs without AVX512_BF16 (precision.c).
 * Threads claim (panel group, row group) items from common/pool.h; nothing
 * allocates.
 */
#include "clip/gemm.h"
#include "clip/simd_math.h"
#include "common/cpu.h"
#include "common/pool.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define NB CDX_BF16_NR
#define RGB 96      /* rows per work item */
#define PGB 4       /* panels per work item */

int cdx_bf16_kpad(int k) { return (k + 1) & ~1; }

size_t cdx_bf16_pack_elems(int n, int k)
{
    if (n <= 0 || k <= 0) return 0;
    return (size_t)((n + NB - 1) / NB) * NB * (size_t)cdx_bf16_kpad(k);
}

uint16_t cdx_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))   /* NaN stays NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);   /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

static inline float bf2f(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void cdx_bf16_pack_weights(int n, int k, const float *W, int ldw, uint16_t *P)
{
    const int kh = cdx_bf16_kpad(k) / 2;
    memset(P, 0, cdx_bf16_pack_elems(n, k) * sizeof *P);
    for (int j = 0; j < n; j++) {
        uint16_t *dst = P + (size_t)(j / NB) * kh * NB * 2 + (size_t)(j % NB) * 2;
        for (int kk = 0; kk < k; kk++)
            dst[(size_t)(kk / 2) * NB * 2 + kk % 2] = cdx_bf16_round(W[(size_t)j * ldw + kk]);
    }
}

void cdx_bf16_convert_rows(int m, int k, const float *A, int lda, uint16_t *Q, int ldq)
{
    const int kp = cdx_bf16_kpad(k);
    for (int i = 0; i < m; i++) {
        for (int kk = 0; kk < k; kk++) Q[(size_t)i * ldq + kk] = cdx_bf16_round(A[(size_t)i * lda + kk]);
        for (int kk = k; kk < kp; kk++) Q[(size_t)i * ldq + kk] = 0;
    }
}

typedef struct bf_job {
    int m, n, k, ldq, ldc, act, accumulate, ng, np;
    const uint16_t *Q, *P;
    const float *bias;
    float *C;
} bf_job;

static inline float bf_out(float v, const bf_job *j, int c, const float *old)
{
    if (j->bias) v += j->bias[c];
    if (j->accumulate) v += *old;
    return j->act == CDX_PACK_ACT_QUICK_GELU ? v / (1.0f + expf(-1.702f * v)) : v;
}

/* reference: rows [r0,r1) x panel p, float32 sums in k order */
static void bf_panel_ref(const bf_job *j, int r0, int r1, int p)
{
    const int kh = cdx_bf16_kpad(j->k) / 2, c0 = p * NB, nc = j->n - c0 < NB ? j->n - c0 : NB;
    const uint16_t *Pp = j->P + (size_t)p * kh * NB * 2;
    for (int i = r0; i < r1; i++) {
        const uint16_t *q = j->Q + (size_t)i * j->ldq;
        float acc[NB] = {0};
        for (int h = 0; h < kh; h++) {
            float a0 = bf2f(q[2 * h]), a1 = bf2f(q[2 * h + 1]);
            const uint16_t *b = Pp + (size_t)h * NB * 2;
            for (int c = 0; c < NB; c++) acc[c] += a0 * bf2f(b[2 * c]) + a1 * bf2f(b[2 * c + 1]);
        }
        float *out = j->C + (size_t)i * j->ldc + c0;
        for (int c = 0; c < nc; c++) out[c] = bf_out(acc[c], j, c0 + c, out + c);
    }
}

/* ---- AVX512_BF16: vdpbf16ps, 8 rows x 16 columns (compiled everywhere,
 * run only where cdx_bf16_native()) */
#define BF16K __attribute__((target("avx512f,avx512bw,avx512bf16,avx2,fma")))
#define MRB 8

BF16K static inline __attribute__((always_inline)) void bf_tile(const bf_job *j, int mr, int i0, int p,
                                                                int kh)
{
    const int c0 = p * NB, nc = j->n - c0 < NB ? j->n - c0 : NB;
    const __mmask16 msk = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
    const uint16_t *Pp = j->P + (size_t)p * kh * NB * 2;
    __m512 acc[MRB];
    const uint16_t *a[MRB];
    for (int i = 0; i < mr; i++) {
        acc[i] = _mm512_setzero_ps();
        a[i] = j->Q + (size_t)(i0 + i) * j->ldq;
    }
    for (int h = 0; h < kh; h++) {
        __m512bh b = (__m512bh)_mm512_loadu_si512((const void *)(Pp + (size_t)h * NB * 2));
        _mm_prefetch((const char *)(Pp + (size_t)(h + 8) * NB * 2), _MM_HINT_T0);
        for (int i = 0; i < mr; i++) {
            int32_t av;
            memcpy(&av, a[i] + 2 * h, 4);
            acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)_mm512_set1_epi32(av), b);
        }
    }
    __m512 bv = j->bias ? _mm512_maskz_loadu_ps(msk, j->bias + c0) : _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        float *out = j->C + (size_t)(i0 + i) * j->ldc + c0;
        __m512 v = _mm512_add_ps(acc[i], bv);
        if (j->accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(msk, out));
        if (j->act == CDX_PACK_ACT_QUICK_GELU) v = cdx_quick_gelu512(v);
        _mm512_mask_storeu_ps(out, msk, v);
    }
}

typedef void (*bf_tile_fn)(const bf_job *, int, int, int);
#define BT(R) BF16K static void bf_tile_##R(const bf_job *j, int i0, int p, int kh) \
    { bf_tile(j, R, i0, p, kh); }
BT(1) BT(2) BT(3) BT(4) BT(5) BT(6) BT(7) BT(8)
static const bf_tile_fn bf_tiles[MRB + 1] = {NULL, bf_tile_1, bf_tile_2, bf_tile_3, bf_tile_4,
                                             bf_tile_5, bf_tile_6, bf_tile_7, bf_tile_8};

static void bf_panel_native(const bf_job *j, int r0, int r1, int p)
{
    const int kh = cdx_bf16_kpad(j->k) / 2;
    for (int i0 = r0; i0 < r1; i0 += MRB) bf_tiles[r1 - i0 < MRB ? r1 - i0 : MRB](j, i0, p, kh);
}

typedef void (*bf_panel_fn)(const bf_job *, int, int, int);

const char *cdx_bf16_kernel_name(void) { return cdx_bf16_native() ? "avx512_bf16" : "reference"; }

typedef struct bf_par {
    const bf_job *j;
    bf_panel_fn fn;
} bf_par;

static void bf_item(void *arg, int w, int slot)
{
    const bf_par *pp = arg;
    const bf_job *j = pp->j;
    (void)slot;
    int pg = w / j->ng, g = w % j->ng;
    int r0 = g * RGB, r1 = r0 + RGB < j->m ? r0 + RGB : j->m;
    int p1 = (pg + 1) * PGB < j->np ? (pg + 1) * PGB : j->np;
    for (int p = pg * PGB; p < p1; p++) pp->fn(j, r0, r1, p);
}

void cdx_gemm_bf16(int m, int n, int k, const uint16_t *Q, int ldq, const uint16_t *P,
                   const float *bias, int act, int accumulate, float *C, int ldc, int fast)
{
    if (m <= 0 || n <= 0 || k <= 0) return;
    bf_job j = {m, n, k, ldq, ldc, act, accumulate, (m + RGB - 1) / RGB, (n + NB - 1) / NB, Q, P, bias, C};
    bf_par pp = {&j, fast && cdx_bf16_native() ? bf_panel_native : bf_panel_ref};
    int items = (j.np + PGB - 1) / PGB * j.ng;
    cdx_par_for(items, (long)n * k > 65536 ? cdx_par_threads() : 1, bf_item, &pp);
}
