/*
 * resize.h - Pillow 9.x compatible resampling (BICUBIC and NEAREST), written
 * by hand because CLIP's reference preprocessing is PIL.Image.resize and no
 * Debian library reproduces it bit-exactly (libvips' reduce/resize use other
 * kernels, centres and rounding; see docs/preprocessing.md).
 *
 * Every function computes a WINDOW of the resized image: output columns
 * [x0, x0+ow) and rows [y0, y0+oh) of a virtual dw x dh result.  Each output
 * pixel depends only on its own coefficients, so a window is bit-identical to
 * the same region of a full resize; computing only the centre crop keeps
 * work and memory bounded even for 1x10000 inputs (a 224 x 2240000 virtual
 * result).
 *
 * Semantics (Pillow libImaging/Resample.c, Geometry.c):
 *  - bicubic: separable Keys kernel a = -0.5, support 2 scaled by in/out when
 *    downscaling (antialias), per-output coefficients normalised to sum 1;
 *    8-bit: coefficients rounded to 22-bit fixed point, horizontal pass first
 *    over only the source rows the vertical pass reads, each pass rounds and
 *    clamps to uint8; int32: double coefficients, each pass rounds half away
 *    from zero, no clamp.  A pass whose size is unchanged is skipped.
 *  - nearest: source index = COORD(a/2 + i*a) with a = in/out accumulated in
 *    double, exactly as ImagingScaleAffine.
 *  - in_w/in_h are the source extents used for the scale (normally equal to
 *    sw/sh; the JPEG shrink-on-load fast mode passes the original size divided
 *    by the shrink factor, like Pillow's float `box` argument).
 *
 * Workload: one call per image on <= ~100 M source pixels; scratch is sized
 * by the window (ow*oh*channels plus ksize*ow coefficients), never by dw/dh.
 * Thread-safe (no global state).
 */
#ifndef CDX_IMAGE_RESIZE_H
#define CDX_IMAGE_RESIZE_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

/* A source image: interleaved pixels, `nch` values per pixel, rows `stride`
 * elements apart.  `in_w`/`in_h` as described above (0 = sw/sh). */
typedef struct cdx_src {
    const void *px;
    int sw, sh, nch;
    size_t stride;          /* elements per row (>= sw*nch) */
    double in_w, in_h;
} cdx_src;

/* The part of the dw x dh result to compute, written densely (ow*nch per
 * row) to dst.  Requires 0 <= x0, x0+ow <= dw, likewise for y. */
typedef struct cdx_window {
    int dw, dh;
    int x0, y0, ow, oh;
} cdx_window;

/* Pillow BICUBIC on uint8 samples, nch in 1..4 (every channel resampled
 * independently; callers premultiply alpha themselves). */
cdx_result cdx_resize_bicubic_u8(const cdx_src *src, const cdx_window *win,
                                 uint8_t *dst);

/* Pillow BICUBIC on int32 samples (mode "I"), nch == 1. */
cdx_result cdx_resize_bicubic_i32(const cdx_src *src, const cdx_window *win,
                                  int32_t *dst);

/* Pillow NEAREST on pixels of `elem_size`-byte samples (any nch).  Output
 * pixels whose source falls outside the image are zero (Pillow's fill). */
cdx_result cdx_resize_nearest(const cdx_src *src, size_t elem_size,
                              const cdx_window *win, void *dst);

/* Plain float reference for tests: full dw x dh result of the same bicubic
 * (double weights straight from the kernel definition, no fixed point),
 * horizontal pass first, rounded and clamped to uint8 between the passes. */
cdx_result cdx_resize_bicubic_u8_ref(const uint8_t *src, int sw, int sh,
                                     int nch, int dw, int dh, uint8_t *dst);

#endif
