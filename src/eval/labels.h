/*
 * labels.h - a labels file: CSV rows of (path, label) attaching one class
 * label to each image, for `eval queries --labels` ("label" queries) and
 * `eval zero-shot --labels`.
 *
 * Format: either two columns path,label without a header, or a header row
 * naming a "path" column and the label column (default "label", any other
 * with label_column), so a dataset manifest such as imagenet-sample's
 * manifest.csv is usable as is.  Relative paths are relative to the labels
 * file's directory.  Every row is checked: empty path or label, missing
 * columns and an image listed twice are errors naming the line.
 */
#ifndef CDX_EVAL_LABELS_H
#define CDX_EVAL_LABELS_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ev_label_entry {
    char *path;      /* as written */
    char *label;
    long line;
} ev_label_entry;

typedef struct ev_labels {
    ev_label_entry *e;
    size_t n;
    char *base;      /* directory relative paths are resolved against */
} ev_labels;

/* Parse CSV text (name is used in messages and gives the base directory);
 * label_column NULL = "label". */
cdx_result ev_labels_parse(const char *name, const char *data, size_t len,
                           const char *label_column, ev_labels *out);
cdx_result ev_labels_load(const char *path, const char *label_column, ev_labels *out);
void ev_labels_free(ev_labels *l);

/* Library id of every entry (-1 when the path is not catalogued, counted in
 * *missing).  Two entries naming the same image are an error. */
cdx_result ev_labels_resolve(cdx_library *lib, const ev_labels *l, int64_t *ids,
                             size_t *missing);

#endif
