/*
 * phash.h - a 64-bit perceptual hash of an image (the "pHash" of
 * Zauner 2010 / Python imagehash.phash): the image is reduced to 32x32 grey
 * pixels, transformed by a 2-D DCT-II, and bit i of the hash (i = 8*v + u,
 * the 8x8 lowest frequencies in row-major order) is 1 when that coefficient
 * is above the median of the 64.  Two hashes are compared by the number of
 * differing bits (Hamming distance, 0..64): re-encodes and resizes of one
 * picture land within a few bits, unrelated pictures near 32.
 *
 * Invariants: deterministic (no SIMD-dependent rounding matters: the bits
 * come from comparisons against a median); the hash is of the displayed
 * image (after EXIF orientation when the decode applied it); alpha is
 * ignored.  Workload: one call per indexed image on the decode workers,
 * next to the CLIP preprocessing of the same decoded pixels.
 */
#ifndef CDX_IMAGE_PHASH_H
#define CDX_IMAGE_PHASH_H

#include "clipdex.h"
#include "image/decode.h"

#include <stdint.h>

#define CDX_PHASH_SIDE 32

/* The hash of decoded pixels (any mode, any size >= 1x1). */
cdx_result cdx_phash_pixels(const cdx_pixels *px, uint64_t *out);

/* The hash of a 32x32 grey image (row-major, any scale). */
uint64_t cdx_phash_grey(const double grey[CDX_PHASH_SIDE * CDX_PHASH_SIDE]);

#endif
