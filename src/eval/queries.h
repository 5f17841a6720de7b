/*
 * queries.h - `clipdex eval queries`: a file of judged queries, run against
 * a library, scored with the metrics of metrics.h.
 *
 * Query files (hostile input; every error names the file and line):
 *  - JSONL: one object per non-blank line with exactly one of
 *      "text": "..." | "image": "path or http(s) URL" | "image_id": N
 *    and any of
 *      "relevant": [id or "path", ...]   (grade 1 each)
 *      "label": "..."                    (every image with that label in the
 *                                         --labels file, grade 1)
 *      "grades": {"id or path": g, ...}  (g >= 0; overrides the grade 1 of
 *                                         relevant/label; 0 = not relevant;
 *                                         an all-digit key is an id)
 *      "id": string or number            (echoed in the report)
 *    Unknown keys are errors (a misspelt "relevant" would silently make the
 *    query unjudged).
 *  - CSV (extension .csv, or first byte neither '{' nor '['): a header naming columns
 *    among text, image, image_id, relevant, label, grades, id; empty cells
 *    are absent; relevant is a ';'-separated list, grades "key=g;key=g".
 * Relative paths are relative to the query file's directory.
 */
#ifndef CDX_EVAL_QUERIES_H
#define CDX_EVAL_QUERIES_H

#include "clipdex.h"
#include "labels.h"
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

#define EV_MAX_REFS ((size_t)1000000)   /* judgments per query */

typedef enum ev_query_kind {
    EV_QUERY_TEXT = 0,
    EV_QUERY_IMAGE,        /* a file path or an http(s) URL */
    EV_QUERY_IMAGE_ID
} ev_query_kind;

/* One judged item as written: a library id or a path. */
typedef struct ev_ref {
    char *path;            /* NULL for an id */
    int64_t id;
    double grade;
    int explicit_grade;    /* from "grades" (overrides relevant/label) */
} ev_ref;

typedef struct ev_query {
    long line;
    char *qid;             /* "id" field as text, or NULL */
    ev_query_kind kind;
    char *input;           /* text, or image path/URL */
    int64_t image_id;
    char *label;           /* or NULL */
    ev_ref *refs;          /* relevant entries first, then grades */
    size_t n_refs;
} ev_query;

typedef struct ev_query_set {
    ev_query *q;
    size_t n;
    char *base;            /* directory of the query file */
    char *name;            /* the query file, for messages */
} ev_query_set;

cdx_result ev_queries_parse(const char *name, const char *data, size_t len, ev_query_set *out);
cdx_result ev_queries_load(const char *path, ev_query_set *out);
void ev_query_set_free(ev_query_set *s);

/* ---------------------------------------------------------------- running */

typedef struct ev_queries_params {
    size_t ks[EV_MAX_KS];
    int n_k;
    size_t depth;          /* ranking depth for AP/MRR (default 10000; capped at the
                              library size) */
    int exclude_self;      /* drop the query image itself from its ranking */
    const ev_labels *labels;   /* for "label" queries, or NULL */
} ev_queries_params;

ev_queries_params ev_queries_default_params(void);

typedef struct ev_query_result {
    ev_query_metrics m;
    double latency_ms;     /* embed + top-max(K) search */
    double search_ms;      /* the search alone */
    int64_t *top;          /* the top max(K) ids */
    size_t n_top;
    size_t unresolved;     /* judged paths not in the library (dropped) */
} ev_query_result;

typedef struct ev_queries_report {
    size_t n;
    ev_query_result *r;
    ev_query_metrics mean;
    size_t n_judged;       /* queries with >= 1 relevant item (in the means) */
    size_t ks[EV_MAX_KS];
    int n_k;
    size_t depth;
    uint64_t library_images;
    size_t unresolved;     /* sum over queries */
    double latency_p50, latency_p95, latency_mean;
    double search_p50, search_p95;
} ev_queries_report;

/* Run every query; a query that cannot run (unreadable image, unknown id or
 * label) fails the whole run with a message naming its line. */
cdx_result ev_queries_run(cdx_library *lib, const ev_query_set *set,
                          const ev_queries_params *params, ev_queries_report *out);
void ev_queries_report_free(ev_queries_report *r);

/* Parse "1,5,10" into sorted distinct values in 1..10000; 0 ok. */
int ev_parse_ks(const char *s, size_t *ks, int *n_k);

#endif
