/*
 * preprocess.c - CLIP's reference image preprocessing, bit-exact with
 * clip.clip._transform on Pillow 9.4 / torchvision 0.14:
 *
 *   PIL.Image.open -> Resize(S, BICUBIC) in the image's native mode
 *   -> CenterCrop(C) -> convert('RGB') -> ToTensor (/255) -> Normalize.
 *
 * Mode rules (Pillow Image.resize / Convert.c):
 *   L, RGB, CMYK   bicubic (8-bit fixed point), CMYK -> RGB afterwards with
 *                  R = 255 - K - MULDIV255(C, 255 - K);
 *   RGBA, LA       premultiplied (c' = MULDIV255(c, a)) before the bicubic,
 *                  un-premultiplied after (c = min(255, 255 c' / a) for
 *                  0 < a < 255), then alpha is dropped (no compositing);
 *   P, 1           NEAREST;
 *   I              bicubic in int32 with double coefficients, then
 *                  saturated to [0, 255].
 * Only the C x C crop window of the resized image is computed.
 *
 * Invariants: output is float32 [3, C, C] planar; every input is untrusted
 * (decode.c checks formats and sizes before decoding pixels).
 * Workload: one call per image, any number of threads concurrently.
 */
#include "image/preprocess.h"

#include "clip/model.h"
#include "common/error.h"
#include "common/util.h"
#include "image/decode.h"
#include "image/phash.h"
#include "image/resize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDX_IMAGE_FILE_MAX ((size_t)1 << 30)   /* 1 GiB of encoded bytes */
#define CDX_RESIZED_MAX (1 << 30)              /* longest virtual resized side */
#define CDX_CROP_MAX 8192

cdx_image_params cdx_image_default_params(void)
{
    cdx_image_params p;
    memset(&p, 0, sizeof p);
    p.autorotate = 1;
    p.max_pixels = 100000000ULL;
    p.fast_shrink = 0;
    return p;
}

static inline unsigned muldiv255(unsigned a, unsigned b)
{
    unsigned t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* RGBA / LA: premultiply colour samples in place (alpha is the last one). */
static void premultiply(uint8_t *px, size_t npx, int nch)
{
    for (size_t i = 0; i < npx; i++, px += nch) {
        unsigned a = px[nch - 1];
        for (int c = 0; c < nch - 1; c++) px[c] = (uint8_t)muldiv255(px[c], a);
    }
}

static void unpremultiply(uint8_t *px, size_t npx, int nch)
{
    for (size_t i = 0; i < npx; i++, px += nch) {
        unsigned a = px[nch - 1];
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < nch - 1; c++) {
            unsigned v = 255u * px[c] / a;
            px[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

/* Python round() of k/2 for k >= 0: half to even. */
static int half_even_div2(long long k)
{
    long long m = k / 2;
    if (k % 2 && (m % 2)) m++;
    return (int)m;
}

/* One axis of CenterCrop(C) on a resized side d: the window of the resized
 * image [src0, src0+n) lands at output offset dst0 (torchvision pads with
 * zeros, split floor/ceil, when C > d). */
static void crop_axis(int d, int C, int *src0, int *dst0, int *n)
{
    if (d >= C) {
        *src0 = half_even_div2((long long)d - C);
        *dst0 = 0;
        *n = C;
    } else {
        *src0 = 0;
        *dst0 = (C - d) / 2;
        *n = d;
    }
}

/* uint8 RGB value of window pixel i, by mode. */
static void to_rgb(cdx_pixmode mode, const void *win, size_t i, uint8_t rgb[3])
{
    const uint8_t *p = win;
    switch (mode) {
    case CDX_PIXMODE_L:
    case CDX_PIXMODE_1:
        rgb[0] = rgb[1] = rgb[2] = p[i];
        break;
    case CDX_PIXMODE_LA:
        rgb[0] = rgb[1] = rgb[2] = p[i * 2];
        break;
    case CDX_PIXMODE_RGB:
    case CDX_PIXMODE_P:
        memcpy(rgb, p + i * 3, 3);
        break;
    case CDX_PIXMODE_RGBA:
        memcpy(rgb, p + i * 4, 3);
        break;
    case CDX_PIXMODE_CMYK: {
        const uint8_t *q = p + i * 4;
        unsigned nk = 255u - q[3];
        for (int c = 0; c < 3; c++) {
            int v = (int)nk - (int)muldiv255(q[c], nk);
            rgb[c] = (uint8_t)(v < 0 ? 0 : v);
        }
        break;
    }
    case CDX_PIXMODE_I: {
        int32_t v = ((const int32_t *)win)[i];
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        break;
    }
    }
}

/* The caller's buffer is [3, image_size, image_size] (clipdex.h). */
static cdx_result check_model(const cdx_model *model)
{
    if (!model) return cdx_error(CDX_ERR_INVALID_ARG, "preprocess: NULL model");
    if (model->cfg.pre.crop != model->cfg.image_size)
        return cdx_error(CDX_ERR_MISMATCH, "preprocessor crop size %d differs from the model "
                         "image size %d", model->cfg.pre.crop, model->cfg.image_size);
    return CDX_OK;
}

static cdx_result check_pre(const cdx_preproc_config *pre)
{
    if (!pre || pre->resize_shortest < 1 || pre->resize_shortest > CDX_CROP_MAX ||
        pre->crop < 1 || pre->crop > CDX_CROP_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "preprocess: bad resize/crop size");
    for (int c = 0; c < 3; c++)
        if (!isfinite(pre->mean[c]) || !isfinite(pre->std[c]) || pre->std[c] == 0.0f)
            return cdx_error(CDX_ERR_INVALID_ARG, "preprocess: bad mean/std");
    return CDX_OK;
}

/* Resize (native mode) + crop + convert + normalise the decoded pixels. */
static cdx_result run_pipeline(cdx_pixels *px, const cdx_preproc_config *pre, float *out)
{
    const int S = pre->resize_shortest, C = pre->crop;
    /* Resized size from the full-resolution extent (torchvision Resize). */
    long long fw = llround(px->full_w * px->shrink), fh = llround(px->full_h * px->shrink);
    int w_le_h = fw <= fh;
    long long shortd = w_le_h ? fw : fh, longd = w_le_h ? fh : fw;
    double nl = floor((double)((long long)S * longd) / (double)shortd);
    if (nl > CDX_RESIZED_MAX)
        return cdx_error(CDX_ERR_TOO_LARGE, "extreme aspect ratio %lldx%lld is not supported", fw, fh);
    int dw = w_le_h ? S : (int)nl, dh = w_le_h ? (int)nl : S;

    int sx, dx, nx, sy, dy, ny;
    crop_axis(dw, C, &sx, &dx, &nx);
    crop_axis(dh, C, &sy, &dy, &ny);

    cdx_src src = {px->data, px->width, px->height, px->nch,
                   (size_t)px->width * (size_t)px->nch, px->full_w, px->full_h};
    cdx_window win = {dw, dh, sx, sy, nx, ny};
    size_t elem = cdx_pixmode_elem(px->mode);
    void *wbuf = malloc((size_t)nx * (size_t)ny * (size_t)px->nch * elem);
    if (!wbuf) return cdx_error(CDX_ERR_NOMEM, "out of memory");

    cdx_result r;
    int same = dw == px->width && dh == px->height && px->shrink == 1;
    if (px->mode == CDX_PIXMODE_P || px->mode == CDX_PIXMODE_1) {
        r = cdx_resize_nearest(&src, 1, &win, wbuf);
    } else if (px->mode == CDX_PIXMODE_I) {
        r = cdx_resize_bicubic_i32(&src, &win, wbuf);
    } else if (px->mode == CDX_PIXMODE_RGBA || px->mode == CDX_PIXMODE_LA) {
        /* Pillow returns a plain copy when the size is unchanged. */
        if (!same) premultiply(px->data, (size_t)px->width * px->height, px->nch);
        r = cdx_resize_bicubic_u8(&src, &win, wbuf);
        if (!r && !same) unpremultiply(wbuf, (size_t)nx * ny, px->nch);
    } else {
        r = cdx_resize_bicubic_u8(&src, &win, wbuf);
    }
    if (r) {
        free(wbuf);
        return r;
    }

    /* ToTensor + Normalize in float32, as torch does: (v / 255 - mean) / std. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float t = (float)v / 255.0f;   /* float32, one rounding per op */
            t = t - pre->mean[c];
            lut[c][v] = t / pre->std[c];
        }
    size_t plane = (size_t)C * C;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) out[c * plane + i] = lut[c][0];   /* zero padding */
    for (int y = 0; y < ny; y++) {
        for (int x = 0; x < nx; x++) {
            uint8_t rgb[3] = {0, 0, 0};
            to_rgb(px->mode, wbuf, (size_t)y * nx + x, rgb);
            size_t o = (size_t)(y + dy) * C + (size_t)(x + dx);
            for (int c = 0; c < 3; c++) out[c * plane + o] = lut[c][rgb[c]];
        }
    }
    free(wbuf);
    return CDX_OK;
}

cdx_result cdx_image_preprocess(const void *data, size_t len, const cdx_preproc_config *pre,
                                const cdx_image_params *params, float *out,
                                cdx_image_meta *meta)
{
    return cdx_image_preprocess_hook(data, len, pre, params, out, meta, NULL, NULL);
}

cdx_result cdx_image_preprocess_hook(const void *data, size_t len,
                                     const cdx_preproc_config *pre,
                                     const cdx_image_params *params, float *out,
                                     cdx_image_meta *meta,
                                     void (*hook)(const struct cdx_pixels *px, void *user),
                                     void *user)
{
    if (meta) memset(meta, 0, sizeof *meta);
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "preprocess: NULL output");
    cdx_result r = check_pre(pre);
    if (r) return r;
    cdx_image_params defaults = cdx_image_default_params();
    if (!params) params = &defaults;

    cdx_pixels px;
    r = cdx_image_decode(data, len, params, pre->resize_shortest, &px);
    if (r) return r;
    if (meta) {
        meta->width = px.stored_width;
        meta->height = px.stored_height;
        meta->orientation = px.orientation;
        snprintf(meta->format, sizeof meta->format, "%s", px.format);
        /* the near-duplicate hash, from the same decode (before the resize,
         * which premultiplies alpha in place); no hash is not an error */
        if (cdx_phash_pixels(&px, &meta->phash) == CDX_OK) meta->has_phash = 1;
        else cdx_error_clear();
    }
    if (hook) hook(&px, user);
    r = run_pipeline(&px, pre, out);
    cdx_pixels_free(&px);
    return r;
}

cdx_result cdx_preprocess_buffer(const cdx_model *model, const void *data, size_t len,
                                 const cdx_image_params *params, float *out,
                                 cdx_image_meta *meta)
{
    if (meta) memset(meta, 0, sizeof *meta);
    cdx_result r = check_model(model);
    if (r) return r;
    return cdx_image_preprocess(data, len, &model->cfg.pre, params, out, meta);
}

cdx_result cdx_preprocess_file(const cdx_model *model, const char *path,
                               const cdx_image_params *params, float *out,
                               cdx_image_meta *meta)
{
    if (meta) memset(meta, 0, sizeof *meta);
    if (!path) return cdx_error(CDX_ERR_INVALID_ARG, "preprocess: NULL path");
    cdx_result r = check_model(model);
    if (r) return r;
    char *buf = NULL;
    size_t len = 0;
    r = cdx_read_file(path, CDX_IMAGE_FILE_MAX, &buf, &len);
    if (r) return r;   /* message already names the file */
    r = cdx_image_preprocess(buf, len, &model->cfg.pre, params, out, meta);
    free(buf);
    if (r) return cdx_error_prefix(r, path);
    return CDX_OK;
}

cdx_result cdx_image_phash(const void *data, size_t len, const cdx_image_params *params, uint64_t *out)
{
    if (!data || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_image_phash: NULL argument");
    cdx_image_params defaults = cdx_image_default_params();
    cdx_pixels px;
    cdx_result r = cdx_image_decode(data, len, params ? params : &defaults, CDX_PHASH_SIDE, &px);
    if (r) return r;
    r = cdx_phash_pixels(&px, out);
    cdx_pixels_free(&px);
    return r;
}

int cdx_phash_distance(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }
