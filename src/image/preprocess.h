/*
 * preprocess.h - image decoding (libvips) and CLIP's reference
 * preprocessing reproduced bit-exactly (Pillow 9 semantics).
 *
 * Decode with libvips in the image's native mode (RGB, RGBA, L, LA, P, I16,
 * CMYK), resize the shortest side with Pillow's fixed-point antialiased
 * bicubic (nearest for palette/bilevel), centre-crop, convert to RGB the way
 * Pillow does, normalise with mean/std.  See ../shared/fixtures/clip-tiny/
 * README.md for every detail.
 *
 * Thread-safe; libvips must be initialised once (cdx_image_init()).
 */
#ifndef CDX_IMAGE_PREPROCESS_H
#define CDX_IMAGE_PREPROCESS_H

#include "clipdex.h"
#include "clip/config.h"

/* Idempotent, thread-safe libvips initialisation. */
cdx_result cdx_image_init(void);

/* Preprocess encoded image bytes into out = float32 [3, crop, crop]. */
cdx_result cdx_image_preprocess(const void *data, size_t len,
                                const cdx_preproc_config *pre,
                                const cdx_image_params *params, float *out,
                                cdx_image_meta *meta);

/* (ocr branch) The same, calling hook(pixels, user) with the decoded
 * full-size pixels (orientation applied as params say) before they are
 * resized and freed; hook may be NULL.  The pixels are read-only. */
struct cdx_pixels;
cdx_result cdx_image_preprocess_hook(const void *data, size_t len,
                                     const cdx_preproc_config *pre,
                                     const cdx_image_params *params, float *out,
                                     cdx_image_meta *meta,
                                     void (*hook)(const struct cdx_pixels *px, void *user),
                                     void *user);

#endif
