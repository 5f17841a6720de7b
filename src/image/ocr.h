/*
 * ocr.h - text in images: a grey working copy of decoded pixels, a cheap
 * text-likeness test, and Tesseract (C API) behind one small handle.
 *
 * Invariants:
 *  - One ocr_engine = one TessBaseAPI, used by one thread at a time
 *    (Tesseract handles are not thread-safe); callers keep one per worker.
 *  - Languages are checked against the installed traineddata files before
 *    any handle is made: names are [A-Za-z0-9_] (no path can be formed from
 *    them), at most OCR_MAX_LANGS joined by '+'.
 *  - Returned text is valid UTF-8 (Tesseract's), words of low confidence or
 *    without a letter or digit dropped, one line per text line, at most
 *    OCR_TEXT_MAX bytes.
 *
 * Workload: one grey conversion and one text-likeness test (both
 * O(pixels), a few ms) per decoded image; Tesseract only for images that pass,
 * ~0.1-1 s of one core each (see bench/ocr_bench.c).
 */
#ifndef CDX_IMAGE_OCR_H
#define CDX_IMAGE_OCR_H

#include "clipdex.h"
#include "image/decode.h"

#include <stdint.h>

#define OCR_MAX_LANGS 8
#define OCR_LANGS_MAX 256        /* bytes of a "eng+deu" list */
#define OCR_MAX_SIDE 2048        /* the grey copy's longer side is at most this */
#define OCR_TEXT_MAX 16384       /* bytes of text kept per image */

typedef struct ocr_grey {
    uint8_t *data;               /* w * h bytes, rows packed */
    int w, h;
} ocr_grey;

/* Grey copy of px (any mode; alpha composited over white), box-shrunk by
 * the smallest integer factor that brings the longer side to at most
 * OCR_MAX_SIDE. */
cdx_result ocr_grey_from_pixels(const cdx_pixels *px, ocr_grey *out);
void ocr_grey_free(ocr_grey *g);

/* The text-likeness test: 1 when the image (at full scale or sampled every
 * third pixel) has three neighbouring 16x16 cells crossed by many short
 * strokes (an edge up and an edge down at most 10 pixels apart, the same
 * level on both sides, as pen lines are) of mostly one width, in rows and
 * some in columns; 0 for images without such regions (smooth photos,
 * skies, faces), which are then not read. */
int ocr_text_likely(const ocr_grey *g);

/* Check langs ("eng", "eng+deu"; NULL or "" = "eng"): every name must have
 * its traineddata installed.  CDX_ERR_NOT_FOUND names the missing language
 * and lists the installed ones; CDX_ERR_INVALID_ARG for a malformed list. */
cdx_result ocr_check_langs(const char *langs);
/* The installed languages, space-separated, into buf. */
cdx_result ocr_installed_langs(char *buf, size_t cap);

typedef struct ocr_engine ocr_engine;

cdx_result ocr_engine_new(const char *langs, ocr_engine **out);
void ocr_engine_free(ocr_engine *e);

/* Read g; *text (malloc'd, "" when nothing was read) on success. */
cdx_result ocr_engine_read(ocr_engine *e, const ocr_grey *g, char **text);

#endif
