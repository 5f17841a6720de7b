/*
 * test_preprocess.c - image decoding + CLIP preprocessing against the
 * reference fixtures (bit-exact), EXIF orientation, other formats, the fast
 * JPEG shrink mode and hostile inputs.
 *
 * Needs ../shared (skips with 77 otherwise).  Test images for orientation,
 * formats and errors are generated here with libvips from the fixtures.
 */
/* testutil.h builds fixture paths in fixed 4 KiB buffers (truncation is
 * harmless: the open then fails loudly). */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "clip/config.h"
#include "common/error.h"
#include "common/util.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <vips/vips.h>
#include <zlib.h>

#define S 224
#define NPIX (3 * S * S)

/* Documented bound (docs/preprocessing.md) on max |fast - exact| in
 * normalised units over the enlarged fixture JPEGs. */
#define FAST_SHRINK_MAX_ABS 0.15
#define FAST_SHRINK_MEAN_ABS 0.005

static cdx_preproc_config clip_pre(void)
{
    cdx_preproc_config p = {S, S, {0.48145466f, 0.4578275f, 0.40821073f},
                            {0.26862954f, 0.26130258f, 0.27577711f}};
    return p;
}

static cdx_result run(const void *d, size_t n, int autorotate, int fast, float *out,
                      cdx_image_meta *meta)
{
    cdx_preproc_config pre = clip_pre();
    cdx_image_params p = cdx_image_default_params();
    p.autorotate = autorotate;
    p.fast_shrink = fast;
    return cdx_image_preprocess(d, n, &pre, &p, out, meta);
}

static void *read_fixture(const char *rel, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_fixture_dir(), rel);
    void *d = test_read_file(path, len);
    if (!d) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    return d;
}

static double mean_abs_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - b[i]);
    return s / n;
}

/* ---- 1. every fixture image, autorotate off, must be bit-exact --------- */
static void test_fixtures(json_t *images)
{
    static float out[NPIX];
    size_t i;
    json_t *im;
    json_array_foreach(images, i, im) {
        const char *id = json_string_value(json_object_get(im, "id"));
        const char *file = json_string_value(json_object_get(im, "file"));
        const char *rel = json_string_value(json_object_get(json_object_get(im, "pixels"), "file"));
        size_t len;
        void *data = read_fixture(file, &len);
        float *exp = test_load_array(rel, NPIX);
        cdx_image_meta meta;
        cdx_result r = run(data, len, 0, 0, out, &meta);
        CHECKF(r == CDX_OK, "%s: %s", id, cdx_last_error());
        double d = r == CDX_OK ? test_max_abs_diff(out, exp, NPIX) : INFINITY;
        printf("  %-28s %-5s %4dx%-4d max|diff| = %g\n", id,
               json_string_value(json_object_get(im, "pil_mode")), meta.width, meta.height, d);
        CHECKF(d == 0.0, "%s: max abs diff %g (want exactly 0)", id, d);
        CHECK(meta.width == json_integer_value(json_object_get(im, "width")));
        CHECK(meta.height == json_integer_value(json_object_get(im, "height")));
        json_t *o = json_object_get(im, "exif_orientation");
        CHECKF(meta.orientation == (json_is_integer(o) ? json_integer_value(o) : 1),
               "%s: orientation %d", id, meta.orientation);
        const char *fmt = json_string_value(json_object_get(im, "format"));
        char lower[16] = "";
        for (int k = 0; fmt && fmt[k] && k < 15; k++) lower[k] = (char)(fmt[k] | 0x20);
        CHECKF(strcmp(meta.format, lower) == 0, "%s: format %s", id, meta.format);
        free(exp);
        free(data);
    }
}

/* ---- 1b. concurrent callers (one-time libvips init, no shared state) ------ */

typedef struct thread_job {
    json_t *images;
    int mismatches;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *job = arg;
    float *out = malloc(NPIX * sizeof(float));
    size_t i;
    json_t *im;
    json_array_foreach(job->images, i, im) {
        size_t len;
        void *data = read_fixture(json_string_value(json_object_get(im, "file")), &len);
        float *exp = test_load_array(
            json_string_value(json_object_get(json_object_get(im, "pixels"), "file")), NPIX);
        if (run(data, len, 0, 0, out, NULL) != CDX_OK || test_max_abs_diff(out, exp, NPIX) != 0.0)
            job->mismatches++;
        free(exp);
        free(data);
    }
    free(out);
    return NULL;
}

static void test_threads(json_t *images)
{
    enum { NT = 4 };
    pthread_t th[NT];
    thread_job jobs[NT];
    for (int t = 0; t < NT; t++) {
        jobs[t].images = images;
        jobs[t].mismatches = 0;
        CHECK(pthread_create(&th[t], NULL, thread_main, &jobs[t]) == 0);
    }
    int bad = 0;
    for (int t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        bad += jobs[t].mismatches;
    }
    printf("  %d threads x %zu images: %d mismatches\n", NT, json_array_size(images), bad);
    CHECK(bad == 0);
}

/* ---- libvips helpers for generated inputs -------------------------------- */

static VipsImage *vload(const void *d, size_t n)
{
    VipsImage *im = vips_image_new_from_buffer(d, n, "", NULL);
    if (!im) {
        fprintf(stderr, "vips load: %s\n", vips_error_buffer());
        exit(1);
    }
    return im;
}

static void *vsave(VipsImage *im, const char *suffix, size_t *n)
{
    void *buf = NULL;
    if (vips_image_write_to_buffer(im, suffix, &buf, n, NULL)) {
        fprintf(stderr, "vips save %s: %s\n", suffix, vips_error_buffer());
        vips_error_clear();
        return NULL;
    }
    return buf;
}

/* ---- 2. EXIF orientation ---------------------------------------------------- */

/* Preprocess `jpeg` with autorotate on; make an upright PNG of the same
 * decoded pixels with libvips (vips_autorot, saved losslessly, metadata
 * stripped) and preprocess that: the outputs must be identical. */
static void check_upright(const char *what, const void *jpeg, size_t n, int want_orient)
{
    static float a[NPIX], b[NPIX], c[NPIX];
    cdx_image_meta meta;
    CHECKF(run(jpeg, n, 1, 0, a, &meta) == CDX_OK, "%s: %s", what, cdx_last_error());
    CHECKF(meta.orientation == want_orient, "%s: orientation %d want %d", what,
           meta.orientation, want_orient);
    VipsImage *im = vload(jpeg, n), *up = NULL, *plain = NULL;
    CHECK(vips_autorot(im, &up, NULL) == 0);
    size_t un = 0, pn = 0;
    void *png = NULL, *png_stored = NULL;
    if (vips_pngsave_buffer(up, &png, &un, "strip", TRUE, "compression", 1, NULL) ||
        vips_copy(im, &plain, NULL) ||
        vips_pngsave_buffer(plain, &png_stored, &pn, "strip", TRUE, "compression", 1, NULL)) {
        fprintf(stderr, "vips: %s\n", vips_error_buffer());
        exit(1);
    }
    CHECK(run(png, un, 1, 0, b, NULL) == CDX_OK);
    double d = test_max_abs_diff(a, b, NPIX);
    printf("  %-36s autorotate on vs upright PNG: max|diff| = %g\n", what, d);
    CHECKF(d == 0.0, "%s: autorotated differs from upright copy by %g", what, d);
    /* autorotate off: the stored pixels, i.e. the un-rotated PNG. */
    CHECK(run(jpeg, n, 0, 0, a, NULL) == CDX_OK);
    CHECK(run(png_stored, pn, 0, 0, c, NULL) == CDX_OK);
    CHECKF(test_max_abs_diff(a, c, NPIX) == 0.0, "%s: autorotate off != stored pixels", what);
    g_free(png);
    g_free(png_stored);
    g_object_unref(up);
    g_object_unref(plain);
    g_object_unref(im);
}

static void test_orientation(void)
{
    size_t n;
    void *d = read_fixture("images/syn_exif6_jpg.jpg", &n);
    check_upright("syn_exif6_jpg", d, n, 6);
    free(d);
    d = read_fixture("images/imagenet_can_opener_exif6.jpeg", &n);
    check_upright("imagenet_can_opener_exif6", d, n, 6);
    free(d);

    /* All eight orientations: a non-square photo saved as JPEG with each
     * EXIF orientation value. */
    d = read_fixture("images/imagenet_goldfish.jpeg", &n);
    VipsImage *base = vload(d, n);
    for (int o = 1; o <= 8; o++) {
        VipsImage *t = NULL;
        if (vips_copy(base, &t, NULL)) exit(1);
        vips_image_set_int(t, "orientation", o);
        size_t jn;
        void *jpeg = vsave(t, ".jpg[Q=90]", &jn);
        CHECK(jpeg != NULL);
        if (jpeg) {
            char what[64];
            snprintf(what, sizeof what, "goldfish orientation=%d", o);
            check_upright(what, jpeg, jn, o);
        }
        g_free(jpeg);
        g_object_unref(t);
    }
    g_object_unref(base);
    free(d);
}

/* ---- 3. other formats: lossless ones must equal the PNG source ------------ */

static void test_formats(void)
{
    static float ref[NPIX], got[NPIX];
    const char *srcs[] = {"images/coco_cats.png", "images/skimage_horse_rgba.png",
                          "images/skimage_camera_L.png"};
    const struct { const char *suffix, *name; int lossless; } fmts[] = {
        {".webp[lossless]", "webp", 1}, {".tif", "tiff", 1}, {".gif", "gif", 0},
        {".heic[Q=90]", "heif", 0}, {".avif[Q=90]", "avif", 0},
        {".webp[Q=90]", "webp", 0},
    };
    for (size_t s = 0; s < sizeof srcs / sizeof srcs[0]; s++) {
        size_t n;
        void *d = read_fixture(srcs[s], &n);
        CHECK(run(d, n, 0, 0, ref, NULL) == CDX_OK);
        VipsImage *im = vload(d, n);
        for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
#if defined(__SANITIZE_ADDRESS__)
            /* libx265 (the HEIC *encoder*, used only to make the test input)
             * keeps a process-lifetime allocation LeakSanitizer reports. */
            if (strcmp(fmts[f].name, "heif") == 0) {
                printf("  %-30s heif  : encoder skipped under ASan\n", srcs[s]);
                continue;
            }
#endif
            size_t en;
            void *enc = vsave(im, fmts[f].suffix, &en);
            if (!enc) {
                printf("  %-30s %-6s: libvips cannot write it here, skipped\n", srcs[s], fmts[f].name);
                continue;
            }
            cdx_image_meta meta;
            cdx_result r = run(enc, en, 0, 0, got, &meta);
            if (r == CDX_ERR_UNSUPPORTED) {
                printf("  %-30s %-6s: unsupported by this build: %s\n", srcs[s], fmts[f].name,
                       cdx_last_error());
            } else {
                CHECKF(r == CDX_OK, "%s as %s: %s", srcs[s], fmts[f].name, cdx_last_error());
                CHECKF(strcmp(meta.format, fmts[f].name) == 0, "format %s want %s", meta.format,
                       fmts[f].name);
                double dd = test_max_abs_diff(ref, got, NPIX);
                printf("  %-30s %-6s: max|diff| vs PNG = %g%s\n", srcs[s], fmts[f].name, dd,
                       fmts[f].lossless ? " (lossless: must be 0)" : "");
                /* GIF quantises, BMP/TIFF of grey/alpha may change mode */
                if (fmts[f].lossless && s == 0) CHECKF(dd == 0.0, "%s: %g", fmts[f].name, dd);
                CHECK(isfinite(dd));
            }
            g_free(enc);
        }
        g_object_unref(im);
        free(d);
    }
}

/* ---- 4. fast JPEG shrink-on-load ------------------------------------------ */

static void test_fast_shrink(json_t *images)
{
    static float exact[NPIX], fast[NPIX];
    double worst = 0, worst_mean = 0;
    int n_shrunk = 0;
    size_t i;
    json_t *im;
    json_array_foreach(images, i, im) {
        if (strcmp(json_string_value(json_object_get(im, "format")), "JPEG") != 0) continue;
        const char *id = json_string_value(json_object_get(im, "id"));
        size_t n;
        void *d = read_fixture(json_string_value(json_object_get(im, "file")), &n);
        /* As stored: shorter side < 2*224, so fast mode must be exact. */
        CHECK(run(d, n, 0, 0, exact, NULL) == CDX_OK);
        CHECK(run(d, n, 0, 1, fast, NULL) == CDX_OK);
        CHECKF(test_max_abs_diff(exact, fast, NPIX) == 0.0, "%s: small image changed", id);
        /* Enlarged 4x (a camera-sized JPEG): shrink-on-load kicks in. */
        VipsImage *src = vload(d, n), *big = NULL;
        if (vips_resize(src, &big, 4.0, NULL)) exit(1);
        size_t bn;
        void *bj = vsave(big, ".jpg[Q=92]", &bn);
        CHECK(bj != NULL);
        if (bj) {
            CHECK(run(bj, bn, 0, 0, exact, NULL) == CDX_OK);
            CHECK(run(bj, bn, 0, 1, fast, NULL) == CDX_OK);
            double mx = test_max_abs_diff(exact, fast, NPIX), mn = mean_abs_diff(exact, fast, NPIX);
            printf("  %-28s x4 %dx%d: fast vs exact max|diff| %.4f mean %.5f\n", id,
                   vips_image_get_width(big), vips_image_get_height(big), mx, mn);
            if (mx > worst) worst = mx;
            if (mn > worst_mean) worst_mean = mn;
            n_shrunk++;
        }
        g_free(bj);
        g_object_unref(big);
        g_object_unref(src);
        free(d);
    }
    printf("  fast shrink: worst max %.4f, worst mean %.5f over %d images\n", worst, worst_mean,
           n_shrunk);
    CHECK(n_shrunk > 0);
    CHECKF(worst <= FAST_SHRINK_MAX_ABS, "fast shrink max deviation %g > %g", worst,
           FAST_SHRINK_MAX_ABS);
    CHECKF(worst_mean <= FAST_SHRINK_MEAN_ABS, "fast shrink mean deviation %g > %g", worst_mean,
           FAST_SHRINK_MEAN_ABS);
}

/* ---- 5. Pillow modes chosen from the file ---------------------------------- */

static size_t png_chunk(uint8_t *o, const char *type, const uint8_t *data, uint32_t n);
static void put32(uint8_t *p, uint32_t v);

/* A 4x3 PNG of colour type ct / depth 8 with raw (unfiltered) rows and an
 * optional extra chunk before IDAT (tRNS or PLTE). */
static size_t make_png(uint8_t *o, int ct, int nch, const char *xtype, const uint8_t *trns,
                       uint32_t ntrns)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const int w = 4, h = 3;
    size_t n = 8;
    memcpy(o, sig, 8);
    uint8_t ihdr[13] = {0};
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = 8;
    ihdr[9] = (uint8_t)ct;
    n += png_chunk(o + n, "IHDR", ihdr, 13);
    if (trns) n += png_chunk(o + n, xtype, trns, ntrns);
    uint8_t raw[3 * (1 + 4 * 4)], z[256];
    size_t rn = 0;
    for (int y = 0; y < h; y++) {
        raw[rn++] = 0;   /* filter: none */
        for (int i = 0; i < w * nch; i++) raw[rn++] = (uint8_t)(40 * y + 9 * i);
    }
    uLongf zn = sizeof z;
    compress(z, &zn, raw, rn);
    n += png_chunk(o + n, "IDAT", z, (uint32_t)zn);
    n += png_chunk(o + n, "IEND", NULL, 0);
    return n;
}

/* BMP goes through libvips' ImageMagick loader: a hand-made 24-bit BMP must
 * preprocess like a PNG of the same pixels. */
static void test_bmp(void)
{
    enum { W = 37, H = 21 };
    uint8_t rgb[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)(i * 7 + i / 50);
    size_t row = (W * 3 + 3) & ~(size_t)3, n = 54 + row * H;
    uint8_t *bmp = calloc(1, n);
    bmp[0] = 'B'; bmp[1] = 'M';
    uint32_t le[] = {(uint32_t)n, 0, 54, 40, W, H};
    for (int k = 0; k < 6; k++)
        for (int b = 0; b < 4; b++) bmp[2 + 4 * k + b] = (uint8_t)(le[k] >> (8 * b));
    bmp[26] = 1;    /* planes */
    bmp[28] = 24;   /* bits per pixel */
    for (int y = 0; y < H; y++)   /* bottom-up rows, BGR */
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                bmp[54 + (size_t)(H - 1 - y) * row + x * 3 + (2 - c)] = rgb[(y * W + x) * 3 + c];
    VipsImage *im = vips_image_new_from_memory(rgb, sizeof rgb, W, H, 3, VIPS_FORMAT_UCHAR);
    size_t pn;
    void *png = vsave(im, ".png", &pn);
    static float a[NPIX], b[NPIX];
    cdx_image_meta meta;
    cdx_result r = run(bmp, n, 0, 0, a, &meta);
    if (r == CDX_ERR_UNSUPPORTED) {
        printf("  BMP: unsupported by this libvips build: %s\n", cdx_last_error());
    } else {
        CHECKF(r == CDX_OK, "BMP: %s", cdx_last_error());
        CHECK(png && run(png, pn, 0, 0, b, NULL) == CDX_OK);
        double d = test_max_abs_diff(a, b, NPIX);
        printf("  BMP %dx%d (%s) vs PNG of the same pixels: max|diff| = %g\n", meta.width,
               meta.height, meta.format, d);
        CHECK(d == 0.0 && strcmp(meta.format, "bmp") == 0);
    }
    /* "BM" alone, and ImageMagick-only content without the BMP signature, fail. */
    CHECK(run(bmp, 10, 0, 0, a, NULL) != CDX_OK);
    g_free(png);
    g_object_unref(im);
    free(bmp);
}

static void expect_mode(const char *what, const void *d, size_t n, cdx_pixmode want)
{
    cdx_image_params p = cdx_image_default_params();
    cdx_pixels px;
    cdx_result r = cdx_image_decode(d, n, &p, S, &px);
    CHECKF(r == CDX_OK, "%s: %s", what, cdx_last_error());
    if (r) return;
    printf("  %-32s -> mode %s (%d channels)\n", what, cdx_pixmode_name(px.mode), px.nch);
    CHECKF(px.mode == want, "%s: mode %s, want %s", what, cdx_pixmode_name(px.mode),
           cdx_pixmode_name(want));
    cdx_pixels_free(&px);
}

static void test_modes(void)
{
    uint8_t buf[2048], plte[768];
    uint8_t trns_grey[2] = {0, 40}, trns_rgb[6] = {0, 40, 0, 49, 0, 58};
    for (int i = 0; i < 768; i++) plte[i] = (uint8_t)(i * 37);
    expect_mode("PNG grey + tRNS (Pillow: L)", buf, make_png(buf, 0, 1, "tRNS", trns_grey, 2),
                CDX_PIXMODE_L);
    expect_mode("PNG RGB + tRNS (Pillow: RGB)", buf, make_png(buf, 2, 3, "tRNS", trns_rgb, 6),
                CDX_PIXMODE_RGB);
    expect_mode("PNG grey+alpha (Pillow: LA)", buf, make_png(buf, 4, 2, NULL, NULL, 0),
                CDX_PIXMODE_LA);
    expect_mode("PNG palette (Pillow: P)", buf, make_png(buf, 3, 1, "PLTE", plte, 768),
                CDX_PIXMODE_P);
    test_bmp();

    size_t n;
    void *d = read_fixture("images/coco_cats.png", &n);
    VipsImage *im = vload(d, n), *grey = NULL, *wide = NULL;
    void *enc;
    size_t en;
    if (vips_colourspace(im, &grey, VIPS_INTERPRETATION_B_W, NULL)) exit(1);
    if ((enc = vsave(grey, ".png[bitdepth=1]", &en))) {
        expect_mode("PNG 1-bit grey (Pillow: 1)", enc, en, CDX_PIXMODE_1);
        g_free(enc);
    }
    /* 16-bit RGB: Pillow keeps the high byte, so it equals the 8-bit file. */
    if (vips_cast(im, &wide, VIPS_FORMAT_USHORT, NULL)) exit(1);
    VipsImage *w16 = NULL;
    if (vips_linear1(wide, &w16, 257.0, 0.0, "uchar", FALSE, NULL)) exit(1);
    VipsImage *w16u = NULL;
    if (vips_cast(w16, &w16u, VIPS_FORMAT_USHORT, NULL)) exit(1);
    vips_image_set_int(w16u, "interpretation", VIPS_INTERPRETATION_RGB16);
    w16u->Type = VIPS_INTERPRETATION_RGB16;
    if ((enc = vsave(w16u, ".png", &en))) {
        static float a[NPIX], b[NPIX];
        expect_mode("PNG 16-bit RGB (Pillow: RGB)", enc, en, CDX_PIXMODE_RGB);
        CHECK(run(enc, en, 0, 0, a, NULL) == CDX_OK);
        CHECK(run(d, n, 0, 0, b, NULL) == CDX_OK);
        CHECKF(test_max_abs_diff(a, b, NPIX) == 0.0, "16-bit RGB PNG != 8-bit PNG");
        g_free(enc);
    }
    g_object_unref(w16u);
    g_object_unref(w16);
    g_object_unref(wide);
    g_object_unref(grey);
    g_object_unref(im);
    free(d);

    /* Extreme aspect ratios go through the whole pipeline quickly. */
    const int dims[][2] = {{1, 10000}, {10000, 1}, {20000, 3}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        VipsImage *t = NULL, *t2 = NULL;
        if (vips_xyz(&t, dims[i][0], dims[i][1], NULL) || vips_cast(t, &t2, VIPS_FORMAT_UCHAR, NULL))
            exit(1);
        if ((enc = vsave(t2, ".png", &en))) {
            static float out[NPIX];
            double t0 = cdx_now();
            cdx_result r = run(enc, en, 1, 0, out, NULL);
            printf("  %dx%d image: %s in %.3f s\n", dims[i][0], dims[i][1], cdx_result_str(r),
                   cdx_now() - t0);
            CHECKF(r == CDX_OK, "%dx%d: %s", dims[i][0], dims[i][1], cdx_last_error());
            g_free(enc);
        }
        g_object_unref(t2);
        g_object_unref(t);
    }
}

/* ---- 6. hostile inputs ------------------------------------------------------ */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Append a PNG chunk with a correct CRC. */
static size_t png_chunk(uint8_t *o, const char *type, const uint8_t *data, uint32_t n)
{
    put32(o, n);
    memcpy(o + 4, type, 4);
    if (n) memcpy(o + 8, data, n);
    put32(o + 8 + n, (uint32_t)crc32(0, o + 4, 4 + n));
    return 12 + n;
}

/* A valid-looking PNG claiming w x h 8-bit grey, with a tiny IDAT. */
static size_t make_bomb_png(uint8_t *o, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(o, sig, 8);
    n = 8;
    uint8_t ihdr[13] = {0};
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = 8;   /* depth */
    ihdr[9] = 0;   /* grey */
    n += png_chunk(o + n, "IHDR", ihdr, 13);
    uint8_t raw[64] = {0}, z[128];
    uLongf zn = sizeof z;
    compress(z, &zn, raw, sizeof raw);
    n += png_chunk(o + n, "IDAT", z, (uint32_t)zn);
    n += png_chunk(o + n, "IEND", NULL, 0);
    return n;
}

static void expect_error(const char *what, const void *d, size_t n, cdx_result want)
{
    static float out[NPIX];
    double t0 = cdx_now();
    cdx_result r = run(d, n, 1, 0, out, NULL);
    double dt = cdx_now() - t0;
    printf("  %-34s -> %s: %s (%.3f s)\n", what, cdx_result_str(r), cdx_last_error(), dt);
    CHECKF(r == want, "%s: got %s want %s", what, cdx_result_str(r), cdx_result_str(want));
    CHECKF(strlen(cdx_last_error()) > 10, "%s: message too vague", what);
}

static void test_errors(void)
{
    size_t n;
    uint8_t *jpg = read_fixture("images/skimage_rocket_jpg.jpg", &n);
    expect_error("zero bytes", jpg, 0, CDX_ERR_FORMAT);
    expect_error("truncated JPEG (half)", jpg, n / 2, CDX_ERR_FORMAT);
    expect_error("truncated JPEG (header only)", jpg, 300, CDX_ERR_FORMAT);
    expect_error("JPEG signature only", jpg, 3, CDX_ERR_FORMAT);
    uint8_t *bad = malloc(n);
    memcpy(bad, jpg, n);
    for (size_t i = n / 3; i < n / 3 + 2000; i++) bad[i] = (uint8_t)(i * 131);
    static float out[NPIX];
    cdx_result r = run(bad, n, 1, 0, out, NULL);   /* corrupt scan: error or decoded, never a crash */
    printf("  %-34s -> %s %s\n", "corrupted JPEG scan data", cdx_result_str(r), r ? cdx_last_error() : "");
    free(bad);
    free(jpg);

    uint8_t *png = read_fixture("images/coco_cats.png", &n);
    expect_error("truncated PNG (half)", png, n / 2, CDX_ERR_FORMAT);
    expect_error("truncated PNG (40 bytes)", png, 40, CDX_ERR_FORMAT);
    free(png);

    const char *text = "This is a text file named photo.jpg, not an image.\n";
    expect_error("text file named .jpg", text, strlen(text), CDX_ERR_FORMAT);

    uint8_t garbage[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof garbage; i++) {
        s = s * 1103515245u + 12345u;
        garbage[i] = (uint8_t)(s >> 16);
    }
    expect_error("4 KiB of garbage", garbage, sizeof garbage, CDX_ERR_FORMAT);

    uint8_t bomb[512];
    size_t bn = make_bomb_png(bomb, 100000, 100000);
    expect_error("PNG claiming 100000x100000", bomb, bn, CDX_ERR_TOO_LARGE);

    /* max_pixels is honoured for a real image too. */
    png = read_fixture("images/coco_cats.png", &n);
    cdx_preproc_config pre = clip_pre();
    cdx_image_params p = cdx_image_default_params();
    p.max_pixels = 640 * 480 - 1;
    CHECK(cdx_image_preprocess(png, n, &pre, &p, out, NULL) == CDX_ERR_TOO_LARGE);
    p.max_pixels = 640 * 480;
    CHECK(cdx_image_preprocess(png, n, &pre, &p, out, NULL) == CDX_OK);
    free(png);

    /* PDF/SVG content is refused (untrusted loaders are blocked). */
    const char *svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>";
    r = run(svg, strlen(svg), 1, 0, out, NULL);
    printf("  %-34s -> %s: %s\n", "SVG document", cdx_result_str(r), cdx_last_error());
    CHECK(r == CDX_ERR_UNSUPPORTED || r == CDX_ERR_FORMAT);
}

int main(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/cases.json", test_fixture_dir());
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr);
    if (!cases) {
        fprintf(stderr, "%s: %s\n", path, jerr.text);
        return 1;
    }
    json_t *images = json_object_get(json_object_get(cases, "preprocess"), "images");
    CHECK(json_array_size(images) == 17);

    /* Concurrent first use: libvips is initialised inside, exactly once. */
    printf("concurrent callers:\n");
    test_threads(images);
    CHECK(cdx_image_init() == CDX_OK);
    printf("fixture images (autorotate off, must be bit-exact):\n");
    test_fixtures(images);
    printf("EXIF orientation:\n");
    test_orientation();
    printf("other formats:\n");
    test_formats();
    printf("fast JPEG shrink:\n");
    test_fast_shrink(images);
    printf("Pillow modes:\n");
    test_modes();
    printf("hostile inputs:\n");
    test_errors();
    json_decref(cases);
    return test_finish();
}
