/*
 * ocr_bench.c - what OCR costs per image, with and without the
 * text-likeness skip (src/image/ocr.c), on one thread.
 *
 *   ocr_bench [N] [LANG]     N photos of $CLIPDEX_SHARED/data/imagenet-sample
 *                            (default 40) and the rendered images of
 *                            tests/ocr_render.h
 *
 * For every image: decode (libvips, as indexing does), grey copy + test,
 * and Tesseract on every image (so both costs come from one run):
 *   without skip = grey + Tesseract on every image
 *   with skip    = grey + test + Tesseract on the images that pass
 * Also the fraction skipped and, for rendered images, how many of their
 * words were read.  Decoding is shown apart: indexing pays it anyway.
 * OCR_BENCH_VERBOSE=1 lists each rendered image's result,
 * OCR_BENCH_TEST_ONLY=1 runs the test without Tesseract,
 * OCR_BENCH_DUMP=DIR writes the rendered images there.
 */
#include "common/util.h"
#include "image/decode.h"
#include "image/ocr.h"
#include "image/preprocess.h"

#include "../tests/ocr_render.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct tally {
    int n, passed, found;
    double decode, grey, test, ocr_all, ocr_passed;
} tally;

static int one(ocr_engine *eng, const void *data, size_t len, const char *word, tally *t)
{
    cdx_image_params ip = cdx_image_default_params();
    cdx_pixels px;
    double t0 = cdx_now();
    if (cdx_image_decode(data, len, &ip, 224, &px) != CDX_OK) {
        fprintf(stderr, "decode failed: %s\n", cdx_last_error());
        return -1;
    }
    double t1 = cdx_now();
    ocr_grey g;
    if (ocr_grey_from_pixels(&px, &g) != CDX_OK) {
        cdx_pixels_free(&px);
        return -1;
    }
    double t2 = cdx_now();
    int likely = ocr_text_likely(&g);
    double t3 = cdx_now();
    char *text = NULL;
    if (!getenv("OCR_BENCH_TEST_ONLY")) ocr_engine_read(eng, &g, &text);
    double t4 = cdx_now();
    t->n++;
    t->decode += t1 - t0;
    t->grey += t2 - t1;
    t->test += t3 - t2;
    t->ocr_all += t4 - t3;
    if (likely) {
        t->passed++;
        t->ocr_passed += t4 - t3;
    }
    if (word && getenv("OCR_BENCH_VERBOSE"))
        fprintf(stderr, "  '%s': test %s, read \"%s\"\n", word, likely ? "passed" : "SKIPPED",
                text ? text : "");
    if (word && text && strcasestr(text, word)) t->found++;
    else if (word) fprintf(stderr, "  '%s' not read (test %s): \"%s\"\n", word,
                           likely ? "passed" : "SKIPPED", text ? text : "");
    free(text);
    ocr_grey_free(&g);
    cdx_pixels_free(&px);
    return likely;
}

static void print(const char *name, const tally *t)
{
    if (!t->n) return;
    double n = t->n;
    double without = (t->grey + t->ocr_all) / n * 1e3, with = (t->grey + t->test + t->ocr_passed) / n * 1e3;
    printf("%-9s %4d  %7.1f  %6.2f  %6.2f  %8.1f  %7.1f  %7.1f  %5.0f%%  %.2fx", name, t->n,
           t->decode / n * 1e3, t->grey / n * 1e3, t->test / n * 1e3, t->ocr_all / n * 1e3,
           without, with, 100.0 * (t->n - t->passed) / n, with > 0 ? without / with : 0);
    if (t->found || !strcmp(name, "rendered")) printf("  words read %d/%d", t->found, t->n);
    printf("\n");
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int n = 40;
    if (argc > 1) {
        char *end;
        long v = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end || v < 1 || v > 500) {
            fprintf(stderr, "usage: ocr_bench [PHOTOS (1..500, default 40)] [LANG (default eng)]\n");
            return 2;
        }
        n = (int)v;
    }
    const char *lang = argc > 2 ? argv[2] : "eng";
    const char *shared = getenv("CLIPDEX_SHARED") ? getenv("CLIPDEX_SHARED") : "../shared";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/data/imagenet-sample", shared);
    if (cdx_image_init() != CDX_OK) return 1;
    ocr_engine *eng = NULL;
    if (ocr_engine_new(lang, &eng) != CDX_OK) {
        fprintf(stderr, "ocr_bench: %s\n", cdx_last_error());
        return 1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "ocr_bench: %s: cannot open (set CLIPDEX_SHARED)\n", dir);
        return 1;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcasecmp(de->d_name + l - 5, ".jpeg")) continue;
        if (nn == cap) names = realloc(names, (cap = cap ? 2 * cap : 512) * sizeof *names);
        names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp);
    if ((size_t)n > nn) n = (int)nn;

    tally photos = {0}, rendered = {0};
    char path[8192];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        char *data = NULL;
        if (cdx_read_file(path, (size_t)64 << 20, &data, &len) != CDX_OK) continue;
        if (one(eng, data, len, NULL, &photos) == 0 && getenv("OCR_BENCH_VERBOSE"))
            fprintf(stderr, "  skipped %s\n", names[i]);
        free(data);
    }
    for (size_t i = 0; i < OCR_N_SAMPLES; i++) {
        void *buf = NULL;
        size_t len = 0;
        if (ocr_render(&OCR_SAMPLES[i], shared, &buf, &len)) {
            fprintf(stderr, "render '%s' failed: %s\n", OCR_SAMPLES[i].word, vips_error_buffer());
            continue;
        }
        if (getenv("OCR_BENCH_DUMP")) {
            char out[4200];
            snprintf(out, sizeof out, "%s/%s.%s", getenv("OCR_BENCH_DUMP"), OCR_SAMPLES[i].word,
                     OCR_SAMPLES[i].jpeg ? "jpg" : "png");
            cdx_write_file_atomic(out, buf, len);
        }
        one(eng, buf, len, OCR_SAMPLES[i].word, &rendered);
        g_free(buf);
    }
    printf("OCR cost per image, one thread, lang %s (ms; 'with skip' = grey + test + Tesseract\n"
           "on the images that pass; decoding is paid by indexing anyway)\n", lang);
    printf("set          n   decode    grey    test  tess-all  no-skip  w/ skip  skipped  gain\n");
    print("photos", &photos);
    print("rendered", &rendered);
    for (size_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    ocr_engine_free(eng);
    return 0;
}
