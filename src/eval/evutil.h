/*
 * evutil.h - helpers shared by the evaluation modules (src/eval): error
 * prefixes, capped whole-file reads, an RFC 4180 CSV reader with line
 * numbers, growable arrays with hard caps, path resolution, and a listing of
 * every image in a library (paged with cdx_library_list_images).
 *
 * The eval modules use only the public header (clipdex.h) and this folder.
 * Errors: a failing ev_* call sets the library's thread-local message
 * (cdx_set_error, read back with cdx_last_error()) and returns a cdx_result.
 *
 * Workload: evaluation files are at most a few hundred MiB (caps below);
 * everything here runs once per command, never in a hot loop.
 */
#ifndef CDX_EVAL_EVUTIL_H
#define CDX_EVAL_EVUTIL_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

#define EV_ERROR_MAX 1024
#define EV_MAX_FILE_BYTES ((size_t)256 << 20)   /* any input file */
#define EV_MAX_LINE_BYTES ((size_t)1 << 20)     /* one JSONL line / CSV row */
#define EV_MAX_CSV_FIELDS 64
#define EV_MAX_ITEMS ((size_t)10000000)         /* queries, captions, labels */

/* Errors go to the library's channel: cdx_set_error() / cdx_last_error().
 * ev_lib_error: "<what>: <cdx_last_error()>" for a failed library call. */
cdx_result ev_lib_error(cdx_result code, const char *what);
/* Prefix the current message with "<prefix>: " and return code. */
cdx_result ev_error_prefix(cdx_result code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Read a whole file (<= max_bytes) into a NUL-terminated malloc'd buffer. */
cdx_result ev_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Growable array with a hard cap on the element count. */
typedef struct ev_vec {
    void *data;
    size_t n, cap, elem;
} ev_vec;
/* Append one element (copied from item); CDX_ERR_TOO_LARGE beyond max. */
cdx_result ev_vec_push(ev_vec *v, const void *item, size_t elem, size_t max);
void ev_vec_free(ev_vec *v);

/* CSV reader (RFC 4180: quoted fields, "" escapes, CRLF or LF, newlines
 * inside quotes).  Fields point into the reader's row buffer and stay valid
 * until the next call. */
typedef struct ev_csv {
    const char *p, *end;
    const char *path;       /* for messages */
    long line;              /* line where the current row starts (1-based) */
    long next_line;
    char *buf;              /* unescaped row, fields NUL-separated */
    size_t buf_cap;
    const char *field[EV_MAX_CSV_FIELDS];
    int n_fields;
} ev_csv;

void ev_csv_init(ev_csv *c, const char *path, const char *data, size_t len);
/* Next non-empty row: 1 = row read, 0 = end of input, <0 = error (message
 * names the file and line). */
int ev_csv_next(ev_csv *c);
void ev_csv_free(ev_csv *c);

/* Directory part of a path ("." when it has none); malloc'd. */
char *ev_dirname(const char *path);
/* p if absolute or a URL, else base/p; the result is canonicalised with
 * realpath() when the file exists.  malloc'd, NULL on allocation failure. */
char *ev_resolve_path(const char *base, const char *p);
int ev_is_url(const char *s);
/* Strict positive decimal integer (no sign, no spaces; library ids start
 * at 1) -> 0 ok. */
int ev_parse_id(const char *s, int64_t *out);
char *ev_strdup(const char *s);
double ev_now(void);

/* The id of a catalogued path (resolved against base) or URL. */
cdx_result ev_find(cdx_library *lib, const char *base, const char *path, int64_t *id);

/* Every catalogued image of a library: ids in ascending order with their
 * paths (pages of cdx_library_list_images). */
typedef struct ev_image {
    int64_t id;
    char *path;
} ev_image;
cdx_result ev_library_list(cdx_library *lib, ev_image **out, size_t *n);
void ev_images_free(ev_image *im, size_t n);

/* The ranking of every image for a unit query, best first, down to depth
 * hits (pages of 10000 through cdx_library_search_vector); *n <= depth. */
cdx_result ev_search_ranking(cdx_library *lib, const float *q, size_t depth, cdx_hit *out,
                             size_t *n);

/* Download a URL (http/https) into a malloc'd buffer: at most max_bytes,
 * timeout_s seconds in total. */
cdx_result ev_fetch_url(const char *url, size_t max_bytes, long timeout_s, char **out,
                        size_t *len);

/* L2-normalise v in place; returns 0, or -1 when v is all zeros. */
int ev_normalize(float *v, int dim);
float ev_dot(const float *a, const float *b, int dim);

/* Embed n texts with the library's model in batches (a private inference
 * context): out is n x dim, L2-normalised. */
cdx_result ev_embed_texts(cdx_library *lib, const char *const *texts, size_t n, float *out);

#endif
