/*
 * phash.c - the 64-bit DCT perceptual hash (see phash.h).
 *
 * The reduction to 32x32 is libvips' vips_resize (box shrink then a
 * Lanczos-3 reduce: antialiased, so a resized copy of an image reduces to
 * nearly the same 32x32 pixels), on the pixels the decode already produced.
 * The DCT is written here: libvips has no DCT (only vips_fwfft, a complex
 * FFT that needs libvips built with FFTW and would still need the even
 * extension and twiddles to become a DCT-II), and only the 8x8 lowest
 * frequencies of the 32x32 transform are wanted: two 8x32 matrix products
 * with a table of cosines, ~16k multiply-adds.
 *
 * Grey is ITU-R 601 luma of the RGB colours (Pillow's convert('L')); CMYK
 * is first turned into RGB the way Pillow does; alpha is ignored.
 */
#include "image/phash.h"

#include "common/error.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#define SIDE CDX_PHASH_SIDE
#define LOW 8

static double cosines[LOW][SIDE];   /* cos(pi (2x + 1) u / 64) */
static pthread_once_t cos_once = PTHREAD_ONCE_INIT;

static void cos_init(void)
{
    for (int u = 0; u < LOW; u++)
        for (int x = 0; x < SIDE; x++) cosines[u][x] = cos(M_PI * (2 * x + 1) * u / (2.0 * SIDE));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

uint64_t cdx_phash_grey(const double grey[SIDE * SIDE])
{
    pthread_once(&cos_once, cos_init);
    double rows[SIDE][LOW];   /* each row transformed along x: rows[y][u] */
    for (int y = 0; y < SIDE; y++)
        for (int u = 0; u < LOW; u++) {
            double s = 0;
            for (int x = 0; x < SIDE; x++) s += grey[y * SIDE + x] * cosines[u][x];
            rows[y][u] = s;
        }
    double c[LOW * LOW], sorted[LOW * LOW];   /* c[v * 8 + u] */
    for (int v = 0; v < LOW; v++)
        for (int u = 0; u < LOW; u++) {
            double s = 0;
            for (int y = 0; y < SIDE; y++) s += rows[y][u] * cosines[v][y];
            c[v * LOW + u] = s;
        }
    memcpy(sorted, c, sizeof sorted);
    qsort(sorted, LOW * LOW, sizeof *sorted, cmp_double);
    double median = 0.5 * (sorted[LOW * LOW / 2 - 1] + sorted[LOW * LOW / 2]);
    uint64_t h = 0;
    for (int i = 0; i < LOW * LOW; i++)
        if (c[i] > median) h |= 1ull << i;
    return h;
}

/* Luma of one reduced pixel (samples as doubles, nch of them). */
static double luma(cdx_pixmode mode, const double *s)
{
    switch (mode) {
    case CDX_PIXMODE_RGB:
    case CDX_PIXMODE_RGBA:
    case CDX_PIXMODE_P:
        return 0.299 * s[0] + 0.587 * s[1] + 0.114 * s[2];
    case CDX_PIXMODE_CMYK: {
        double nk = 255.0 - s[3], rgb[3];
        for (int c = 0; c < 3; c++) rgb[c] = nk - s[c] * nk / 255.0;
        return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    }
    default:   /* L, LA, 1, I: the first sample is the grey */
        return s[0];
    }
}

cdx_result cdx_phash_pixels(const cdx_pixels *px, uint64_t *out)
{
    if (!px || !px->data || !out || px->width < 1 || px->height < 1 || px->nch < 1 || px->nch > 4)
        return cdx_error(CDX_ERR_INVALID_ARG, "phash: bad pixels");
    cdx_result r = cdx_image_init();
    if (r) return r;
    VipsBandFormat bf = px->mode == CDX_PIXMODE_I ? VIPS_FORMAT_INT : VIPS_FORMAT_UCHAR;
    size_t bytes = (size_t)px->width * (size_t)px->height * (size_t)px->nch * cdx_pixmode_elem(px->mode);
    VipsImage *im = vips_image_new_from_memory(px->data, bytes, px->width, px->height, px->nch, bf);
    VipsImage *small = NULL, *dbl = NULL;
    void *mem = NULL;
    size_t sz = 0;
    int w = px->width, h = px->height;
    vips_error_clear();
    r = CDX_ERR_FORMAT;
    if (im && !vips_resize(im, &small, (double)SIDE / w, "vscale", (double)SIDE / h, NULL) &&
        vips_image_get_width(small) == SIDE && vips_image_get_height(small) == SIDE &&
        !vips_cast(small, &dbl, VIPS_FORMAT_DOUBLE, NULL) && (mem = vips_image_write_to_memory(dbl, &sz)) &&
        sz == (size_t)SIDE * SIDE * (size_t)px->nch * sizeof(double)) {
        double grey[SIDE * SIDE];
        const double *s = mem;
        for (int i = 0; i < SIDE * SIDE; i++) grey[i] = luma(px->mode, s + (size_t)i * px->nch);
        *out = cdx_phash_grey(grey);
        r = CDX_OK;
    }
    g_free(mem);
    if (dbl) g_object_unref(dbl);
    if (small) g_object_unref(small);
    if (im) g_object_unref(im);
    vips_error_clear();
    return r ? cdx_error(r, "phash: cannot reduce the %dx%d image to %dx%d", px->width, px->height, SIDE,
                         SIDE)
             : CDX_OK;
}
