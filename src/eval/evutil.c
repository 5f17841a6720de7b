/*
 * evutil.c - shared helpers of the evaluation modules: error prefixes, capped
 * reads, CSV reader, capped arrays, paths, library listing, text batches.
 *
 * Invariants: every buffer growth is checked against a hard cap and for
 * size_t overflow; the CSV reader never reads past `end` and reports the
 * line of the row it failed on.  See evutil.h.
 */
#include "evutil.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

cdx_result ev_lib_error(cdx_result code, const char *what)
{
    const char *m = cdx_last_error();
    if (!m || !*m) return cdx_set_error(code, "%s: %s", what, cdx_result_str(code));
    return ev_error_prefix(code, "%s", what);
}

cdx_result ev_error_prefix(cdx_result code, const char *fmt, ...)
{
    /* Copies first: cdx_set_error overwrites the message it would read. */
    char old[EV_ERROR_MAX], pre[EV_ERROR_MAX];
    snprintf(old, sizeof old, "%s", cdx_last_error());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    return cdx_set_error(code, "%s: %s", pre, old);
}

cdx_result ev_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cdx_set_error(CDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return cdx_set_error(CDX_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return cdx_set_error(CDX_ERR_TOO_LARGE, "%s: %lld bytes, larger than the limit of %zu",
                        path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return cdx_set_error(CDX_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != n) {
        free(buf);
        return cdx_set_error(CDX_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return CDX_OK;
}

cdx_result ev_vec_push(ev_vec *v, const void *item, size_t elem, size_t max)
{
    if (v->elem == 0) v->elem = elem;
    if (v->n >= max) return cdx_set_error(CDX_ERR_TOO_LARGE, "more than %zu items", max);
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16, bytes;
        if (cap > max) cap = max;
        if (__builtin_mul_overflow(cap, elem, &bytes))
            return cdx_set_error(CDX_ERR_TOO_LARGE, "array too large");
        void *p = realloc(v->data, bytes);
        if (!p) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
        v->data = p;
        v->cap = cap;
    }
    memcpy((char *)v->data + v->n * elem, item, elem);
    v->n++;
    return CDX_OK;
}

void ev_vec_free(ev_vec *v)
{
    free(v->data);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ CSV */

void ev_csv_init(ev_csv *c, const char *path, const char *data, size_t len)
{
    memset(c, 0, sizeof *c);
    c->p = data;
    c->end = data + len;
    c->path = path;
    c->next_line = 1;
    /* A UTF-8 byte order mark is not part of the first field. */
    if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) c->p += 3;
}

void ev_csv_free(ev_csv *c)
{
    free(c->buf);
    c->buf = NULL;
}

static int csv_put(ev_csv *c, size_t *n, char ch)
{
    if (*n + 1 >= c->buf_cap) {
        if (c->buf_cap >= EV_MAX_LINE_BYTES) {
            cdx_set_error(CDX_ERR_TOO_LARGE, "%s:%ld: row longer than %zu bytes", c->path, c->line,
                     EV_MAX_LINE_BYTES);
            return -1;
        }
        size_t cap = c->buf_cap ? c->buf_cap * 2 : 256;
        char *b = realloc(c->buf, cap);
        if (!b) {
            cdx_set_error(CDX_ERR_NOMEM, "%s: out of memory", c->path);
            return -1;
        }
        c->buf = b;
        c->buf_cap = cap;
    }
    c->buf[(*n)++] = ch;
    return 0;
}

/* Parse one row into NUL-separated fields; starts at c->p. */
static int csv_row(ev_csv *c)
{
    size_t n = 0, starts[EV_MAX_CSV_FIELDS];
    int nf = 0;
    c->line = c->next_line;
    for (;;) {
        if (nf == EV_MAX_CSV_FIELDS) {
            cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: more than %d fields", c->path, c->line,
                     EV_MAX_CSV_FIELDS);
            return -1;
        }
        starts[nf++] = n;
        if (c->p < c->end && *c->p == '"') {
            c->p++;
            for (;;) {
                if (c->p >= c->end) {
                    cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: unterminated quoted field", c->path,
                             c->line);
                    return -1;
                }
                char ch = *c->p++;
                if (ch == '"') {
                    if (c->p < c->end && *c->p == '"') c->p++;
                    else break;
                } else if (ch == '\n') {
                    c->next_line++;
                }
                if (ch == '\0') {
                    cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: NUL byte", c->path, c->line);
                    return -1;
                }
                if (csv_put(c, &n, ch)) return -1;
            }
            if (c->p < c->end && *c->p == '\r') c->p++;
            if (c->p < c->end && *c->p != ',' && *c->p != '\n') {
                cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: text after a closing quote", c->path, c->line);
                return -1;
            }
        } else {
            while (c->p < c->end && *c->p != ',' && *c->p != '\n') {
                char ch = *c->p++;
                if (ch == '"') {
                    cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: quote inside an unquoted field", c->path,
                             c->line);
                    return -1;
                }
                if (ch == '\0') {
                    cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: NUL byte", c->path, c->line);
                    return -1;
                }
                if (ch == '\r' && (c->p == c->end || *c->p == '\n')) continue;
                if (csv_put(c, &n, ch)) return -1;
            }
        }
        if (csv_put(c, &n, '\0')) return -1;
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end) c->p++; /* the '\n' */
        c->next_line++;
        break;
    }
    for (int i = 0; i < nf; i++) c->field[i] = c->buf + starts[i];
    c->n_fields = nf;
    return 1;
}

int ev_csv_next(ev_csv *c)
{
    for (;;) {
        if (c->p >= c->end) return 0;
        int r = csv_row(c);
        if (r <= 0) return r;
        if (c->n_fields == 1 && c->field[0][0] == '\0') continue; /* blank line */
        return 1;
    }
}

/* ------------------------------------------------------------------ paths */

char *ev_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *ev_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return ev_strdup(".");
    if (slash == path) return ev_strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

int ev_is_url(const char *s)
{
    return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

char *ev_resolve_path(const char *base, const char *p)
{
    char *joined;
    if (p[0] == '/' || ev_is_url(p) || !base) {
        joined = ev_strdup(p);
    } else {
        size_t a = strlen(base), b = strlen(p);
        joined = malloc(a + b + 2);
        if (!joined) return NULL;
        memcpy(joined, base, a);
        joined[a] = '/';
        memcpy(joined + a + 1, p, b + 1);
    }
    /* No realpath() here: the library stores paths normalised lexically
     * (symlinks kept, as the user named them) and cdx_library_find applies
     * the same normalisation, falling back to the resolved path itself. */
    return joined;
}

int ev_parse_id(const char *s, int64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < 1) return -1;   /* library ids start at 1 */
    *out = (int64_t)v;
    return 0;
}

double ev_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

cdx_result ev_find(cdx_library *lib, const char *base, const char *path, int64_t *id)
{
    char *r = ev_resolve_path(base, path);
    if (!r) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result rc = cdx_library_find(lib, r, id);
    free(r);
    if (rc != CDX_OK) return ev_lib_error(rc, path);
    return CDX_OK;
}

/* ------------------------------------------------------------------ library listing */

void ev_images_free(ev_image *im, size_t n)
{
    if (!im) return;
    for (size_t i = 0; i < n; i++) free(im[i].path);
    free(im);
}

#define EV_PAGE 10000

cdx_result ev_search_ranking(cdx_library *lib, const float *q, size_t depth, cdx_hit *out,
                             size_t *n_out)
{
    size_t n = 0;
    while (n < depth) {
        cdx_search_params sp = cdx_search_default_params();
        sp.k = depth - n < EV_PAGE ? depth - n : EV_PAGE;
        sp.offset = n;
        size_t got = 0;
        cdx_result r = cdx_library_search_vector(lib, q, &sp, out + n, &got, NULL);
        if (r != CDX_OK) return ev_lib_error(r, "search");
        if (got > sp.k) return cdx_set_error(CDX_ERR_INTERNAL, "search returned more hits than asked");
        n += got;
        if (got < sp.k) break;
    }
    *n_out = n;
    return CDX_OK;
}

cdx_result ev_library_list(cdx_library *lib, ev_image **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    uint64_t total = 0;
    size_t got = 0;
    cdx_result r = cdx_library_list_images(lib, 0, 0, NULL, &got, &total);
    if (r != CDX_OK) return ev_lib_error(r, "listing the library");
    if (total > EV_MAX_ITEMS)
        return cdx_set_error(CDX_ERR_TOO_LARGE, "library has %llu images; evaluation supports at most %zu",
                        (unsigned long long)total, EV_MAX_ITEMS);
    /* Pages in id order; a library written meanwhile may grow or shrink,
     * the list stops at the first short page. */
    size_t want = (size_t)total, n = 0;
    cdx_image_record *page = malloc(CDX_LIST_MAX * sizeof *page);
    ev_image *im = calloc(want ? want : 1, sizeof *im);
    if (!page || !im) {
        r = cdx_set_error(CDX_ERR_NOMEM, "out of memory listing the library");
        goto done;
    }
    while (n < want) {
        size_t lim = want - n < CDX_LIST_MAX ? want - n : CDX_LIST_MAX;
        r = cdx_library_list_images(lib, n, lim, page, &got, NULL);
        if (r != CDX_OK) {
            r = ev_lib_error(r, "listing the library");
            goto done;
        }
        for (size_t i = 0; i < got; i++, n++) {
            im[n].id = page[i].id;
            im[n].path = ev_strdup(page[i].path);
            if (!im[n].path) {
                r = cdx_set_error(CDX_ERR_NOMEM, "out of memory listing the library");
                goto done;
            }
        }
        if (got < lim) break;
    }
    r = CDX_OK;
done:
    free(page);
    if (r != CDX_OK) {
        ev_images_free(im, n);
        return r;
    }
    *out = im;
    *n_out = n;
    return CDX_OK;
}

/* ------------------------------------------------------------------ URLs */

cdx_result ev_fetch_url(const char *url, size_t max_bytes, long timeout_s, char **out,
                        size_t *len)
{
    *out = NULL;
    cdx_http_params p = cdx_http_default_params();
    p.max_bytes = max_bytes;
    p.timeout_ms = timeout_s * 1000;
    p.allow_private = 1;   /* evaluation files name their own data */
    cdx_http_response resp;
    cdx_result r = cdx_http_get(url, &p, &resp);
    if (r) return ev_lib_error(r, "download");
    *out = resp.data;
    *len = resp.len;
    return CDX_OK;
}

/* ------------------------------------------------------------------ vectors */

int ev_normalize(float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)v[i] * v[i];
    if (!(s > 0)) return -1;
    float inv = (float)(1.0 / sqrt(s));
    for (int i = 0; i < dim; i++) v[i] *= inv;
    return 0;
}

float ev_dot(const float *a, const float *b, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)a[i] * b[i];
    return (float)s;
}

#define EV_TEXT_BATCH 64

cdx_result ev_embed_texts(cdx_library *lib, const char *const *texts, size_t n, float *out)
{
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    if (r != CDX_OK) return ev_lib_error(r, "library info");
    const cdx_model *model = cdx_library_model(lib);
    if (!model) { /* no model handle: one text at a time through the library */
        for (size_t i = 0; i < n; i++) {
            r = cdx_library_embed_text(lib, texts[i], out + i * (size_t)info.dim);
            if (r != CDX_OK) return ev_lib_error(r, texts[i]);
        }
        return CDX_OK;
    }
    cdx_model_info mi;
    cdx_model_get_info(model, &mi);
    if (mi.embed_dim != info.dim)
        return cdx_set_error(CDX_ERR_MISMATCH, "model dim %d != library dim %d", mi.embed_dim, info.dim);
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.max_batch = EV_TEXT_BATCH;
    (void)cdx_precision_parse(info.run_precision, &cp.precision);   /* the library's */
    cdx_ctx *ctx = NULL;
    r = cdx_ctx_new(model, &cp, &ctx);
    if (r != CDX_OK) return ev_lib_error(r, "inference context");
    for (size_t i = 0; i < n; i += EV_TEXT_BATCH) {
        int b = (int)(n - i < EV_TEXT_BATCH ? n - i : EV_TEXT_BATCH);
        r = cdx_encode_texts(ctx, texts + i, b, out + i * (size_t)info.dim, 1);
        if (r != CDX_OK) {
            r = ev_lib_error(r, "embedding texts");
            break;
        }
    }
    cdx_ctx_free(ctx);
    return r;
}
