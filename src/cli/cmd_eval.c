/*
 * cmd_eval.c - `clipdex eval queries|zero-shot|captions`: retrieval and
 * classification quality of a library (src/eval does the work; this file
 * parses options, opens the library and prints the report: a table, or
 * JSON with --json, plus an SVG chart with --plot).  docs/evaluation.md.
 */
#include "cli.h"
#include "eval/captions.h"
#include "eval/evutil.h"
#include "eval/labels.h"
#include "eval/queries.h"
#include "eval/report.h"
#include "eval/zeroshot.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clipdex eval queries   --library DIR --queries FILE [--k 1,5,10] [--labels FILE]\n"
        "                              [--label-column NAME] [--depth N] [--exclude-self]\n"
        "                              [--json] [--plot FILE.svg]\n"
        "       clipdex eval zero-shot --library DIR (--labels-from-folders | --labels FILE\n"
        "                              [--label-column NAME]) [--templates FILE] [--json]\n"
        "                              [--plot FILE.svg]\n"
        "       clipdex eval captions  --library DIR --captions FILE.json [--images-root DIR]\n"
        "                              [--k 1,5,10] [--json] [--plot FILE.svg]\n"
        "       clipdex eval compare KIND --model A --model B ... [the KIND's options]\n"
        "                              [--json] [--svg FILE.svg]\n\n"
        "Measure retrieval quality on a library (see docs/evaluation.md).\n\n"
        "  queries     judged queries (JSONL or CSV): Precision/Recall/nDCG@K, MRR, mAP,\n"
        "              latency p50/p95\n"
        "  zero-shot   classify every labelled image among the class names with CLIP\n"
        "              prompt ensembling: top-1/top-5 accuracy, per class, confusions\n"
        "  captions    COCO/Flickr-style captions {\"image\": [\"caption\", ...]}:\n"
        "              text->image and image->text Recall@K\n\n"
        "  --library DIR          the library (default $CLIPDEX_LIBRARY or ./clipdex-library)\n"
        "  --k LIST               cut-offs, comma-separated (default 1,5,10; at most 16)\n"
        "  --labels FILE          CSV path,label (or a header with \"path\" and a label column)\n"
        "  --label-column NAME    label column of a --labels file with a header (default label)\n"
        "  --labels-from-folders  label = name of each image's folder ('_' read as a space)\n"
        "  --templates FILE       prompt templates with {} (JSON list, {\"templates\": [...]},\n"
        "                         or one per line); default \"a photo of a {}.\"\n"
        "  --images-root DIR      where caption image keys are (default: next to FILE.json)\n"
        "  --depth N              ranking depth for mAP/MRR (default 10000)\n"
        "  --exclude-self         an image query does not count itself as a result\n"
        "  --threads N            inference and search threads (default: all cores)\n"
        CLI_PRECISION_HELP
        "  --json                 print a JSON report instead of the table\n"
        "  --record               also store the JSON report with the library's model in\n"
        "                         the model registry (the model must be registered:\n"
        "                         'clipdex model register'; see 'clipdex model show')\n"
        "  --plot FILE.svg        also write an SVG chart (--svg: the same)\n"
        "  --model REF            compare: a model directory or a registered model (NAME,\n"
        "                         NAME@ALIAS, NAME@VERSION); up to 8; each other than the\n"
        "                         library's own embeds the library's image files in a\n"
        "                         temporary library under $TMPDIR\n");
}

typedef struct eval_opts {
    const char *library, *queries, *labels, *label_column, *templates, *captions;
    const char *images_root, *plot;
    int json, from_folders, exclude_self, threads, record;
    cdx_precision precision;
    const char *kind;   /* "queries", "zero-shot", "captions" */
    size_t ks[EV_MAX_KS];
    int n_k;
    size_t depth;
    const char *models[8];   /* eval compare */
    int n_models;
} eval_opts;

static int eval_fail(const char *what, cdx_result r)
{
    const char *m = cdx_last_error();
    fprintf(stderr, "clipdex: error: %s: %s\n", what, m && *m ? m : cdx_result_str(r));
    return 1;
}

static int open_library(const eval_opts *o, cdx_library **lib)
{
    cdx_library_params p = cdx_library_default_params();
    p.load_model = 1;
    p.n_threads = o->threads;
    p.precision = o->precision;
    cdx_result r = cdx_library_open(o->library, &p, lib);
    if (r != CDX_OK) return cli_fail(o->library, r);
    return 0;
}

/* Store the report with the library's model in the registry. */
static int record(const eval_opts *o, cdx_library *lib, json_t *j)
{
    cdx_library_info *info = malloc(sizeof *info);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    cdx_registry *g = NULL;
    cdx_result r = info && text ? cdx_library_get_info(lib, info) : CDX_ERR_NOMEM;
    if (!r) r = cdx_registry_open(NULL, NULL, &g);
    if (!r) {
        char ref[80];
        snprintf(ref, sizeof ref, "@%s", info->model_fingerprint);
        r = cdx_registry_record_eval(g, ref, o->kind, text);
        if (!r) fprintf(stderr, "clipdex: recorded the %s results of model %.12s in the registry\n",
                        o->kind, info->model_fingerprint);
    }
    cdx_registry_close(g);
    free(text);
    free(info);
    return r ? cli_fail("recording the results", r) : 0;
}

static int finish(const eval_opts *o, cdx_library *lib, json_t *j, cdx_result svg_rc)
{
    int rc = o->record ? record(o, lib, j) : 0;
    if (o->json) {
        if (!j || ev_json_print(stdout, j) != 0) {
            fprintf(stderr, "clipdex: error: cannot write the JSON report\n");
            rc = 1;
        }
    }
    json_decref(j);
    if (svg_rc != CDX_OK) rc = eval_fail("plot", svg_rc);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}

/* The query evaluation's parameters from the command line (labels: used
 * when --labels was given). */
static ev_queries_params queries_params(const eval_opts *o, const ev_labels *labels)
{
    ev_queries_params p = ev_queries_default_params();
    if (o->n_k) {
        memcpy(p.ks, o->ks, sizeof p.ks);
        p.n_k = o->n_k;
    }
    if (o->depth) p.depth = o->depth;
    p.exclude_self = o->exclude_self;
    p.labels = o->labels ? labels : NULL;
    return p;
}

static int run_queries(const eval_opts *o)
{
    ev_query_set set;
    ev_labels labels = {0};
    cdx_result r = ev_queries_load(o->queries, &set);
    if (r != CDX_OK) return eval_fail("queries", r);
    if (o->labels && (r = ev_labels_load(o->labels, o->label_column, &labels)) != CDX_OK) {
        ev_query_set_free(&set);
        return eval_fail("labels", r);
    }
    cdx_library *lib = NULL;
    int rc = open_library(o, &lib);
    if (rc) goto out;
    ev_queries_params p = queries_params(o, &labels);
    ev_queries_report rep;
    r = ev_queries_run(lib, &set, &p, &rep);
    if (r != CDX_OK) {
        rc = eval_fail("eval queries", r);
        goto out;
    }
    if (!o->json) ev_queries_table(stdout, &rep);
    else if (rep.unresolved)
        fprintf(stderr, "clipdex: warning: %zu judged paths/ids are not in the library (ignored)\n",
                rep.unresolved);
    rc = finish(o, lib, o->json || o->record ? ev_queries_json(&rep, &set) : NULL,
                o->plot ? ev_queries_svg(o->plot, &rep) : CDX_OK);
    ev_queries_report_free(&rep);
out:
    cdx_library_close(lib);
    ev_labels_free(&labels);
    ev_query_set_free(&set);
    return rc;
}

static int run_zeroshot(const eval_opts *o)
{
    ev_labels labels = {0};
    ev_templates tmpl = {0};
    cdx_result r;
    if (o->labels && (r = ev_labels_load(o->labels, o->label_column, &labels)) != CDX_OK)
        return eval_fail("labels", r);
    if (o->templates && (r = ev_templates_load(o->templates, &tmpl)) != CDX_OK) {
        ev_labels_free(&labels);
        return eval_fail("templates", r);
    }
    cdx_library *lib = NULL;
    int rc = open_library(o, &lib);
    if (rc) goto out;
    ev_zeroshot_params p = {o->from_folders, o->labels ? &labels : NULL,
                            o->templates ? &tmpl : NULL};
    ev_zeroshot_report rep;
    r = ev_zeroshot_run(lib, &p, &rep);
    if (r != CDX_OK) {
        rc = eval_fail("eval zero-shot", r);
        goto out;
    }
    if (!o->json) ev_zeroshot_table(stdout, &rep);
    else if (rep.missing)
        fprintf(stderr, "clipdex: warning: %zu labelled paths are not in the library (skipped)\n",
                rep.missing);
    rc = finish(o, lib, o->json || o->record ? ev_zeroshot_json(&rep) : NULL,
                o->plot ? ev_zeroshot_svg(o->plot, &rep) : CDX_OK);
    ev_zeroshot_report_free(&rep);
out:
    cdx_library_close(lib);
    ev_templates_free(&tmpl);
    ev_labels_free(&labels);
    return rc;
}

static int run_captions(const eval_opts *o)
{
    ev_captions caps;
    cdx_result r = ev_captions_load(o->captions, &caps);
    if (r != CDX_OK) return eval_fail("captions", r);
    cdx_library *lib = NULL;
    int rc = open_library(o, &lib);
    if (rc) goto out;
    ev_captions_params p = ev_captions_default_params();
    p.images_root = o->images_root;
    if (o->n_k) {
        memcpy(p.ks, o->ks, sizeof p.ks);
        p.n_k = o->n_k;
    }
    ev_captions_report rep;
    r = ev_captions_run(lib, &caps, &p, &rep);
    if (r != CDX_OK) {
        rc = eval_fail("eval captions", r);
        goto out;
    }
    if (!o->json) ev_captions_table(stdout, &rep);
    else if (rep.missing)
        fprintf(stderr, "clipdex: warning: %zu captioned images are not in the library "
                "(skipped; first: %s)\n", rep.missing, rep.first_missing);
    rc = finish(o, lib, o->json || o->record ? ev_captions_json(&rep) : NULL,
                o->plot ? ev_captions_svg(o->plot, &rep) : CDX_OK);
out:
    cdx_library_close(lib);
    ev_captions_free(&caps);
    return rc;
}

/* ---------------------------------------------------------------- eval compare
 * The same evaluation for several models.  A model other than the
 * library's own gets a temporary library (under $TMPDIR) holding the same
 * image files embedded with it; judgments and captions resolve by path, so
 * they mean the same images in each (judged image ids do not: use paths). */

#define COMPARE_MAX 8
#define COMPARE_METRICS 64

/* The report of one evaluation on lib (NULL and a printed error on failure). */
static json_t *eval_json(const eval_opts *o, int mode, cdx_library *lib)
{
    cdx_result r;
    json_t *j = NULL;
    if (mode == 0) {
        ev_query_set set;
        ev_labels labels = {0};
        if ((r = ev_queries_load(o->queries, &set))) { eval_fail("queries", r); return NULL; }
        if (o->labels && (r = ev_labels_load(o->labels, o->label_column, &labels))) {
            ev_query_set_free(&set);
            eval_fail("labels", r);
            return NULL;
        }
        ev_queries_params p = queries_params(o, &labels);
        ev_queries_report rep;
        if ((r = ev_queries_run(lib, &set, &p, &rep))) eval_fail("eval queries", r);
        else {
            j = ev_queries_json(&rep, &set);
            ev_queries_report_free(&rep);
        }
        ev_labels_free(&labels);
        ev_query_set_free(&set);
    } else if (mode == 1) {
        ev_labels labels = {0};
        ev_templates tmpl = {0};
        if (o->labels && (r = ev_labels_load(o->labels, o->label_column, &labels))) { eval_fail("labels", r); return NULL; }
        if (o->templates && (r = ev_templates_load(o->templates, &tmpl))) {
            ev_labels_free(&labels);
            eval_fail("templates", r);
            return NULL;
        }
        ev_zeroshot_params p = {o->from_folders, o->labels ? &labels : NULL, o->templates ? &tmpl : NULL};
        ev_zeroshot_report rep;
        if ((r = ev_zeroshot_run(lib, &p, &rep))) eval_fail("eval zero-shot", r);
        else {
            j = ev_zeroshot_json(&rep);
            ev_zeroshot_report_free(&rep);
        }
        ev_templates_free(&tmpl);
        ev_labels_free(&labels);
    } else {
        ev_captions caps;
        if ((r = ev_captions_load(o->captions, &caps))) { eval_fail("captions", r); return NULL; }
        ev_captions_params p = ev_captions_default_params();
        p.images_root = o->images_root;
        if (o->n_k) {
            memcpy(p.ks, o->ks, sizeof p.ks);
            p.n_k = o->n_k;
        }
        ev_captions_report rep;
        if ((r = ev_captions_run(lib, &caps, &p, &rep))) eval_fail("eval captions", r);
        else j = ev_captions_json(&rep);
        ev_captions_free(&caps);
    }
    return j;
}

/* Remove a temporary library directory (files only; it has no subfolders). */
static void remove_tmp_library(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4600];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* A temporary library of the source library's image files embedded with
 * model_dir; *tmp receives its directory. */
static int build_tmp_library(const eval_opts *o, cdx_library *src, const char *model_dir, char *tmp,
                             size_t cap, cdx_library **out)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp, cap, "%s/clipdex-compare-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "clipdex: error: %s: cannot create: %s\n", tmp, strerror(errno));
        tmp[0] = 0;
        return 1;
    }
    cdx_library_params lp = cdx_library_default_params();
    lp.create = 1;
    lp.writable = 1;
    lp.load_model = 1;
    lp.model_dir = model_dir;
    lp.n_threads = o->threads;
    cdx_result r = cdx_library_open(tmp, &lp, out);
    if (r) return cli_fail(model_dir, r);
    cdx_image_record *recs = malloc(1000 * sizeof *recs);
    char **paths = NULL;
    size_t np = 0, cap_p = 0;
    uint64_t off = 0;
    for (r = recs ? CDX_OK : CDX_ERR_NOMEM; !r;) {
        size_t n = 0;
        if ((r = cdx_library_list_images(src, off, 1000, recs, &n, NULL)) || !n) break;
        off += n;
        for (size_t i = 0; i < n && !r; i++) {
            if (!strncmp(recs[i].path, "http://", 7) || !strncmp(recs[i].path, "https://", 8)) continue;
            if (np == cap_p) {
                char **v = realloc(paths, (cap_p = cap_p ? 2 * cap_p : 256) * sizeof *v);
                if (!v) { r = CDX_ERR_NOMEM; break; }
                paths = v;
            }
            if (!(paths[np] = strdup(recs[i].path))) r = CDX_ERR_NOMEM;
            else np++;
        }
    }
    free(recs);
    cdx_index_params ip = cdx_index_default_params();
    if (!r && np) r = cdx_library_index(*out, (const char *const *)paths, (int)np, &ip, NULL);
    for (size_t i = 0; i < np; i++) free(paths[i]);
    free(paths);
    return r ? cli_fail("embedding the library's images with the model", r) : 0;
}

/* The real-valued metrics of a report: top-level numbers in [0, 1] and the
 * means of `eval queries`. */
static int report_metrics(json_t *j, const char **names, double *v, int max)
{
    int n = 0;
    json_t *objs[2] = {j, json_object_get(j, "mean")};
    for (int o = 0; o < 2; o++) {
        const char *key;
        json_t *val;
        json_object_foreach(objs[o], key, val) {
            if (!json_is_real(val) || n == max) continue;
            names[n] = key;
            v[n++] = json_real_value(val);
        }
    }
    return n;
}

static int run_compare(const eval_opts *o, int mode)
{
    cdx_library *src = NULL;
    cdx_library_params lp = cdx_library_default_params();
    lp.load_model = 0;
    cdx_result r0 = cdx_library_open(o->library, &lp, &src);
    if (r0) return cli_fail(o->library, r0);
    cdx_library_info info;
    if ((r0 = cdx_library_get_info(src, &info))) {
        cdx_library_close(src);
        return cli_fail(o->library, r0);
    }
    json_t *reports[COMPARE_MAX] = {0};
    char labels[COMPARE_MAX][200];
    int rc = 0;
    for (int m = 0; m < o->n_models && !rc; m++) {
        char dir[4096], name[160];
        if ((rc = cli_resolve_model(o->models[m], dir, sizeof dir, name, sizeof name))) break;
        cdx_model *model = NULL;
        cdx_model_info mi;
        cdx_result rm = cdx_model_load(dir, NULL, &model);
        if (rm) { rc = cli_fail(dir, rm); break; }
        cdx_model_get_info(model, &mi);
        cdx_model_free(model);
        const char *base = strrchr(o->models[m], '/');   /* a directory: its last part */
        base = base && base[1] ? base + 1 : o->models[m];
        snprintf(labels[m], sizeof labels[m], "%s@%.8s", *name ? name : base, mi.fingerprint);
        fprintf(stderr, "clipdex: eval compare: %s\n", labels[m]);
        char tmp[4096] = "";
        cdx_library *lib = NULL;
        if (!strcmp(mi.fingerprint, info.model_fingerprint)) {   /* the library's own model */
            lp.load_model = 1;
            lp.n_threads = o->threads;
            cdx_result ro = cdx_library_open(o->library, &lp, &lib);
            if (ro) rc = cli_fail(o->library, ro);
        } else {
            rc = build_tmp_library(o, src, dir, tmp, sizeof tmp, &lib);
        }
        if (!rc && !(reports[m] = eval_json(o, mode, lib))) rc = 1;
        cdx_library_close(lib);
        if (*tmp) remove_tmp_library(tmp);
    }
    cdx_library_close(src);
    if (rc) goto out;
    const char *names[COMPARE_METRICS];
    double *v = calloc((size_t)o->n_models * COMPARE_METRICS, sizeof *v);
    int nm = v ? report_metrics(reports[0], names, v, COMPARE_METRICS) : 0;
    for (int m = 1; v && m < o->n_models; m++)
        for (int k = 0; k < nm; k++) {
            json_t *x = json_object_get(reports[m], names[k]);
            if (!x) x = json_object_get(json_object_get(reports[m], "mean"), names[k]);
            v[m * nm + k] = json_real_value(x);
        }
    if (!v) { rc = 1; goto out; }
    if (o->json) {
        json_t *arr = json_array();
        for (int m = 0; m < o->n_models; m++)
            json_array_append_new(arr, json_pack("{s:s,s:s,s:O}", "model", o->models[m], "label", labels[m],
                                                 "report", reports[m]));
        json_t *top = json_pack("{s:s,s:o}", "kind", o->kind, "models", arr);
        if (ev_json_print(stdout, top) != 0) rc = 1;
        json_decref(top);
    } else {
        printf("%-24s", "metric");
        for (int m = 0; m < o->n_models; m++) printf("  %20.20s", labels[m]);
        printf("\n");
        for (int k = 0; k < nm; k++) {
            printf("%-24s", names[k]);
            for (int m = 0; m < o->n_models; m++) printf("  %20.4f", v[m * nm + k]);
            if (o->n_models > 1) printf("  (%+.4f)", v[(o->n_models - 1) * nm + k] - v[k]);
            printf("\n");
        }
    }
    if (o->plot) {
        const char *series[COMPARE_MAX];
        for (int m = 0; m < o->n_models; m++) series[m] = labels[m];
        char title[64];
        snprintf(title, sizeof title, "eval %s: models compared", o->kind);
        cdx_result r = ev_compare_svg(o->plot, title, series, o->n_models, names, nm, v);
        if (r) rc = eval_fail("plot", r);
    }
    free(v);
    if (fflush(stdout) != 0) rc = 1;
out:
    for (int m = 0; m < o->n_models; m++) json_decref(reports[m]);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) return cli_usage_error("eval", "missing subcommand (queries, zero-shot, captions)");
    int compare = !strcmp(argv[1], "compare");
    if (compare) {   /* eval compare KIND --model A --model B ...: the same options after KIND */
        argc--;
        argv++;
        if (argc < 2) return cli_usage_error("eval", "compare needs a kind: queries, zero-shot, captions");
    }
    const char *sub = argv[1];
    int mode = !strcmp(sub, "queries") ? 0 : !strcmp(sub, "zero-shot") ? 1
             : !strcmp(sub, "captions") ? 2 : -1;
    if (mode < 0) return cli_usage_error("eval", "unknown subcommand '%s'", sub);
    eval_opts o;
    memset(&o, 0, sizeof o);
    o.library = cdx_library_default_dir();
    o.kind = sub;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
#define NEEDV() do { if (!v) return cli_usage_error("eval", "%s needs a value", a); i++; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--record")) o.record = 1;
        else if (!strcmp(a, "--exclude-self")) o.exclude_self = 1;
        else if (!strcmp(a, "--labels-from-folders")) o.from_folders = 1;
        else if (!strcmp(a, "--library")) { NEEDV(); o.library = v; }
        else if (!strcmp(a, "--queries")) { NEEDV(); o.queries = v; }
        else if (!strcmp(a, "--labels")) { NEEDV(); o.labels = v; }
        else if (!strcmp(a, "--label-column")) { NEEDV(); o.label_column = v; }
        else if (!strcmp(a, "--templates")) { NEEDV(); o.templates = v; }
        else if (!strcmp(a, "--captions")) { NEEDV(); o.captions = v; }
        else if (!strcmp(a, "--images-root")) { NEEDV(); o.images_root = v; }
        else if (!strcmp(a, "--plot") || !strcmp(a, "--svg")) { NEEDV(); o.plot = v; }
        else if (!strcmp(a, "--model")) {
            NEEDV();
            if (!compare) return cli_usage_error("eval", "--model goes with 'eval compare'");
            if (o.n_models == COMPARE_MAX) return cli_usage_error("eval", "at most %d --model", COMPARE_MAX);
            o.models[o.n_models++] = v;
        }
        else if (!strcmp(a, "--k")) {
            NEEDV();
            if (ev_parse_ks(v, o.ks, &o.n_k) != 0)
                return cli_usage_error("eval", "--k wants comma-separated integers in 1..10000 "
                                       "(at most %d), got '%s'", EV_MAX_KS, v);
        } else if (!strcmp(a, "--depth")) {
            NEEDV();
            if (cli_parse_int(v, 1, 10000000, &n)) return cli_usage_error("eval", "bad --depth '%s'", v);
            o.depth = (size_t)n;
        } else if (!strcmp(a, "--threads")) {
            NEEDV();
            if (cli_parse_int(v, 0, 1024, &n)) return cli_usage_error("eval", "bad --threads '%s'", v);
            o.threads = (int)n;
        } else if (!strcmp(a, "--precision")) {
            NEEDV();
            if (cli_parse_precision("eval", v, &o.precision)) return 2;
        } else {
            return cli_usage_error("eval", "unknown option '%s'", a);
        }
#undef NEEDV
    }
    if (compare && !o.n_models) return cli_usage_error("eval", "compare needs --model REF (once per model)");
    if (compare && o.record) return cli_usage_error("eval", "--record does not go with compare");
    if (mode == 0) {
        if (!o.queries) return cli_usage_error("eval", "queries needs --queries FILE");
        if (o.from_folders || o.templates || o.captions || o.images_root)
            return cli_usage_error("eval", "queries takes --queries, --k, --labels, --depth, "
                                   "--exclude-self");
        return compare ? run_compare(&o, 0) : run_queries(&o);
    }
    if (mode == 1) {
        if (o.from_folders == !!o.labels)
            return cli_usage_error("eval", "zero-shot needs exactly one of --labels-from-folders, "
                                   "--labels FILE");
        if (o.queries || o.captions || o.images_root || o.n_k || o.depth || o.exclude_self)
            return cli_usage_error("eval", "zero-shot takes --labels(-from-folders), --templates");
        return compare ? run_compare(&o, 1) : run_zeroshot(&o);
    }
    if (!o.captions) return cli_usage_error("eval", "captions needs --captions FILE.json");
    if (o.queries || o.labels || o.from_folders || o.templates || o.depth || o.exclude_self)
        return cli_usage_error("eval", "captions takes --captions, --images-root, --k");
    return compare ? run_compare(&o, 2) : run_captions(&o);
}
