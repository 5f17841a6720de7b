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

#include <ctype.h>
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

/* ---- descriptive text (fts branch) --------------------------------------- */

#define XMP_MAX ((size_t)1 << 20)   /* larger XMP packets are not searched */

/* Length of a valid UTF-8 sequence at s (n bytes left), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : (c >> 4) == 14 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0;
    if (!len || len > n) return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    if (len == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))) return 0;
    if (len == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))) return 0;
    return len;
}

/* Append s[0..n) as one line of the list dst (cap bytes): cleaned to UTF-8
 * (other bytes read as Latin-1), control characters as spaces, trimmed;
 * nothing when empty, already listed, or when it does not fit. */
static void text_add(char *dst, size_t cap, const char *s, size_t n)
{
    char line[1024];
    size_t j = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n && j + 4 < sizeof line;) {
        size_t k = utf8_seq(u + i, n - i);
        if (k > 1) {
            memcpy(line + j, u + i, k);
            j += k;
            i += k;
            continue;
        }
        unsigned c = u[i++];
        if (c == 0) break;
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)) c = ' ';
        if (c < 0x80) {
            if (!(c == ' ' && (j == 0 || line[j - 1] == ' '))) line[j++] = (char)c;
        } else {   /* Latin-1 */
            line[j++] = (char)(0xc0 | (c >> 6));
            line[j++] = (char)(0x80 | (c & 0x3f));
        }
    }
    while (j && line[j - 1] == ' ') j--;
    if (!j) return;
    line[j] = '\0';
    size_t used = strlen(dst);
    for (const char *p = dst; (p = strstr(p, line)); p++)
        if ((p == dst || p[-1] == '\n') && p[j] == '\n') return;   /* already listed */
    if (used + j + 2 > cap) return;
    memcpy(dst + used, line, j);
    dst[used + j] = '\n';
    dst[used + j + 1] = '\0';
}

/* An EXIF value as libvips renders it, "V (V, Type, n components, m
 * bytes)": V is found by its repetition, so a V holding " (" is kept. */
static void exif_value_add(VipsImage *im, const char *name, char *dst, size_t cap, char split)
{
    const char *s = NULL;
    if (!vips_image_get_typeof(im, name) || vips_image_get_string(im, name, &s) || !s) return;
    size_t n = strlen(s), v = n;
    for (const char *p = s; (p = strstr(p, " (")); p++) {
        size_t l = (size_t)(p - s);
        if (2 * l + 2 <= n && !strncmp(p + 2, s, l) && (p[2 + l] == ',' || p[2 + l] == ')')) {
            v = l;
            break;
        }
    }
    if (!split) {
        text_add(dst, cap, s, v);
        return;
    }
    for (size_t i = 0; i < v;) {
        size_t j = i;
        while (j < v && s[j] != split) j++;
        text_add(dst, cap, s + i, j - i);
        i = j + 1;
    }
}

/* IPTC-IIM datasets of record 2 (raw IIM, or inside a Photoshop APP13
 * resource 0x0404). */
static void iptc_parse(const uint8_t *d, size_t n, cdx_image_exif *out)
{
    static const char ps[] = "Photoshop 3.0";
    if (n > sizeof ps && !memcmp(d, ps, sizeof ps)) {   /* 8BIM resources */
        size_t i = sizeof ps;
        while (i + 12 <= n && !memcmp(d + i, "8BIM", 4)) {
            unsigned id = (unsigned)d[i + 4] << 8 | d[i + 5];
            size_t nl = d[i + 6], at = i + 7 + nl + ((nl + 1) % 2);   /* name padded to even */
            if (at + 4 > n) return;
            size_t sz = (size_t)d[at] << 24 | (size_t)d[at + 1] << 16 | (size_t)d[at + 2] << 8 | d[at + 3];
            at += 4;
            if (sz > n - at) return;
            if (id == 0x0404) {
                iptc_parse(d + at, sz, out);
                return;
            }
            i = at + sz + (sz % 2);
        }
        return;
    }
    for (size_t i = 0; i + 5 <= n;) {
        if (d[i] != 0x1c) return;   /* IIM datasets are contiguous */
        unsigned rec = d[i + 1], ds = d[i + 2];
        size_t sz = (size_t)d[i + 3] << 8 | d[i + 4];
        if (sz & 0x8000) return;    /* extended length: not used for text */
        i += 5;
        if (sz > n - i) return;
        const char *v = (const char *)d + i;
        if (rec == 2) {
            if (ds == 25) text_add(out->keywords, sizeof out->keywords, v, sz);
            else if (ds == 5 || ds == 120 || ds == 80 || ds == 90 || ds == 92 || ds == 95 || ds == 101)
                text_add(out->text, sizeof out->text, v, sz);
        }
        i += sz;
    }
}

/* Decode XML character references and the five entities of v[0..n) into
 * buf (cap bytes); other markup inside (tags) becomes a space. */
static size_t xml_text(const char *v, size_t n, char *buf, size_t cap)
{
    static const struct { const char *e; char c; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < cap;) {
        if (v[i] == '<') {
            while (i < n && v[i] != '>') i++;
            i++;
            buf[j++] = ' ';
            continue;
        }
        if (v[i] == '&') {
            size_t k = 0;
            for (; k < sizeof ents / sizeof ents[0]; k++) {
                size_t el = strlen(ents[k].e);
                if (el <= n - i && !memcmp(v + i, ents[k].e, el)) {
                    buf[j++] = ents[k].c;
                    i += el;
                    break;
                }
            }
            if (k < sizeof ents / sizeof ents[0]) continue;
            if (i + 2 < n && v[i + 1] == '#') {   /* &#N; or &#xH; */
                size_t p = i + 2;
                int hex = v[p] == 'x' || v[p] == 'X';
                p += hex;
                unsigned long cp = 0;
                size_t digits = 0;
                while (p < n && digits < 7 && (hex ? isxdigit((unsigned char)v[p]) : isdigit((unsigned char)v[p]))) {
                    int dv = isdigit((unsigned char)v[p]) ? v[p] - '0' : (tolower((unsigned char)v[p]) - 'a' + 10);
                    cp = cp * (hex ? 16 : 10) + (unsigned long)dv;
                    p++;
                    digits++;
                }
                if (digits && p < n && v[p] == ';' && cp >= 0x20 && cp < 0x110000 &&
                    !(cp >= 0xd800 && cp < 0xe000)) {
                    if (cp < 0x80) buf[j++] = (char)cp;
                    else if (cp < 0x800) {
                        buf[j++] = (char)(0xc0 | (cp >> 6));
                        buf[j++] = (char)(0x80 | (cp & 0x3f));
                    } else if (cp < 0x10000) {
                        buf[j++] = (char)(0xe0 | (cp >> 12));
                        buf[j++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                        buf[j++] = (char)(0x80 | (cp & 0x3f));
                    } else {
                        buf[j++] = (char)(0xf0 | (cp >> 18));
                        buf[j++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                        buf[j++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                        buf[j++] = (char)(0x80 | (cp & 0x3f));
                    }
                    i = p + 1;
                    continue;
                }
            }
        }
        buf[j++] = v[i++];
    }
    buf[j] = '\0';
    return j;
}

/* Bounded search for needle in h[0..n). */
static const char *mem_find(const char *h, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (h[i] == needle[0] && !memcmp(h + i, needle, k)) return h + i;
    return NULL;
}

/* One XMP property, as an element (its rdf:li items, else its text) and as
 * an attribute of rdf:Description (name="v"), every occurrence. */
static void xmp_prop(const char *x, size_t n, const char *name, char *dst, size_t cap)
{
    char open[80], close[80], attr[80], buf[1024];
    snprintf(open, sizeof open, "<%s", name);
    snprintf(close, sizeof close, "</%s>", name);
    snprintf(attr, sizeof attr, " %s=", name);
    const char *end = x + n;
    for (const char *p = x; (p = mem_find(p, (size_t)(end - p), open));) {
        p += strlen(open);
        if (p >= end || !(*p == '>' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) continue;
        const char *gt = memchr(p, '>', (size_t)(end - p));
        if (!gt || gt[-1] == '/') continue;
        const char *body = gt + 1, *stop = mem_find(body, (size_t)(end - body), close);
        if (!stop) return;
        int items = 0;
        for (const char *li = body; (li = mem_find(li, (size_t)(stop - li), "<rdf:li"));) {
            const char *lgt = memchr(li, '>', (size_t)(stop - li));
            if (!lgt) break;
            const char *lend = mem_find(lgt, (size_t)(stop - lgt), "</rdf:li>");
            if (!lend) break;
            text_add(dst, cap, buf, xml_text(lgt + 1, (size_t)(lend - lgt - 1), buf, sizeof buf));
            items++;
            li = lend;
        }
        if (!items) text_add(dst, cap, buf, xml_text(body, (size_t)(stop - body), buf, sizeof buf));
        p = stop;
    }
    for (const char *p = x; (p = mem_find(p, (size_t)(end - p), attr));) {
        p += strlen(attr);
        if (p >= end || (*p != '"' && *p != '\'')) continue;
        const char *q = memchr(p + 1, *p, (size_t)(end - p - 1));
        if (!q) return;
        text_add(dst, cap, buf, xml_text(p + 1, (size_t)(q - p - 1), buf, sizeof buf));
        p = q;
    }
}

static void read_text(VipsImage *im, cdx_image_exif *out)
{
    static const char *const exif_text[] = {"exif-ifd0-ImageDescription", "exif-ifd0-XPTitle",
                                            "exif-ifd0-XPSubject", "exif-ifd0-XPComment",
                                            "exif-ifd0-Artist", "exif-ifd0-XPAuthor"};
    for (size_t i = 0; i < sizeof exif_text / sizeof exif_text[0]; i++)
        exif_value_add(im, exif_text[i], out->text, sizeof out->text, 0);
    exif_value_add(im, "exif-ifd0-XPKeywords", out->keywords, sizeof out->keywords, ';');
    const void *blob;
    size_t n;
    if (vips_image_get_typeof(im, VIPS_META_IPTC_NAME) &&
        !vips_image_get_blob(im, VIPS_META_IPTC_NAME, &blob, &n) && blob)
        iptc_parse(blob, n, out);
    if (vips_image_get_typeof(im, VIPS_META_XMP_NAME) &&
        !vips_image_get_blob(im, VIPS_META_XMP_NAME, &blob, &n) && blob && n <= XMP_MAX) {
        static const char *const props[] = {"dc:title", "dc:description", "dc:creator",
                                            "photoshop:City", "photoshop:State",
                                            "photoshop:Country", "Iptc4xmpCore:Location"};
        for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
            xmp_prop(blob, n, props[i], out->text, sizeof out->text);
        xmp_prop(blob, n, "dc:subject", out->keywords, sizeof out->keywords);
    }
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
    read_text(im, out);
    g_object_unref(im);
    vips_error_clear();
    return CDX_OK;
}

/* ---- thumbnails (fleet workers, for images whose bytes are not kept) ----- */

cdx_result cdx_image_thumbnail_jpeg(const void *data, size_t len, int size, void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    cdx_result r = cdx_image_init();
    if (r) return r;
    if (size < 16 || size > 4096) return cdx_error(CDX_ERR_INVALID_ARG, "thumbnail size must be 16..4096");
    VipsImage *img = NULL;
    if (vips_thumbnail_buffer((void *)data, len, &img, size, "height", size, "size", VIPS_SIZE_DOWN, NULL) != 0)
        return vips_fail(CDX_ERR_FORMAT, "thumbnail");
    void *buf = NULL;
    size_t n = 0;
    int rc = vips_jpegsave_buffer(img, &buf, &n, "Q", 82, "strip", TRUE, NULL);
    g_object_unref(img);
    if (rc != 0) return vips_fail(CDX_ERR_FORMAT, "thumbnail JPEG");
    *out = malloc(n ? n : 1);
    if (*out) memcpy(*out, buf, n);
    g_free(buf);
    if (!*out) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    *out_len = n;
    return CDX_OK;
}
