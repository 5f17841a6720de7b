/*
 * ocr.c - the grey working copy, the text-likeness test and the Tesseract
 * wrapper of ocr.h.
 *
 * Tesseract is used through its C API (tesseract/capi.h) with the LSTM
 * engine, page segmentation "sparse text" (scene text anywhere in a
 * photo, in no particular order), adaptive binarisation, and the image
 * handed over as 8-bit grey memory (inverted when mostly dark: light text
 * on a dark ground), so the file is never read again.  Its data directory is found
 * once ($TESSDATA_PREFIX, then Debian's locations) and passed explicitly,
 * so that the languages checked are the languages loaded.
 *
 * Tesseract's LSTM opens OpenMP teams of up to 4 threads per layer step;
 * with one handle per decode worker that would put 4x as many threads as
 * cores on the machine.  Each reading thread therefore turns on OpenMP's
 * dynamic adjustment for itself (omp_set_dynamic, a per-thread setting),
 * which caps those teams at the idle cores (one on a busy machine):
 * OMP_THREAD_LIMIT=1 behaviour without limiting the CLIP engine's own
 * OpenMP loops on other threads.
 */
#include "image/ocr.h"

#include "common/error.h"

#include <leptonica/allheaders.h>
#include <tesseract/capi.h>

#include <dirent.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- grey copy ----------------------------------------------------------- */

static inline int grey_of(const cdx_pixels *px, const uint8_t *s)
{
    switch (px->mode) {
    case CDX_PIXMODE_L:
    case CDX_PIXMODE_1:
        return s[0];
    case CDX_PIXMODE_LA:
        return (s[0] * s[1] + 255 * (255 - s[1]) + 127) / 255;
    case CDX_PIXMODE_RGB:
    case CDX_PIXMODE_P:
        return (299 * s[0] + 587 * s[1] + 114 * s[2] + 500) / 1000;
    case CDX_PIXMODE_RGBA: {
        int v = (299 * s[0] + 587 * s[1] + 114 * s[2] + 500) / 1000;
        return (v * s[3] + 255 * (255 - s[3]) + 127) / 255;
    }
    case CDX_PIXMODE_CMYK: {
        int r = (255 - s[0]) * (255 - s[3]) / 255, g = (255 - s[1]) * (255 - s[3]) / 255,
            b = (255 - s[2]) * (255 - s[3]) / 255;
        return (299 * r + 587 * g + 114 * b + 500) / 1000;
    }
    case CDX_PIXMODE_I: {
        int32_t v;
        memcpy(&v, s, 4);
        return v <= 0 ? 0 : v >= 65535 ? 255 : v >> 8;
    }
    }
    return 0;
}

cdx_result ocr_grey_from_pixels(const cdx_pixels *px, ocr_grey *out)
{
    memset(out, 0, sizeof *out);
    if (!px || !px->data || px->width <= 0 || px->height <= 0)
        return cdx_error(CDX_ERR_INVALID_ARG, "ocr: no pixels");
    int longer = px->width > px->height ? px->width : px->height;
    int f = (longer + OCR_MAX_SIDE - 1) / OCR_MAX_SIDE;
    int w = px->width / f, h = px->height / f;
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    size_t es = cdx_pixmode_elem(px->mode) * (size_t)px->nch;
    size_t row = es * (size_t)px->width;
    uint8_t *d = malloc((size_t)w * h);
    if (!d) return cdx_error(CDX_ERR_NOMEM, "ocr: out of memory for a %dx%d grey copy", w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sum = 0;
            for (int j = 0; j < f; j++) {
                const uint8_t *s = (const uint8_t *)px->data + (size_t)(y * f + j) * row +
                                   (size_t)x * f * es;
                for (int i = 0; i < f; i++, s += es) sum += grey_of(px, s);
            }
            d[(size_t)y * w + x] = (uint8_t)((sum + f * f / 2) / (f * f));
        }
    out->data = d;
    out->w = w;
    out->h = h;
    return CDX_OK;
}

void ocr_grey_free(ocr_grey *g)
{
    if (!g) return;
    free(g->data);
    memset(g, 0, sizeof *g);
}

/* ---- text-likeness ------------------------------------------------------- */

#define CELL 16          /* pixels per cell side (at the sampling step) */
#define EDGE 40          /* grey step that counts as a stroke's edge */
#define MAXW 10          /* widest stroke counted (samples) */
#define CELL_HITS 8      /* strokes per cell across rows (mean over a window) */
#define CELL_CROSS 2     /* strokes across columns in a window */
#define RUN 3            /* cells per window: a piece of a line of text */

/* Strokes along one line of samples p[0], p[st], ... (n samples): an edge
 * up and an edge down (or down and up) at most MAXW apart with the same
 * level on both outer sides, as a pen line has.  hist[w] counts widths;
 * cells[i / CELL] counts strokes per cell. */
static void strokes(const uint8_t *p, int n, size_t st, int *cells, int (*hist)[MAXW + 1])
{
    int last = -1, sign = 0;
    for (int i = 0; i + 1 < n; i++) {
        int d = p[(size_t)(i + 1) * st] - p[(size_t)i * st];
        if (d > -EDGE && d < EDGE) continue;
        int sg = d > 0 ? 1 : -1;
        if (last >= 0 && sg == -sign && i - last <= MAXW &&
            abs(p[(size_t)(i + 1) * st] - p[(size_t)last * st]) < EDGE / 2) {
            cells[i / CELL]++;
            if (hist) hist[i / CELL][i - last]++;
            last = -1;
            continue;
        }
        last = i;
        sign = sg;
    }
}

/* One band of cells (CELL sample rows from y0) at sampling step s. */
static int band_text(const ocr_grey *g, int s, int y0, int cw, int *hits, int *cross,
                     int (*hist)[MAXW + 1])
{
    memset(hits, 0, (size_t)cw * sizeof *hits);
    memset(cross, 0, (size_t)cw * sizeof *cross);
    memset(hist, 0, (size_t)cw * sizeof *hist);
    for (int j = 0; j < CELL; j++)
        strokes(g->data + (size_t)(y0 + j) * s * g->w, cw * CELL, (size_t)s, hits, hist);
    for (int cx = 0; cx < cw; cx++)
        for (int i = 0; i < CELL; i += 2) {
            int one[1] = {0};
            strokes(g->data + (size_t)y0 * s * g->w + (size_t)(cx * CELL + i) * s, CELL,
                    (size_t)s * g->w, one, NULL);
            cross[cx] += one[0];
        }
    /* windows of RUN neighbouring cells: strokes in every cell, enough in
     * all, some across columns, and one stroke width (+-1) for most */
    for (int cx = RUN - 1; cx < cw; cx++) {
        int h = 0, x = 0, thin = 0, wh[MAXW + 1] = {0};
        for (int k = cx - RUN + 1; k <= cx; k++) {
            h += hits[k];
            x += cross[k];
            thin |= 2 * hits[k] < CELL_HITS;
            for (int w = 1; w <= MAXW; w++) wh[w] += hist[k][w];
        }
        int best = 0;
        for (int w = 1; w < MAXW; w++)
            if (wh[w] + wh[w + 1] > best) best = wh[w] + wh[w + 1];
        if (!thin && h >= RUN * CELL_HITS && x >= CELL_CROSS && 2 * best >= h) return 1;
    }
    return 0;
}

static int text_likely_at(const ocr_grey *g, int s)
{
    int cw = g->w / s / CELL, rows = g->h / s;
    if (cw < RUN || rows < CELL) return 0;
    int *hits = malloc((size_t)cw * sizeof *hits), *cross = malloc((size_t)cw * sizeof *cross);
    int (*hist)[MAXW + 1] = malloc((size_t)cw * sizeof *hist);
    int yes = !hits || !cross || !hist;   /* out of memory: read it rather than lose text */
    /* bands overlap by half a cell, so a line of text is never split */
    for (int y0 = 0; y0 + CELL <= rows && !yes; y0 += CELL / 2)
        yes = band_text(g, s, y0, cw, hits, cross, hist);
    free(hits);
    free(cross);
    free(hist);
    return yes;
}

int ocr_text_likely(const ocr_grey *g)
{
    if (!g || !g->data) return 0;
    /* fine strokes at full scale, large letters at a third */
    return text_likely_at(g, 1) || text_likely_at(g, 3);
}

/* ---- languages ----------------------------------------------------------- */

/* The tessdata directory: $TESSDATA_PREFIX (itself or its tessdata/), then
 * Debian's.  NULL when none has a traineddata file. */
static const char *tessdata_dir(char *buf, size_t cap)
{
    const char *env = getenv("TESSDATA_PREFIX");
    const char *cands[] = {env, env ? "tessdata" : NULL, "/usr/share/tesseract-ocr/5/tessdata",
                           "/usr/share/tesseract-ocr/4.00/tessdata", "/usr/share/tessdata"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        if (!cands[i]) continue;
        int n = i == 1 ? snprintf(buf, cap, "%s/tessdata", env) : snprintf(buf, cap, "%s", cands[i]);
        if (n <= 0 || (size_t)n >= cap) continue;
        DIR *d = opendir(buf);
        if (!d) continue;
        struct dirent *de;
        int found = 0;
        while (!found && (de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            found = l > 12 && !strcmp(de->d_name + l - 12, ".traineddata");
        }
        closedir(d);
        if (found) return buf;
    }
    return NULL;
}

cdx_result ocr_installed_langs(char *buf, size_t cap)
{
    char dir[4096];
    if (cap) buf[0] = '\0';
    if (!tessdata_dir(dir, sizeof dir))
        return cdx_error(CDX_ERR_NOT_FOUND, "no Tesseract language data found "
                         "(apt-get install tesseract-ocr-eng, or set TESSDATA_PREFIX)");
    DIR *d = opendir(dir);
    if (!d) return cdx_error(CDX_ERR_IO, "%s: cannot list", dir);
    struct dirent *de;
    size_t used = 0;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l <= 12 || strcmp(de->d_name + l - 12, ".traineddata")) continue;
        if (l == 15 && !strncmp(de->d_name, "osd", 3)) continue;   /* orientation, not a language */
        int n = snprintf(buf + used, cap - used, "%s%.*s", used ? " " : "", (int)(l - 12),
                         de->d_name);
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
    closedir(d);
    return CDX_OK;
}

cdx_result ocr_check_langs(const char *langs)
{
    if (!langs || !*langs) langs = "eng";
    size_t len = strlen(langs);
    if (len >= OCR_LANGS_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "OCR language list too long (%zu bytes)", len);
    int plus = 0;
    for (const char *p = langs; *p; p++) plus += *p == '+';
    if (plus >= OCR_MAX_LANGS)
        return cdx_error(CDX_ERR_INVALID_ARG, "at most %d OCR languages", OCR_MAX_LANGS);
    char dir[4096], installed[2048];
    cdx_result r = ocr_installed_langs(installed, sizeof installed);
    if (r) return r;
    tessdata_dir(dir, sizeof dir);
    for (const char *p = langs;;) {
        size_t l = strcspn(p, "+");
        if (l == 0 || l > 32)
            return cdx_error(CDX_ERR_INVALID_ARG, "OCR languages \"%s\": expected names like "
                             "eng or eng+deu", langs);
        for (size_t i = 0; i < l; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_'))
                return cdx_error(CDX_ERR_INVALID_ARG, "OCR languages \"%s\": expected names "
                                 "like eng or eng+deu", langs);
        }
        char file[4200];
        struct stat st;
        snprintf(file, sizeof file, "%s/%.*s.traineddata", dir, (int)l, p);
        if ((l == 3 && !strncmp(p, "osd", 3)) || stat(file, &st) != 0 || !S_ISREG(st.st_mode))
            return cdx_error(CDX_ERR_NOT_FOUND, "OCR language \"%.*s\" is not installed "
                             "(installed: %s; others come as Debian packages "
                             "tesseract-ocr-<lang>)", (int)l, p, *installed ? installed : "none");
        if (!p[l]) break;
        p += l + 1;
    }
    return CDX_OK;
}

/* ---- Tesseract ----------------------------------------------------------- */

struct ocr_engine {
    TessBaseAPI *api;
};

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void quiet_leptonica(void)
{
    setMsgSeverity(L_SEVERITY_NONE);   /* Leptonica's stderr chatter on odd boxes */
}

cdx_result ocr_engine_new(const char *langs, ocr_engine **out)
{
    *out = NULL;
    if (!langs || !*langs) langs = "eng";
    cdx_result r = ocr_check_langs(langs);
    if (r) return r;
    char dir[4096];
    tessdata_dir(dir, sizeof dir);
    ocr_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->api = TessBaseAPICreate())) {
        free(e);
        return cdx_error(CDX_ERR_NOMEM, "out of memory for a Tesseract handle");
    }
    if (TessBaseAPIInit2(e->api, dir, langs, OEM_LSTM_ONLY) != 0) {
        ocr_engine_free(e);
        return cdx_error(CDX_ERR_FORMAT, "Tesseract could not load \"%s\" from %s", langs, dir);
    }
    TessBaseAPISetPageSegMode(e->api, PSM_SPARSE_TEXT);
    /* adaptive (tiled) Otsu: a sign on a photo is binarised by its own
     * surroundings, not by the whole photo's histogram */
    TessBaseAPISetVariable(e->api, "thresholding_method", "1");
    pthread_once(&quiet_once, quiet_leptonica);
    TessBaseAPISetVariable(e->api, "debug_file", "/dev/null");
    *out = e;
    return CDX_OK;
}

void ocr_engine_free(ocr_engine *e)
{
    if (!e) return;
    if (e->api) {
        TessBaseAPIEnd(e->api);
        TessBaseAPIDelete(e->api);
    }
    free(e);
}

#define MIN_CONF 55.0f   /* words below this confidence are mostly texture */

/* Append word w (and a separator) to buf, dropping words without a letter
 * or digit (punctuation, stroke fragments). */
static void add_word(char *buf, size_t *used, const char *w, int line_end)
{
    int alnum = 0;
    for (const unsigned char *p = (const unsigned char *)w; *p; p++)
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            *p >= 0xC0)
            alnum++;
    size_t l = strlen(w);
    if (!alnum || *used + l + 2 > OCR_TEXT_MAX) return;
    memcpy(buf + *used, w, l);
    *used += l;
    buf[(*used)++] = line_end ? '\n' : ' ';
    buf[*used] = '\0';
}

cdx_result ocr_engine_read(ocr_engine *e, const ocr_grey *g, char **text)
{
    *text = NULL;
    if (!e || !g || !g->data || g->w < 1 || g->h < 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "ocr: no image");
    char *buf = malloc(OCR_TEXT_MAX);
    if (!buf) return cdx_error(CDX_ERR_NOMEM, "ocr: out of memory");
    buf[0] = '\0';
    size_t used = 0;
    omp_set_dynamic(1);   /* Tesseract's OpenMP teams: idle cores only (see top) */
    /* Tesseract reads dark ink on light paper best: a mostly dark image
     * (light text on a dark ground) is handed over inverted. */
    uint64_t sum = 0;
    size_t np = (size_t)g->w * g->h;
    for (size_t i = 0; i < np; i++) sum += g->data[i];
    uint8_t *inv = NULL;
    if (sum < (uint64_t)np * 128 && (inv = malloc(np)) != NULL)
        for (size_t i = 0; i < np; i++) inv[i] = (uint8_t)(255 - g->data[i]);
    TessBaseAPISetImage(e->api, inv ? inv : g->data, g->w, g->h, 1, g->w);
    TessBaseAPISetSourceResolution(e->api, 150);
    if (TessBaseAPIRecognize(e->api, NULL) != 0) {
        TessBaseAPIClear(e->api);
        free(inv);
        free(buf);
        return cdx_error(CDX_ERR_INTERNAL, "Tesseract failed on a %dx%d image", g->w, g->h);
    }
    TessResultIterator *it = TessBaseAPIGetIterator(e->api);
    if (it) {
        const TessPageIterator *pi = TessResultIteratorGetPageIteratorConst(it);
        do {
            char *w = TessResultIteratorGetUTF8Text(it, RIL_WORD);
            if (!w) continue;
            if (TessResultIteratorConfidence(it, RIL_WORD) >= MIN_CONF)
                add_word(buf, &used, w, TessPageIteratorIsAtFinalElement(pi, RIL_TEXTLINE,
                                                                         RIL_WORD));
            TessDeleteText(w);
        } while (TessResultIteratorNext(it, RIL_WORD));
        TessResultIteratorDelete(it);
    }
    TessBaseAPIClear(e->api);
    free(inv);
    while (used && (buf[used - 1] == ' ' || buf[used - 1] == '\n')) buf[--used] = '\0';
    *text = buf;
    return CDX_OK;
}
