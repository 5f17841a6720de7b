/*
 * zeroshot.h - `clipdex eval zero-shot`: classify every labelled library
 * image among the class names with CLIP prompts, as the CLIP paper does.
 *
 * Classes are the distinct labels (sorted by strcmp; that order breaks
 * score ties).  Each class embedding is the prompt ensemble: every template
 * filled with the class name, embedded (L2-normalised), averaged, and
 * re-normalised.  An image's prediction is the class of highest cosine.
 *
 * Labels come from a labels CSV (labels.h) or from folders: the name of
 * each image's parent directory with '_' read as a space.
 *
 * Templates file: a JSON array of strings, a JSON object with a "templates"
 * array (like CLIP's clip_imagenet_classes_templates.json), or plain text
 * with one template per line; every template contains "{}" (each "{}" is
 * replaced by the class name).  Default: the single "a photo of a {}.".
 */
#ifndef CDX_EVAL_ZEROSHOT_H
#define CDX_EVAL_ZEROSHOT_H

#include "clipdex.h"
#include "labels.h"

#include <stddef.h>
#include <stdint.h>

#define EV_MAX_TEMPLATES 10000
#define EV_MAX_TEMPLATE_BYTES 4096
#define EV_MAX_CLASSES 100000
#define EV_ZS_TOP_CONFUSIONS 20

typedef struct ev_templates {
    char **t;
    size_t n;
} ev_templates;

cdx_result ev_templates_parse(const char *name, const char *data, size_t len, ev_templates *out);
cdx_result ev_templates_load(const char *path, ev_templates *out);
void ev_templates_free(ev_templates *t);

/* "{}" in tmpl replaced by name; malloc'd (NULL on allocation failure). */
char *ev_template_fill(const char *tmpl, const char *name);

typedef struct ev_zeroshot_params {
    int from_folders;              /* labels from parent folder names */
    const ev_labels *labels;       /* otherwise: this labels file */
    const ev_templates *templates; /* NULL = the single default template */
} ev_zeroshot_params;

typedef struct ev_zs_class {
    char *name;
    size_t n, top1, top5;          /* images, correct at 1 and at top5_k */
    int confused_with;             /* most frequent wrong top-1, or -1 */
    size_t confused_n;
    size_t predicted;              /* images predicted as this class */
} ev_zs_class;

typedef struct ev_zs_confusion {
    int truth, pred;
    size_t count;
} ev_zs_confusion;

typedef struct ev_zeroshot_report {
    size_t n_images;
    int n_classes;
    size_t n_templates;
    int top5_k;                    /* min(5, classes) */
    double top1, top5;             /* accuracy over images */
    double chance_top1, chance_top5;
    ev_zs_class *cls;
    ev_zs_confusion conf[EV_ZS_TOP_CONFUSIONS];   /* most frequent errors */
    size_t n_conf;
    size_t missing;                /* labelled paths not in the library */
    size_t unlabelled;             /* library images without a folder (URLs) */
    int distinct_predicted;        /* classes predicted at least once */
} ev_zeroshot_report;

cdx_result ev_zeroshot_run(cdx_library *lib, const ev_zeroshot_params *params,
                           ev_zeroshot_report *out);
void ev_zeroshot_report_free(ev_zeroshot_report *r);

/* Summaries from per-image true classes and top-1 predictions (exposed for
 * tests): fills cls[].n/top1/top5/confused_*, predicted, conf, distinct. */
void ev_zeroshot_summarise(const int *truth, const int *pred, const size_t *rank, size_t n,
                           ev_zeroshot_report *r);

#endif
