/*
 * report.c - terminal tables, JSON documents and SVG charts of evaluation
 * reports (see report.h).
 *
 * The SVG is written by hand: a chart is a few dozen elements of text and
 * no Debian library does "write a bar chart as SVG" without pulling in a
 * plotting stack.  Every label goes through svg_text() (XML escaping, UTF-8
 * safe truncation).  Workload: one report per command.
 */
#include "report.h"
#include "evutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- JSON */

static void set_real(json_t *o, const char *key, double v)
{
    json_object_set_new(o, key, json_real(v));
}

static void set_metric_k(json_t *o, const char *name, size_t k, double v)
{
    char key[64];
    snprintf(key, sizeof key, "%s@%zu", name, k);
    set_real(o, key, v);
}

static void metrics_into(json_t *o, const ev_query_metrics *m, const size_t *ks, int n_k,
                         int mean)
{
    for (int k = 0; k < n_k; k++) set_metric_k(o, "precision", ks[k], m->precision[k]);
    for (int k = 0; k < n_k; k++) set_metric_k(o, "recall", ks[k], m->recall[k]);
    for (int k = 0; k < n_k; k++) set_metric_k(o, "ndcg", ks[k], m->ndcg[k]);
    set_real(o, mean ? "mrr" : "rr", m->rr);
    set_real(o, mean ? "map" : "ap", m->ap);
}

static const char *kind_name(ev_query_kind k)
{
    return k == EV_QUERY_TEXT ? "text" : k == EV_QUERY_IMAGE ? "image" : "image_id";
}

json_t *ev_queries_json(const ev_queries_report *r, const ev_query_set *set)
{
    json_t *o = json_object(), *ks = json_array(), *qs = json_array();
    json_t *mean = json_object(), *lat = json_object(), *srch = json_object();
    json_object_set_new(o, "library_images", json_integer((json_int_t)r->library_images));
    json_object_set_new(o, "queries_total", json_integer((json_int_t)r->n));
    json_object_set_new(o, "queries_judged", json_integer((json_int_t)r->n_judged));
    json_object_set_new(o, "queries_without_relevant", json_integer((json_int_t)(r->n - r->n_judged)));
    json_object_set_new(o, "unresolved_judgments", json_integer((json_int_t)r->unresolved));
    for (int k = 0; k < r->n_k; k++) json_array_append_new(ks, json_integer((json_int_t)r->ks[k]));
    json_object_set_new(o, "k", ks);
    json_object_set_new(o, "depth", json_integer((json_int_t)r->depth));
    metrics_into(mean, &r->mean, r->ks, r->n_k, 1);
    json_object_set_new(o, "mean", mean);
    set_real(lat, "p50", r->latency_p50);
    set_real(lat, "p95", r->latency_p95);
    set_real(lat, "mean", r->latency_mean);
    json_object_set_new(o, "latency_ms", lat);
    set_real(srch, "p50", r->search_p50);
    set_real(srch, "p95", r->search_p95);
    json_object_set_new(o, "search_ms", srch);
    for (size_t i = 0; i < r->n; i++) {
        const ev_query *q = &set->q[i];
        const ev_query_result *res = &r->r[i];
        json_t *e = json_object(), *top = json_array();
        json_object_set_new(e, "line", json_integer(q->line));
        if (q->qid) json_object_set_new(e, "id", json_string(q->qid));
        json_object_set_new(e, "kind", json_string(kind_name(q->kind)));
        if (q->kind == EV_QUERY_IMAGE_ID)
            json_object_set_new(e, "query", json_integer((json_int_t)q->image_id));
        else
            json_object_set_new(e, "query", json_string(q->input));
        if (q->label) json_object_set_new(e, "label", json_string(q->label));
        json_object_set_new(e, "n_relevant", json_integer((json_int_t)res->m.n_relevant));
        json_object_set_new(e, "unresolved", json_integer((json_int_t)res->unresolved));
        json_object_set_new(e, "first_relevant_rank",
                            res->m.first_rank ? json_integer((json_int_t)res->m.first_rank)
                                              : json_null());
        metrics_into(e, &res->m, r->ks, r->n_k, 0);
        set_real(e, "latency_ms", res->latency_ms);
        set_real(e, "search_ms", res->search_ms);
        for (size_t t = 0; t < res->n_top; t++)
            json_array_append_new(top, json_integer((json_int_t)res->top[t]));
        json_object_set_new(e, "top", top);
        json_array_append_new(qs, e);
    }
    json_object_set_new(o, "queries", qs);
    return o;
}

json_t *ev_zeroshot_json(const ev_zeroshot_report *r)
{
    json_t *o = json_object(), *cls = json_array(), *conf = json_array(), *ch = json_object();
    json_object_set_new(o, "images", json_integer((json_int_t)r->n_images));
    json_object_set_new(o, "classes_count", json_integer(r->n_classes));
    json_object_set_new(o, "templates", json_integer((json_int_t)r->n_templates));
    set_real(o, "top1", r->top1);
    set_real(o, "top5", r->top5);
    json_object_set_new(o, "top5_k", json_integer(r->top5_k));
    set_real(ch, "top1", r->chance_top1);
    set_real(ch, "top5", r->chance_top5);
    json_object_set_new(o, "chance", ch);
    json_object_set_new(o, "missing", json_integer((json_int_t)r->missing));
    json_object_set_new(o, "unlabelled", json_integer((json_int_t)r->unlabelled));
    json_object_set_new(o, "distinct_predicted", json_integer(r->distinct_predicted));
    for (int c = 0; c < r->n_classes; c++) {
        const ev_zs_class *k = &r->cls[c];
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(k->name));
        json_object_set_new(e, "images", json_integer((json_int_t)k->n));
        set_real(e, "top1", k->n ? (double)k->top1 / (double)k->n : 0);
        set_real(e, "top5", k->n ? (double)k->top5 / (double)k->n : 0);
        json_object_set_new(e, "predicted", json_integer((json_int_t)k->predicted));
        json_object_set_new(e, "confused_with", k->confused_with >= 0
                                ? json_string(r->cls[k->confused_with].name) : json_null());
        json_object_set_new(e, "confused_count", json_integer((json_int_t)k->confused_n));
        json_array_append_new(cls, e);
    }
    json_object_set_new(o, "classes", cls);
    for (size_t i = 0; i < r->n_conf; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "true", json_string(r->cls[r->conf[i].truth].name));
        json_object_set_new(e, "predicted", json_string(r->cls[r->conf[i].pred].name));
        json_object_set_new(e, "count", json_integer((json_int_t)r->conf[i].count));
        json_array_append_new(conf, e);
    }
    json_object_set_new(o, "confusions", conf);
    return o;
}

json_t *ev_captions_json(const ev_captions_report *r)
{
    json_t *o = json_object(), *ch = json_object();
    json_object_set_new(o, "images", json_integer((json_int_t)r->n_images));
    json_object_set_new(o, "captions", json_integer((json_int_t)r->n_captions));
    json_object_set_new(o, "missing_images", json_integer((json_int_t)r->missing));
    for (int k = 0; k < r->n_k; k++) {
        set_metric_k(o, "text_to_image_r", r->ks[k], r->t2i[k]);
        set_metric_k(ch, "text_to_image_r", r->ks[k], r->chance_t2i[k]);
    }
    for (int k = 0; k < r->n_k; k++) {
        set_metric_k(o, "image_to_text_r", r->ks[k], r->i2t[k]);
        set_metric_k(ch, "image_to_text_r", r->ks[k], r->chance_i2t[k]);
    }
    json_object_set_new(o, "chance", ch);
    return o;
}

int ev_json_print(FILE *f, json_t *j)
{
    if (!j) return -1;
    int rc = json_dumpf(j, f, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    fputc('\n', f);
    return rc;
}

/* ---------------------------------------------------------------- tables */

void ev_queries_table(FILE *f, const ev_queries_report *r)
{
    fprintf(f, "queries: %zu (%zu judged", r->n, r->n_judged);
    if (r->n_judged < r->n) fprintf(f, "; %zu without relevant items, left out of the means",
                                    r->n - r->n_judged);
    fprintf(f, "), library: %llu images\n", (unsigned long long)r->library_images);
    if (r->unresolved)
        fprintf(f, "warning: %zu judged paths/ids are not in the library (ignored)\n",
                r->unresolved);
    fprintf(f, "\n  %6s  %9s  %9s  %9s\n", "K", "P@K", "R@K", "nDCG@K");
    for (int k = 0; k < r->n_k; k++)
        fprintf(f, "  %6zu  %9.4f  %9.4f  %9.4f\n", r->ks[k], r->mean.precision[k],
                r->mean.recall[k], r->mean.ndcg[k]);
    fprintf(f, "\n  MRR %.4f   mAP %.4f   (ranking depth %zu)\n", r->mean.rr, r->mean.ap, r->depth);
    fprintf(f, "  latency (embed + search top %zu): p50 %.2f ms  p95 %.2f ms; search alone p50 "
            "%.2f ms  p95 %.2f ms\n", r->n_k ? r->ks[r->n_k - 1] : 0, r->latency_p50,
            r->latency_p95, r->search_p50, r->search_p95);
}

void ev_zeroshot_table(FILE *f, const ev_zeroshot_report *r)
{
    fprintf(f, "zero-shot: %zu images, %d classes, %zu prompt template%s\n", r->n_images,
            r->n_classes, r->n_templates, r->n_templates == 1 ? "" : "s");
    if (r->missing) fprintf(f, "warning: %zu labelled paths are not in the library (skipped)\n",
                            r->missing);
    if (r->unlabelled) fprintf(f, "note: %zu library images have no folder label (skipped)\n",
                               r->unlabelled);
    fprintf(f, "\n  top-1 accuracy  %.4f   (chance %.4f)\n", r->top1, r->chance_top1);
    fprintf(f, "  top-%d accuracy  %.4f   (chance %.4f)\n", r->top5_k, r->top5, r->chance_top5);
    fprintf(f, "  classes predicted at least once: %d of %d\n", r->distinct_predicted, r->n_classes);
    fprintf(f, "\n  %-32s %7s %7s %7s  %s\n", "class", "images", "top-1", "top-5", "most confused with");
    for (int c = 0; c < r->n_classes; c++) {
        const ev_zs_class *k = &r->cls[c];
        fprintf(f, "  %-32.32s %7zu %7.3f %7.3f  %s", k->name, k->n,
                k->n ? (double)k->top1 / (double)k->n : 0, k->n ? (double)k->top5 / (double)k->n : 0,
                k->confused_with >= 0 ? r->cls[k->confused_with].name : "-");
        if (k->confused_with >= 0) fprintf(f, " (%zu)", k->confused_n);
        fputc('\n', f);
    }
    if (r->n_conf) {
        fprintf(f, "\n  most frequent confusions (true -> predicted: count)\n");
        for (size_t i = 0; i < r->n_conf; i++)
            fprintf(f, "    %s -> %s: %zu\n", r->cls[r->conf[i].truth].name,
                    r->cls[r->conf[i].pred].name, r->conf[i].count);
    }
}

void ev_captions_table(FILE *f, const ev_captions_report *r)
{
    fprintf(f, "captions: %zu images, %zu captions", r->n_images, r->n_captions);
    if (r->missing) fprintf(f, " (%zu captioned images not in the library, e.g. %s)", r->missing,
                            r->first_missing);
    fprintf(f, "\n\n  %6s  %14s  %14s  %12s  %12s\n", "K", "text->image", "image->text",
            "chance t->i", "chance i->t");
    for (int k = 0; k < r->n_k; k++)
        fprintf(f, "  R@%-4zu  %14.4f  %14.4f  %12.4f  %12.4f\n", r->ks[k], r->t2i[k], r->i2t[k],
                r->chance_t2i[k], r->chance_i2t[k]);
}

/* ---------------------------------------------------------------- SVG */

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b"};

/* XML-escaped text, at most max bytes, cut on a UTF-8 boundary. */
static void svg_text(FILE *f, const char *s, size_t max)
{
    size_t n = strlen(s);
    int cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '&') fputs("&amp;", f);
        else if (c == '<') fputs("&lt;", f);
        else if (c == '>') fputs("&gt;", f);
        else if (c == '"') fputs("&quot;", f);
        else if (c < 0x20) fputc(' ', f);
        else fputc(c, f);
    }
    if (cut) fputs("…", f);
}

static double clamp01(double v)
{
    return v < 0 || v != v ? 0 : v > 1 ? 1 : v;
}

/* Frame, title and a 0..1 y axis with grid lines; plot area x0..x1, y0..y1. */
static void svg_frame(FILE *f, int w, int h, const char *title, int x0, int x1, int y0, int y1)
{
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", w, h, w, h);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", x0);
    svg_text(f, title, 120);
    fputs("</text>\n", f);
    for (int i = 0; i <= 5; i++) {
        double y = y1 - (y1 - y0) * i / 5.0;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y,
                x1, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", x0 - 6, y + 4,
                i / 5.0);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0, y0, x0, y1);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0, y1, x1, y1);
}

void ev_svg_lines(FILE *f, const char *title, const char *const *x_labels, int n_x,
                  const char *const *series, int n_series, const double *values)
{
    const int w = 720, h = 420, x0 = 60, x1 = 560, y0 = 40, y1 = 370;
    svg_frame(f, w, h, title, x0, x1, y0, y1);
    double step = n_x > 1 ? (double)(x1 - x0 - 40) / (n_x - 1) : 0;
    for (int x = 0; x < n_x; x++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x0 + 20 + step * x, y1 + 18);
        svg_text(f, x_labels[x], 16);
        fputs("</text>\n", f);
    }
    for (int s = 0; s < n_series; s++) {
        const char *col = palette[s % (int)(sizeof palette / sizeof *palette)];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int x = 0; x < n_x; x++)
            fprintf(f, "%s%.1f,%.1f", x ? " " : "", x0 + 20 + step * x,
                    y1 - (y1 - y0) * clamp01(values[s * n_x + x]));
        fputs("\"/>\n", f);
        for (int x = 0; x < n_x; x++) {
            double v = clamp01(values[s * n_x + x]);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%.4f</title>"
                       "</circle>\n", x0 + 20 + step * x, y1 - (y1 - y0) * v, col, values[s * n_x + x]);
        }
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x1 + 20,
                y0 + 20 * s, col);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", x1 + 38, y0 + 20 * s + 11);
        svg_text(f, series[s], 20);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

void ev_svg_bars(FILE *f, const char *title, const char *const *labels, const double *values,
                 size_t n)
{
    const int bw = 14, x0 = 60, y0 = 40, y1 = 300;
    int x1 = x0 + 20 + (int)(n < 20 ? 20 : n) * bw;
    int w = x1 + 20, h = y1 + 170;
    svg_frame(f, w, h, title, x0, x1, y0, y1);
    for (size_t i = 0; i < n; i++) {
        double v = clamp01(values[i]), bx = x0 + 10 + (double)i * bw;
        double bh = (y1 - y0) * v;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>",
                bx + 1, y1 - bh, bw - 2, bh, palette[0]);
        svg_text(f, labels[i], 200);
        fprintf(f, ": %.4f</title></rect>\n", values[i]);
        fprintf(f, "<text transform=\"translate(%.1f,%d) rotate(-60)\" text-anchor=\"end\" "
                   "font-size=\"10\">", bx + bw / 2.0 + 3, y1 + 10);
        svg_text(f, labels[i], 24);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

/* Open path.tmp for writing; finish with svg_close. */
static FILE *svg_open(const char *path, char **tmp)
{
    size_t n = strlen(path);
    *tmp = malloc(n + 5);
    if (!*tmp) return NULL;
    memcpy(*tmp, path, n);
    memcpy(*tmp + n, ".tmp", 5);
    return fopen(*tmp, "w");
}

static cdx_result svg_close(FILE *f, const char *path, char *tmp)
{
    int err = ferror(f);
    err |= fclose(f) != 0;
    if (err || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return cdx_set_error(CDX_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    free(tmp);
    return CDX_OK;
}

#define SVG_OPEN(path, f, tmp)                                                   \
    char *tmp = NULL;                                                            \
    FILE *f = svg_open(path, &tmp);                                              \
    if (!f) {                                                                    \
        int e_ = errno;                                                          \
        free(tmp);                                                               \
        return cdx_set_error(CDX_ERR_IO, "%s: cannot create: %s", path, strerror(e_)); \
    }

cdx_result ev_queries_svg(const char *path, const ev_queries_report *r)
{
    char xl[EV_MAX_KS][24];
    const char *xs[EV_MAX_KS];
    double v[3 * EV_MAX_KS];
    for (int k = 0; k < r->n_k; k++) {
        snprintf(xl[k], sizeof xl[k], "K=%zu", r->ks[k]);
        xs[k] = xl[k];
        v[k] = r->mean.precision[k];
        v[r->n_k + k] = r->mean.recall[k];
        v[2 * r->n_k + k] = r->mean.ndcg[k];
    }
    static const char *const series[] = {"Precision@K", "Recall@K", "nDCG@K"};
    SVG_OPEN(path, f, tmp);
    ev_svg_lines(f, "Retrieval metrics by K (mean over judged queries)", xs, r->n_k, series, 3, v);
    return svg_close(f, path, tmp);
}

cdx_result ev_zeroshot_svg(const char *path, const ev_zeroshot_report *r)
{
    const char **names = malloc((size_t)(r->n_classes ? r->n_classes : 1) * sizeof *names);
    double *v = malloc((size_t)(r->n_classes ? r->n_classes : 1) * sizeof *v);
    if (!names || !v) {
        free(names);
        free(v);
        return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    }
    for (int c = 0; c < r->n_classes; c++) {
        names[c] = r->cls[c].name;
        v[c] = r->cls[c].n ? (double)r->cls[c].top1 / (double)r->cls[c].n : 0;
    }
    char title[128];
    snprintf(title, sizeof title, "Zero-shot top-1 accuracy per class (overall %.3f)", r->top1);
    char *tmp = NULL;
    FILE *f = svg_open(path, &tmp);
    if (!f) {
        int e = errno;
        free(tmp);
        free(names);
        free(v);
        return cdx_set_error(CDX_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    ev_svg_bars(f, title, names, v, (size_t)r->n_classes);
    free(names);
    free(v);
    return svg_close(f, path, tmp);
}

cdx_result ev_captions_svg(const char *path, const ev_captions_report *r)
{
    char xl[EV_MAX_KS][24];
    const char *xs[EV_MAX_KS];
    double v[2 * EV_MAX_KS];
    for (int k = 0; k < r->n_k; k++) {
        snprintf(xl[k], sizeof xl[k], "R@%zu", r->ks[k]);
        xs[k] = xl[k];
        v[k] = r->t2i[k];
        v[r->n_k + k] = r->i2t[k];
    }
    static const char *const series[] = {"text->image", "image->text"};
    SVG_OPEN(path, f, tmp);
    ev_svg_lines(f, "Caption retrieval recall by K", xs, r->n_k, series, 2, v);
    return svg_close(f, path, tmp);
}

cdx_result ev_compare_svg(const char *path, const char *title, const char *const *models, int n_models,
                          const char *const *metrics, int n_metrics, const double *values)
{
    SVG_OPEN(path, f, tmp);
    ev_svg_lines(f, title, metrics, n_metrics, models, n_models, values);
    return svg_close(f, path, tmp);
}
