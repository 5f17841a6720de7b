/*
 * ops.c - reference, AVX-512 and AVX2 implementations of ops.h.
 *
 * The AVX-512 exp (simd_math.h) is the Cephes expf scheme (range reduction by ln 2 split
 * in two constants, degree-6 polynomial, 2^n by vscalefps): ~1 ulp, so the
 * fast kernels agree with the libm reference to ~1e-7 relative.  Workload:
 * per image of ViT-B/32, 12 x 50 x 3072 quick_gelu values, 12 x 12 x 50 x 50
 * softmax entries and 25 LayerNorm rows of 768 per layer - small next to the
 * GEMMs but far too slow with scalar libm expf at batch 32.
 *
 * The AVX2 + FMA versions follow the AVX-512 ones line by line with 8 lanes
 * and maskload/maskstore tails (exp256: simd_math.h).  The level comes from
 * cdx_cpu_level() (common/cpu.h) at each call.
 */
#include "clip/ops.h"
#include "clip/simd_math.h"
#include "clip/gemm.h"
#include "common/cpu.h"
#include "common/pool.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

int cdx_ops_have_avx512(void)
{
    return cdx_cpu_level() >= CDX_ISA_AVX512;
}

int cdx_ops_level(void)
{
    return (int)cdx_cpu_level();
}

#define PAR_MIN_WORK 32768L   /* elements below which a kernel stays serial */

/* ------------------------------------------------------------ reference */

static void layernorm_ref(const float *x, float *y, int dim, const float *g,
                          const float *b, float eps)
{
    double s = 0;
    for (int i = 0; i < dim; i++) s += x[i];
    double mean = s / dim, v = 0;
    for (int i = 0; i < dim; i++) v += ((double)x[i] - mean) * ((double)x[i] - mean);
    double rstd = 1.0 / sqrt(v / dim + (double)eps);
    for (int i = 0; i < dim; i++) y[i] = (float)(((double)x[i] - mean) * rstd * g[i] + b[i]);
}

static float act_ref(float v, cdx_epilogue act)
{
    switch (act) {
    case CDX_EPI_QUICK_GELU: return v / (1.0f + expf(-1.702f * v));
    case CDX_EPI_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return v;
    }
}

static void softmax_ref(float *s, int valid, int n)
{
    float mx = s[0];
    for (int j = 1; j < valid; j++) mx = s[j] > mx ? s[j] : mx;
    double sum = 0;
    for (int j = 0; j < valid; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    for (int j = 0; j < valid; j++) s[j] = (float)(s[j] / sum);
    for (int j = valid; j < n; j++) s[j] = 0.0f;
}

/* ------------------------------------------------------------ AVX-512 */

#define AVX512 __attribute__((target("avx512f")))

static inline __mmask16 tail_mask(int left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

AVX512 static void layernorm_avx512(const float *x, float *y, int dim, const float *g,
                                    const float *b, float eps)
{
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < dim; i += 16)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail_mask(dim - i), x + i));
    float mean = _mm512_reduce_add_ps(acc) / (float)dim;
    __m512 vm = _mm512_set1_ps(mean);
    acc = _mm512_setzero_ps();
    for (int i = 0; i < dim; i += 16) {
        __mmask16 k = tail_mask(dim - i);
        __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), vm);
        acc = _mm512_fmadd_ps(d, d, acc);
    }
    float rstd = 1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)dim + eps);
    __m512 vr = _mm512_set1_ps(rstd);
    for (int i = 0; i < dim; i += 16) {
        __mmask16 k = tail_mask(dim - i);
        __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), vr);
        __m512 o = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(k, g + i), _mm512_maskz_loadu_ps(k, b + i));
        _mm512_mask_storeu_ps(y + i, k, o);
    }
}

AVX512 static void bias_act_avx512(float *c, int n, const float *bias, cdx_epilogue act)
{
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        __m512 v = _mm512_maskz_loadu_ps(k, c + j);
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + j));
        if (act == CDX_EPI_QUICK_GELU) {
            v = cdx_quick_gelu512(v);
        }
        _mm512_mask_storeu_ps(c + j, k, v);
    }
}

AVX512 static void softmax_avx512(float *s, int valid, int n)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < valid; j += 16)
        vmax = _mm512_mask_max_ps(vmax, tail_mask(valid - j), vmax,
                                  _mm512_maskz_loadu_ps(tail_mask(valid - j), s + j));
    __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 acc = _mm512_setzero_ps();
    for (int j = 0; j < valid; j += 16) {
        __mmask16 k = tail_mask(valid - j);
        __m512 e = _mm512_maskz_mov_ps(k, cdx_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), vm)));
        acc = _mm512_add_ps(acc, e);
        _mm512_mask_storeu_ps(s + j, k, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
    for (int j = 0; j < valid; j += 16) {
        __mmask16 k = tail_mask(valid - j);
        _mm512_mask_storeu_ps(s + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), inv));
    }
    for (int j = valid; j < n; j++) s[j] = 0.0f;
}

/* ------------------------------------------------------------ AVX2 */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

AVX2 static inline float hmax256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

AVX2 static void layernorm_avx2(const float *x, float *y, int dim, const float *g,
                                const float *b, float eps)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= dim; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    __m256i tm = cdx_mask256(dim - i);
    if (i < dim) acc = _mm256_add_ps(acc, _mm256_maskload_ps(x + i, tm));
    float mean = hsum256(acc) / (float)dim;
    __m256 vm = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= dim; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    if (i < dim) {
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, tm), vm), _mm256_castsi256_ps(tm));
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    float rstd = 1.0f / sqrtf(hsum256(acc) / (float)dim + eps);
    __m256 vr = _mm256_set1_ps(rstd);
    for (i = 0; i + 8 <= dim; i += 8) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
    }
    if (i < dim) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, tm), vm), vr);
        __m256 o = _mm256_fmadd_ps(d, _mm256_maskload_ps(g + i, tm), _mm256_maskload_ps(b + i, tm));
        _mm256_maskstore_ps(y + i, tm, o);
    }
}

AVX2 static void bias_act_avx2(float *c, int n, const float *bias, cdx_epilogue act)
{
    for (int j = 0; j < n; j += 8) {
        __m256i k = cdx_mask256(n - j);
        int full = n - j >= 8;
        __m256 v = full ? _mm256_loadu_ps(c + j) : _mm256_maskload_ps(c + j, k);
        if (bias) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(bias + j) : _mm256_maskload_ps(bias + j, k));
        if (act == CDX_EPI_QUICK_GELU) v = cdx_quick_gelu256(v);
        if (full) _mm256_storeu_ps(c + j, v);
        else _mm256_maskstore_ps(c + j, k, v);
    }
}

AVX2 static void softmax_avx2(float *s, int valid, int n)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= valid; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    float mx = hmax256(vmax);
    for (int t = j; t < valid; t++) mx = s[t] > mx ? s[t] : mx;
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (j = 0; j + 8 <= valid; j += 8) {
        __m256 e = cdx_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        acc = _mm256_add_ps(acc, e);
        _mm256_storeu_ps(s + j, e);
    }
    if (j < valid) {
        __m256i k = cdx_mask256(valid - j);
        __m256 e = _mm256_and_ps(cdx_exp256(_mm256_sub_ps(_mm256_maskload_ps(s + j, k), vm)),
                                 _mm256_castsi256_ps(k));
        acc = _mm256_add_ps(acc, e);
        _mm256_maskstore_ps(s + j, k, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum256(acc));
    for (j = 0; j + 8 <= valid; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
    if (j < valid) {
        __m256i k = cdx_mask256(valid - j);
        _mm256_maskstore_ps(s + j, k, _mm256_mul_ps(_mm256_maskload_ps(s + j, k), inv));
    }
    for (j = valid; j < n; j++) s[j] = 0.0f;
}

/* ------------------------------------------------------------ dispatch */

/* Row-parallel driver: one call's arguments, rows split into items of
 * >= PAR_MIN_WORK / 4 elements claimed from the pool (common/pool.h);
 * small calls (and calls inside a parallel item) stay on this thread. */
typedef enum { OP_LN, OP_BIAS_ACT, OP_SOFTMAX } op_kind;

typedef struct op_job {
    op_kind kind;
    int v, rows, per, n;      /* level, rows, rows per item, row length */
    const float *x;           /* LN input */
    float *y;                 /* LN output / bias_act C / softmax S */
    int ldx, ldy;
    const float *g, *b;       /* LN gain/bias, or bias_act bias (b) */
    float eps;
    cdx_epilogue act;
    int causal, first_valid;
} op_job;

static void ln_row(int r, const float *x, int ldx, float *y, int ldy, int dim, const float *g,
                   const float *b, float eps, int v)
{
    const float *xr = x + (size_t)r * ldx;
    float *yr = y + (size_t)r * ldy;
    if (v >= CDX_ISA_AVX512) layernorm_avx512(xr, yr, dim, g, b, eps);
    else if (v == CDX_ISA_AVX2) layernorm_avx2(xr, yr, dim, g, b, eps);
    else layernorm_ref(xr, yr, dim, g, b, eps);
}

static void bias_act_row(float *c, int n, const float *bias, cdx_epilogue act, int v)
{
    if (v >= CDX_ISA_AVX512) {
        bias_act_avx512(c, n, bias, act);
    } else if (v == CDX_ISA_AVX2) {
        bias_act_avx2(c, n, bias, act);
    } else {
        for (int j = 0; j < n; j++) c[j] = act_ref(c[j] + (bias ? bias[j] : 0.0f), act);
    }
}

static void softmax_row(float *S, int lds, int r, int n, int causal, int first_valid, int v)
{
    int valid = n;
    if (causal) valid = first_valid + r < n ? first_valid + r : n;
    if (valid < 1) valid = 1;   /* a query always sees itself */
    float *s = S + (size_t)r * lds;
    if (v >= CDX_ISA_AVX512) softmax_avx512(s, valid, n);
    else if (v == CDX_ISA_AVX2) softmax_avx2(s, valid, n);
    else softmax_ref(s, valid, n);
}

static void op_item(void *arg, int item, int slot)
{
    const op_job *j = arg;
    (void)slot;
    int r0 = item * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    for (int r = r0; r < r1; r++) {
        switch (j->kind) {
        case OP_LN: ln_row(r, j->x, j->ldx, j->y, j->ldy, j->n, j->g, j->b, j->eps, j->v); break;
        case OP_BIAS_ACT: bias_act_row(j->y + (size_t)r * j->ldy, j->n, j->b, j->act, j->v); break;
        case OP_SOFTMAX: softmax_row(j->y, j->ldy, r, j->n, j->causal, j->first_valid, j->v); break;
        }
    }
}

static void op_run(op_job *j)
{
    long work = (long)j->rows * j->n;
    int threads = work > PAR_MIN_WORK ? cdx_par_threads() : 1;
    j->per = threads > 1 ? (int)((PAR_MIN_WORK / 4 + j->n - 1) / j->n) : j->rows;
    if (j->per < 1) j->per = 1;
    cdx_par_for((j->rows + j->per - 1) / j->per, threads, op_item, j);
}

void cdx_layernorm_rows(const float *x, int ldx, float *y, int ldy, int rows,
                   int dim, const float *g, const float *b, float eps, int fast)
{
    op_job j = {OP_LN, fast ? (int)cdx_cpu_level() : CDX_ISA_SCALAR, rows, 0, dim, x, y, ldx, ldy,
                g, b, eps, CDX_EPI_NONE, 0, 0};
    op_run(&j);
}

void cdx_bias_act(float *C, int ldc, int rows, int n, const float *bias,
                  cdx_epilogue act, int fast)
{
    if (!bias && act == CDX_EPI_NONE) return;
    /* exact GELU has no vector erf here: it uses the libm path either way
     * (no OpenAI/OpenCLIP ViT checkpoint in use needs it to be fast). */
    int v = fast && act != CDX_EPI_GELU ? (int)cdx_cpu_level() : CDX_ISA_SCALAR;
    op_job j = {OP_BIAS_ACT, v, rows, 0, n, NULL, C, 0, ldc, NULL, bias, 0.0f, act, 0, 0};
    op_run(&j);
}

void cdx_softmax_rows(float *S, int lds, int rows, int n, int causal,
                      int first_valid, int fast)
{
    op_job j = {OP_SOFTMAX, fast ? (int)cdx_cpu_level() : CDX_ISA_SCALAR, rows, 0, n, NULL, S, 0,
                lds, NULL, NULL, 0.0f, CDX_EPI_NONE, causal, first_valid};
    op_run(&j);
}
