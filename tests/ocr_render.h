/*
 * ocr_render.h - images with known words for the OCR tests and benchmark:
 * a word rendered by libvips (vips_text: pango + the DejaVu fonts of
 * Debian's fonts-dejavu-core), rotated, inked onto a flat background or
 * onto a photo, encoded as PNG or JPEG.  Header-only (tests/test_ocr.c,
 * tests/test_serve_ocr.c, bench/ocr_bench.c).
 */
#ifndef CDX_TESTS_OCR_RENDER_H
#define CDX_TESTS_OCR_RENDER_H

#include <vips/vips.h>

#include <stdint.h>
#include <string.h>

typedef struct ocr_sample {
    const char *word;     /* what is written (and searched for) */
    const char *font;     /* pango font name with size in points (dpi 72: px) */
    const char *fontfile; /* its file in fonts-dejavu-core (documentation) */
    double angle;         /* degrees, counter-clockwise */
    uint8_t ink[3], bg[3];
    const char *photo;    /* onto this photo of data/imagenet-sample, or NULL */
    int jpeg;             /* encode as JPEG (quality 90), else PNG */
} ocr_sample;

/* Several fonts, sizes, rotations and backgrounds (the first ones flat). */
static const ocr_sample OCR_SAMPLES[] = {
    {"LIGHTHOUSE", "DejaVu Sans Bold 44", "DejaVuSans-Bold.ttf", 0,
     {0, 0, 0}, {255, 255, 255}, NULL, 0},
    {"harbour", "DejaVu Serif 34", "DejaVuSerif.ttf", 4,
     {20, 30, 120}, {250, 240, 190}, NULL, 1},
    {"bakery", "DejaVu Sans Mono 30", "DejaVuSansMono.ttf", -6,
     {255, 255, 255}, {60, 60, 60}, NULL, 0},
    {"velvet", "DejaVu Serif Bold 60", "DejaVuSerif-Bold.ttf", 0,
     {150, 0, 0}, {210, 230, 255}, NULL, 1},
    {"quantum", "DejaVu Sans 22", "DejaVuSans.ttf", 2,
     {40, 40, 40}, {200, 200, 200}, NULL, 0},
    {"marmalade", "DejaVu Sans Mono Bold 36", "DejaVuSansMono-Bold.ttf", -3,
     {0, 90, 0}, {255, 255, 255}, NULL, 1},
    {"GARDEN", "DejaVu Sans Bold 40", "DejaVuSans-Bold.ttf", 0,
     {255, 255, 255}, {0, 0, 0}, "n01532829_house_finch.JPEG", 1},
    {"pelican", "DejaVu Serif Bold 36", "DejaVuSerif-Bold.ttf", 3,
     {255, 255, 0}, {0, 0, 0}, "n01537544_indigo_bunting.JPEG", 0},
    {"tomorrow", "DejaVu Sans Bold 34", "DejaVuSans-Bold.ttf", 0,
     {0, 0, 0}, {255, 255, 255}, "n01560419_bulbul.JPEG", 1},
};
#define OCR_N_SAMPLES (sizeof OCR_SAMPLES / sizeof *OCR_SAMPLES)

/* A photo of data/imagenet-sample without text that the text-likeness test
 * skips (bench/ocr_bench: 13% of the 500 are skipped). */
#define OCR_PLAIN_PHOTO "n01484850_great_white_shark.JPEG"

/* Render s (onto <shared>/data/imagenet-sample/s->photo when set) and
 * encode it: *out (g_free) and *len.  On a photo the word sits on a plate of s->bg, 70% opaque, in the
 * lower third (as a sign or a caption would).  0 on success. */
static inline int ocr_render(const ocr_sample *s, const char *shared, void **out, size_t *len)
{
    char photo_path[4096];
    snprintf(photo_path, sizeof photo_path, "%s/data/imagenet-sample/%s", shared,
             s->photo ? s->photo : "");
    VipsImage *mask = NULL, *rot = NULL, *m8 = NULL, *photo = NULL, *canvas = NULL;
    int rc = -1;
    uint8_t *mk = NULL, *px = NULL;
    /* fonts by name through fontconfig: vips_text's "fontfile" option reads
     * freed memory on its second use in a process (libvips 8.14, seen by
     * ASan) */
    if (vips_text(&mask, s->word, "font", s->font, "dpi", 72, NULL)) goto done;
    if (s->angle != 0) {
        if (vips_rotate(mask, &rot, s->angle, NULL)) goto done;
    } else {
        rot = mask;
        g_object_ref(rot);
    }
    if (vips_cast_uchar(rot, &m8, NULL)) goto done;
    size_t mlen = 0;
    if (!(mk = vips_image_write_to_memory(m8, &mlen))) goto done;
    int mw = m8->Xsize, mh = m8->Ysize;
    int w = mw + 80, h = mh + 80, x0 = 40, y0 = 40;
    if (s->photo) {
        VipsImage *a = NULL, *b = NULL;
        if (!(a = vips_image_new_from_file(photo_path, "access", VIPS_ACCESS_SEQUENTIAL, NULL)))
            goto done;
        int e = vips_colourspace(a, &b, VIPS_INTERPRETATION_sRGB, NULL);
        g_object_unref(a);
        if (e) goto done;
        if (b->Bands > 3) {
            e = vips_extract_band(b, &photo, 0, "n", 3, NULL);
            g_object_unref(b);
            if (e) goto done;
        } else {
            photo = b;
        }
        if (photo->Xsize < mw + 20 || photo->Ysize < mh + 20) goto done;
        w = photo->Xsize;
        h = photo->Ysize;
        x0 = (w - mw) / 2;
        y0 = h - mh - h / 6 > 0 ? h - mh - h / 6 : 0;
        size_t plen;
        if (!(px = vips_image_write_to_memory(photo, &plen))) goto done;
        /* the plate */
        for (int y = y0 - 8 < 0 ? 0 : y0 - 8; y < y0 + mh + 8 && y < h; y++)
            for (int x = x0 - 12 < 0 ? 0 : x0 - 12; x < x0 + mw + 12 && x < w; x++)
                for (int c = 0; c < 3; c++) {
                    uint8_t *p = px + ((size_t)y * w + x) * 3 + c;
                    *p = (uint8_t)((*p * 3 + s->bg[c] * 7 + 5) / 10);
                }
    } else {
        if (!(px = g_malloc((size_t)w * h * 3))) goto done;
        for (size_t i = 0; i < (size_t)w * h; i++) memcpy(px + i * 3, s->bg, 3);
    }
    for (int y = 0; y < mh; y++)
        for (int x = 0; x < mw; x++) {
            int a = mk[(size_t)y * mw + x];
            uint8_t *p = px + ((size_t)(y + y0) * w + (x + x0)) * 3;
            for (int c = 0; c < 3; c++) p[c] = (uint8_t)((p[c] * (255 - a) + s->ink[c] * a + 127) / 255);
        }
    if (!(canvas = vips_image_new_from_memory(px, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR)))
        goto done;
    canvas->Type = VIPS_INTERPRETATION_sRGB;
    rc = s->jpeg ? vips_jpegsave_buffer(canvas, out, len, "Q", 90, NULL)
                 : vips_pngsave_buffer(canvas, out, len, NULL);
done:
    if (canvas) g_object_unref(canvas);
    if (photo) g_object_unref(photo);
    if (m8) g_object_unref(m8);
    if (rot) g_object_unref(rot);
    if (mask) g_object_unref(mask);
    g_free(mk);
    g_free(px);
    return rc ? -1 : 0;
}

#endif
