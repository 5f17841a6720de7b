/*
 * queries.c - parse judged query files (JSONL or CSV, see queries.h) and run
 * them against a library: embed each query, search, and score the ranking.
 *
 * Invariants: a parsed ev_query has exactly one input and only judgments
 * with finite grades >= 0; every array is capped (EV_MAX_ITEMS queries,
 * EV_MAX_REFS judgments per query, EV_MAX_LINE_BYTES per line).
 * Workload: one embedding + two exact searches per query (the timed top-K
 * search and the deeper ranking for AP/MRR); queries run one at a time so
 * the latencies are those of a single user.
 */
#include "queries.h"
#include "evutil.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EV_URL_MAX_BYTES ((size_t)64 << 20)
#define EV_URL_TIMEOUT_S 60L

/* ---------------------------------------------------------------- parsing */

static void query_free(ev_query *q)
{
    for (size_t i = 0; i < q->n_refs; i++) free(q->refs[i].path);
    free(q->refs);
    free(q->qid);
    free(q->input);
    free(q->label);
    memset(q, 0, sizeof *q);
}

void ev_query_set_free(ev_query_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) query_free(&s->q[i]);
    free(s->q);
    free(s->base);
    free(s->name);
    memset(s, 0, sizeof *s);
}

typedef struct pctx {
    const char *name;
    long line;
} pctx;

#define PFAIL(pc, ...) parse_fail(pc, __VA_ARGS__)

static cdx_result parse_fail(const pctx *pc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static cdx_result parse_fail(const pctx *pc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: %s", pc->name, pc->line, msg);
}

/* Add a judgment written as text: all digits = id, else a path. */
static cdx_result add_ref(const pctx *pc, ev_query *q, ev_vec *refs, const char *key,
                          double grade, int explicit_grade)
{
    if (!*key) return PFAIL(pc, "empty path in the judgments");
    ev_ref r = {NULL, 0, grade, explicit_grade};
    if (strspn(key, "0123456789") == strlen(key) && ev_parse_id(key, &r.id) != 0)
        return PFAIL(pc, "\"%s\" is not an image id (ids are 1..2^63-1)", key);
    if (ev_parse_id(key, &r.id) != 0) {
        r.path = ev_strdup(key);
        if (!r.path) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    }
    cdx_result rc = ev_vec_push(refs, &r, sizeof r, EV_MAX_REFS);
    if (rc != CDX_OK) {
        free(r.path);
        return PFAIL(pc, "more than %zu judgments", EV_MAX_REFS);
    }
    q->refs = refs->data;
    q->n_refs = refs->n;
    return CDX_OK;
}

static cdx_result add_ref_id(const pctx *pc, ev_query *q, ev_vec *refs, int64_t id)
{
    ev_ref r = {NULL, id, 1.0, 0};
    if (ev_vec_push(refs, &r, sizeof r, EV_MAX_REFS) != CDX_OK)
        return PFAIL(pc, "more than %zu judgments", EV_MAX_REFS);
    q->refs = refs->data;
    q->n_refs = refs->n;
    return CDX_OK;
}

static cdx_result check_grade(const pctx *pc, const char *key, double g)
{
    if (!isfinite(g) || g < 0)
        return PFAIL(pc, "grade of \"%s\" must be a finite number >= 0", key);
    return CDX_OK;
}

static cdx_result set_string(const pctx *pc, char **dst, const char *field, const char *s)
{
    if (!*s) return PFAIL(pc, "\"%s\" is empty", field);
    *dst = ev_strdup(s);
    return *dst ? CDX_OK : cdx_set_error(CDX_ERR_NOMEM, "out of memory");
}

/* Fill q from one JSON object. */
static cdx_result query_from_json(const pctx *pc, json_t *o, ev_query *q)
{
    if (!json_is_object(o)) return PFAIL(pc, "expected a JSON object");
    int inputs = 0;
    const char *key;
    json_t *val;
    ev_vec refs = {0};
    cdx_result r;
    json_object_foreach(o, key, val) {
        if (!strcmp(key, "text") || !strcmp(key, "image")) {
            if (!json_is_string(val)) return PFAIL(pc, "\"%s\" must be a string", key);
            if (++inputs > 1) break;   /* reported below; q->input is not overwritten */
            q->kind = key[0] == 't' ? EV_QUERY_TEXT : EV_QUERY_IMAGE;
            if ((r = set_string(pc, &q->input, key, json_string_value(val))) != CDX_OK) return r;
        } else if (!strcmp(key, "image_id")) {
            if (!json_is_integer(val) || json_integer_value(val) < 1)
                return PFAIL(pc, "\"image_id\" must be an integer >= 1 (library ids start at 1)");
            if (++inputs > 1) break;
            q->kind = EV_QUERY_IMAGE_ID;
            q->image_id = (int64_t)json_integer_value(val);
        } else if (!strcmp(key, "label")) {
            if (!json_is_string(val)) return PFAIL(pc, "\"label\" must be a string");
            if ((r = set_string(pc, &q->label, key, json_string_value(val))) != CDX_OK) return r;
        } else if (!strcmp(key, "id")) {
            char buf[64];
            if (json_is_integer(val)) {
                snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(val));
                if ((r = set_string(pc, &q->qid, key, buf)) != CDX_OK) return r;
            } else if (json_is_string(val)) {
                if ((r = set_string(pc, &q->qid, key, json_string_value(val))) != CDX_OK) return r;
            } else {
                return PFAIL(pc, "\"id\" must be a string or an integer");
            }
        } else if (strcmp(key, "relevant") && strcmp(key, "grades")) {
            return PFAIL(pc, "unknown field \"%s\" (expected text, image, image_id, relevant, "
                         "label, grades, id)", key);
        }
    }
    if (inputs != 1)
        return PFAIL(pc, "a query needs exactly one of \"text\", \"image\", \"image_id\"");
    /* Judgments in a fixed order: relevant first, then grades. */
    json_t *rel = json_object_get(o, "relevant");
    if (rel) {
        if (!json_is_array(rel)) return PFAIL(pc, "\"relevant\" must be an array");
        size_t i;
        json_array_foreach(rel, i, val) {
            if (json_is_integer(val) && json_integer_value(val) >= 1)
                r = add_ref_id(pc, q, &refs, (int64_t)json_integer_value(val));
            else if (json_is_string(val))
                r = add_ref(pc, q, &refs, json_string_value(val), 1.0, 0);
            else
                return PFAIL(pc, "\"relevant\"[%zu] must be an id (integer >= 1) or a path", i);
            if (r != CDX_OK) return r;
        }
    }
    json_t *grades = json_object_get(o, "grades");
    if (grades) {
        if (!json_is_object(grades)) return PFAIL(pc, "\"grades\" must be an object");
        json_object_foreach(grades, key, val) {
            if (!json_is_number(val)) return PFAIL(pc, "grade of \"%s\" must be a number", key);
            double g = json_number_value(val);
            if ((r = check_grade(pc, key, g)) != CDX_OK) return r;
            if ((r = add_ref(pc, q, &refs, key, g, 1)) != CDX_OK) return r;
        }
    }
    return CDX_OK;
}

static cdx_result push_query(ev_vec *qs, ev_query *q, const pctx *pc)
{
    if (ev_vec_push(qs, q, sizeof *q, EV_MAX_ITEMS) != CDX_OK) {
        query_free(q);
        return PFAIL(pc, "more than %zu queries", EV_MAX_ITEMS);
    }
    return CDX_OK;
}

static cdx_result parse_jsonl(const char *name, const char *data, size_t len, ev_vec *qs)
{
    pctx pc = {name, 0};
    const char *p = data, *end = data + len;
    while (p < end) {
        pc.line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (n > EV_MAX_LINE_BYTES) return PFAIL(&pc, "line longer than %zu bytes", EV_MAX_LINE_BYTES);
        size_t s = 0;
        while (s < n && (line[s] == ' ' || line[s] == '\t' || line[s] == '\r')) s++;
        if (s == n) continue;
        json_error_t je;
        json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);
        if (!o) return PFAIL(&pc, "invalid JSON at column %d: %s", je.column, je.text);
        ev_query q = {0};
        q.line = pc.line;
        cdx_result r = query_from_json(&pc, o, &q);
        json_decref(o);
        if (r != CDX_OK) {
            query_free(&q);
            return r;
        }
        if ((r = push_query(qs, &q, &pc)) != CDX_OK) return r;
    }
    return CDX_OK;
}

/* Split s on sep into trimmed non-empty items, calling fn for each. */
static cdx_result csv_list(const pctx *pc, ev_query *q, ev_vec *refs, const char *s, int grades)
{
    char *copy = ev_strdup(s);
    if (!copy) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = CDX_OK;
    char *item = copy;
    while (item && r == CDX_OK) {
        char *next = strchr(item, ';');
        if (next) *next++ = '\0';
        while (*item == ' ') item++;
        size_t n = strlen(item);
        while (n && item[n - 1] == ' ') item[--n] = '\0';
        if (*item) {
            if (grades) {
                char *eq = strrchr(item, '=');
                if (!eq) {
                    r = PFAIL(pc, "grades item \"%s\" is not key=grade", item);
                    break;
                }
                *eq = '\0';
                char *gend;
                double g = strtod(eq + 1, &gend);
                if (gend == eq + 1 || *gend != '\0') {
                    r = PFAIL(pc, "grade of \"%s\" is not a number", item);
                    break;
                }
                r = check_grade(pc, item, g);
                if (r == CDX_OK) r = add_ref(pc, q, refs, item, g, 1);
            } else {
                r = add_ref(pc, q, refs, item, 1.0, 0);
            }
        }
        item = next;
    }
    free(copy);
    return r;
}

enum { COL_TEXT, COL_IMAGE, COL_IMAGE_ID, COL_RELEVANT, COL_LABEL, COL_GRADES, COL_ID, N_COLS };
static const char *const col_names[N_COLS] = {"text", "image", "image_id", "relevant",
                                              "label", "grades", "id"};

static cdx_result parse_csv(const char *name, const char *data, size_t len, ev_vec *qs)
{
    ev_csv c;
    ev_csv_init(&c, name, data, len);
    int col[N_COLS], header = 1, rc;
    cdx_result r = CDX_OK;
    for (int i = 0; i < N_COLS; i++) col[i] = -1;
    while ((rc = ev_csv_next(&c)) > 0) {
        pctx pc = {name, c.line};
        if (header) {
            header = 0;
            for (int f = 0; f < c.n_fields; f++) {
                int k = 0;
                while (k < N_COLS && strcmp(c.field[f], col_names[k])) k++;
                if (k == N_COLS) {
                    r = PFAIL(&pc, "unknown column \"%s\" in the header (expected text, image, "
                              "image_id, relevant, label, grades, id)", c.field[f]);
                    goto done;
                }
                if (col[k] >= 0) {
                    r = PFAIL(&pc, "column \"%s\" appears twice", c.field[f]);
                    goto done;
                }
                col[k] = f;
            }
            if (col[COL_TEXT] < 0 && col[COL_IMAGE] < 0 && col[COL_IMAGE_ID] < 0) {
                r = PFAIL(&pc, "the header names none of text, image, image_id");
                goto done;
            }
            continue;
        }
        const char *cell[N_COLS];
        for (int k = 0; k < N_COLS; k++) {
            if (col[k] >= c.n_fields) {
                r = PFAIL(&pc, "row has %d columns, fewer than the header", c.n_fields);
                goto done;
            }
            cell[k] = col[k] >= 0 ? c.field[col[k]] : "";
        }
        ev_query q = {0};
        ev_vec refs = {0};
        q.line = c.line;
        int inputs = !!*cell[COL_TEXT] + !!*cell[COL_IMAGE] + !!*cell[COL_IMAGE_ID];
        if (inputs != 1) {
            r = PFAIL(&pc, "a query needs exactly one of text, image, image_id");
            goto done;
        }
        if (*cell[COL_TEXT]) {
            q.kind = EV_QUERY_TEXT;
            r = set_string(&pc, &q.input, "text", cell[COL_TEXT]);
        } else if (*cell[COL_IMAGE]) {
            q.kind = EV_QUERY_IMAGE;
            r = set_string(&pc, &q.input, "image", cell[COL_IMAGE]);
        } else {
            q.kind = EV_QUERY_IMAGE_ID;
            if (ev_parse_id(cell[COL_IMAGE_ID], &q.image_id) != 0)
                r = PFAIL(&pc, "image_id \"%s\" is not an integer >= 0", cell[COL_IMAGE_ID]);
        }
        if (r == CDX_OK && *cell[COL_LABEL]) r = set_string(&pc, &q.label, "label", cell[COL_LABEL]);
        if (r == CDX_OK && *cell[COL_ID]) r = set_string(&pc, &q.qid, "id", cell[COL_ID]);
        if (r == CDX_OK) r = csv_list(&pc, &q, &refs, cell[COL_RELEVANT], 0);
        if (r == CDX_OK) r = csv_list(&pc, &q, &refs, cell[COL_GRADES], 1);
        if (r == CDX_OK) r = push_query(qs, &q, &pc);
        else query_free(&q);
        if (r != CDX_OK) goto done;
    }
    if (rc < 0) r = CDX_ERR_FORMAT;
done:
    ev_csv_free(&c);
    return r;
}

cdx_result ev_queries_parse(const char *name, const char *data, size_t len, ev_query_set *out)
{
    memset(out, 0, sizeof *out);
    size_t nl = strlen(name);
    int csv = nl >= 4 && !strcasecmp(name + nl - 4, ".csv");
    if (!csv) {
        size_t i = 0;
        while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
            i++;
        csv = i < len && data[i] != '{' && data[i] != '[';
    }
    ev_vec qs = {0};
    cdx_result r = csv ? parse_csv(name, data, len, &qs) : parse_jsonl(name, data, len, &qs);
    out->q = qs.data;
    out->n = qs.n;
    if (r == CDX_OK && out->n == 0) r = cdx_set_error(CDX_ERR_FORMAT, "%s: no queries", name);
    if (r == CDX_OK && (!(out->base = ev_dirname(name)) || !(out->name = ev_strdup(name))))
        r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    if (r != CDX_OK) ev_query_set_free(out);
    return r;
}

cdx_result ev_queries_load(const char *path, ev_query_set *out)
{
    char *data = NULL;
    size_t len = 0;
    cdx_result r = ev_read_file(path, EV_MAX_FILE_BYTES, &data, &len);
    if (r != CDX_OK) return r;
    r = ev_queries_parse(path, data, len, out);
    free(data);
    return r;
}

int ev_parse_ks(const char *s, size_t *ks, int *n_k)
{
    int n = 0;
    const char *p = s;
    if (!*p) return -1;
    for (;;) {
        if (*p < '0' || *p > '9') return -1;
        char *end;
        long v = strtol(p, &end, 10);
        if (v < 1 || v > 10000) return -1;
        int dup = 0;
        for (int i = 0; i < n; i++) dup |= ks[i] == (size_t)v;
        if (!dup) {
            if (n == EV_MAX_KS) return -1;
            ks[n++] = (size_t)v;
        }
        if (*end == '\0') break;
        if (*end != ',') return -1;
        p = end + 1;
    }
    for (int i = 1; i < n; i++) /* insertion sort: at most EV_MAX_KS */
        for (int j = i; j > 0 && ks[j] < ks[j - 1]; j--) {
            size_t t = ks[j];
            ks[j] = ks[j - 1];
            ks[j - 1] = t;
        }
    *n_k = n;
    return 0;
}

/* ---------------------------------------------------------------- running */

ev_queries_params ev_queries_default_params(void)
{
    ev_queries_params p;
    memset(&p, 0, sizeof p);
    p.ks[0] = 1;
    p.ks[1] = 5;
    p.ks[2] = 10;
    p.n_k = 3;
    p.depth = 10000;
    return p;
}

void ev_queries_report_free(ev_queries_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) free(r->r[i].top);
    free(r->r);
    memset(r, 0, sizeof *r);
}

/* Labels resolved once: entries with an id, sorted by label for lookup. */
typedef struct label_index {
    const char **label;
    int64_t *id;
    size_t n;
} label_index;

typedef struct lab_pair {
    const char *label;
    int64_t id;
} lab_pair;

static int cmp_lab(const void *a, const void *b)
{
    const lab_pair *x = a, *y = b;
    int c = strcmp(x->label, y->label);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

static cdx_result label_index_build(cdx_library *lib, const ev_labels *l, lab_pair **out,
                                    size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!l || l->n == 0) return CDX_OK;
    int64_t *ids = malloc(l->n * sizeof *ids);
    lab_pair *lp = malloc(l->n * sizeof *lp);
    if (!ids || !lp) {
        free(ids);
        free(lp);
        return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    }
    size_t missing = 0, n = 0;
    cdx_result r = ev_labels_resolve(lib, l, ids, &missing);
    if (r == CDX_OK) {
        for (size_t i = 0; i < l->n; i++)
            if (ids[i] >= 0) lp[n++] = (lab_pair){l->e[i].label, ids[i]};
        qsort(lp, n, sizeof *lp, cmp_lab);
    }
    free(ids);
    if (r != CDX_OK) {
        free(lp);
        return r;
    }
    *out = lp;
    *n_out = n;
    return CDX_OK;
}

/* A judgment as collected, before merging repeats of one id. */
typedef struct raw_judgment {
    int64_t id;
    double grade;
    int explicit_grade;
    size_t seq;
} raw_judgment;

static int cmp_raw(const void *a, const void *b)
{
    const raw_judgment *x = a, *y = b;
    if (x->id != y->id) return (x->id > y->id) - (x->id < y->id);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static cdx_result judge(ev_vec *raw, int64_t id, double grade, int explicit_grade)
{
    raw_judgment j = {id, grade, explicit_grade, raw->n};
    return ev_vec_push(raw, &j, sizeof j, EV_MAX_REFS + EV_MAX_ITEMS);
}

/* Merge repeats of an id: the last explicit grade wins, else grade 1. */
static cdx_result merge_judgments(ev_vec *raw, ev_vec *js)
{
    raw_judgment *r = raw->data;
    js->n = 0;
    if (raw->n > 1) qsort(r, raw->n, sizeof *r, cmp_raw);
    for (size_t i = 0; i < raw->n;) {
        size_t e = i;
        ev_judgment j = {r[i].id, 1.0};
        for (; e < raw->n && r[e].id == r[i].id; e++)
            if (r[e].explicit_grade) j.grade = r[e].grade;
        cdx_result rc = ev_vec_push(js, &j, sizeof j, EV_MAX_REFS + EV_MAX_ITEMS);
        if (rc != CDX_OK) return rc;
        i = e;
    }
    return CDX_OK;
}

static cdx_result build_judgments(cdx_library *lib, const ev_query_set *set, const ev_query *q,
                                  const lab_pair *lp, size_t n_lp, int64_t self, ev_vec *raw,
                                  ev_vec *js, size_t *unresolved)
{
    raw->n = 0;
    *unresolved = 0;
    cdx_result r;
    if (q->label) {
        if (!lp) return cdx_set_error(CDX_ERR_INVALID_ARG, "a \"label\" query needs --labels FILE");
        lab_pair key = {q->label, INT64_MIN};
        size_t lo = 0, hi = n_lp;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cmp_lab(&lp[mid], &key) < 0) lo = mid + 1;
            else hi = mid;
        }
        for (; lo < n_lp && !strcmp(lp[lo].label, q->label); lo++)
            if ((r = judge(raw, lp[lo].id, 1.0, 0)) != CDX_OK) return r;
    }
    for (size_t i = 0; i < q->n_refs; i++) {
        const ev_ref *ref = &q->refs[i];
        int64_t id = ref->id;
        if (ref->path) {
            r = ev_find(lib, set->base, ref->path, &id);
            if (r == CDX_ERR_NOT_FOUND) {
                (*unresolved)++;
                continue;
            }
            if (r != CDX_OK) return r;
        } else {
            cdx_image_record rec;
            r = cdx_library_get_image(lib, id, &rec);
            if (r == CDX_ERR_NOT_FOUND) {
                (*unresolved)++;
                continue;
            }
            if (r != CDX_OK) return ev_lib_error(r, "judged id");
        }
        if ((r = judge(raw, id, ref->grade, ref->explicit_grade)) != CDX_OK) return r;
    }
    if ((r = merge_judgments(raw, js)) != CDX_OK) return r;
    if (self >= 0) { /* the query image is not a result to find */
        ev_judgment *j = js->data;
        for (size_t i = 0; i < js->n; i++)
            if (j[i].id == self) j[i].grade = 0;
    }
    return CDX_OK;
}

/* The query vector, and the library id of the query image when it is
 * catalogued (-1 otherwise). */
static cdx_result query_vector(cdx_library *lib, const ev_query_set *set, const ev_query *q,
                               float *v, int64_t *self)
{
    cdx_result r;
    *self = -1;
    switch (q->kind) {
    case EV_QUERY_TEXT:
        r = cdx_library_embed_text(lib, q->input, v);
        return r == CDX_OK ? CDX_OK : ev_lib_error(r, "embedding the text");
    case EV_QUERY_IMAGE_ID:
        *self = q->image_id;
        r = cdx_library_get_vector(lib, q->image_id, v);
        return r == CDX_OK ? CDX_OK : ev_lib_error(r, "image_id");
    case EV_QUERY_IMAGE:
        break;
    }
    int64_t id;
    if (ev_find(lib, set->base, q->input, &id) == CDX_OK) *self = id;
    if (ev_is_url(q->input)) {
        if (*self >= 0) { /* catalogued: its stored vector is the same embedding */
            r = cdx_library_get_vector(lib, *self, v);
            return r == CDX_OK ? CDX_OK : ev_lib_error(r, q->input);
        }
        char *buf = NULL;
        size_t len = 0;
        if ((r = ev_fetch_url(q->input, EV_URL_MAX_BYTES, EV_URL_TIMEOUT_S, &buf, &len)) != CDX_OK)
            return r;
        r = cdx_library_embed_image_buffer(lib, buf, len, v);
        free(buf);
        return r == CDX_OK ? CDX_OK : ev_lib_error(r, q->input);
    }
    char *path = ev_resolve_path(set->base, q->input);
    if (!path) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    r = cdx_library_embed_image_file(lib, path, v);
    free(path);
    return r == CDX_OK ? CDX_OK : ev_lib_error(r, q->input);
}

/* Drop id `self` from hits (when >= 0); returns the new count. */
static size_t drop_self(cdx_hit *h, size_t n, int64_t self)
{
    if (self < 0) return n;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (h[i].id != self) h[w++] = h[i];
    return w;
}

cdx_result ev_queries_run(cdx_library *lib, const ev_query_set *set,
                          const ev_queries_params *params, ev_queries_report *out)
{
    memset(out, 0, sizeof *out);
    if (params->n_k < 1 || params->n_k > EV_MAX_KS)
        return cdx_set_error(CDX_ERR_INVALID_ARG, "need 1..%d values of K", EV_MAX_KS);
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    if (r != CDX_OK) return ev_lib_error(r, "library info");
    if (info.images == 0) return cdx_set_error(CDX_ERR_INVALID_ARG, "the library is empty");
    size_t max_k = params->ks[params->n_k - 1];
    for (int k = 0; k < params->n_k; k++) if (params->ks[k] > max_k) max_k = params->ks[k];
    size_t depth = params->depth ? params->depth : 10000;
    if (depth < max_k) depth = max_k;
    if (depth > info.images) depth = (size_t)info.images;
    size_t top_k = max_k < info.images ? max_k : (size_t)info.images;
    int extra = params->exclude_self ? 1 : 0;

    float *v = malloc((size_t)info.dim * sizeof *v);
    cdx_hit *hits = malloc((depth + 1) * sizeof *hits);
    int64_t *ranking = malloc((depth + 1) * sizeof *ranking);
    double *lat = malloc(set->n * sizeof *lat), *srch = malloc(set->n * sizeof *srch);
    ev_query_metrics *qm = malloc(set->n * sizeof *qm);
    out->r = calloc(set->n, sizeof *out->r);
    lab_pair *lp = NULL;
    size_t n_lp = 0;
    ev_vec js = {0}, raw = {0};
    if (!v || !hits || !ranking || !lat || !srch || !qm || !out->r) {
        r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    out->n = set->n;
    if ((r = label_index_build(lib, params->labels, &lp, &n_lp)) != CDX_OK) goto done;

    for (size_t i = 0; i < set->n; i++) {
        const ev_query *q = &set->q[i];
        ev_query_result *res = &out->r[i];
        int64_t self;
        double t0 = ev_now();
        r = query_vector(lib, set, q, v, &self);
        if (r != CDX_OK) goto query_fail;
        double t1 = ev_now();
        cdx_search_params sp = cdx_search_default_params();
        sp.k = top_k + (size_t)extra;
        if (sp.k > info.images) sp.k = (size_t)info.images;
        size_t n_hits = 0;
        r = cdx_library_search_vector(lib, v, &sp, hits, &n_hits, NULL);
        double t2 = ev_now();
        if (r != CDX_OK) {
            r = ev_lib_error(r, "search");
            goto query_fail;
        }
        res->latency_ms = lat[i] = (t2 - t0) * 1e3;
        res->search_ms = srch[i] = (t2 - t1) * 1e3;
        if (!params->exclude_self) self = -1;
        /* The deeper ranking for AP and MRR (untimed). */
        if (depth + (size_t)extra > sp.k) {
            size_t want = depth + (size_t)extra;
            if (want > info.images) want = (size_t)info.images;
            if ((r = ev_search_ranking(lib, v, want, hits, &n_hits)) != CDX_OK) goto query_fail;
        }
        n_hits = drop_self(hits, n_hits, self);
        if (n_hits > depth) n_hits = depth;
        for (size_t h = 0; h < n_hits; h++) ranking[h] = hits[h].id;
        res->n_top = n_hits < top_k ? n_hits : top_k;
        res->top = malloc((res->n_top ? res->n_top : 1) * sizeof *res->top);
        if (!res->top) {
            r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
            goto query_fail;
        }
        memcpy(res->top, ranking, res->n_top * sizeof *ranking);
        r = build_judgments(lib, set, q, lp, n_lp, self, &raw, &js, &res->unresolved);
        if (r != CDX_OK) goto query_fail;
        out->unresolved += res->unresolved;
        r = ev_query_metrics_compute(ranking, n_hits, js.data, js.n, params->ks, params->n_k,
                                     &res->m);
        if (r != CDX_OK) goto query_fail;
        qm[i] = res->m;
        continue;
    query_fail:
        r = ev_error_prefix(r, "%s:%ld", set->name, q->line);
        goto done;
    }
    ev_query_metrics_mean(qm, set->n, &out->mean, &out->n_judged);
    out->mean.n_k = params->n_k;
    memcpy(out->ks, params->ks, sizeof out->ks);
    out->n_k = params->n_k;
    out->depth = depth;
    out->library_images = info.images;
    double sum = 0;
    for (size_t i = 0; i < set->n; i++) sum += lat[i];
    out->latency_mean = set->n ? sum / (double)set->n : 0;
    out->latency_p50 = ev_percentile(lat, set->n, 50);
    out->latency_p95 = ev_percentile(lat, set->n, 95);
    out->search_p50 = ev_percentile(srch, set->n, 50);
    out->search_p95 = ev_percentile(srch, set->n, 95);
    r = CDX_OK;
done:
    free(v);
    free(hits);
    free(ranking);
    free(lat);
    free(srch);
    free(qm);
    free(lp);
    ev_vec_free(&js);
    ev_vec_free(&raw);
    if (r != CDX_OK) ev_queries_report_free(out);
    return r;
}
