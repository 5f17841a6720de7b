/*
 * import.c - metadata reader (CSV / JSON Lines) and the import run (see
 * import.h for the protocol and the key of imported contents).
 *
 * The metadata file is read twice, streaming, with the same reader: once to
 * validate everything, once to import.  A record is at most META_MAX_RECORD
 * bytes (a quoted CSV field may span lines); columns other than the known
 * ones are ignored.
 */
#include "ingest/import.h"

#include "common/error.h"
#include "common/util.h"
#include "ingest/source.h"
#include "ingest/walk.h"
#include "store/npy.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define META_MAX_RECORD ((size_t)1 << 20)
#define META_MAX_COLS 256
#define IMPORT_BATCH_MAX 65536
#define KEY_PREFIX "clipdex-vector-v1"   /* hashed with its NUL */

/* ---------------------------------------------------------------- metadata */

enum { COL_PATH, COL_IMAGE_PATH, COL_URL, COL_WIDTH, COL_HEIGHT, COL_FORMAT, COL_MTIME,
       COL_TAKEN, COL_CAMERA, COL_SIZE, COL_TITLE, COL_DESCRIPTION, COL_TAGS, COL_N };
static const char *const col_names[COL_N] = {"path", "image_path", "url", "width", "height",
                                             "format", "mtime", "taken", "camera", "size",
                                             "title", "description", "tags"};

struct meta_reader {
    FILE *f;
    char *name;
    char *base;          /* absolute base directory */
    int csv;
    int col[COL_N];      /* CSV: column index of each known field, -1 if absent */
    int n_cols;
    uint64_t line;       /* lines consumed so far */
    char *rec;           /* current record */
    size_t rec_len, rec_cap;
    char *line_buf;
    size_t line_cap;
    char **fields;       /* CSV fields of the current record (into fbuf) */
    char *fbuf;
};

static cdx_result meta_fail(meta_reader *r, uint64_t line, const char *what)
{
    return cdx_error(CDX_ERR_FORMAT, "%s line %llu: %s", r->name, (unsigned long long)line, what);
}

/* Read one line (without its newline) appended to rec; 0 at EOF. */
static cdx_result read_line(meta_reader *r, int *got)
{
    ssize_t n = getline(&r->line_buf, &r->line_cap, r->f);
    if (n < 0) {
        *got = 0;
        return ferror(r->f) ? cdx_error(CDX_ERR_IO, "%s: read: %s", r->name, strerror(errno)) : CDX_OK;
    }
    r->line++;
    *got = 1;
    if ((size_t)n + r->rec_len + 2 > META_MAX_RECORD)
        return meta_fail(r, r->line, "record longer than 1 MiB");
    if ((size_t)n && memchr(r->line_buf, '\0', (size_t)n))
        return meta_fail(r, r->line, "NUL byte in the text");
    if (r->rec_len + (size_t)n + 2 > r->rec_cap) {
        size_t nc = r->rec_len + (size_t)n + 2 + 1024;
        char *nb = realloc(r->rec, nc);
        if (!nb) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        r->rec = nb;
        r->rec_cap = nc;
    }
    memcpy(r->rec + r->rec_len, r->line_buf, (size_t)n);
    r->rec_len += (size_t)n;
    r->rec[r->rec_len] = '\0';
    return CDX_OK;
}

static void chomp(meta_reader *r)
{
    while (r->rec_len && (r->rec[r->rec_len - 1] == '\n' || r->rec[r->rec_len - 1] == '\r'))
        r->rec[--r->rec_len] = '\0';
}

/* Next non-empty record into r->rec; for CSV keeps reading lines while a
 * quoted field is open.  *first_line = line number where it starts. */
static cdx_result next_record(meta_reader *r, int *got, uint64_t *first_line)
{
    for (;;) {
        r->rec_len = 0;
        cdx_result e = read_line(r, got);
        if (e || !*got) return e;
        *first_line = r->line;
        if (r->csv) {
            size_t quotes = 0, scanned = 0;   /* each byte is counted once */
            for (;;) {
                for (; scanned < r->rec_len; scanned++) quotes += r->rec[scanned] == '"';
                if (quotes % 2 == 0) break;
                int more;
                if ((e = read_line(r, &more))) return e;
                if (!more) return meta_fail(r, *first_line, "unterminated quoted field");
            }
        }
        chomp(r);
        size_t i = 0;
        while (i < r->rec_len && (r->rec[i] == ' ' || r->rec[i] == '\t')) i++;
        if (i < r->rec_len) return CDX_OK;   /* blank lines are skipped */
    }
}

/* Split r->rec into CSV fields (RFC 4180 quoting). */
static cdx_result split_csv(meta_reader *r, uint64_t line, int *n_fields)
{
    char *o = r->fbuf;
    const char *p = r->rec, *end = r->rec + r->rec_len;
    int n = 0;
    for (;;) {
        if (n == META_MAX_COLS) return meta_fail(r, line, "too many columns");
        r->fields[n++] = o;
        if (p < end && *p == '"') {
            p++;
            for (;;) {
                if (p >= end) return meta_fail(r, line, "unterminated quoted field");
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        *o++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *o++ = *p++;
            }
            if (p < end && *p != ',') return meta_fail(r, line, "text after a closing quote");
        } else {
            while (p < end && *p != ',') {
                if (*p == '"') return meta_fail(r, line, "quote inside an unquoted field");
                *o++ = *p++;
            }
        }
        *o++ = '\0';
        if (p >= end) break;
        p++;   /* the comma */
    }
    *n_fields = n;
    return CDX_OK;
}

cdx_result meta_reader_open(const char *path, const char *format, const char *base_dir,
                            meta_reader **out)
{
    *out = NULL;
    int csv;
    const char *dot = strrchr(path, '.');
    if (format) {
        if (!strcmp(format, "csv")) csv = 1;
        else if (!strcmp(format, "jsonl")) csv = 0;
        else return cdx_error(CDX_ERR_INVALID_ARG, "metadata format '%s' is not csv or jsonl", format);
    } else if (dot && !strcasecmp(dot, ".csv")) {
        csv = 1;
    } else if (dot && (!strcasecmp(dot, ".jsonl") || !strcasecmp(dot, ".ndjson") || !strcasecmp(dot, ".json"))) {
        csv = 0;
    } else {
        return cdx_error(CDX_ERR_INVALID_ARG, "%s: cannot tell the metadata format from the name "
                         "(use .csv or .jsonl, or give the format)", path);
    }
    meta_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(path)) || !(r->base = walk_abspath(base_dir ? base_dir : "."))) {
        meta_reader_close(r);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    r->csv = csv;
    int fd;
    uint64_t size;
    cdx_result e = cdx_open_regular(path, &fd, &size);
    if (!e && !(r->f = fdopen(fd, "r"))) {
        close(fd);
        e = cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!e && csv) {
        if (!(r->fields = calloc(META_MAX_COLS, sizeof *r->fields)) || !(r->fbuf = malloc(META_MAX_RECORD)))
            e = cdx_error(CDX_ERR_NOMEM, "out of memory");
        int got = 0;
        uint64_t line = 0;
        if (!e) e = next_record(r, &got, &line);
        if (!e && !got) e = cdx_error(CDX_ERR_FORMAT, "%s: empty CSV file (a header line is needed)", path);
        if (!e) e = split_csv(r, line, &r->n_cols);
        for (int c = 0; c < COL_N; c++) r->col[c] = -1;
        for (int i = 0; !e && i < r->n_cols; i++) {
            const char *h = r->fields[i];
            if (i == 0 && !strncmp(h, "\xEF\xBB\xBF", 3)) h += 3;   /* UTF-8 BOM */
            for (int c = 0; c < COL_N; c++)
                if (!strcmp(h, col_names[c])) {
                    if (r->col[c] >= 0) e = meta_fail(r, line, "a column name appears twice");
                    r->col[c] = i;
                }
        }
        if (!e && r->col[COL_PATH] < 0 && r->col[COL_IMAGE_PATH] < 0 && r->col[COL_URL] < 0)
            e = cdx_error(CDX_ERR_FORMAT, "%s: the CSV header has no 'path', 'image_path' or 'url' column",
                          path);
    }
    if (e) {
        meta_reader_close(r);
        return e;
    }
    *out = r;
    return CDX_OK;
}

void meta_reader_close(meta_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    free(r->name);
    free(r->base);
    free(r->rec);
    free(r->line_buf);
    free(r->fields);
    free(r->fbuf);
    free(r);
}

static int parse_i64(const char *s, int64_t *v)
{
    if (!*s) {
        *v = 0;
        return 0;
    }
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < 0) return -1;
    *v = x;
    return 0;
}

static int is_url(const char *s) { return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8); }

/* Fill row from the field values (NULL = absent). */
void meta_row_clear(meta_row *row)
{
    free(row->title);
    free(row->description);
    free(row->tags);
    row->title = row->description = row->tags = NULL;
}

/* Source metadata of a row into row (title, description; tags split at
 * ';' into the catalog's tag-list form), checked like the library checks
 * what feeds store: UTF-8 text within the catalog's limits. */
static cdx_result fill_source(meta_reader *r, uint64_t line, const char *const *v, meta_row *row)
{
    const int cols[] = {COL_TITLE, COL_DESCRIPTION, COL_TAGS};
    char **dst[] = {&row->title, &row->description, NULL};
    for (int i = 0; i < 3; i++) {
        const char *x = v[cols[i]];
        if (!x || !*x) continue;
        if (!catalog_text_ok(x, CATALOG_TEXT_MAX)) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%s' must be UTF-8 text of at most %d bytes", col_names[cols[i]],
                     CATALOG_TEXT_MAX);
            return meta_fail(r, line, msg);
        }
        if (dst[i]) {
            if (!(*dst[i] = strdup(x))) return cdx_error(CDX_ERR_NOMEM, "out of memory");
            continue;
        }
        char *copy = strdup(x);
        const char *list[256];
        size_t n = 0;
        for (char *p = copy, *semi; p && n < 256; p = semi ? semi + 1 : NULL) {
            if ((semi = strchr(p, ';'))) *semi = '\0';
            list[n++] = p;
        }
        cdx_result e = copy ? catalog_tag_list(list, n, &row->tags) : cdx_error(CDX_ERR_NOMEM, "out of memory");
        free(copy);
        if (e == CDX_ERR_NOMEM) return e;
        if (e) return meta_fail(r, line, cdx_last_error());
    }
    return CDX_OK;
}

static cdx_result fill_row(meta_reader *r, uint64_t line, const char *const *v, meta_row *row)
{
    meta_row_clear(row);
    memset(row, 0, sizeof *row);
    row->line = line;
    const char *where = v[COL_PATH] && *v[COL_PATH] ? v[COL_PATH]
                      : v[COL_IMAGE_PATH] && *v[COL_IMAGE_PATH] ? v[COL_IMAGE_PATH]
                      : v[COL_URL] && *v[COL_URL] ? v[COL_URL] : NULL;
    if (!where) return meta_fail(r, line, "no 'path', 'image_path' or 'url' value");
    if (strlen(where) >= sizeof row->path) return meta_fail(r, line, "path longer than 4095 bytes");
    if (is_url(where) || where[0] == '/') {
        snprintf(row->path, sizeof row->path, "%s", where);
    } else {
        if (strstr(where, "://")) return meta_fail(r, line, "only http:// and https:// URLs are accepted");
        char *j = cdx_path_join(r->base, where);
        char *a = j ? walk_abspath(j) : NULL;
        free(j);
        if (!a) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        int ok = strlen(a) < sizeof row->path;
        if (ok) snprintf(row->path, sizeof row->path, "%s", a);
        free(a);
        if (!ok) return meta_fail(r, line, "path longer than 4095 bytes");
    }
    if (where[0] == '/' && !is_url(where)) {
        char *a = walk_abspath(where);   /* collapse "//", "/./", "/../" like index does */
        if (!a) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        snprintf(row->path, sizeof row->path, "%s", a);
        free(a);
    }
    static const int ints[] = {COL_WIDTH, COL_HEIGHT, COL_MTIME, COL_TAKEN, COL_SIZE};
    int64_t *dst[] = {&row->width, &row->height, &row->mtime, &row->taken, &row->size};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (v[ints[i]] && parse_i64(v[ints[i]], dst[i])) {
            char msg[96];
            snprintf(msg, sizeof msg, "'%s' is not a non-negative integer", col_names[ints[i]]);
            return meta_fail(r, line, msg);
        }
    }
    if ((row->width > INT32_MAX) || (row->height > INT32_MAX))
        return meta_fail(r, line, "width or height out of range");
    if (v[COL_FORMAT]) {
        if (strlen(v[COL_FORMAT]) >= sizeof row->format) return meta_fail(r, line, "'format' is too long");
        for (size_t i = 0; v[COL_FORMAT][i]; i++) {
            char ch = v[COL_FORMAT][i];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            row->format[i] = ch;
        }
    }
    if (v[COL_CAMERA]) {
        if (strlen(v[COL_CAMERA]) >= sizeof row->camera) return meta_fail(r, line, "'camera' is too long");
        snprintf(row->camera, sizeof row->camera, "%s", v[COL_CAMERA]);
    }
    cdx_result e = fill_source(r, line, v, row);
    if (e) meta_row_clear(row);
    return e;
}

/* JSON value of a known field as text (numbers printed), NULL when absent
 * or null; -1 when it has a wrong type. */
static int json_field(json_t *o, int c, char *buf, size_t cap, const char **out)
{
    *out = NULL;
    json_t *v = json_object_get(o, col_names[c]);
    if (!v || json_is_null(v)) return 0;
    int text = c == COL_PATH || c == COL_IMAGE_PATH || c == COL_URL || c == COL_FORMAT || c == COL_CAMERA ||
               c == COL_TITLE || c == COL_DESCRIPTION || c == COL_TAGS;
    if (c == COL_TAGS && json_is_array(v)) {   /* ["a", "b"]: joined as "a;b" into buf */
        size_t at = 0;
        for (size_t i = 0; i < json_array_size(v); i++) {
            const char *t = json_string_value(json_array_get(v, i));
            if (!t || strchr(t, ';')) return -1;
            size_t l = strlen(t);
            if (at + l + 2 > cap) return -1;
            if (at) buf[at++] = ';';
            memcpy(buf + at, t, l);
            at += l;
        }
        buf[at] = '\0';
        *out = buf;
        return 0;
    }
    if (text) {
        if (!json_is_string(v)) return -1;
        *out = json_string_value(v);
    } else {
        if (!json_is_integer(v)) return -1;
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
        *out = buf;
    }
    return 0;
}

cdx_result meta_reader_next(meta_reader *r, meta_row *row, int *got)
{
    uint64_t line = 0;
    cdx_result e = next_record(r, got, &line);
    if (e || !*got) return e;
    const char *v[COL_N] = {0};
    if (r->csv) {
        int n;
        if ((e = split_csv(r, line, &n))) return e;
        if (n != r->n_cols) {
            char msg[96];
            snprintf(msg, sizeof msg, "%d fields but the header has %d", n, r->n_cols);
            return meta_fail(r, line, msg);
        }
        for (int c = 0; c < COL_N; c++) v[c] = r->col[c] >= 0 ? r->fields[r->col[c]] : NULL;
        return fill_row(r, line, v, row);
    }
    json_error_t je;
    json_t *o = json_loadb(r->rec, r->rec_len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        char msg[256];
        snprintf(msg, sizeof msg, "invalid JSON: %s", je.text);
        return meta_fail(r, line, msg);
    }
    if (!json_is_object(o)) {
        json_decref(o);
        return meta_fail(r, line, "not a JSON object");
    }
    char nums[COL_N][32], tagbuf[CATALOG_TAGS_BYTES_MAX];
    for (int c = 0; c < COL_N; c++)
        if (json_field(o, c, c == COL_TAGS ? tagbuf : nums[c], c == COL_TAGS ? sizeof tagbuf : sizeof nums[c],
                       &v[c])) {
            char msg[96];
            snprintf(msg, sizeof msg, "'%s' has the wrong type", col_names[c]);
            json_decref(o);
            return meta_fail(r, line, msg);
        }
    e = fill_row(r, line, v, row);
    json_decref(o);
    return e;
}

/* ---------------------------------------------------------------- validation */

static cdx_result check_vector(const npy_file *f, uint64_t i, float *v, const char *name)
{
    npy_row(f, i, v);
    double s = 0;
    for (int d = 0; d < f->dim; d++) {
        if (!isfinite(v[d]))
            return cdx_error(CDX_ERR_FORMAT, "%s: vector %llu has a non-finite value at %d", name,
                             (unsigned long long)i, d);
        s += (double)v[d] * v[d];
    }
    if (!(s > 1e-30) || !isfinite(s))
        return cdx_error(CDX_ERR_FORMAT, "%s: vector %llu has no usable length (all zeros?)", name,
                         (unsigned long long)i);
    return CDX_OK;
}

/* Everything about the input before a single write. */
static cdx_result validate(const import_target *t, const npy_file *f, const char *vec_path,
                           const char *meta_path, const cdx_import_params *p, float *scratch)
{
    if (f->dim != t->dim)
        return cdx_error(CDX_ERR_MISMATCH, "%s holds %d-dimensional vectors but the library's model "
                         "embeds in %d dimensions", vec_path, f->dim, t->dim);
    if (p->model_fingerprint && strcmp(p->model_fingerprint, t->fingerprint))
        return cdx_error(CDX_ERR_MISMATCH, "the vectors were made with model %.16s... but the library's "
                         "model is %.16s...", p->model_fingerprint, t->fingerprint);
    for (uint64_t i = 0; i < f->rows; i++) {
        cdx_result e = check_vector(f, i, scratch, vec_path);
        if (e) return e;
    }
    meta_reader *mr;
    cdx_result e = meta_reader_open(meta_path, p->meta_format, p->base_dir, &mr);
    if (e) return e;
    meta_row *row = malloc(sizeof *row);
    uint64_t n = 0;
    int got = 1;
    if (!row) e = cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (row) memset(row, 0, sizeof *row);
    while (!e && (e = meta_reader_next(mr, row, &got)) == CDX_OK && got) n++;
    if (row) meta_row_clear(row);
    free(row);
    meta_reader_close(mr);
    if (!e && n != f->rows)
        e = cdx_error(CDX_ERR_FORMAT, "%s has %llu rows but %s has %llu vectors: they must match "
                      "one to one", meta_path, (unsigned long long)n, vec_path,
                      (unsigned long long)f->rows);
    return e;
}

/* ---------------------------------------------------------------- batches */

typedef struct batch {
    size_t cap, n;
    meta_row *rows;
    float *vecs;             /* n x dim, normalised */
    uint8_t (*keys)[32];
    char (*hex)[65];
    int64_t *slot;           /* content slot; -1 = to append */
    int *state;              /* B_* below */
    int64_t *existing;       /* image id at this path, 0 = none */
    char (*old_hex)[65];
    size_t *order;           /* indices sorted by key (in-batch duplicates) */
    float *append;           /* vectors to append */
    uint8_t (*append_keys)[32];
    uint8_t *hashbuf;
} batch;

enum { B_NEW, B_FRESH, B_DUP, B_UNCHANGED };
/* B_NEW: content catalogued already (slot >= 0); B_FRESH: first row of a
 * content new to the catalog (slot >= 0 adopted, else -2 - its index in the
 * appended run); B_DUP: a later row of a B_FRESH content in this batch. */

/* Unreferenced vector records at the end of the file (a batch appended
 * before a crash, not committed), by key: the next import adopts them
 * instead of appending the same vectors again. */
#define ORPHAN_SCAN_MAX ((uint64_t)2 * IMPORT_BATCH_MAX)

typedef struct orphan {
    uint8_t key[32];
    int64_t slot;
    int used;
} orphan;

typedef struct orphans {
    orphan *v;
    size_t n;
} orphans;

static int cmp_orphan(const void *a, const void *b)
{
    return memcmp(((const orphan *)a)->key, ((const orphan *)b)->key, 32);
}

static cdx_result orphans_load(import_target *t, orphans *o)
{
    o->v = NULL;
    o->n = 0;
    int64_t maxs;
    cdx_result e = catalog_max_slot(t->cat, &maxs);
    if (e) return e;
    uint64_t count = vecfile_count(t->vf), from = (uint64_t)(maxs + 1);
    if (count <= from) return CDX_OK;
    if (count - from > ORPHAN_SCAN_MAX) from = count - ORPHAN_SCAN_MAX;
    if (!(o->v = calloc((size_t)(count - from), sizeof *o->v))) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (uint64_t s = from; s < count; s++) {
        if (vecfile_get(t->vf, s, NULL, o->v[o->n].key) != CDX_OK) continue;   /* damaged: never adopt */
        o->v[o->n].slot = (int64_t)s;
        o->n++;
    }
    cdx_error_clear();
    qsort(o->v, o->n, sizeof *o->v, cmp_orphan);
    return CDX_OK;
}

static int64_t orphan_take(orphans *o, const uint8_t key[32])
{
    orphan k;
    memcpy(k.key, key, 32);
    orphan *f = o->n ? bsearch(&k, o->v, o->n, sizeof *o->v, cmp_orphan) : NULL;
    if (!f || f->used) return -1;
    f->used = 1;
    return f->slot;
}

static void batch_free(batch *b)
{
    for (size_t i = 0; b->rows && i < b->cap; i++) meta_row_clear(&b->rows[i]);
    free(b->rows); free(b->vecs); free(b->keys); free(b->hex); free(b->slot); free(b->state);
    free(b->existing); free(b->old_hex); free(b->order); free(b->append); free(b->append_keys);
    free(b->hashbuf);
}

static cdx_result batch_alloc(batch *b, size_t cap, int dim)
{
    memset(b, 0, sizeof *b);
    b->cap = cap;
    size_t vd = cap * (size_t)dim;
    b->rows = calloc(cap, sizeof *b->rows);
    b->vecs = malloc(vd * sizeof *b->vecs);
    b->keys = malloc(cap * sizeof *b->keys);
    b->hex = malloc(cap * sizeof *b->hex);
    b->slot = malloc(cap * sizeof *b->slot);
    b->state = malloc(cap * sizeof *b->state);
    b->existing = malloc(cap * sizeof *b->existing);
    b->old_hex = malloc(cap * sizeof *b->old_hex);
    b->order = malloc(cap * sizeof *b->order);
    b->append = malloc(vd * sizeof *b->append);
    b->append_keys = malloc(cap * sizeof *b->append_keys);
    b->hashbuf = malloc(sizeof KEY_PREFIX + (size_t)dim * 4);
    if (!b->rows || !b->vecs || !b->keys || !b->hex || !b->slot || !b->state || !b->existing ||
        !b->old_hex || !b->order || !b->append || !b->append_keys || !b->hashbuf) {
        batch_free(b);
        return cdx_error(CDX_ERR_NOMEM, "out of memory for an import batch of %zu rows", cap);
    }
    return CDX_OK;
}

static int cmp_key(const void *a, const void *b, void *user)
{
    const batch *bt = user;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = memcmp(bt->keys[i], bt->keys[j], 32);
    return c ? c : (i > j) - (i < j);
}

/* Normalise row i's vector exactly as the vecfile does and key it. */
static void key_vector(batch *b, size_t i, int dim)
{
    float *v = b->vecs + i * (size_t)dim;
    double s = 0;
    for (int d = 0; d < dim; d++) s += (double)v[d] * v[d];
    double inv = 1.0 / sqrt(s);
    for (int d = 0; d < dim; d++) v[d] = (float)(v[d] * inv);
    memcpy(b->hashbuf, KEY_PREFIX, sizeof KEY_PREFIX);
    memcpy(b->hashbuf + sizeof KEY_PREFIX, v, (size_t)dim * 4);
    source_sha256(b->hashbuf, sizeof KEY_PREFIX + (size_t)dim * 4, b->keys[i], b->hex[i]);
}

/* Classify the rows, append new vectors, commit one transaction. */
static cdx_result commit_batch(import_target *t, batch *b, orphans *orph, cdx_import_stats *st)
{
    catalog *c = t->cat;
    cdx_image_record *rec = malloc(sizeof *rec);
    if (!rec) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result e = CDX_OK;
    for (size_t i = 0; i < b->n && !e; i++) {
        b->existing[i] = 0;
        b->old_hex[i][0] = '\0';
        b->state[i] = B_NEW;
        b->slot[i] = -1;
        e = catalog_image_by_path(c, b->rows[i].path, rec);
        if (e == CDX_ERR_NOT_FOUND) {
            e = CDX_OK;
        } else if (!e) {
            b->existing[i] = rec->id;
            if (!strcmp(rec->sha256, b->hex[i])) b->state[i] = B_UNCHANGED;
            else snprintf(b->old_hex[i], sizeof b->old_hex[i], "%s", rec->sha256);
        }
        if (!e && b->state[i] != B_UNCHANGED) {
            e = catalog_content_slot(c, b->hex[i], &b->slot[i]);
            if (e == CDX_ERR_NOT_FOUND) {
                e = CDX_OK;
                b->slot[i] = -1;
            }
        }
        b->order[i] = i;
    }
    free(rec);
    if (e) return e;
    /* The same path twice in one batch: the first row inserts it, the later
     * one re-points it (the later row wins, as a second import would). */
    /* In-batch duplicate vectors: the first occurrence is adopted or
     * appended, the others refer to it. */
    qsort_r(b->order, b->n, sizeof *b->order, cmp_key, b);
    size_t m = 0;
    for (size_t k = 0; k < b->n; k++) {
        size_t i = b->order[k];
        if (b->state[i] == B_UNCHANGED || b->slot[i] >= 0) continue;
        if (k > 0 && !memcmp(b->keys[b->order[k - 1]], b->keys[i], 32)) {
            size_t f = b->order[k - 1];
            if (b->state[f] == B_FRESH || b->state[f] == B_DUP) {
                b->state[i] = B_DUP;
                b->slot[i] = b->slot[f];
                continue;
            }
        }
        b->state[i] = B_FRESH;
        if ((b->slot[i] = orphan_take(orph, b->keys[i])) >= 0) continue;
        memcpy(b->append + m * (size_t)t->dim, b->vecs + i * (size_t)t->dim, (size_t)t->dim * 4);
        memcpy(b->append_keys[m], b->keys[i], 32);
        b->slot[i] = -2 - (int64_t)m;   /* -2 - index into the appended run */
        m++;
    }
    uint64_t first = 0;
    if (m && (e = vecfile_append(t->vf, b->append, (const uint8_t(*)[32])b->append_keys, m, &first)))
        return e;
    if ((e = catalog_begin(c))) return e;
    int64_t now = (int64_t)time(NULL);
    uint64_t added = 0, updated = 0, unchanged = 0, dups = 0;
    for (size_t i = 0; i < b->n && !e; i++) {
        const meta_row *row = &b->rows[i];
        int64_t img = 0;   /* the row's image id, for its source metadata */
        if (b->state[i] == B_UNCHANGED) {
            unchanged++;
            if (row->title || row->description || row->tags)   /* a resumed import: stored again */
                e = catalog_image_set_source(c, b->existing[i], row->title, row->description, row->tags);
            continue;
        }
        if (b->state[i] == B_FRESH) {
            cdx_image_record cr;
            memset(&cr, 0, sizeof cr);
            snprintf(cr.sha256, sizeof cr.sha256, "%s", b->hex[i]);
            cr.size = (uint64_t)row->size;
            cr.width = (int)row->width;
            cr.height = (int)row->height;
            snprintf(cr.format, sizeof cr.format, "%s", row->format);
            cr.taken = row->taken;
            snprintf(cr.camera, sizeof cr.camera, "%s", row->camera);
            e = catalog_content_insert(c, &cr, b->slot[i] >= 0 ? b->slot[i] : (int64_t)first + (-2 - b->slot[i]));
        } else if (!b->existing[i]) {
            dups++;
        }
        if (e) break;
        /* Replaced contents are collected after the whole batch (a later
         * row of this batch may still name them). */
        if (b->existing[i]) {
            e = catalog_image_update(c, b->existing[i], row->path, b->hex[i], row->mtime);
            img = b->existing[i];
            updated++;
        } else {
            /* an earlier row of this batch may have inserted the same path */
            int64_t id;
            cdx_image_record *prev = malloc(sizeof *prev);
            if (!prev) { e = cdx_error(CDX_ERR_NOMEM, "out of memory"); break; }
            e = catalog_image_by_path(c, row->path, prev);
            if (!e) {
                if (strcmp(prev->sha256, b->hex[i]))
                    snprintf(b->old_hex[i], sizeof b->old_hex[i], "%s", prev->sha256);
                e = catalog_image_update(c, prev->id, row->path, b->hex[i], row->mtime);
                img = prev->id;
                updated++;
            } else if (e == CDX_ERR_NOT_FOUND) {
                e = catalog_image_insert(c, row->path, b->hex[i], row->mtime, now, &id);
                img = id;
                added++;
            }
            free(prev);
        }
        if (!e && img && (row->title || row->description || row->tags))
            e = catalog_image_set_source(c, img, row->title, row->description, row->tags);
    }
    for (size_t i = 0; i < b->n && !e; i++)
        if (b->old_hex[i][0]) e = catalog_content_gc(c, b->old_hex[i]);
    if (!e) e = catalog_commit(c);
    if (e) {
        catalog_rollback(c);
        return e;
    }
    st->added += added;
    st->updated += updated;
    st->unchanged += unchanged;
    st->duplicates += dups;
    st->rows += b->n;
    return CDX_OK;
}

cdx_result import_run(import_target *t, const char *vectors_path, const char *meta_path,
                      const cdx_import_params *p, cdx_import_stats *st)
{
    double t0 = cdx_now();
    memset(st, 0, sizeof *st);
    size_t bs = p->batch_size ? p->batch_size : 4096;
    if (bs > IMPORT_BATCH_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "batch size %zu is too large (max %d)", bs, IMPORT_BATCH_MAX);
    npy_file f;
    cdx_result e = npy_open(vectors_path, &f);
    if (e) return e;
    float *scratch = malloc((size_t)f.dim * sizeof *scratch);
    batch b;
    memset(&b, 0, sizeof b);
    meta_reader *mr = NULL;
    if (!scratch) e = cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!e) e = validate(t, &f, vectors_path, meta_path, p, scratch);
    st->total_rows = f.rows;
    orphans orph = {NULL, 0};
    if (!e) e = batch_alloc(&b, bs, f.dim);
    if (!e) e = orphans_load(t, &orph);
    if (!e) e = meta_reader_open(meta_path, p->meta_format, p->base_dir, &mr);
    uint64_t next = 0;
    while (!e && next < f.rows) {
        if (p->cancel && atomic_load_explicit(p->cancel, memory_order_relaxed)) break;
        b.n = 0;
        while (b.n < bs && next < f.rows) {
            int got = 0;
            if ((e = meta_reader_next(mr, &b.rows[b.n], &got))) break;
            if (!got) {
                e = cdx_error(CDX_ERR_FORMAT, "%s changed during the import (fewer rows)", meta_path);
                break;
            }
            npy_row(&f, next, b.vecs + b.n * (size_t)f.dim);
            key_vector(&b, b.n, f.dim);
            b.n++;
            next++;
        }
        if (!e) e = commit_batch(t, &b, &orph, st);
        st->seconds = cdx_now() - t0;
        if (!e && p->progress) p->progress(p->user, st);
    }
    st->seconds = cdx_now() - t0;
    meta_reader_close(mr);
    batch_free(&b);
    free(orph.v);
    free(scratch);
    npy_close(&f);
    return e;
}

/* ---------------------------------------------------------------- rows given in memory
 * (the fleet's results: vectors embedded by workers, keyed by the image
 * bytes' sha256 like locally indexed files).  One batch, one commit. */

cdx_result import_rows(import_target *t, const meta_row *rows, const float *vecs,
                       const char (*sha256)[65], size_t n, cdx_import_stats *st)
{
    if (n > IMPORT_BATCH_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "batch of %zu rows is too large (max %d)", n, IMPORT_BATCH_MAX);
    if (!n) return CDX_OK;
    batch b;
    cdx_result e = batch_alloc(&b, n, t->dim);
    if (e) return e;
    orphans orph = {NULL, 0};
    for (size_t i = 0; i < n && !e; i++) {
        b.rows[i] = rows[i];
        b.rows[i].title = b.rows[i].description = b.rows[i].tags = NULL;   /* the caller's */
        float *v = b.vecs + i * (size_t)t->dim;
        memcpy(v, vecs + i * (size_t)t->dim, (size_t)t->dim * sizeof *v);
        double s = 0;
        for (int d = 0; d < t->dim; d++) s += (double)v[d] * v[d];
        if (!(s > 0) || !isfinite(s)) {
            e = cdx_error(CDX_ERR_FORMAT, "%s: vector is zero or not finite", rows[i].path);
            break;
        }
        if (sha256 && sha256[i][0]) {
            for (int d = 0; d < t->dim; d++) v[d] = (float)(v[d] * (1.0 / sqrt(s)));
            if (strlen(sha256[i]) != 64 || source_unhex(sha256[i], b.keys[i])) {
                e = cdx_error(CDX_ERR_FORMAT, "%s: bad sha256 \"%.80s\"", rows[i].path, sha256[i]);
                break;
            }
            for (int k = 0; k < 64; k++)   /* the catalog keeps lower-case hex */
                b.hex[i][k] = (char)((sha256[i][k] >= 'A' && sha256[i][k] <= 'F') ? sha256[i][k] + 32 : sha256[i][k]);
            b.hex[i][64] = '\0';
        } else {
            key_vector(&b, i, t->dim);
        }
    }
    b.n = n;
    if (!e) e = orphans_load(t, &orph);
    if (!e) e = commit_batch(t, &b, &orph, st);
    if (st) st->total_rows += n;
    free(orph.v);
    batch_free(&b);
    return e;
}
