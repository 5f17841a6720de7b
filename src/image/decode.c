/*
 * decode.c - libvips decoding into Pillow-equivalent pixel modes (see
 * decode.h for the invariants).
 *
 * Why each libvips setting:
 *  - vips_cache_set_max(0): the operation cache would keep decoded images of
 *    earlier calls alive; every image here is decoded once, so caching only
 *    costs memory.
 *  - concurrency 1 (unless VIPS_CONCURRENCY is set): callers parallelise
 *    across images (one image per worker thread); libjpeg/libpng decode
 *    serially anyway, so extra vips worker threads would only oversubscribe
 *    the cores.  Note this is process-wide.
 *  - vips_block_untrusted_set(TRUE): loaders libvips marks as untrusted
 *    (ImageMagick, PDF, SVG, FITS, MAT, ...) are blocked; ImageMagick is
 *    re-enabled only for content that starts with the BMP signature "BM",
 *    because Debian's libvips has no native BMP loader.
 *  - fail_on=error: truncated files and decoder errors fail; mere libjpeg
 *    warnings (e.g. "extraneous bytes before marker", common in camera
 *    files) do not.  Pillow raises on truncated files too.
 *  - access=sequential: the file is decoded top to bottom straight into the
 *    output buffer, so peak memory is about one decoded image.
 *
 * The libvips error buffer is process-wide; its text is copied into our
 * thread-local error channel right after the failing call.
 */
#include "image/decode.h"

#include "common/error.h"
#include "common/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

/* ---- initialisation ----------------------------------------------------- */

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ready;
static int vips_have_heif, vips_have_magick;

/* libvips reports recoverable decoder trouble (libjpeg warnings, odd ICC
 * chunks) with g_warning on stderr; a library must not print, and the
 * failures that matter reach the caller through fail_on=error. */
static void vips_log_quiet(const gchar *domain, GLogLevelFlags level, const gchar *msg,
                           gpointer user)
{
    (void)domain; (void)level; (void)msg; (void)user;
}

static void vips_init_once(void)
{
    if (vips_init("clipdex") != 0) return;
    if (!getenv("CLIPDEX_VIPS_WARNINGS"))
        g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, vips_log_quiet, NULL);
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    if (!getenv("VIPS_CONCURRENCY")) vips_concurrency_set(1);
    vips_block_untrusted_set(TRUE);
    vips_have_heif = vips_type_find("VipsOperation", "heifload_buffer") != 0;
    vips_have_magick = vips_type_find("VipsOperation", "magickload_buffer") != 0;
    if (vips_have_magick) vips_operation_block_set("VipsForeignLoadMagickBuffer", FALSE);
    vips_ready = 1;
}

cdx_result cdx_image_init(void)
{
    pthread_once(&vips_once, vips_init_once);
    if (!vips_ready) return cdx_error(CDX_ERR_INTERNAL, "libvips failed to initialise");
    return CDX_OK;
}

/* Copy (and clear) the libvips error text into our error channel. */
static cdx_result vips_fail(cdx_result code, const char *what)
{
    char *msg = vips_error_buffer_copy();
    char clean[512] = "";
    size_t n = 0;
    for (const char *s = msg ? msg : ""; *s && n + 3 < sizeof clean; s++) {
        if (*s == '\n') {
            if (s[1]) { clean[n++] = ';'; clean[n++] = ' '; }
        } else {
            clean[n++] = *s;
        }
    }
    clean[n] = '\0';
    g_free(msg);
    return cdx_error(code, "%s%s%s", what, n ? ": " : "", clean);
}

/* ---- format detection ---------------------------------------------------- */

typedef enum fmt { FMT_JPEG, FMT_PNG, FMT_WEBP, FMT_GIF, FMT_TIFF, FMT_HEIF, FMT_BMP } fmt;

static cdx_result detect(const uint8_t *d, size_t len, fmt *f, const char **loader)
{
    /* vips_foreign_find_load_buffer() returns the loader's type name. */
    static const struct { const char *nick; fmt f; } known[] = {
        {"VipsForeignLoadJpegBuffer", FMT_JPEG}, {"VipsForeignLoadPngBuffer", FMT_PNG},
        {"VipsForeignLoadWebpBuffer", FMT_WEBP}, {"VipsForeignLoadNsgifBuffer", FMT_GIF},
        {"VipsForeignLoadTiffBuffer", FMT_TIFF}, {"VipsForeignLoadHeifBuffer", FMT_HEIF},
        {"VipsForeignLoadMagickBuffer", FMT_BMP},
    };
    const char *nick = vips_foreign_find_load_buffer(d, len);
    vips_error_clear();
    if (!nick) {
        if (len >= 2 && d[0] == 'B' && d[1] == 'M')
            return cdx_error(CDX_ERR_UNSUPPORTED, "BMP is not supported by this libvips build "
                                                  "(it needs the ImageMagick loader)");
        return cdx_error(CDX_ERR_FORMAT, "not a recognised image (unknown content, %zu bytes)", len);
    }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(nick, known[i].nick) != 0) continue;
        if (known[i].f == FMT_BMP && !(len >= 2 && d[0] == 'B' && d[1] == 'M'))
            break;   /* ImageMagick is only trusted with BMP */
        *f = known[i].f;
        *loader = nick;
        return CDX_OK;
    }
    return cdx_error(CDX_ERR_UNSUPPORTED, "image format not supported (libvips loader %s); "
                                          "supported: JPEG, PNG, WebP, GIF, TIFF%s%s",
                     nick, vips_have_heif ? ", HEIF/AVIF" : "", vips_have_magick ? ", BMP" : "");
}

/* Pillow's mode of a PNG, from its IHDR (colour type, bit depth).  libvips
 * adds an alpha band for tRNS chunks and expands palettes; Pillow keeps
 * mode L / RGB (transparency only in info) and P. */
static cdx_result png_mode(const uint8_t *d, size_t len, cdx_pixmode *mode)
{
    if (len < 33 || memcmp(d + 12, "IHDR", 4) != 0)
        return cdx_error(CDX_ERR_FORMAT, "PNG without a valid IHDR chunk");
    int depth = d[24], ct = d[25];
    switch (ct) {
    case 0: *mode = depth == 1 ? CDX_PIXMODE_1 : depth == 16 ? CDX_PIXMODE_I : CDX_PIXMODE_L; break;
    case 2: *mode = CDX_PIXMODE_RGB; break;
    case 3: *mode = CDX_PIXMODE_P; break;
    case 4: *mode = CDX_PIXMODE_LA; break;
    case 6: *mode = CDX_PIXMODE_RGBA; break;
    default: return cdx_error(CDX_ERR_FORMAT, "PNG with invalid colour type %d", ct);
    }
    return CDX_OK;
}

static int mode_channels(cdx_pixmode m)
{
    switch (m) {
    case CDX_PIXMODE_LA: return 2;
    case CDX_PIXMODE_RGB: case CDX_PIXMODE_P: return 3;
    case CDX_PIXMODE_RGBA: case CDX_PIXMODE_CMYK: return 4;
    default: return 1;
    }
}

const char *cdx_pixmode_name(cdx_pixmode m)
{
    static const char *names[] = {"L", "LA", "RGB", "RGBA", "CMYK", "P", "1", "I"};
    return (unsigned)m < sizeof names / sizeof names[0] ? names[m] : "?";
}

/* Mode for formats other than PNG, from what libvips decoded. */
static cdx_result generic_mode(fmt f, VipsImage *im, cdx_pixmode *mode)
{
    int bands = vips_image_get_bands(im);
    VipsBandFormat bf = vips_image_get_format(im);
    VipsInterpretation in = vips_image_get_interpretation(im);
    if (f == FMT_GIF) {
        *mode = CDX_PIXMODE_P;
        return CDX_OK;
    }
    if (in == VIPS_INTERPRETATION_CMYK && bands >= 4) *mode = CDX_PIXMODE_CMYK;
    else if (bands == 1) *mode = bf == VIPS_FORMAT_USHORT ? CDX_PIXMODE_I : CDX_PIXMODE_L;
    else if (bands == 2) *mode = CDX_PIXMODE_LA;
    else if (bands == 3) *mode = CDX_PIXMODE_RGB;
    else if (bands == 4) *mode = CDX_PIXMODE_RGBA;
    else return cdx_error(CDX_ERR_UNSUPPORTED, "images with %d bands are not supported", bands);
    return CDX_OK;
}

/* ---- pixels ---------------------------------------------------------------- */

void cdx_pixels_free(cdx_pixels *p)
{
    if (!p) return;
    if (p->data && p->data_free) p->data_free(p->data);
    p->data = NULL;
    p->data_free = NULL;
}

/* Decode all pixels of `im` and convert to `mode` (first nch bands; 16-bit
 * samples keep their high byte as Pillow's ";16B" unpackers do, except
 * mode I which keeps the full value). */
static cdx_result fetch_pixels(VipsImage *im, cdx_pixmode mode, cdx_pixels *p)
{
    int w = vips_image_get_width(im), h = vips_image_get_height(im);
    int bands = vips_image_get_bands(im);
    VipsBandFormat bf = vips_image_get_format(im);
    int nch = mode_channels(mode);
    if (bf != VIPS_FORMAT_UCHAR && bf != VIPS_FORMAT_USHORT)
        return cdx_error(CDX_ERR_UNSUPPORTED, "sample format %s is not supported",
                         vips_enum_nick(VIPS_TYPE_BAND_FORMAT, bf));
    if (bands < nch)
        return cdx_error(CDX_ERR_FORMAT, "decoder returned %d bands for mode %s",
                         bands, cdx_pixmode_name(mode));
    size_t elem = bf == VIPS_FORMAT_USHORT ? 2 : 1, want, sz = 0;
    if (!cdx_mul_ok((size_t)w * (size_t)h, (size_t)bands * elem, &want))
        return cdx_error(CDX_ERR_TOO_LARGE, "image too large");
    void *mem = vips_image_write_to_memory(im, &sz);
    if (!mem) return vips_fail(CDX_ERR_FORMAT, "cannot decode image");
    if (sz != want) {
        g_free(mem);
        return cdx_error(CDX_ERR_INTERNAL, "decoder returned %zu bytes, expected %zu", sz, want);
    }
    size_t npx = (size_t)w * (size_t)h;
    p->mode = mode;
    p->nch = nch;
    p->width = w;
    p->height = h;
    if (mode != CDX_PIXMODE_I && bf == VIPS_FORMAT_UCHAR && bands == nch) {
        p->data = mem;   /* already in the right layout: adopt the buffer */
        p->data_free = g_free;
        return CDX_OK;
    }
    size_t out_elem = cdx_pixmode_elem(mode);
    void *buf = malloc(npx * (size_t)nch * out_elem);
    if (!buf) {
        g_free(mem);
        return cdx_error(CDX_ERR_NOMEM, "out of memory for %dx%d pixels", w, h);
    }
    if (mode == CDX_PIXMODE_I) {
        int32_t *o = buf;
        if (bf == VIPS_FORMAT_USHORT)
            for (size_t i = 0; i < npx; i++) o[i] = ((const uint16_t *)mem)[i * bands];
        else
            for (size_t i = 0; i < npx; i++) o[i] = ((const uint8_t *)mem)[i * bands];
    } else if (bf == VIPS_FORMAT_USHORT) {
        const uint16_t *s = mem;
        uint8_t *o = buf;
        for (size_t i = 0; i < npx; i++)
            for (int c = 0; c < nch; c++) o[i * nch + c] = (uint8_t)(s[i * bands + c] >> 8);
    } else {
        const uint8_t *s = mem;
        uint8_t *o = buf;
        for (size_t i = 0; i < npx; i++)
            for (int c = 0; c < nch; c++) o[i * nch + c] = s[i * bands + c];
    }
    g_free(mem);
    p->data = buf;
    p->data_free = free;
    return CDX_OK;
}

static VipsImage *open_image(const void *data, size_t len, fmt f, int shrink)
{
    if (f == FMT_JPEG && shrink > 1)
        return vips_image_new_from_buffer(data, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                          "fail_on", VIPS_FAIL_ON_ERROR, "shrink", shrink, NULL);
    return vips_image_new_from_buffer(data, len, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                      "fail_on", VIPS_FAIL_ON_ERROR, NULL);
}

static const char *fmt_name(fmt f, VipsImage *im)
{
    switch (f) {
    case FMT_JPEG: return "jpeg";
    case FMT_PNG: return "png";
    case FMT_WEBP: return "webp";
    case FMT_GIF: return "gif";
    case FMT_TIFF: return "tiff";
    case FMT_BMP: return "bmp";
    case FMT_HEIF: {
        const char *comp = NULL;
        if (vips_image_get_typeof(im, "heif-compression") &&
            vips_image_get_string(im, "heif-compression", &comp) == 0 && comp &&
            strcmp(comp, "av1") == 0)
            return "avif";
        return "heif";
    }
    }
    return "?";
}

cdx_result cdx_image_decode(const void *data, size_t len, const cdx_image_params *params,
                            int target_short, cdx_pixels *out)
{
    memset(out, 0, sizeof *out);
    cdx_result r = cdx_image_init();
    if (r) return r;
    if (!data || len == 0) return cdx_error(CDX_ERR_FORMAT, "empty file (0 bytes)");
    cdx_image_params defaults = cdx_image_default_params();
    if (!params) params = &defaults;

    fmt f = FMT_JPEG;
    const char *loader;
    if ((r = detect(data, len, &f, &loader))) return r;

    /* Header only: libvips loaders are lazy until pixels are requested. */
    VipsImage *im = open_image(data, len, f, 1);
    if (!im) return vips_fail(CDX_ERR_FORMAT, "cannot read image header");
    int w = vips_image_get_width(im), h = vips_image_get_height(im);
    uint64_t npx = (uint64_t)w * (uint64_t)h;
    if (w < 1 || h < 1) {
        g_object_unref(im);
        return cdx_error(CDX_ERR_FORMAT, "image has no pixels (%dx%d)", w, h);
    }
    if (npx > params->max_pixels) {
        g_object_unref(im);
        return cdx_error(CDX_ERR_TOO_LARGE, "%dx%d image has %llu pixels, more than the limit "
                         "of %llu", w, h, (unsigned long long)npx,
                         (unsigned long long)params->max_pixels);
    }
    out->stored_width = w;
    out->stored_height = h;
    out->orientation = 1;
    if (vips_image_get_typeof(im, "orientation")) {
        int o = 1;
        if (vips_image_get_int(im, "orientation", &o) == 0 && o >= 1 && o <= 8)
            out->orientation = o;
    }
    snprintf(out->format, sizeof out->format, "%s", fmt_name(f, im));

    cdx_pixmode mode = CDX_PIXMODE_RGB;
    r = f == FMT_PNG ? png_mode(data, len, &mode) : generic_mode(f, im, &mode);
    if (r) {
        g_object_unref(im);
        return r;
    }

    int shrink = 1;
    if (params->fast_shrink && f == FMT_JPEG && target_short > 0) {
        int short_side = w < h ? w : h;
        for (int s = 8; s >= 2; s /= 2) {
            if ((short_side + s - 1) / s >= 2 * target_short) {
                shrink = s;
                break;
            }
        }
    }
    if (shrink > 1) {
        g_object_unref(im);
        im = open_image(data, len, f, shrink);
        if (!im) return vips_fail(CDX_ERR_FORMAT, "cannot read image header");
    }
    out->shrink = shrink;
    r = fetch_pixels(im, mode, out);
    g_object_unref(im);
    vips_error_clear();
    if (r) return r;
    out->full_w = (double)w / shrink;
    out->full_h = (double)h / shrink;
    if (params->autorotate && out->orientation != 1) {
        r = cdx_pixels_orient(out, out->orientation);
        if (r) {
            cdx_pixels_free(out);
            return r;
        }
    }
    return CDX_OK;
}

/* ---- orientation ---------------------------------------------------------- */

cdx_result cdx_pixels_orient(cdx_pixels *p, int o)
{
    if (o < 1 || o > 8) return cdx_error(CDX_ERR_INVALID_ARG, "bad orientation %d", o);
    if (o == 1) return CDX_OK;
    int W = p->width, H = p->height;
    int swap = o >= 5;
    int ow = swap ? H : W, oh = swap ? W : H;
    size_t px = cdx_pixmode_elem(p->mode) * (size_t)p->nch;
    uint8_t *dst = malloc((size_t)W * (size_t)H * px);
    if (!dst) return cdx_error(CDX_ERR_NOMEM, "out of memory rotating %dx%d pixels", W, H);
    const uint8_t *src = p->data;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;   /* source pixel shown at display (x, y) */
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;
            case 4: sx = x; sy = H - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = H - 1 - x; break;
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;
            default: sx = W - 1 - y; sy = x; break;   /* 8 */
            }
            memcpy(dst + ((size_t)y * ow + x) * px, src + ((size_t)sy * W + sx) * px, px);
        }
    }
    cdx_pixels_free(p);
    p->data = dst;
    p->data_free = free;
    p->width = ow;
    p->height = oh;
    if (swap) {
        double t = p->full_w;
        p->full_w = p->full_h;
        p->full_h = t;
    }
    return CDX_OK;
}

/* ---- EXIF (for the library catalog) --------------------------------------- */

/* libvips renders an EXIF ASCII tag as "value (value, ASCII, n components,
 * m bytes)": keep the text before " (", trimmed. */
static void exif_string(VipsImage *im, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *s = NULL;
    if (!vips_image_get_typeof(im, name) || vips_image_get_string(im, name, &s) || !s) return;
    const char *end = strstr(s, " (");
    size_t n = end ? (size_t)(end - s) : strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\0')) n--;
    while (n && *s == ' ') { s++; n--; }
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++)   /* printable ASCII only: it ends up in JSON and SQL text */
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    out[n] = '\0';
}

/* "YYYY:MM:DD HH:MM:SS" -> unix seconds (as UTC); 0 if malformed. */
static int64_t exif_date(const char *s)
{
    int v[6] = {0};
    static const int len[6] = {4, 2, 2, 2, 2, 2};
    const char *p = s;
    for (int f = 0; f < 6; f++) {
        for (int i = 0; i < len[f]; i++, p++) {
            if (*p < '0' || *p > '9') return 0;
            v[f] = v[f] * 10 + (*p - '0');
        }
        if (f < 5 && *p++ == '\0') return 0;
    }
    if (v[0] < 1800 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 ||
        v[4] > 59 || v[5] > 60)
        return 0;
    /* days from civil (Howard Hinnant's algorithm): no timegm/TZ dependency */
    int y = v[0] - (v[1] <= 2);
    int era = y / 400;
    int yoe = y - era * 400;
    int mp = (v[1] + 9) % 12;
    int doy = (153 * mp + 2) / 5 + v[2] - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    return days * 86400 + v[3] * 3600 + v[4] * 60 + v[5];
}

cdx_result cdx_image_read_exif(const void *data, size_t len, cdx_image_exif *out)
{
    memset(out, 0, sizeof *out);
    cdx_result r = cdx_image_init();
    if (r) return r;
    if (!data || len == 0) return cdx_error(CDX_ERR_FORMAT, "empty file (0 bytes)");
    fmt f = FMT_JPEG;
    const char *loader;
    if ((r = detect(data, len, &f, &loader))) return r;
    VipsImage *im = open_image(data, len, f, 1);
    if (!im) return vips_fail(CDX_ERR_FORMAT, "cannot read image header");
    char date[64], make[64], model[64];
    exif_string(im, "exif-ifd2-DateTimeOriginal", date, sizeof date);
    if (!date[0]) exif_string(im, "exif-ifd0-DateTime", date, sizeof date);
    out->taken = date[0] ? exif_date(date) : 0;
    exif_string(im, "exif-ifd0-Make", make, sizeof make);
    exif_string(im, "exif-ifd0-Model", model, sizeof model);
    if (make[0] && model[0] && strncmp(model, make, strlen(make)) != 0)
        snprintf(out->camera, sizeof out->camera, "%s %s", make, model);
    else
        snprintf(out->camera, sizeof out->camera, "%s", model[0] ? model : make);
    g_object_unref(im);
    vips_error_clear();
    return CDX_OK;
}
