/*
 * decode.h - image decoding with libvips into the pixel mode Pillow 9.x
 * would open the file in (PIL.Image.open), so resizing can follow Pillow's
 * mode-dependent rules (see resize.h, preprocess.c).
 *
 * Invariants:
 *  - The content decides the format (vips_foreign_find_load_buffer), never a
 *    file name; only an allow-list of loaders is used (JPEG, PNG, WebP, GIF,
 *    TIFF, HEIF/AVIF when the libvips build has it, BMP through the
 *    ImageMagick loader when present); everything else is
 *    CDX_ERR_UNSUPPORTED and non-images CDX_ERR_FORMAT.
 *  - The pixel count from the header is checked against max_pixels BEFORE
 *    any pixel is decoded (decompression bombs: CDX_ERR_TOO_LARGE).
 *  - Decoding runs with libvips fail_on=error: truncated or corrupt files
 *    are errors, never grey-padded images.
 *  - libvips is initialised once per process (pthread_once), with the
 *    operation cache disabled and one worker thread per pipeline.
 *
 * Workload: one decode per image, whole image into memory (<= max_pixels *
 * 4 bytes), from any number of threads at once.
 */
#ifndef CDX_IMAGE_DECODE_H
#define CDX_IMAGE_DECODE_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

/* Pillow modes reproduced.  P and 1 are stored as their RGB / 0-255 values
 * (libvips expands palettes; nearest resampling on colours equals nearest on
 * indices followed by the palette lookup). */
typedef enum cdx_pixmode {
    CDX_PIXMODE_L = 0,   /* 8-bit grey, 1 channel */
    CDX_PIXMODE_LA,      /* grey + alpha, 2 channels */
    CDX_PIXMODE_RGB,     /* 3 channels */
    CDX_PIXMODE_RGBA,    /* 4 channels, straight alpha */
    CDX_PIXMODE_CMYK,    /* 4 channels, ink amounts (Adobe inversion undone) */
    CDX_PIXMODE_P,       /* palette image as RGB colours, 3 channels; NEAREST */
    CDX_PIXMODE_1,       /* bilevel as 0/255, 1 channel; NEAREST */
    CDX_PIXMODE_I        /* int32 grey (16-bit greyscale), 1 channel */
} cdx_pixmode;

typedef struct cdx_pixels {
    cdx_pixmode mode;
    int nch;                   /* samples per pixel */
    int width, height;         /* of data */
    double full_w, full_h;     /* full-resolution extent in data's orientation;
                                  differs from width/height only after JPEG
                                  shrink-on-load (then = stored size / shrink) */
    int shrink;                /* JPEG shrink-on-load factor used (1 = none) */
    int stored_width, stored_height;   /* as stored in the file */
    int orientation;           /* EXIF orientation found (1..8; 1 if absent) */
    char format[16];           /* "jpeg", "png", ... */
    void *data;                /* uint8 (or int32 for I), interleaved rows */
    void (*data_free)(void *);
} cdx_pixels;

/* Idempotent, thread-safe libvips initialisation (also in preprocess.h). */
cdx_result cdx_image_init(void);

/* Decode `data` (len bytes).  params: max_pixels, autorotate (orientation is
 * applied to the returned pixels when set), fast_shrink (JPEG only: decode at
 * 1/2, 1/4 or 1/8 while the shorter side stays >= 2 * target_short).
 * On failure *out is left empty and the error channel names the problem. */
cdx_result cdx_image_decode(const void *data, size_t len, const cdx_image_params *params,
                            int target_short, cdx_pixels *out);

void cdx_pixels_free(cdx_pixels *p);

/* A JPEG (quality 82, metadata stripped) whose longer side is at most size
 * pixels (never enlarged, EXIF orientation applied); *out is malloc'd. */
cdx_result cdx_image_thumbnail_jpeg(const void *data, size_t len, int size, void **out, size_t *out_len);

/* Transform the pixels for EXIF orientation 1..8 (the displayed image):
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 270 clockwise.  Swaps width/height for 5..8. */
cdx_result cdx_pixels_orient(cdx_pixels *p, int orientation);

/* Bytes per sample of a mode (4 for I, else 1). */
static inline size_t cdx_pixmode_elem(cdx_pixmode m) { return m == CDX_PIXMODE_I ? 4 : 1; }
const char *cdx_pixmode_name(cdx_pixmode m);

/* EXIF facts for the image library (added by the library branch): date
 * taken (exif-ifd2-DateTimeOriginal, else exif-ifd0-DateTime) as unix
 * seconds reading the wall-clock value as UTC (0 when absent or malformed),
 * and "Make Model" (exif-ifd0-Make / -Model, "" when absent).  Reads the
 * header only (no pixels); call it on bytes that decoded successfully. */
typedef struct cdx_image_exif {
    int64_t taken;
    char camera[128];
    /* (fts branch) Descriptive text for the full-text index, one item per
     * line, valid UTF-8 (Latin-1 bytes converted, control characters as
     * spaces), repeated lines dropped, cut at whole lines when full:
     *  text: EXIF ImageDescription, Artist, XPTitle, XPSubject, XPComment,
     *        XPAuthor; IPTC object name, caption, by-line, city,
     *        sub-location, province/state, country; XMP dc:title,
     *        dc:description, dc:creator, photoshop:City/State/Country,
     *        Iptc4xmpCore:Location;
     *  keywords: EXIF XPKeywords (split at ';'), IPTC keywords, XMP
     *        dc:subject. */
    char text[4096];
    char keywords[2048];
} cdx_image_exif;

cdx_result cdx_image_read_exif(const void *data, size_t len, cdx_image_exif *out);

#endif
