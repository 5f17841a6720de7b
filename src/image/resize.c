/*
 * resize.c - Pillow 9.x compatible BICUBIC / NEAREST resampling (see
 * resize.h for the exact semantics and why it is hand-written).
 *
 * Invariants: all size arithmetic is checked before allocating; the fixed
 * point accumulators cannot overflow because |sum of coefficients| < 1.5
 * (Keys kernel, normalised), so 255 * 1.5 * 2^22 < 2^31.
 *
 * Workload: a 224x224 (or 336x336) window per image; the horizontal pass runs
 * over only the source rows the window needs.
 */
#include "image/resize.h"

#include "common/error.h"
#include "common/util.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22   /* Pillow: 32 - 8 - 2 */
#define COEFF_MAX_BYTES ((size_t)512 << 20)

/* Keys cubic convolution kernel, a = -0.5 (Pillow bicubic_filter). */
static double bicubic_kernel(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Coefficients of outputs [o0, o0+n) of one axis (Pillow precompute_coeffs). */
typedef struct coeffs {
    int ksize;
    int *first;     /* [n] first source index */
    int *count;     /* [n] number of taps (<= ksize) */
    double *kd;     /* [n * ksize] normalised weights */
    int32_t *ki;    /* [n * ksize] 22-bit fixed point (8-bit path only) */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->first);
    free(c->count);
    free(c->kd);
    free(c->ki);
    memset(c, 0, sizeof *c);
}

static cdx_result coeffs_make(int in_size, double in_extent, int out_size,
                              int o0, int n, int fixed, coeffs *c)
{
    memset(c, 0, sizeof *c);
    if (in_size < 1 || out_size < 1 || n < 1 || !(in_extent > 0))
        return cdx_error(CDX_ERR_INTERNAL, "resize: bad axis %d -> %d", in_size, out_size);
    double scale = in_extent / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    double ks = ceil(support) * 2 + 1;
    size_t bytes;
    if (ks > INT_MAX || !cdx_mul_ok((size_t)n, (size_t)ks, &bytes) ||
        !cdx_mul_ok(bytes, sizeof(double), &bytes) || bytes > COEFF_MAX_BYTES)
        return cdx_error(CDX_ERR_TOO_LARGE,
                         "resize: %d -> %d pixels needs too many filter taps", in_size, out_size);
    c->ksize = (int)ks;
    size_t nk = (size_t)n * (size_t)c->ksize;
    c->first = malloc((size_t)n * sizeof(int));
    c->count = malloc((size_t)n * sizeof(int));
    c->kd = calloc(nk, sizeof(double));
    if (fixed) c->ki = malloc(nk * sizeof(int32_t));
    if (!c->first || !c->count || !c->kd || (fixed && !c->ki)) {
        coeffs_free(c);
        return cdx_error(CDX_ERR_NOMEM, "resize: out of memory for coefficients");
    }
    for (int i = 0; i < n; i++) {
        int xx = o0 + i;
        double center = (xx + 0.5) * scale;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        if (xmax > c->ksize) xmax = c->ksize;   /* cannot happen; keeps indexing safe */
        double *k = &c->kd[(size_t)i * c->ksize];
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double w = bicubic_kernel((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        c->first[i] = xmin;
        c->count[i] = xmax;
    }
    if (fixed) {
        for (size_t i = 0; i < nk; i++) {
            double v = c->kd[i] * (1 << PRECISION_BITS);
            c->ki[i] = (int32_t)(c->kd[i] < 0 ? -0.5 + v : 0.5 + v);
        }
    }
    return CDX_OK;
}

static inline uint8_t clip8(int32_t v)
{
    if (v < 0) return 0;
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Pillow ROUND_UP, clamped to the int32 range to keep the cast defined. */
static inline int32_t round_up(double f)
{
    double r = f >= 0.0 ? f + 0.5 : f - 0.5;
    if (r >= 2147483647.0) return INT32_MAX;
    if (r <= -2147483648.0) return INT32_MIN;
    return (int32_t)r;
}

static int window_ok(const cdx_src *s, const cdx_window *w)
{
    return s && w && s->px && s->sw > 0 && s->sh > 0 && s->nch > 0 &&
           s->stride >= (size_t)s->sw * (size_t)s->nch && w->dw > 0 && w->dh > 0 &&
           w->x0 >= 0 && w->y0 >= 0 && w->ow > 0 && w->oh > 0 &&
           w->ow <= w->dw - w->x0 && w->oh <= w->dh - w->y0;
}

static double extent(double e, int size) { return e > 0 ? e : (double)size; }

/* ---- 8-bit ------------------------------------------------------------ */

/* Horizontal pass: rows [r0, r1) of src, window columns, into dst (dense). */
static inline void hpass_u8(const uint8_t *src, size_t stride, int r0, int r1,
                            const coeffs *c, int ow, const int nch, uint8_t *dst)
{
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = src + (size_t)r * stride;
        uint8_t *out = dst + (size_t)(r - r0) * ow * nch;
        for (int xx = 0; xx < ow; xx++) {
            const int32_t *k = &c->ki[(size_t)xx * c->ksize];
            const uint8_t *p = row + (size_t)c->first[xx] * nch;
            int32_t ss[4] = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1),
                             1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1)};
            for (int x = 0; x < c->count[xx]; x++)
                for (int ch = 0; ch < nch; ch++) ss[ch] += p[x * nch + ch] * k[x];
            for (int ch = 0; ch < nch; ch++) out[xx * nch + ch] = clip8(ss[ch]);
        }
    }
}

/* Vertical pass: window rows from src rows (first[] relative to row 0 of
 * src), columns [0, ow) of src. */
static inline void vpass_u8(const uint8_t *src, size_t stride, int row_off,
                            const coeffs *c, int ow, int oh, const int nch, uint8_t *dst)
{
    for (int yy = 0; yy < oh; yy++) {
        const int32_t *k = &c->ki[(size_t)yy * c->ksize];
        const uint8_t *base = src + (size_t)(c->first[yy] - row_off) * stride;
        uint8_t *out = dst + (size_t)yy * ow * nch;
        for (int xx = 0; xx < ow * nch; xx++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < c->count[yy]; y++) ss += base[(size_t)y * stride + xx] * k[y];
            out[xx] = clip8(ss);
        }
    }
}

static void hpass_u8_any(const uint8_t *src, size_t stride, int r0, int r1,
                         const coeffs *c, int ow, int nch, uint8_t *dst)
{
    /* Constant channel counts let the compiler unroll the inner loop. */
    switch (nch) {
    case 1: hpass_u8(src, stride, r0, r1, c, ow, 1, dst); break;
    case 2: hpass_u8(src, stride, r0, r1, c, ow, 2, dst); break;
    case 3: hpass_u8(src, stride, r0, r1, c, ow, 3, dst); break;
    default: hpass_u8(src, stride, r0, r1, c, ow, 4, dst); break;
    }
}

cdx_result cdx_resize_bicubic_u8(const cdx_src *src, const cdx_window *win, uint8_t *dst)
{
    if (!window_ok(src, win) || src->nch > 4 || !dst)
        return cdx_error(CDX_ERR_INVALID_ARG, "resize: bad arguments");
    const uint8_t *px = src->px;
    const int nch = src->nch;
    double in_w = extent(src->in_w, src->sw), in_h = extent(src->in_h, src->sh);
    int need_h = win->dw != src->sw || in_w != src->sw;
    int need_v = win->dh != src->sh || in_h != src->sh;
    size_t row_bytes = (size_t)win->ow * nch;

    coeffs cv = {0}, chz = {0};
    uint8_t *tmp = NULL;
    cdx_result r = CDX_OK;

    /* Source rows the vertical pass reads (Pillow's ybox_first/last). */
    int ybox0 = win->y0, ybox1 = win->y0 + win->oh;
    if (need_v) {
        r = coeffs_make(src->sh, in_h, win->dh, win->y0, win->oh, 1, &cv);
        if (r) goto done;
        ybox0 = cv.first[0];
        ybox1 = cv.first[win->oh - 1] + cv.count[win->oh - 1];
        for (int i = 0; i < win->oh; i++)
            if (cv.first[i] + cv.count[i] > ybox1) ybox1 = cv.first[i] + cv.count[i];
    }

    const uint8_t *vsrc;       /* what the vertical pass (or the copy) reads */
    size_t vstride;
    int vrow0;                 /* source row index of vsrc's first row */
    if (need_h) {
        r = coeffs_make(src->sw, in_w, win->dw, win->x0, win->ow, 1, &chz);
        if (r) goto done;
        size_t n;
        if (!cdx_mul_ok(row_bytes, (size_t)(ybox1 - ybox0), &n) || !(tmp = malloc(n ? n : 1))) {
            r = cdx_error(CDX_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
        hpass_u8_any(px, src->stride, ybox0, ybox1, &chz, win->ow, nch, tmp);
        vsrc = tmp;
        vstride = row_bytes;
        vrow0 = ybox0;
    } else {
        vsrc = px + (size_t)win->x0 * nch;
        vstride = src->stride;
        vrow0 = 0;
    }

    if (need_v) {
        switch (nch) {
        case 1: vpass_u8(vsrc, vstride, vrow0, &cv, win->ow, win->oh, 1, dst); break;
        case 2: vpass_u8(vsrc, vstride, vrow0, &cv, win->ow, win->oh, 2, dst); break;
        case 3: vpass_u8(vsrc, vstride, vrow0, &cv, win->ow, win->oh, 3, dst); break;
        default: vpass_u8(vsrc, vstride, vrow0, &cv, win->ow, win->oh, 4, dst); break;
        }
    } else {
        for (int y = 0; y < win->oh; y++)
            memcpy(dst + (size_t)y * row_bytes,
                   vsrc + (size_t)(win->y0 + y - vrow0) * vstride, row_bytes);
    }
done:
    free(tmp);
    coeffs_free(&cv);
    coeffs_free(&chz);
    return r;
}

/* ---- int32 (mode "I") ------------------------------------------------- */

cdx_result cdx_resize_bicubic_i32(const cdx_src *src, const cdx_window *win, int32_t *dst)
{
    if (!window_ok(src, win) || src->nch != 1 || !dst)
        return cdx_error(CDX_ERR_INVALID_ARG, "resize: bad arguments");
    const int32_t *px = src->px;
    double in_w = extent(src->in_w, src->sw), in_h = extent(src->in_h, src->sh);
    int need_h = win->dw != src->sw || in_w != src->sw;
    int need_v = win->dh != src->sh || in_h != src->sh;
    coeffs cv = {0}, chz = {0};
    int32_t *tmp = NULL;
    cdx_result r = CDX_OK;

    int ybox0 = win->y0, ybox1 = win->y0 + win->oh;
    if (need_v) {
        r = coeffs_make(src->sh, in_h, win->dh, win->y0, win->oh, 0, &cv);
        if (r) goto done;
        ybox0 = cv.first[0];
        ybox1 = cv.first[win->oh - 1] + cv.count[win->oh - 1];
        for (int i = 0; i < win->oh; i++)
            if (cv.first[i] + cv.count[i] > ybox1) ybox1 = cv.first[i] + cv.count[i];
    }
    const int32_t *vsrc;
    size_t vstride;
    int vrow0;
    if (need_h) {
        r = coeffs_make(src->sw, in_w, win->dw, win->x0, win->ow, 0, &chz);
        if (r) goto done;
        size_t n;
        if (!cdx_mul_ok((size_t)win->ow, (size_t)(ybox1 - ybox0), &n) ||
            !(tmp = malloc((n ? n : 1) * sizeof(int32_t)))) {
            r = cdx_error(CDX_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
        for (int row = ybox0; row < ybox1; row++) {
            const int32_t *in = px + (size_t)row * src->stride;
            int32_t *out = tmp + (size_t)(row - ybox0) * win->ow;
            for (int xx = 0; xx < win->ow; xx++) {
                const double *k = &chz.kd[(size_t)xx * chz.ksize];
                double ss = 0.0;
                for (int x = 0; x < chz.count[xx]; x++) ss += in[chz.first[xx] + x] * k[x];
                out[xx] = round_up(ss);
            }
        }
        vsrc = tmp;
        vstride = (size_t)win->ow;
        vrow0 = ybox0;
    } else {
        vsrc = px + win->x0;
        vstride = src->stride;
        vrow0 = 0;
    }
    for (int yy = 0; yy < win->oh; yy++) {
        int32_t *out = dst + (size_t)yy * win->ow;
        if (!need_v) {
            memcpy(out, vsrc + (size_t)(win->y0 + yy - vrow0) * vstride,
                   (size_t)win->ow * sizeof(int32_t));
            continue;
        }
        const double *k = &cv.kd[(size_t)yy * cv.ksize];
        const int32_t *base = vsrc + (size_t)(cv.first[yy] - vrow0) * vstride;
        for (int xx = 0; xx < win->ow; xx++) {
            double ss = 0.0;
            for (int y = 0; y < cv.count[yy]; y++) ss += base[(size_t)y * vstride + xx] * k[y];
            out[xx] = round_up(ss);
        }
    }
done:
    free(tmp);
    coeffs_free(&cv);
    coeffs_free(&chz);
    return r;
}

/* ---- nearest ------------------------------------------------------------ */

#define COORD(v) ((v) < 0.0 ? -1 : ((int)(v)))

/* Source indices of outputs [o0, o0+n) (ImagingScaleAffine: accumulated). */
static void nearest_tab(int in_size, double in_extent, int out_size, int o0, int n, int *tab)
{
    double a = in_extent / out_size;
    double xo = a * 0.5;
    for (int x = 0; x < o0 + n; x++) {
        if (x >= o0) {
            int xin = COORD(xo);
            tab[x - o0] = (xin >= 0 && xin < in_size) ? xin : -1;
        }
        xo += a;
    }
}

cdx_result cdx_resize_nearest(const cdx_src *src, size_t elem_size,
                              const cdx_window *win, void *dst)
{
    if (!window_ok(src, win) || !dst || elem_size == 0 || elem_size > 8)
        return cdx_error(CDX_ERR_INVALID_ARG, "resize: bad arguments");
    int *xt = malloc((size_t)win->ow * sizeof(int));
    int *yt = malloc((size_t)win->oh * sizeof(int));
    if (!xt || !yt) {
        free(xt);
        free(yt);
        return cdx_error(CDX_ERR_NOMEM, "resize: out of memory");
    }
    nearest_tab(src->sw, extent(src->in_w, src->sw), win->dw, win->x0, win->ow, xt);
    nearest_tab(src->sh, extent(src->in_h, src->sh), win->dh, win->y0, win->oh, yt);
    size_t pix = elem_size * (size_t)src->nch;
    const uint8_t *px = src->px;
    uint8_t *out = dst;
    for (int y = 0; y < win->oh; y++) {
        for (int x = 0; x < win->ow; x++, out += pix) {
            if (yt[y] < 0 || xt[x] < 0) {
                memset(out, 0, pix);
                continue;
            }
            memcpy(out, px + ((size_t)yt[y] * src->stride + (size_t)xt[x] * src->nch) * elem_size, pix);
        }
    }
    free(xt);
    free(yt);
    return CDX_OK;
}

/* ---- float reference -------------------------------------------------- */

/* One axis of the reference: out[o] = sum_i w_i * in[i] with w from the
 * kernel definition, computed independently of coeffs_make. */
static uint8_t ref_sample(const uint8_t *in, size_t step, int in_size, int out_size, int o)
{
    double scale = (double)in_size / out_size;
    double fs = scale > 1.0 ? scale : 1.0;
    double center = (o + 0.5) * scale;
    int lo = (int)floor(center - 2.0 * fs) - 1, hi = (int)ceil(center + 2.0 * fs) + 1;
    if (lo < 0) lo = 0;
    if (hi > in_size) hi = in_size;
    double sw = 0, s = 0;
    for (int i = lo; i < hi; i++) {
        double w = bicubic_kernel((i + 0.5 - center) / fs);
        sw += w;
        s += w * in[(size_t)i * step];
    }
    double v = sw != 0 ? floor(s / sw + 0.5) : 0;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

cdx_result cdx_resize_bicubic_u8_ref(const uint8_t *src, int sw, int sh, int nch,
                                     int dw, int dh, uint8_t *dst)
{
    if (!src || !dst || sw < 1 || sh < 1 || dw < 1 || dh < 1 || nch < 1 || nch > 4)
        return cdx_error(CDX_ERR_INVALID_ARG, "resize_ref: bad arguments");
    uint8_t *tmp = malloc((size_t)dw * sh * nch);
    if (!tmp) return cdx_error(CDX_ERR_NOMEM, "resize_ref: out of memory");
    for (int y = 0; y < sh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < nch; c++)
                tmp[((size_t)y * dw + x) * nch + c] =
                    dw == sw ? src[((size_t)y * sw + x) * nch + c]
                             : ref_sample(src + (size_t)y * sw * nch + c, (size_t)nch, sw, dw, x);
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < nch; c++)
                dst[((size_t)y * dw + x) * nch + c] =
                    dh == sh ? tmp[((size_t)y * dw + x) * nch + c]
                             : ref_sample(tmp + (size_t)x * nch + c, (size_t)dw * nch, sh, dh, y);
    free(tmp);
    return CDX_OK;
}
