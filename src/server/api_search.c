/*
 * api_search.c - the search endpoints: GET/POST /api/search and the classic
 * /text_search, /image_search and /search/images, all answering with the
 * same response shape (docs/server.md):
 *   {"query": {...}, "k", "offset", "total", "took_ms", "results": [...]}
 *
 * A request is first normalised into a search_req (from the query string,
 * a JSON body or a multipart form, strictly validated), then run: embed the
 * query (text, fetched URL, base64, upload), take a stored vector (image
 * id) or a given one ("vector": [...], normalised here), exact search with
 * filters, then one catalog lookup per hit.
 * Embedding and the scan run on the scheduler's workers (jobqueue.c): texts
 * queued together share one text-tower call, searches with equal
 * parameters share one scan; a full queue answers 503 + Retry-After.
 */
#include "api.h"
#include "base64.h"
#include "json_util.h"
#include "metrics.h"
#include "jobqueue.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_MAX 1000
#define OFFSET_MAX 9000
#define TEXT_MAX 4096
#define PROBES_MAX 65536
#define RESCORE_MAX 1000

typedef enum qkind { Q_TEXT = 1, Q_URL, Q_B64, Q_ID, Q_UPLOAD, Q_VECTOR } qkind;

typedef struct search_req {
    qkind kind;
    int n_sources;
    const char *text;
    const char *url;
    const char *b64;
    size_t b64_len;
    int64_t image_id;
    const char *upload;
    size_t upload_len;
    json_t *vector;          /* Q_VECTOR: the JSON array (owned by the body) */
    long long k, offset;
    double min_score;
    int has_min_score;
    const char *path_prefix, *format;
    int64_t after, before;
    /* (fts branch) */
    const char *mode;          /* "semantic" | "keyword" | "hybrid" | NULL = default */
    const char *tag;
    double keyword_weight;
    int has_keyword_weight;
    json_t *parts;             /* JSON array of weighted parts (borrowed) */
    /* how the vectors are scanned (ann2 branch; docs/search.md) */
    int exact;                 /* "exact": never the approximate index */
    long long probes;          /* "probes": approximate index knob, 0 = default */
    int scan;                  /* "scan": CDX_SCAN_* */
    long long rescore;         /* "rescore": compressed scans, 0 = default */
    cdx_library_pin *pin;      /* the model generation the query embeds with */
} search_req;

static void req_init(search_req *sr)
{
    memset(sr, 0, sizeof *sr);
    sr->k = 10;
}

static int set_text(search_req *sr, const char *field, const char *v, srv_response *rs)
{
    size_t n = strlen(v);
    if (n == 0) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' is empty", field);
        return -1;
    }
    if (n > TEXT_MAX) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' is longer than %d bytes", field, TEXT_MAX);
        return -1;
    }
    if (!srv_utf8_valid(v, n)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' is not valid UTF-8", field);
        return -1;
    }
    sr->kind = Q_TEXT;
    sr->text = v;
    sr->n_sources++;
    return 0;
}

/* Options shared by every form (query string, multipart field), given as
 * strings.  1 handled, 0 not an option, -1 response set. */
static int apply_option_str(search_req *sr, const char *key, const char *v, srv_response *rs)
{
    long long x;
    if (!strcmp(key, "k")) {
        if (srv_parse_ll(v, 1, K_MAX, &x)) goto bad_int;
        sr->k = x;
    } else if (!strcmp(key, "offset")) {
        if (srv_parse_ll(v, 0, OFFSET_MAX, &x)) goto bad_int;
        sr->offset = x;
    } else if (!strcmp(key, "min_score")) {
        if (srv_parse_double(v, -1, 1, &sr->min_score)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'min_score' must be a number between -1 and 1");
            return -1;
        }
        sr->has_min_score = 1;
    } else if (!strcmp(key, "path_prefix")) {
        sr->path_prefix = v;
    } else if (!strcmp(key, "format")) {
        sr->format = v;
    } else if (!strcmp(key, "mode")) {
        sr->mode = v;
    } else if (!strcmp(key, "tag")) {
        sr->tag = v;
    } else if (!strcmp(key, "keyword_weight")) {
        if (srv_parse_double(v, 0, 1, &sr->keyword_weight)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'keyword_weight' must be a number between 0 and 1");
            return -1;
        }
        sr->has_keyword_weight = 1;
    } else if (!strcmp(key, "exact")) {
        if (strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "1") && strcmp(v, "0")) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'exact' must be true, false, 1 or 0");
            return -1;
        }
        sr->exact = !strcmp(v, "true") || !strcmp(v, "1");
    } else if (!strcmp(key, "probes") || !strcmp(key, "rescore")) {
        long long hi = key[0] == 'p' ? PROBES_MAX : RESCORE_MAX;
        if (srv_parse_ll(v, 0, hi, &x)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'%s' must be an integer between 0 and %lld", key, hi);
            return -1;
        }
        *(key[0] == 'p' ? &sr->probes : &sr->rescore) = x;
    } else if (!strcmp(key, "scan")) {
        if ((sr->scan = cdx_scan_parse(v)) < 0) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'scan' must be f32, int8, bit or pca8");
            return -1;
        }
    } else if (!strcmp(key, "after") || !strcmp(key, "before")) {
        if (srv_parse_time(v, key[0] == 'a' ? &sr->after : &sr->before)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD,
                      "'%s' must be unix seconds or a date like 2024-05-01 or 2024-05-01T12:00:00Z", key);
            return -1;
        }
    } else {
        return 0;
    }
    return 1;
bad_int:
    srv_error(rs, 400, SRV_E_INVALID_FIELD, "'%s' must be an integer between %d and %d", key,
              strcmp(key, "k") ? 0 : 1, strcmp(key, "k") ? OFFSET_MAX : K_MAX);
    return -1;
}

/* Query-string form.  text_key names the text parameter ("q" or "query");
 * allow_image: image_id / image_url also accepted. */
static int from_query(const srv_request *rq, const char *text_key, int allow_image,
                      search_req *sr, srv_response *rs)
{
    for (size_t i = 0; i < rq->n_args; i++) {
        const char *key = rq->args[i].key, *v = rq->args[i].value;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(rq->args[j].key, key)) {
                srv_error(rs, 400, SRV_E_BAD_REQUEST, "query parameter '%.64s' given twice", key);
                return -1;
            }
        int r = apply_option_str(sr, key, v, rs);
        if (r < 0) return -1;
        if (r > 0) continue;
        if (!strcmp(key, text_key)) {
            if (set_text(sr, key, v, rs)) return -1;
        } else if (allow_image && !strcmp(key, "image_id")) {
            long long id;
            if (srv_parse_ll(v, 1, INT64_MAX, &id)) {
                srv_error(rs, 400, SRV_E_INVALID_FIELD, "'image_id' must be a positive integer");
                return -1;
            }
            sr->kind = Q_ID;
            sr->image_id = id;
            sr->n_sources++;
        } else if (allow_image && !strcmp(key, "image_url")) {
            sr->kind = Q_URL;
            sr->url = v;
            sr->n_sources++;
        } else {
            srv_error(rs, 400, SRV_E_UNKNOWN_FIELD, "unknown query parameter '%.64s'", key);
            return -1;
        }
    }
    return 0;
}

/* JSON options: k, offset, min_score, filters{...}. */
static int json_options(json_t *o, search_req *sr, srv_response *rs)
{
    if (srv_get_int(o, "k", 1, K_MAX, &sr->k, rs) < 0) return -1;
    if (srv_get_int(o, "offset", 0, OFFSET_MAX, &sr->offset, rs) < 0) return -1;
    int r = srv_get_number(o, "min_score", -1, 1, &sr->min_score, rs);
    if (r < 0) return -1;
    sr->has_min_score = r > 0;
    if (srv_get_string(o, "mode", &sr->mode, rs) < 0) return -1;
    if ((r = srv_get_number(o, "keyword_weight", 0, 1, &sr->keyword_weight, rs)) < 0) return -1;
    sr->has_keyword_weight = r > 0;
    if (srv_get_int(o, "probes", 0, PROBES_MAX, &sr->probes, rs) < 0) return -1;
    if (srv_get_int(o, "rescore", 0, RESCORE_MAX, &sr->rescore, rs) < 0) return -1;
    json_t *ex = json_object_get(o, "exact");
    if (ex && !json_is_boolean(ex)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field 'exact' must be true or false");
        return -1;
    }
    sr->exact = ex && json_is_true(ex);
    const char *scan = NULL;
    if (srv_get_string(o, "scan", &scan, rs) < 0) return -1;
    if (scan && (sr->scan = cdx_scan_parse(scan)) < 0) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field 'scan' must be f32, int8, bit or pca8");
        return -1;
    }
    json_t *f = json_object_get(o, "filters");
    if (!f || json_is_null(f)) return 0;
    if (!json_is_object(f)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field 'filters' must be an object");
        return -1;
    }
    static const char *const allowed[] = {"path_prefix", "after", "before", "format", "tag", NULL};
    if (srv_check_fields(f, allowed, "filters", rs)) return -1;
    if (srv_get_string(f, "path_prefix", &sr->path_prefix, rs) < 0) return -1;
    if (srv_get_string(f, "tag", &sr->tag, rs) < 0) return -1;
    if (srv_get_string(f, "format", &sr->format, rs) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "before" : "after";
        int64_t *dst = i ? &sr->before : &sr->after;
        json_t *v = json_object_get(f, key);
        if (!v) continue;
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            *dst = json_integer_value(v);
        } else if (!json_is_string(v) || srv_parse_time(json_string_value(v), dst)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD,
                      "filters.%s must be unix seconds or a date like \"2024-05-01\"", key);
            return -1;
        }
    }
    return 0;
}

/* JSON sources.  Each key of `sources` maps to its kind. */
typedef struct source_key {
    const char *key;
    qkind kind;
} source_key;

static int from_json(json_t *o, const source_key *sources, search_req *sr, srv_response *rs)
{
    const char *allowed[24];
    size_t na = 0;
    for (const source_key *s = sources; s->key; s++) allowed[na++] = s->key;
    allowed[na++] = "k";
    allowed[na++] = "offset";
    allowed[na++] = "min_score";
    allowed[na++] = "filters";
    allowed[na++] = "mode";
    allowed[na++] = "keyword_weight";
    allowed[na++] = "exact";
    allowed[na++] = "probes";
    allowed[na++] = "scan";
    allowed[na++] = "rescore";
    if (sources[0].kind == Q_TEXT && sources[1].key) allowed[na++] = "parts";   /* /api/search */
    allowed[na] = NULL;
    if (srv_check_fields(o, allowed, "the request body", rs)) return -1;
    json_t *parts = json_object_get(o, "parts");
    if (parts) {
        sr->parts = parts;
        sr->n_sources++;
    }
    for (const source_key *s = sources; s->key; s++) {
        json_t *v = json_object_get(o, s->key);
        if (!v) continue;
        if (s->kind == Q_VECTOR) {
            if (!json_is_array(v)) {
                srv_error(rs, 400, SRV_E_INVALID_FIELD, "field 'vector' must be an array of numbers");
                return -1;
            }
            sr->kind = Q_VECTOR;
            sr->vector = v;
            sr->n_sources++;
            continue;
        }
        if (s->kind == Q_ID) {
            long long id;
            if (srv_get_int(o, s->key, 1, INT64_MAX, &id, rs) < 0) return -1;
            sr->kind = Q_ID;
            sr->image_id = id;
            sr->n_sources++;
            continue;
        }
        const char *str;
        if (srv_get_string(o, s->key, &str, rs) < 0) return -1;
        if (s->kind == Q_TEXT) {
            if (set_text(sr, s->key, str, rs)) return -1;
        } else if (s->kind == Q_URL) {
            sr->kind = Q_URL;
            sr->url = str;
            sr->n_sources++;
        } else {
            sr->kind = Q_B64;
            sr->b64 = str;
            sr->b64_len = json_string_length(v);
            sr->n_sources++;
        }
    }
    return json_options(o, sr, rs);
}

/* Multipart form: one image part plus option fields. */
static int from_multipart(const srv_request *rq, srv_part *parts, search_req *sr, srv_response *rs,
                          char (*values)[512])
{
    size_t n = 0;
    if (srv_parse_multipart(rq, parts, &n, rs)) return -1;
    const srv_part *img;
    if (srv_image_part(parts, n, &img, rs)) return -1;
    sr->kind = Q_UPLOAD;
    sr->upload = img->data;
    sr->upload_len = img->len;
    sr->n_sources = 1;
    for (size_t i = 0; i < n; i++) {
        if (&parts[i] == img) continue;
        if (parts[i].has_filename || parts[i].len >= 512) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "form field '%s' must be a short text value",
                      parts[i].name);
            return -1;
        }
        memcpy(values[i], parts[i].data, parts[i].len);
        values[i][parts[i].len] = '\0';
        if (strlen(values[i]) != parts[i].len || !srv_utf8_valid(values[i], parts[i].len)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "form field '%s' is not valid UTF-8 text",
                      parts[i].name);
            return -1;
        }
        int r = apply_option_str(sr, parts[i].name, values[i], rs);
        if (r < 0) return -1;
        if (r == 0) {
            srv_error(rs, 400, SRV_E_UNKNOWN_FIELD, "unknown form field '%s'", parts[i].name);
            return -1;
        }
    }
    return 0;
}

/* Run a job on the scheduler (or directly when the server has none).
 * 0 ran (see job->result / job->error), -1 response set (503). */
static int run_job(srv_ctx *s, sched_job *job, srv_response *rs)
{
    if (!s->sched) {
        cdx_result r;
        cdx_result one = CDX_OK;
        if (job->kind == SCHED_TEXT && job->pin) r = cdx_library_pin_embed_texts(job->pin, &job->text, 1, job->vec);
        else if (job->kind == SCHED_TEXT) r = cdx_library_embed_text(s->lib, job->text, job->vec);
        else if (job->kind == SCHED_IMAGE && job->pin)
            r = cdx_library_pin_embed_image_buffers(job->pin, &job->data, &job->len, 1, job->vec, &one);
        else if (job->kind == SCHED_IMAGE) r = cdx_library_embed_image_buffer(s->lib, job->data, job->len, job->vec);
        else r = cdx_library_search_vector(s->lib, job->query, &job->params, job->hits, &job->n_hits, &job->total);
        job->result = r = r ? r : one;
        if (r) snprintf(job->error, sizeof job->error, "%s", cdx_last_error());
        return 0;
    }
    int rc = sched_run(s->sched, job);
    if (rc == SCHED_DONE) return 0;
    srv_error(rs, 503, SRV_E_UNAVAILABLE, "%s",
              rc == SCHED_FULL ? "the server is busy (search queue full); retry shortly"
              : rc == SCHED_TIMEOUT ? "the server is busy (waited too long in the search queue); retry shortly"
                                    : "the server is shutting down");
    rs->retry_after = 1;
    return -1;
}

/* A job's library error as a response (as srv_error_cdx would). */
static void job_error(srv_response *rs, const sched_job *job, const char *invalid_code, const char *what)
{
    switch (job->result) {
    case CDX_ERR_FORMAT:
    case CDX_ERR_UNSUPPORTED:
    case CDX_ERR_INVALID_ARG:
        srv_error(rs, 400, invalid_code, "%s: %s", what, job->error);
        break;
    case CDX_ERR_TOO_LARGE:
        srv_error(rs, 413, SRV_E_TOO_LARGE, "%s: %s", what, job->error);
        break;
    case CDX_ERR_NOT_FOUND:
        srv_error(rs, 404, SRV_E_NOT_FOUND, "%s: %s", what, job->error);
        break;
    case CDX_ERR_NOMEM:
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "%s: %s", what, job->error);
        break;
    default:
        srv_error(rs, 500, SRV_E_INTERNAL, "%s: %s", what, job->error);
        break;
    }
}

static int embed_image_job(srv_ctx *s, cdx_library_pin *pin, const void *data, size_t len, float *q,
                           srv_response *rs)
{
    sched_job job = {.kind = SCHED_IMAGE, .data = data, .len = len, .vec = q, .pin = pin};
    if (run_job(s, &job, rs)) return -1;
    if (job.result) {
        job_error(rs, &job, SRV_E_INVALID_IMAGE, "image query");
        return -1;
    }
    srv_metrics_embeddings(s->metrics, 1, 1);
    return 0;
}

/* Compute the query vector.  0 ok, -1 response set. */
static int query_vector(srv_ctx *s, const search_req *sr, float *q, srv_response *rs)
{
    cdx_result r;
    switch (sr->kind) {
    case Q_VECTOR: {
        size_t n = json_array_size(sr->vector);
        if (n != (size_t)s->dim) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'vector' has %zu values but the library's model "
                      "embeds in %d dimensions", n, s->dim);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(sr->vector, i);
            if (!json_is_number(x)) {
                srv_error(rs, 400, SRV_E_INVALID_FIELD, "'vector' value %zu is not a number", i);
                return -1;
            }
            q[i] = (float)json_number_value(x);
        }
        if (cdx_vector_normalize(q, s->dim)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'vector': %s", cdx_last_error());
            return -1;
        }
        return 0;
    }
    case Q_TEXT: {
        sched_job job = {.kind = SCHED_TEXT, .text = sr->text, .vec = q, .pin = sr->pin};
        if (run_job(s, &job, rs)) return -1;
        if (job.result) { job_error(rs, &job, SRV_E_INVALID_FIELD, "text query"); return -1; }
        srv_metrics_embeddings(s->metrics, 0, 1);
        return 0;
    }
    case Q_ID:
        r = cdx_library_get_vector(s->lib, sr->image_id, q);
        if (r == CDX_ERR_NOT_FOUND || r == CDX_ERR_INVALID_ARG) {
            srv_error(rs, 404, SRV_E_NOT_FOUND, "no image with id %lld", (long long)sr->image_id);
            return -1;
        }
        if (r) { srv_error_cdx(rs, r, SRV_E_BAD_REQUEST, "image_id"); return -1; }
        return 0;
    case Q_URL: {
        char *data;
        size_t len;
        if (srv_fetch_image(s, sr->url, &data, &len, rs)) return -1;
        int rc = embed_image_job(s, sr->pin, data, len, q, rs);
        free(data);
        return rc;
    }
    case Q_B64: {
        unsigned char *data;
        size_t len;
        char err[256];
        if (srv_base64_decode(sr->b64, sr->b64_len, s->cfg.max_body, &data, &len, err, sizeof err)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "image_base64: %s", err);
            return -1;
        }
        int rc = embed_image_job(s, sr->pin, data, len, q, rs);
        free(data);
        return rc;
    }
    case Q_UPLOAD:
        return embed_image_job(s, sr->pin, sr->upload, sr->upload_len, q, rs);
    default:
        srv_error(rs, 500, SRV_E_INTERNAL, "no query");
        return -1;
    }
}

static json_t *query_json(const search_req *sr)
{
    if (sr->parts) return json_pack("{s:s,s:I}", "type", "parts", "parts", (json_int_t)json_array_size(sr->parts));
    switch (sr->kind) {
    case Q_TEXT: return json_pack("{s:s,s:s}", "type", "text", "text", sr->text);
    case Q_URL: return json_pack("{s:s,s:o}", "type", "image_url", "image_url",
                                 srv_json_string_lossy(sr->url));
    case Q_B64: return json_pack("{s:s,s:I}", "type", "image_base64", "chars", (json_int_t)sr->b64_len);
    case Q_ID: return json_pack("{s:s,s:I}", "type", "image_id", "image_id", (json_int_t)sr->image_id);
    case Q_UPLOAD: return json_pack("{s:s,s:I}", "type", "image_upload", "bytes", (json_int_t)sr->upload_len);
    case Q_VECTOR: return json_pack("{s:s,s:I}", "type", "vector", "dim",
                                    (json_int_t)json_array_size(sr->vector));
    }
    return json_null();
}

/* ---- modes, tag filter and combined queries (fts branch; docs/search.md) --
 * "parts": [{"text"|"image_id"|"image_url"|"image_base64"|"vector": ...,
 * "weight": w}, ...] is a combined query: the normalised weighted sum of
 * the parts' normalised embeddings (cdx_query_combine). */

#define PARTS_MAX 16

/* The embedding of part i (validated here).  0 ok, -1 response set. */
static int part_vector(srv_ctx *s, cdx_library_pin *pin, json_t *part, size_t i, float *v, float *w,
                       srv_response *rs)
{
    char where[32];
    snprintf(where, sizeof where, "parts[%zu]", i);
    static const char *const allowed[] = {"text", "image_id", "image_url", "image_base64", "vector",
                                          "weight", NULL};
    if (!json_is_object(part)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "%s must be an object", where);
        return -1;
    }
    if (srv_check_fields(part, allowed, where, rs)) return -1;
    double wt = 1.0;
    if (srv_get_number(part, "weight", -10, 10, &wt, rs) < 0) return -1;
    if (wt == 0.0) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "%s.weight must not be 0", where);
        return -1;
    }
    *w = (float)wt;
    search_req one;
    req_init(&one);
    one.pin = pin;
    static const source_key keys[] = {{"text", Q_TEXT}, {"image_url", Q_URL}, {"image_base64", Q_B64},
                                      {"image_id", Q_ID}, {NULL, 0}};
    int found = 0;
    for (const source_key *k = keys; k->key; k++) {
        json_t *x = json_object_get(part, k->key);
        if (!x) continue;
        found++;
        if (k->kind == Q_ID) {
            long long id;
            if (srv_get_int(part, k->key, 1, INT64_MAX, &id, rs) < 0) return -1;
            one.kind = Q_ID;
            one.image_id = id;
            continue;
        }
        const char *str;
        if (srv_get_string(part, k->key, &str, rs) < 0) return -1;
        if (k->kind == Q_TEXT && set_text(&one, "text", str, rs)) return -1;
        one.kind = k->kind;
        if (k->kind == Q_URL) one.url = str;
        if (k->kind == Q_B64) {
            one.b64 = str;
            one.b64_len = json_string_length(x);
        }
    }
    json_t *vec = json_object_get(part, "vector");
    if (vec) {
        found++;
        if (!json_is_array(vec) || json_array_size(vec) != (size_t)s->dim) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "%s.vector must be an array of %d numbers", where, s->dim);
            return -1;
        }
        for (int d = 0; d < s->dim; d++) {
            json_t *x = json_array_get(vec, (size_t)d);
            if (!json_is_number(x) || !isfinite(json_number_value(x))) {
                srv_error(rs, 400, SRV_E_INVALID_FIELD, "%s.vector[%d] is not a finite number", where, d);
                return -1;
            }
            v[d] = (float)json_number_value(x);
        }
    }
    if (found != 1) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "%s must have exactly one of text, image_id, image_url, "
                  "image_base64 or vector", where);
        return -1;
    }
    return vec ? 0 : query_vector(s, &one, v, rs);
}

static int parts_vector(srv_ctx *s, const search_req *sr, float *q, srv_response *rs)
{
    size_t n = json_is_array(sr->parts) ? json_array_size(sr->parts) : 0;
    if (n < 1 || n > PARTS_MAX) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "'parts' must be an array of 1 to %d parts", PARTS_MAX);
        return -1;
    }
    float *vecs = malloc(n * (size_t)s->dim * sizeof *vecs), w[PARTS_MAX];
    if (!vecs) {
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = part_vector(s, sr->pin, json_array_get(sr->parts, i), i, vecs + i * (size_t)s->dim, &w[i], rs);
    if (!rc) {
        cdx_result r = cdx_query_combine(vecs, w, (int)n, s->dim, q);
        if (r) {
            srv_error_cdx(rs, r, SRV_E_INVALID_FIELD, "parts");
            rc = -1;
        }
    }
    free(vecs);
    return rc;
}

/* The text the keyword side of a hybrid search uses: the query text, or
 * the texts of the positively weighted parts (malloc'd; "" if none). */
static char *hybrid_words(const search_req *sr)
{
    if (!sr->parts) return strdup(sr->kind == Q_TEXT ? sr->text : "");
    size_t cap = 1;
    for (size_t i = 0; i < json_array_size(sr->parts); i++) {
        json_t *t = json_object_get(json_array_get(sr->parts, i), "text");
        if (json_is_string(t)) cap += json_string_length(t) + 1;
    }
    char *w = calloc(1, cap);
    size_t at = 0;
    for (size_t i = 0; w && i < json_array_size(sr->parts); i++) {
        json_t *p = json_array_get(sr->parts, i), *t = json_object_get(p, "text");
        json_t *wt = json_object_get(p, "weight");
        if (!json_is_string(t) || (wt && json_is_number(wt) && json_number_value(wt) <= 0)) continue;
        if (at) w[at++] = ' ';
        memcpy(w + at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    return w;
}

/* Mode of a request: given, else hybrid when the library has text and the
 * query has words.  0 ok, -1 response set. */
static int resolve_mode(srv_ctx *s, const search_req *sr, const char *words, cdx_search_mode *mode,
                        srv_response *rs)
{
    if (sr->mode) {
        if (cdx_search_mode_parse(sr->mode, mode)) {
            srv_error(rs, 400, SRV_E_INVALID_FIELD, "'mode' must be semantic, keyword or hybrid");
            return -1;
        }
    } else {
        int has = 0;
        cdx_result r = cdx_library_has_text(s->lib, &has);
        if (r) {
            srv_error_cdx(rs, r, SRV_E_INTERNAL, "search");
            return -1;
        }
        *mode = has && words[0] ? CDX_SEARCH_HYBRID : CDX_SEARCH_SEMANTIC;
    }
    if (*mode == CDX_SEARCH_KEYWORD && (sr->parts || sr->kind != Q_TEXT)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "mode 'keyword' takes a text query (FTS5 syntax), "
                  "not an image or parts");
        return -1;
    }
    if (*mode == CDX_SEARCH_HYBRID && !words[0]) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "mode 'hybrid' needs a text query");
        return -1;
    }
    return 0;
}

static void run_search(srv_ctx *s, const search_req *sr, double t0, srv_response *rs)
{
    if (sr->n_sources != 1) {
        srv_error(rs, 400, SRV_E_BAD_REQUEST, "%s",
                  sr->n_sources ? "give exactly one query (text, image_url, image_base64, image_id, vector, parts or an image file)"
                                : "no query given (text, image_url, image_base64, image_id, vector, parts or an image file)");
        return;
    }
    if (sr->after && sr->before && sr->after > sr->before) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "'after' is later than 'before'");
        return;
    }
    float *q = malloc((size_t)s->dim * sizeof(float));
    cdx_hit *hits = malloc((size_t)sr->k * sizeof(cdx_hit));
    char *words = hybrid_words(sr);
    cdx_search_mode mode = CDX_SEARCH_SEMANTIC;
    if (!q || !hits || !words) {
        free(q);
        free(hits);
        free(words);
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "out of memory");
        return;
    }
    if (resolve_mode(s, sr, words, &mode, rs)) {
        free(q);
        free(hits);
        free(words);
        return;
    }
    cdx_search_params p = cdx_search_default_params();
    p.k = (size_t)sr->k;
    p.offset = (size_t)sr->offset;
    if (sr->has_min_score) p.min_score = (float)sr->min_score;
    p.path_prefix = sr->path_prefix && *sr->path_prefix ? sr->path_prefix : NULL;
    p.after = sr->after;
    p.before = sr->before;
    p.format = sr->format && *sr->format ? sr->format : NULL;
    p.tag = sr->tag && *sr->tag ? sr->tag : NULL;
    if (sr->has_keyword_weight) p.keyword_weight = (float)sr->keyword_weight;
    cdx_search_info how = {0, 0};
    p.exact = sr->exact;
    p.probes = (int)sr->probes;
    p.scan = sr->scan;
    p.rescore = (size_t)sr->rescore;
    p.info = &how;
    size_t n = 0;
    uint64_t total = 0;
    /* The query pins the model generation it embeds with and searches the
     * set of that model only: when a reindex switches in between, the
     * search says so (CDX_ERR_MISMATCH) and the query runs again on the
     * new model (docs/models.md). */
    search_req one = *sr;
    char model_fp[65] = "";
    int failed = 0;
    for (int attempt = 0;; attempt++) {
        if (mode != CDX_SEARCH_KEYWORD && cdx_library_pin_take(s->lib, &one.pin) != CDX_OK) one.pin = NULL;
        p.model_fingerprint = one.pin && !(sr->kind == Q_VECTOR && !sr->parts)
                                  ? cdx_library_pin_fingerprint(one.pin) : NULL;
        snprintf(model_fp, sizeof model_fp, "%s", one.pin ? cdx_library_pin_fingerprint(one.pin) : "");
        cdx_result r = CDX_OK;
        if (mode != CDX_SEARCH_KEYWORD && (sr->parts ? parts_vector(s, &one, q, rs) : query_vector(s, &one, q, rs))) {
            failed = 1;
        } else if (mode == CDX_SEARCH_SEMANTIC) {   /* through the job queue: shared scans */
            sched_job job = {.kind = SCHED_SEARCH, .query = q, .params = p, .hits = hits};
            if (run_job(s, &job, rs)) failed = 1;
            else if ((r = job.result) != CDX_ERR_MISMATCH || !p.model_fingerprint || attempt >= 3) {
                if (r) job_error(rs, &job, SRV_E_INVALID_FIELD, "search");
                failed = r != CDX_OK;
            }
            n = job.n_hits;
            total = job.total;
        } else {
            r = mode == CDX_SEARCH_KEYWORD ? cdx_library_search_keyword(s->lib, sr->text, &p, hits, &n, &total)
                                           : cdx_library_search_hybrid(s->lib, q, words, &p, hits, &n, &total);
            if (r && (r != CDX_ERR_MISMATCH || !p.model_fingerprint || attempt >= 3)) {
                srv_error_cdx(rs, r, SRV_E_INVALID_FIELD, "search");
                failed = 1;
            }
        }
        cdx_library_pin_release(one.pin);
        one.pin = NULL;
        if (failed || r != CDX_ERR_MISMATCH) break;
        (void)cdx_library_sync_model(s->lib, NULL);   /* a read-only server follows the switch */
    }
    free(q);
    free(words);
    if (failed) {
        free(hits);
        return;
    }
    json_t *results = json_array();
    for (size_t i = 0; results && i < n; i++) {
        cdx_image_record rec;
        if (cdx_library_get_image(s->lib, hits[i].id, &rec) != CDX_OK) continue;  /* removed meanwhile */
        json_t *o = srv_image_json(&rec);
        if (!o) continue;
        srv_image_add_source(s->lib, rec.id, o);
        json_object_set_new(o, "score", json_real(hits[i].score));
        srv_image_add_ocr(s->lib, o, hits[i].id, 300);
        json_array_append_new(results, o);
    }
    free(hits);
    json_t *out = json_pack("{s:o,s:I,s:I,s:I,s:f,s:o,s:s}", "query", query_json(sr), "k", (json_int_t)sr->k,
                            "offset", (json_int_t)sr->offset, "total", (json_int_t)total,
                            "took_ms", srv_round((srv_now() - t0) * 1000.0, 2), "results", results,
                            "mode", cdx_search_mode_name(mode));
    if (out) json_object_set_new(out, "approximate", json_boolean(how.approximate));
    if (out && *model_fp) json_object_set_new(out, "model_fingerprint", json_string(model_fp));
    if (out && how.approximate) json_object_set_new(out, "probes", json_integer(how.probes));
    srv_json_reply(rs, 200, out);
}

static int is_multipart_request(const srv_request *rq)
{
    return srv_is_multipart(rq->content_type);
}

/* POST body dispatch shared by the POST endpoints. */
static void post_search(srv_ctx *s, const srv_request *rq, srv_response *rs,
                        const source_key *sources, int allow_multipart)
{
    double t0 = srv_now();
    search_req sr;
    req_init(&sr);
    if (rq->n_args) {
        srv_error(rs, 400, SRV_E_UNKNOWN_FIELD, "unexpected query parameter '%.64s' (send options in the body)",
                  rq->args[0].key);
        return;
    }
    if (allow_multipart && is_multipart_request(rq)) {
        srv_part parts[SRV_MAX_PARTS];
        char values[SRV_MAX_PARTS][512];
        if (from_multipart(rq, parts, &sr, rs, values)) return;
        run_search(s, &sr, t0, rs);
        return;
    }
    json_t *o;
    if (srv_parse_body_object(rq, rs, &o)) {
        if (allow_multipart && rs->status == 415)
            srv_error(rs, 415, SRV_E_MEDIA_TYPE,
                      "expected Content-Type application/json or multipart/form-data, got %.100s",
                      rq->content_type ? rq->content_type : "none");
        return;
    }
    if (from_json(o, sources, &sr, rs) == 0) run_search(s, &sr, t0, rs);
    json_decref(o);
}

void api_search_get(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    double t0 = srv_now();
    search_req sr;
    req_init(&sr);
    if (from_query(rq, "q", 1, &sr, rs) == 0) run_search(s, &sr, t0, rs);
}

void api_text_search_get(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    double t0 = srv_now();
    search_req sr;
    req_init(&sr);
    if (from_query(rq, "query", 0, &sr, rs) == 0) run_search(s, &sr, t0, rs);
}

void api_search_post(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const source_key src[] = {{"text", Q_TEXT}, {"image_url", Q_URL}, {"image_base64", Q_B64},
                                     {"image_id", Q_ID}, {"vector", Q_VECTOR}, {NULL, 0}};
    post_search(s, rq, rs, src, 1);
}

void api_text_search_post(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const source_key src[] = {{"query", Q_TEXT}, {NULL, 0}};
    post_search(s, rq, rs, src, 0);
}

void api_image_search_post(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const source_key src[] = {{"image_url", Q_URL}, {"image_base64", Q_B64}, {NULL, 0}};
    post_search(s, rq, rs, src, 1);
}

void api_search_images_post(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    static const source_key src[] = {{"text", Q_TEXT}, {NULL, 0}};
    post_search(s, rq, rs, src, 0);
}
