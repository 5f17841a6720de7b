/*
 * grad.c - forward-with-saved-state and backward kernels (grad.h).
 *
 * Written for clarity first: sums are accumulated in double, reductions
 * over rows (bias, LayerNorm gain gradients) run over blocks of columns so
 * each thread reads contiguous row segments.  The cost of a training step is
 * dominated by the GEMMs, which go through gemm.h like the forward pass.
 */
#include "train/grad.h"
#include "clip/simd_math.h"
#include "common/cpu.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define PAR_MIN 32768L   /* elements below which a loop stays serial */
#define COL_BLOCK 64

void cdx_grad_linear_fwd(cdx_gemm_backend be, int M, int in, int out, const float *X,
                         const float *W, const float *b, float *Y)
{
    cdx_gemm(be, M, out, in, 1.0f, X, in, W, in, 1, 0.0f, b, Y, out);
}

/* acc[j] += sum over rows of A[r, j] for j < n (A has row stride lda). */
static void column_sums(int rows, int n, const float *A, int lda, float *acc)
{
    int nb = (n + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((long)rows * n > PAR_MIN)
    for (int blk = 0; blk < nb; blk++) {
        int j0 = blk * COL_BLOCK, j1 = j0 + COL_BLOCK < n ? j0 + COL_BLOCK : n;
        double s[COL_BLOCK] = {0};
        for (int r = 0; r < rows; r++) {
            const float *a = A + (size_t)r * lda;
            for (int j = j0; j < j1; j++) s[j - j0] += a[j];
        }
        for (int j = j0; j < j1; j++) acc[j] += (float)s[j - j0];
    }
}

void cdx_grad_linear_bwd(cdx_gemm_backend be, int M, int in, int out, const float *X,
                         const float *W, const float *dY, float *dX, int dx_accumulate,
                         float *dW, float *db)
{
    if (dX)   /* dX[M,in] = dY[M,out] W[out,in] */
        cdx_gemm(be, M, in, out, 1.0f, dY, out, W, in, 0, dx_accumulate ? 1.0f : 0.0f, NULL, dX, in);
    if (dW)   /* dW[out,in] += dY^T X */
        cdx_gemm_ta(be, out, in, M, 1.0f, dY, out, X, in, 0, 1.0f, dW, in);
    if (db) column_sums(M, out, dY, out, db);
}

void cdx_grad_layernorm_fwd(int rows, int dim, const float *x, const float *g, const float *b,
                            float eps, float *y, float *mu, float *rstd)
{
#pragma omp parallel for schedule(static) if ((long)rows * dim > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double s = 0, v = 0;
        for (int i = 0; i < dim; i++) s += xr[i];
        double mean = s / dim;
        for (int i = 0; i < dim; i++) v += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        double rs = 1.0 / sqrt(v / dim + (double)eps);
        float m = (float)mean, q = (float)rs;
        for (int i = 0; i < dim; i++) yr[i] = (xr[i] - m) * q * g[i] + b[i];
        mu[r] = m;
        rstd[r] = q;
    }
}

void cdx_grad_layernorm_bwd(int rows, int dim, const float *x, const float *g, const float *mu,
                            const float *rstd, const float *dy, float *dx, int dx_accumulate,
                            float *dg, float *db)
{
    const int nb = dg || db ? (dim + COL_BLOCK - 1) / COL_BLOCK : 0;
    /* one parallel region for both loops (each region is a join of every
     * thread: costly when the machine is shared) */
#pragma omp parallel if ((long)rows * dim > PAR_MIN)
    {
        if (dx) {
#pragma omp for schedule(static) nowait
            for (int r = 0; r < rows; r++) {
                const float *xr = x + (size_t)r * dim, *dyr = dy + (size_t)r * dim;
                float *dxr = dx + (size_t)r * dim;
                double m1 = 0, m2 = 0;
                for (int i = 0; i < dim; i++) {
                    double xh = ((double)xr[i] - mu[r]) * rstd[r], d = (double)dyr[i] * g[i];
                    m1 += d;
                    m2 += d * xh;
                }
                m1 /= dim;
                m2 /= dim;
                for (int i = 0; i < dim; i++) {
                    double xh = ((double)xr[i] - mu[r]) * rstd[r], d = (double)dyr[i] * g[i];
                    float v = (float)(rstd[r] * (d - m1 - xh * m2));
                    dxr[i] = dx_accumulate ? dxr[i] + v : v;
                }
            }
        }
#pragma omp for schedule(static) nowait
        for (int blk = 0; blk < nb; blk++) {
            int j0 = blk * COL_BLOCK, j1 = j0 + COL_BLOCK < dim ? j0 + COL_BLOCK : dim;
            double sg[COL_BLOCK] = {0}, sb[COL_BLOCK] = {0};
            for (int r = 0; r < rows; r++) {
                const float *xr = x + (size_t)r * dim, *dyr = dy + (size_t)r * dim;
                for (int j = j0; j < j1; j++) {
                    sg[j - j0] += (double)dyr[j] * (((double)xr[j] - mu[r]) * rstd[r]);
                    sb[j - j0] += dyr[j];
                }
            }
            for (int j = j0; j < j1; j++) {
                if (dg) dg[j] += (float)sg[j - j0];
                if (db) db[j] += (float)sb[j - j0];
            }
        }
    }
}

#define AVX2 __attribute__((target("avx2,fma")))

/* quick_gelu'(x) = s + 1.702 x s (1 - s), s = sigmoid(1.702 x), in float
 * with the ~1 ulp exp of simd_math.h; elements [i0, i1). */
AVX2 static void quick_gelu_bwd_avx2(size_t i0, size_t i1, const float *h, float *dh)
{
    const __m256 one = _mm256_set1_ps(1.0f), k = _mm256_set1_ps(1.702f), mk = _mm256_set1_ps(-1.702f);
    size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        __m256 x = _mm256_loadu_ps(h + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, cdx_exp256(_mm256_mul_ps(x, mk))));
        __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(k, x), s), _mm256_sub_ps(one, s), s);
        _mm256_storeu_ps(dh + i, _mm256_mul_ps(_mm256_loadu_ps(dh + i), d));
    }
    for (; i < i1; i++) {
        float s = 1.0f / (1.0f + expf(-1.702f * h[i]));
        dh[i] *= s + 1.702f * h[i] * s * (1.0f - s);
    }
}

void cdx_grad_act_bwd(cdx_epilogue act, size_t n, const float *h, float *dh)
{
    if (act == CDX_EPI_QUICK_GELU && cdx_cpu_level() >= CDX_ISA_AVX2) {
        const long blocks = (long)((n + 4095) / 4096);
#pragma omp parallel for schedule(static) if ((long)n > PAR_MIN)
        for (long b = 0; b < blocks; b++) {
            size_t i0 = (size_t)b * 4096, i1 = i0 + 4096 < n ? i0 + 4096 : n;
            quick_gelu_bwd_avx2(i0, i1, h, dh);
        }
        return;
    }
#pragma omp parallel for schedule(static) if ((long)n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        double x = h[i], d;
        if (act == CDX_EPI_QUICK_GELU) {
            double s = 1.0 / (1.0 + exp(-1.702 * x));
            d = s + 1.702 * x * s * (1.0 - s);
        } else if (act == CDX_EPI_GELU) {
            d = 0.5 * (1.0 + erf(x * 0.70710678118654752)) + x * exp(-0.5 * x * x) * 0.39894228040143268;
        } else {
            d = 1.0;
        }
        dh[i] = (float)(dh[i] * d);
    }
}

size_t cdx_grad_attention_saved(const cdx_grad_seqs *sq, int heads)
{
    size_t n = 0;
    for (int s = 0; s < sq->n; s++) n += (size_t)heads * sq->len[s] * sq->len[s];
    return n;
}

/* offset of sequence s's probabilities */
static size_t p_offset(const cdx_grad_seqs *sq, int heads, int s)
{
    size_t o = 0;
    for (int i = 0; i < s; i++) o += (size_t)heads * sq->len[i] * sq->len[i];
    return o;
}

void cdx_grad_attention_fwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, int W, int heads,
                            const float *qkv, float *P, float *out)
{
    const int dh = W / heads, ld = 3 * W, tasks = sq->n * heads;
    const float scale = 1.0f / sqrtf((float)dh);
    const int fast = be != CDX_GEMM_BE_REFERENCE;
#pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < tasks; task++) {
        int s = task / heads, hd = task % heads, L = sq->len[s];
        const float *q = qkv + (size_t)sq->off[s] * ld + (size_t)hd * dh;
        float *Ps = P + p_offset(sq, heads, s) + (size_t)hd * L * L;
        cdx_gemm(be, L, L, dh, scale, q, ld, q + W, ld, 1, 0.0f, NULL, Ps, L);
        cdx_softmax_rows(Ps, L, L, L, sq->causal, 1, fast);
        cdx_gemm(be, L, dh, L, 1.0f, Ps, L, q + 2 * W, ld, 0, 0.0f, NULL,
                 out + (size_t)sq->off[s] * W + (size_t)hd * dh, W);
    }
}

void cdx_grad_attention_bwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, int W, int heads,
                            const float *qkv, const float *P, const float *dout, float *dqkv,
                            float *scratch)
{
    const int dh = W / heads, ld = 3 * W, tasks = sq->n * heads;
    const float scale = 1.0f / sqrtf((float)dh);
    int lmax = 0;
    for (int s = 0; s < sq->n; s++) lmax = sq->len[s] > lmax ? sq->len[s] : lmax;
#pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < tasks; task++) {
        int s = task / heads, hd = task % heads, L = sq->len[s];
        size_t row0 = (size_t)sq->off[s];
        const float *q = qkv + row0 * ld + (size_t)hd * dh, *k = q + W, *v = q + 2 * W;
        const float *Ps = P + p_offset(sq, heads, s) + (size_t)hd * L * L;
        const float *dO = dout + row0 * W + (size_t)hd * dh;
        float *dq = dqkv + row0 * ld + (size_t)hd * dh, *dk = dq + W, *dv = dq + 2 * W;
        float *dS = scratch + (size_t)omp_get_thread_num() * lmax * lmax;
        cdx_gemm_ta(be, L, dh, L, 1.0f, Ps, L, dO, W, 0, 0.0f, dv, ld);      /* dV = P^T dO */
        cdx_gemm(be, L, L, dh, 1.0f, dO, W, v, ld, 1, 0.0f, NULL, dS, L);    /* dP = dO V^T */
        for (int i = 0; i < L; i++) {   /* dS = P * (dP - rowsum(P * dP)) * scale */
            const float *pr = Ps + (size_t)i * L;
            float *d = dS + (size_t)i * L;
            double dot = 0;
            for (int j = 0; j < L; j++) dot += (double)pr[j] * d[j];
            for (int j = 0; j < L; j++) d[j] = (float)(pr[j] * (d[j] - dot) * scale);
        }
        cdx_gemm(be, L, dh, L, 1.0f, dS, L, k, ld, 0, 0.0f, NULL, dq, ld);   /* dQ = dS K */
        cdx_gemm_ta(be, L, dh, L, 1.0f, dS, L, q, ld, 0, 0.0f, dk, ld);      /* dK = dS^T Q */
    }
}

size_t cdx_grad_attention_pooled_saved(const cdx_grad_seqs *sq, int heads)
{
    size_t n = 0;
    for (int s = 0; s < sq->n; s++) n += (size_t)heads * sq->len[s];
    return n;
}

static size_t p1_offset(const cdx_grad_seqs *sq, int heads, int s)
{
    size_t o = 0;
    for (int i = 0; i < s; i++) o += (size_t)heads * sq->len[i];
    return o;
}

void cdx_grad_attention_pooled_fwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, const int *pool, int W,
                                   int heads, const float *qkv, float *P1, float *out)
{
    const int dh = W / heads, ld = 3 * W, tasks = sq->n * heads;
    const float scale = 1.0f / sqrtf((float)dh);
    const int fast = be != CDX_GEMM_BE_REFERENCE;
#pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < tasks; task++) {
        int s = task / heads, hd = task % heads, L = sq->len[s];
        const float *base = qkv + (size_t)sq->off[s] * ld + (size_t)hd * dh;
        float *p = P1 + p1_offset(sq, heads, s) + (size_t)hd * L;
        cdx_gemm(be, 1, L, dh, scale, base + (size_t)pool[s] * ld, ld, base + W, ld, 1, 0.0f, NULL, p, L);
        cdx_softmax_rows(p, L, 1, L, 0, L, fast);
        cdx_gemm(be, 1, dh, L, 1.0f, p, L, base + 2 * W, ld, 0, 0.0f, NULL, out + (size_t)s * W + (size_t)hd * dh, W);
    }
}

void cdx_grad_attention_pooled_bwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, const int *pool, int W,
                                   int heads, const float *qkv, const float *P1, const float *dout,
                                   float *dq_out, float *dkv, float *scratch)
{
    const int dh = W / heads, ld = 3 * W, tasks = sq->n * heads;
    const float scale = 1.0f / sqrtf((float)dh);
    int lmax = 0;
    for (int s = 0; s < sq->n; s++) lmax = sq->len[s] > lmax ? sq->len[s] : lmax;
#pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < tasks; task++) {
        int s = task / heads, hd = task % heads, L = sq->len[s];
        size_t row0 = (size_t)sq->off[s];
        const float *q = qkv + (row0 + (size_t)pool[s]) * ld + (size_t)hd * dh;
        const float *k = qkv + row0 * ld + W + (size_t)hd * dh, *v = k + W;
        const float *p = P1 + p1_offset(sq, heads, s) + (size_t)hd * L;
        const float *dO = dout + (size_t)s * W + (size_t)hd * dh;
        float *dq = dq_out + (size_t)s * W + (size_t)hd * dh;
        float *dk = dkv + row0 * 2 * W + (size_t)hd * dh, *dv = dk + W;
        float *ds = scratch + (size_t)omp_get_thread_num() * lmax;
        cdx_gemm_ta(be, L, dh, 1, 1.0f, p, L, dO, W, 0, 0.0f, dv, 2 * W);  /* dV = p^T dO */
        cdx_gemm(be, 1, L, dh, 1.0f, dO, W, v, ld, 1, 0.0f, NULL, ds, L);  /* dp = dO V^T */
        double dot = 0;
        for (int j = 0; j < L; j++) dot += (double)p[j] * ds[j];
        for (int j = 0; j < L; j++) ds[j] = (float)(p[j] * (ds[j] - dot) * scale);
        cdx_gemm(be, 1, dh, L, 1.0f, ds, L, k, ld, 0, 0.0f, NULL, dq, W);   /* dq = ds K */
        cdx_gemm_ta(be, L, dh, 1, 1.0f, ds, L, q, ld, 0, 0.0f, dk, 2 * W);  /* dK = ds^T q */
    }
}

/* rows of x [n, E] divided by their L2 norm into y; norms into nrm */
static void l2_rows(int n, int E, const float *x, float *y, float *nrm)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < E; j++) s += (double)x[(size_t)i * E + j] * x[(size_t)i * E + j];
        nrm[i] = (float)sqrt(s);
        for (int j = 0; j < E; j++) y[(size_t)i * E + j] = (float)(x[(size_t)i * E + j] / sqrt(s));
    }
}

/* dx = (dy - y (y . dy)) / ||x|| per row */
static void l2_rows_bwd(int n, int E, const float *y, const float *nrm, const float *dy, float *dx)
{
    for (int i = 0; i < n; i++) {
        const float *yr = y + (size_t)i * E, *dyr = dy + (size_t)i * E;
        double dot = 0;
        for (int j = 0; j < E; j++) dot += (double)yr[j] * dyr[j];
        for (int j = 0; j < E; j++) dx[(size_t)i * E + j] = (float)((dyr[j] - yr[j] * dot) / nrm[i]);
    }
}

/* log-sum-exp of n values at stride st, and the softmax into p (stride st) */
static double lse_softmax(int n, const float *x, size_t st, float *p)
{
    double mx = x[0], s = 0;
    for (int j = 1; j < n; j++) mx = x[j * st] > mx ? x[j * st] : mx;
    for (int j = 0; j < n; j++) s += exp(x[j * st] - mx);
    for (int j = 0; j < n; j++) p[j * st] = (float)(exp(x[j * st] - mx) / s);
    return mx + log(s);
}

double cdx_grad_clip_loss(int n, int E, const float *img, const float *txt, float logit_scale,
                          float *logits, float *dimg, float *dtxt, float *dscale, float *scratch)
{
    const size_t nE = (size_t)n * E, nn = (size_t)n * n;
    float *in = scratch, *tn = in + nE, *din = tn + nE, *dtn = din + nE;
    float *L = dtn + nE, *Pr = L + nn, *Pc = Pr + nn, *ni = Pc + nn, *nt = ni + n;
    l2_rows(n, E, img, in, ni);
    l2_rows(n, E, txt, tn, nt);
    const float s = expf(logit_scale);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double d = 0;
            for (int e = 0; e < E; e++) d += (double)in[(size_t)i * E + e] * tn[(size_t)j * E + e];
            L[(size_t)i * n + j] = s * (float)d;
        }
    if (logits) memcpy(logits, L, nn * sizeof(float));
    double loss = 0;
    for (int i = 0; i < n; i++)   /* image -> caption: rows */
        loss += lse_softmax(n, L + (size_t)i * n, 1, Pr + (size_t)i * n) - L[(size_t)i * n + i];
    for (int j = 0; j < n; j++)   /* caption -> image: columns */
        loss += lse_softmax(n, L + j, (size_t)n, Pc + j) - L[(size_t)j * n + j];
    loss /= 2.0 * n;
    if (!dimg || !dtxt || !dscale) return loss;
    /* dLogits = (softmax_rows + softmax_cols - 2 I) / (2n), into Pr */
    const double inv2n = 1.0 / (2.0 * n);
    double ds = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            size_t k = (size_t)i * n + j;
            Pr[k] = (float)(((double)Pr[k] + Pc[k] - (i == j ? 2.0 : 0.0)) * inv2n);
            ds += (double)Pr[k] * L[k];   /* d(s x)/d log s = s x = the logit */
        }
    *dscale = (float)ds;
    for (int i = 0; i < n; i++)   /* d in = s dL tn ; d tn = s dL^T in */
        for (int e = 0; e < E; e++) {
            double a = 0, b = 0;
            for (int j = 0; j < n; j++) {
                a += (double)Pr[(size_t)i * n + j] * tn[(size_t)j * E + e];
                b += (double)Pr[(size_t)j * n + i] * in[(size_t)j * E + e];
            }
            din[(size_t)i * E + e] = (float)(s * a);
            dtn[(size_t)i * E + e] = (float)(s * b);
        }
    l2_rows_bwd(n, E, in, ni, din, dimg);
    l2_rows_bwd(n, E, tn, nt, dtn, dtxt);
    return loss;
}

/* One AdamW update of elements [i0, i1) (the float operations in the order
 * of trainer.c's formula; the vector path uses plain multiplies and adds, no
 * FMA, and correctly rounded sqrt and division, so both paths agree bit for
 * bit). */
static void adamw_scalar(size_t i0, size_t i1, float *w, const float *g, float *m, float *v,
                         const cdx_grad_adamw_k *k)
{
    for (size_t i = i0; i < i1; i++) {
        float x = w[i] * k->decay;
        m[i] = m[i] * k->b1 + k->a1 * g[i];
        v[i] = v[i] * k->b2 + k->a2 * g[i] * g[i];
        float den = sqrtf(v[i]) / k->bc2s + k->eps;
        w[i] = x + -k->step * (m[i] / den);
    }
}

AVX2 static void adamw_avx2(size_t i0, size_t i1, float *w, const float *g, float *m, float *v,
                            const cdx_grad_adamw_k *k)
{
    const __m256 decay = _mm256_set1_ps(k->decay), b1 = _mm256_set1_ps(k->b1), a1 = _mm256_set1_ps(k->a1),
                 b2 = _mm256_set1_ps(k->b2), a2 = _mm256_set1_ps(k->a2), bc2s = _mm256_set1_ps(k->bc2s),
                 eps = _mm256_set1_ps(k->eps), nstep = _mm256_set1_ps(-k->step);
    size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 x = _mm256_mul_ps(_mm256_loadu_ps(w + i), decay);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(a1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2),
                                  _mm256_mul_ps(_mm256_mul_ps(a2, gi), gi));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2s), eps);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(w + i, _mm256_add_ps(x, _mm256_mul_ps(nstep, _mm256_div_ps(mi, den))));
    }
    adamw_scalar(i, i1, w, g, m, v, k);
}

void cdx_grad_adamw(size_t n, float *w, const float *g, float *m, float *v, const cdx_grad_adamw_k *k,
                    int fast)
{
    /* called inside the trainer's one parallel region: share the elements */
    const int avx2 = fast && cdx_cpu_level() >= CDX_ISA_AVX2;
    const long blocks = (long)((n + 8191) / 8192);
#pragma omp for schedule(static) nowait
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * 8192, i1 = i0 + 8192 < n ? i0 + 8192 : n;
        if (avx2) adamw_avx2(i0, i1, w, g, m, v, k);
        else adamw_scalar(i0, i1, w, g, m, v, k);
    }
}
