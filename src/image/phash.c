/*
 * phash.c - the 64-bit DCT perceptual hash (see phash.h).
 *
 * The reduction to 32x32 is an area-weighted box average of the pixels the decode already
 * produced (antialiased: a resized copy of an image reduces to nearly the
 * same 32x32 pixels), done here in one pass: libvips' vips_resize /
 * vips_shrink on the same in-memory pixels cost 6-8 ms CPU per 500x375
 * photo (pipeline set-up dominates; measured against 6-7 ms for the whole
 * decode + CLIP preprocessing), the loop below ~1 ms (~12% of the decode +
 * preprocessing; a small part of an image's CLIP embedding).
 * The DCT is written here too: libvips has no DCT (only vips_fwfft, a complex
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

/* Where source coordinate i (of n >= 32) falls among 32 cells of n/32
 * pixels each: cell c0 takes weight w0, c0 + 1 the rest (area weights). */
static void area_split(int i, int n, int *c0, double *w0)
{
    *c0 = (int)((int64_t)i * SIDE / n);
    double edge = (double)(*c0 + 1) * n / SIDE;   /* the cell's right edge, in pixels */
    *w0 = edge >= i + 1 ? 1.0 : edge - i;
    if (*c0 == SIDE - 1) *w0 = 1.0;
}

cdx_result cdx_phash_pixels(const cdx_pixels *px, uint64_t *out)
{
    if (!px || !px->data || !out || px->width < 1 || px->height < 1 || px->nch < 1 || px->nch > 4)
        return cdx_error(CDX_ERR_INVALID_ARG, "phash: bad pixels");
    const int w = px->width, h = px->height, nch = px->nch;
    const int wide = px->mode == CDX_PIXMODE_I;
    const uint8_t *u8 = px->data;
    const int32_t *i32 = px->data;
    double grey[SIDE * SIDE], cells[SIDE * SIDE * 4] = {0}, row[SIDE * 4], s[4];
    /* Area-weighted box average of each channel (the luma of averaged
     * channels: exact for the linear RGB luma); images smaller than 32 on a
     * side are sampled at the cells' centres instead. */
    int small = w < SIDE || h < SIDE;
    int *xc = small ? NULL : malloc((size_t)w * sizeof *xc);
    double *xw = small ? NULL : malloc((size_t)w * sizeof *xw);
    if (!small && (!xc || !xw)) {
        free(xc);
        free(xw);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    for (int x = 0; x < w && !small; x++) area_split(x, w, &xc[x], &xw[x]);
    for (int y = 0; y < h && !small; y++) {
        memset(row, 0, sizeof row);
        size_t base = (size_t)y * (size_t)w * (size_t)nch;
        for (int x = 0; x < w; x++) {
            double *r = row + xc[x] * nch, w0 = xw[x];
            size_t k = base + (size_t)x * (size_t)nch;
            for (int c = 0; c < nch; c++) {
                double v = wide ? (i32[k + c] < 0 ? 0 : i32[k + c] > 255 ? 255 : i32[k + c]) : u8[k + c];
                r[c] += w0 * v;
                if (w0 < 1.0) r[nch + c] += (1.0 - w0) * v;
            }
        }
        int r0;
        double v0;
        area_split(y, h, &r0, &v0);
        for (int i = 0; i < SIDE * nch; i++) {
            cells[r0 * SIDE * nch + i] += v0 * row[i];
            if (v0 < 1.0) cells[(r0 + 1) * SIDE * nch + i] += (1.0 - v0) * row[i];
        }
    }
    free(xc);
    free(xw);
    double area = (double)w * h / (SIDE * SIDE);
    for (int cy = 0; cy < SIDE; cy++)
        for (int cx = 0; cx < SIDE; cx++) {
            size_t k = (size_t)((2 * cy + 1) * h / (2 * SIDE)) * (size_t)w + (size_t)((2 * cx + 1) * w / (2 * SIDE));
            for (int c = 0; c < nch; c++) {
                size_t j = k * (size_t)nch + (size_t)c;
                s[c] = !small ? cells[(cy * SIDE + cx) * nch + c] / area
                              : wide ? (i32[j] < 0 ? 0 : i32[j] > 255 ? 255 : i32[j]) : u8[j];
            }
            grey[cy * SIDE + cx] = luma(px->mode, s);
        }
    *out = cdx_phash_grey(grey);
    return CDX_OK;
}
