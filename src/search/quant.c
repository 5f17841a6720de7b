/*
 * quant.c - encoders, query preparation and the PCA fit for compressed
 * vectors (see quant.h).
 *
 * The PCA fit forms the covariance of at most max_samples centred rows with
 * one BLAS ssyrk and decomposes it with LAPACK's ssyevd (both from OpenBLAS):
 * dim^2 * samples flops, ~1 s for 512 dims and 50k samples on 2 cores.
 */
#include "search/quant.h"
#include "common/error.h"
#include "common/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef CDX_HAVE_OPENBLAS
#include <cblas.h>
/* LAPACK (in OpenBLAS), Fortran calling convention. */
extern void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
                    float *w, float *work, const int *lwork, int *iwork, const int *liwork,
                    int *info);
#endif

const char *quant_kind_name(quant_kind k)
{
    return k == QUANT_I8 ? "int8" : k == QUANT_BIT ? "bit" : "?";
}

size_t quant_code_bytes(quant_kind kind, int pdim)
{
    size_t d = (size_t)pdim;
    if (kind == QUANT_BIT) return (d + QUANT_PAD * 8 - 1) / (QUANT_PAD * 8) * QUANT_PAD;
    return (d + QUANT_PAD - 1) / QUANT_PAD * QUANT_PAD;
}

/* ---------------------------------------------------------------- model */

void quant_model_free(quant_model *m)
{
    if (!m) return;
    free(m->mean);
    free(m->proj);
    free(m->signs);
    free(m);
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static cdx_result model_alloc(int dim, int pdim, int with_proj, int rotate, quant_model **out)
{
    if (dim < 1 || dim > QUANT_MAX_DIM || pdim < 1 || pdim > dim || (!with_proj && pdim != dim))
        return cdx_error(CDX_ERR_INVALID_ARG, "quant: bad dimensions %d -> %d", dim, pdim);
    quant_model *m = calloc(1, sizeof *m);
    if (!m) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    m->dim = dim;
    m->pdim = pdim;
    m->rotate = rotate ? 1 : 0;
    m->cdim = pdim;
    if (rotate)
        while (m->cdim & (m->cdim - 1)) m->cdim += m->cdim & -m->cdim;   /* next power of two */
    m->mean = calloc((size_t)dim, sizeof(float));
    if (with_proj) m->proj = calloc((size_t)pdim * (size_t)dim, sizeof(float));
    if (rotate) m->signs = malloc(3 * (size_t)m->cdim * sizeof(float));
    if (!m->mean || (with_proj && !m->proj) || (rotate && !m->signs)) {
        quant_model_free(m);
        return cdx_error(CDX_ERR_NOMEM, "out of memory for a %d x %d projection", pdim, dim);
    }
    for (size_t i = 0; rotate && i < 3 * (size_t)m->cdim; i++)
        m->signs[i] = (mix64(0xC0DE5EED00000000ull + i) >> 63) ? -1.0f : 1.0f;
    *out = m;
    return CDX_OK;
}

cdx_result quant_model_new(int dim, int pdim, int rotate, const float *mean, const float *proj,
                           quant_model **out)
{
    quant_model *m = NULL;
    cdx_result r = model_alloc(dim, pdim, proj != NULL, rotate, &m);
    if (r) return r;
    size_t np = proj ? (size_t)pdim * (size_t)dim : 0;
    for (int i = 0; i < dim; i++)
        if (!isfinite(mean[i])) goto bad;
    for (size_t i = 0; i < np; i++)
        if (!isfinite(proj[i])) goto bad;
    memcpy(m->mean, mean, (size_t)dim * sizeof(float));
    if (np) memcpy(m->proj, proj, np * sizeof(float));
    *out = m;
    return CDX_OK;
bad:
    quant_model_free(m);
    return cdx_error(CDX_ERR_FORMAT, "quant: model has a non-finite value");
}

#ifdef CDX_HAVE_OPENBLAS
/* proj <- top-pdim eigenvectors of the covariance of the n centred rows X. */
static cdx_result fit_pca(const float *X, size_t n, int dim, int pdim, float *proj)
{
    size_t dd = (size_t)dim * (size_t)dim;
    float *C = malloc(dd * sizeof *C), *w = malloc((size_t)dim * sizeof *w);
    float wq;
    int iwq, info = 0, lwork = -1, liwork = -1;
    cdx_result r = CDX_OK;
    if (!C || !w) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory for a %d x %d covariance", dim, dim);
        goto out;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, (int)n, 1.0f / (float)n, X, dim,
                0.0f, C, dim);
    for (int i = 0; i < dim; i++)          /* mirror the upper triangle */
        for (int j = 0; j < i; j++) C[(size_t)i * dim + j] = C[(size_t)j * dim + i];
    ssyevd_("V", "U", &dim, C, &dim, w, &wq, &lwork, &iwq, &liwork, &info);
    if (info != 0) {
        r = cdx_error(CDX_ERR_INTERNAL, "quant: ssyevd workspace query failed (%d)", info);
        goto out;
    }
    lwork = (int)wq + 1;
    liwork = iwq;
    float *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (work && iwork) ssyevd_("V", "U", &dim, C, &dim, w, work, &lwork, iwork, &liwork, &info);
    free(work);
    free(iwork);
    if (!work || !iwork) r = cdx_error(CDX_ERR_NOMEM, "out of memory for the eigen solver");
    else if (info != 0) r = cdx_error(CDX_ERR_INTERNAL, "quant: ssyevd failed (%d)", info);
    /* Column-major eigenvectors, ascending eigenvalues: vector j is the
     * contiguous run C + j*dim.  Projection row p = the p-th largest. */
    for (int p = 0; !r && p < pdim; p++)
        memcpy(proj + (size_t)p * dim, C + (size_t)(dim - 1 - p) * dim, (size_t)dim * sizeof(float));
out:
    free(C);
    free(w);
    return r;
}
#endif

cdx_result quant_model_fit(const cdx_rows *src, uint64_t max_samples, int pdim, int rotate,
                           quant_model **out)
{
    int dim = src->dim;
    int use_pca = pdim > 0 && pdim < dim;
    if (src->count == 0) return cdx_error(CDX_ERR_INVALID_ARG, "quant: no rows to fit on");
#ifndef CDX_HAVE_OPENBLAS
    if (use_pca) return cdx_error(CDX_ERR_UNSUPPORTED, "PCA needs OpenBLAS (LAPACK), absent from this build");
#endif
    quant_model *m = NULL;
    cdx_result r = model_alloc(dim, use_pca ? pdim : dim, use_pca, rotate, &m);
    if (r) return r;
    uint64_t n = src->count < max_samples ? src->count : max_samples;
    if (n == 0) n = 1;
    double *acc = calloc((size_t)dim, sizeof *acc);
    if (!acc) {
        quant_model_free(m);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < n; i++) {
        const float *x = cdx_rows_at(src, i * src->count / n);
        for (int d = 0; d < dim; d++) acc[d] += x[d];
    }
    for (int d = 0; d < dim; d++) m->mean[d] = (float)(acc[d] / (double)n);
    free(acc);
#ifdef CDX_HAVE_OPENBLAS
    if (use_pca) {
        size_t cells;
        float *X = NULL;
        if (cdx_mul_ok((size_t)n, (size_t)dim, &cells)) X = malloc(cells * sizeof *X);
        if (!X) {
            quant_model_free(m);
            return cdx_error(CDX_ERR_NOMEM, "out of memory for %llu PCA samples", (unsigned long long)n);
        }
        for (uint64_t i = 0; i < n; i++) {
            const float *x = cdx_rows_at(src, i * src->count / n);
            for (int d = 0; d < dim; d++) X[i * (size_t)dim + d] = x[d] - m->mean[d];
        }
        r = fit_pca(X, (size_t)n, dim, pdim, m->proj);
        free(X);
        if (r) {
            quant_model_free(m);
            return r;
        }
    }
#endif
    *out = m;
    return CDX_OK;
}

/* ---------------------------------------------------------------- encode */

/* Round half away from zero, inline (lrintf is a libm call without
 * -fno-math-errno, and encoding calls it once per coded dimension). */
static inline long round_near(float v)
{
    return (long)(v >= 0.0f ? v + 0.5f : v - 0.5f);
}

void quant_fwht(float *v, int n)
{
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
}

/* v (cdim floats, zero beyond pdim) <- R v: an orthogonal transform. */
static void rotate_vec(const quant_model *m, float *v)
{
    for (int round = 0; round < 3; round++) {
        const float *sg = m->signs + (size_t)round * m->cdim;
        for (int i = 0; i < m->cdim; i++) v[i] *= sg[i];
        quant_fwht(v, m->cdim);
    }
    float s = 1.0f / ((float)m->cdim * sqrtf((float)m->cdim));   /* (1/sqrt(n))^3 */
    for (int i = 0; i < m->cdim; i++) v[i] *= s;
}

size_t quant_encode_scratch(const quant_model *m, size_t n)
{
    return n * ((size_t)m->dim + (size_t)m->cdim);
}

/* rows r[0..n) (cdim floats each, zero-padded) <- R P X, X = centred rows. */
static void transform_rows(const quant_model *m, const float *X, size_t n, float *r)
{
    size_t cd = (size_t)m->cdim, d = (size_t)m->dim;
    memset(r, 0, n * cd * sizeof *r);
    if (!m->proj) {
        for (size_t i = 0; i < n; i++) memcpy(r + i * cd, X + i * d, d * sizeof *r);
    } else {
#ifdef CDX_HAVE_OPENBLAS
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, m->pdim, m->dim, 1.0f, X,
                    m->dim, m->proj, m->dim, 0.0f, r, m->cdim);
#else
        for (size_t i = 0; i < n; i++)
            for (int p = 0; p < m->pdim; p++) {
                const float *w = m->proj + (size_t)p * d;
                float s = 0.0f;
                for (size_t k = 0; k < d; k++) s += w[k] * X[i * d + k];
                r[i * cd + (size_t)p] = s;
            }
#endif
    }
    for (size_t i = 0; m->rotate && i < n; i++) rotate_vec(m, r + i * cd);
}

static void code_row(const quant_model *m, quant_kind kind, const float *r, uint8_t *code,
                     quant_aux *aux)
{
    memset(code, 0, quant_code_bytes(kind, m->cdim));
    if (kind == QUANT_I8) {
        float mx = 0.0f;
        for (int i = 0; i < m->cdim; i++) mx = fmaxf(mx, fabsf(r[i]));
        float s = mx > 0.0f ? mx / 127.0f : 0.0f, inv = mx > 0.0f ? 127.0f / mx : 0.0f;
        int32_t sum = 0;
        for (int i = 0; s > 0.0f && i < m->cdim; i++) {
            long c = round_near(r[i] * inv);
            c = c > 127 ? 127 : c < -127 ? -127 : c;
            ((int8_t *)code)[i] = (int8_t)c;
            sum += (int32_t)c;
        }
        aux->f = s;
        aux->n = sum;
        return;
    }
    double l1 = 0.0, l2 = 0.0;
    int32_t pop = 0;
    for (int i = 0; i < m->cdim; i++) {
        l1 += fabs((double)r[i]);
        l2 += (double)r[i] * (double)r[i];
        if (r[i] > 0.0f) {
            code[i / 8] |= (uint8_t)(1u << (i % 8));
            pop++;
        }
    }
    aux->f = l1 > 0.0 ? (float)(l2 / l1) : 0.0f;
    aux->n = pop;
}

void quant_encode_batch(const quant_model *m, quant_kind kind, const float *const *x, size_t n,
                        uint8_t *codes, size_t code_stride, quant_aux *aux, float *scratch)
{
    float *X = scratch, *r = scratch + n * (size_t)m->dim;
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < m->dim; d++) X[i * (size_t)m->dim + (size_t)d] = x[i][d] - m->mean[d];
    transform_rows(m, X, n, r);
    for (size_t i = 0; i < n; i++) code_row(m, kind, r + i * (size_t)m->cdim, codes + i * code_stride, &aux[i]);
}

/* ---------------------------------------------------------------- queries */

void quant_query_free(quant_query *q)
{
    if (!q) return;
    cdx_free_aligned(q->u8);
    cdx_free_aligned(q->planes);
    free(q->tmp);
    free(q);
}

cdx_result quant_query_new(const quant_model *m, quant_kind kind, quant_query **out)
{
    quant_query *q = calloc(1, sizeof *q);
    if (!q) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    q->kind = kind;
    size_t bytes = quant_code_bytes(kind, m->cdim);
    q->tmp = malloc((size_t)(m->dim > m->cdim ? m->dim : m->cdim) * sizeof(float));
    if (kind == QUANT_I8) {
        q->len = bytes;
        q->u8 = cdx_alloc_aligned(bytes, 1);
    } else {
        q->len = bytes / 8;
        q->planes = cdx_alloc_aligned(4 * q->len, sizeof(uint64_t));
    }
    if (!q->tmp || (!q->u8 && !q->planes)) {
        quant_query_free(q);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    *out = q;
    return CDX_OK;
}

void quant_query_set(quant_query *qq, const quant_model *m, const float *q)
{
    float *v = qq->tmp;   /* q' = R P q (no centring: q . mean is a constant of the query) */
    transform_rows(m, q, 1, v);
    int n = m->cdim;
    if (qq->kind == QUANT_I8) {
        float mx = 0.0f;
        for (int i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i]));
        qq->sq = mx > 0.0f ? mx / 63.0f : 0.0f;
        memset(qq->u8, 64, qq->len);
        for (int i = 0; mx > 0.0f && i < n; i++) {
            long c = round_near(v[i] / qq->sq);
            c = c > 63 ? 63 : c < -63 ? -63 : c;
            qq->u8[i] = (uint8_t)(c + 64);
        }
        return;
    }
    float lo = v[0], hi = v[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, v[i]);
        hi = fmaxf(hi, v[i]);
    }
    qq->lo = lo;
    qq->delta = hi > lo ? (hi - lo) / 15.0f : 0.0f;
    memset(qq->planes, 0, 4 * qq->len * sizeof(uint64_t));
    double qsum = 0.0;
    for (int i = 0; i < n; i++) {
        long u = qq->delta > 0.0f ? round_near((v[i] - lo) / qq->delta) : 0;
        u = u > 15 ? 15 : u < 0 ? 0 : u;
        for (int j = 0; j < 4; j++)
            if (u & (1L << j)) qq->planes[(size_t)j * qq->len + (size_t)i / 64] |= (uint64_t)1 << (i % 64);
        qsum += (double)lo + (double)qq->delta * (double)u;
    }
    qq->qsum = (float)qsum;
}
