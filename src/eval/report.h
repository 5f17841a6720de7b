/*
 * report.h - output of the evaluation commands: a readable terminal table,
 * a JSON document (jansson) for machines, and a minimal hand-written SVG
 * chart (metrics by K as lines, per-class accuracy as bars).
 *
 * JSON shapes (docs/evaluation.md has the full list):
 *   queries:   {"mean": {"precision@K", "recall@K", "ndcg@K", "mrr", "map"},
 *               "latency_ms": {...}, "queries": [...], ...}
 *   zero-shot: {"top1", "top5", "classes": [...], "confusions": [...], ...}
 *   captions:  {"text_to_image_r@K", "image_to_text_r@K", "chance": {...}, ...}
 */
#ifndef CDX_EVAL_REPORT_H
#define CDX_EVAL_REPORT_H

#include "captions.h"
#include "queries.h"
#include "zeroshot.h"

#include <jansson.h>
#include <stdio.h>

json_t *ev_queries_json(const ev_queries_report *r, const ev_query_set *set);
void ev_queries_table(FILE *f, const ev_queries_report *r);

json_t *ev_zeroshot_json(const ev_zeroshot_report *r);
void ev_zeroshot_table(FILE *f, const ev_zeroshot_report *r);

json_t *ev_captions_json(const ev_captions_report *r);
void ev_captions_table(FILE *f, const ev_captions_report *r);

/* Print j (indented) followed by a newline; 0 ok. */
int ev_json_print(FILE *f, json_t *j);

/* SVG line chart: n_series lines over n_x points; values[s * n_x + x] in
 * [0, 1] (clamped); x_labels[x] under each point. */
void ev_svg_lines(FILE *f, const char *title, const char *const *x_labels, int n_x,
                  const char *const *series, int n_series, const double *values);
/* SVG bar chart: one bar per item (values in [0, 1]), labels rotated. */
void ev_svg_bars(FILE *f, const char *title, const char *const *labels, const double *values,
                 size_t n);

/* Charts of the three reports, written to path atomically enough for a
 * report (write then rename). */
cdx_result ev_queries_svg(const char *path, const ev_queries_report *r);
cdx_result ev_zeroshot_svg(const char *path, const ev_zeroshot_report *r);
cdx_result ev_captions_svg(const char *path, const ev_captions_report *r);

/* `eval compare`: one line per model over the metrics (values[m * n_metrics + k]). */
cdx_result ev_compare_svg(const char *path, const char *title, const char *const *models, int n_models,
                          const char *const *metrics, int n_metrics, const double *values);

#endif
