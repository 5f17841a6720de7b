/*
 * labels.c - parse a labels CSV (path,label) and resolve its paths to
 * library ids.  See labels.h for the format.  Hostile input: every row is
 * validated and errors name the file and line; sizes are capped by
 * EV_MAX_FILE_BYTES / EV_MAX_ITEMS.
 */
#include "labels.h"
#include "evutil.h"

#include <stdlib.h>
#include <string.h>

void ev_labels_free(ev_labels *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].path);
        free(l->e[i].label);
    }
    free(l->e);
    free(l->base);
    memset(l, 0, sizeof *l);
}

cdx_result ev_labels_parse(const char *name, const char *data, size_t len,
                           const char *label_column, ev_labels *out)
{
    memset(out, 0, sizeof *out);
    if (!label_column) label_column = "label";
    ev_csv c;
    ev_csv_init(&c, name, data, len);
    ev_vec v = {0};
    int path_col = 0, label_col = 1, first = 1, want = 2;
    cdx_result r = CDX_OK;
    int rc;
    while ((rc = ev_csv_next(&c)) > 0) {
        if (first) {
            first = 0;
            int pc = -1, lc = -1;
            for (int i = 0; i < c.n_fields; i++) {
                if (!strcmp(c.field[i], "path")) pc = i;
                if (!strcmp(c.field[i], label_column)) lc = i;
            }
            if (pc >= 0) { /* a header row */
                if (lc < 0) {
                    r = cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: the header has no column named \"%s\"",
                                 name, c.line, label_column);
                    goto fail;
                }
                path_col = pc;
                label_col = lc;
                want = (pc > lc ? pc : lc) + 1;
                continue;
            }
            if (strcmp(label_column, "label") != 0) {
                r = cdx_set_error(CDX_ERR_FORMAT, "%s: a label column was named (\"%s\") but the "
                             "file has no header row with a \"path\" column", name, label_column);
                goto fail;
            }
        }
        if (c.n_fields < want) {
            r = cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: expected at least %d columns, found %d", name,
                         c.line, want, c.n_fields);
            goto fail;
        }
        const char *p = c.field[path_col], *lab = c.field[label_col];
        if (!*p || !*lab) {
            r = cdx_set_error(CDX_ERR_FORMAT, "%s:%ld: empty %s", name, c.line, *p ? "label" : "path");
            goto fail;
        }
        ev_label_entry e = {ev_strdup(p), ev_strdup(lab), c.line};
        if (!e.path || !e.label) {
            free(e.path);
            free(e.label);
            r = cdx_set_error(CDX_ERR_NOMEM, "%s: out of memory", name);
            goto fail;
        }
        r = ev_vec_push(&v, &e, sizeof e, EV_MAX_ITEMS);
        if (r != CDX_OK) {
            free(e.path);
            free(e.label);
            r = ev_error_prefix(r, "%s:%ld", name, c.line);
            goto fail;
        }
    }
    if (rc < 0) {
        r = CDX_ERR_FORMAT;
        goto fail;
    }
    ev_csv_free(&c);
    out->e = v.data;
    out->n = v.n;
    out->base = ev_dirname(name);
    if (!out->base) {
        ev_labels_free(out);
        return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    }
    return CDX_OK;
fail:
    ev_csv_free(&c);
    out->e = v.data;
    out->n = v.n;
    ev_labels_free(out);
    return r;
}

cdx_result ev_labels_load(const char *path, const char *label_column, ev_labels *out)
{
    char *data = NULL;
    size_t len = 0;
    cdx_result r = ev_read_file(path, EV_MAX_FILE_BYTES, &data, &len);
    if (r != CDX_OK) return r;
    r = ev_labels_parse(path, data, len, label_column, out);
    free(data);
    return r;
}

typedef struct id_line {
    int64_t id;
    long line;
} id_line;

static int cmp_id_line(const void *a, const void *b)
{
    const id_line *x = a, *y = b;
    if (x->id != y->id) return (x->id > y->id) - (x->id < y->id);
    return (x->line > y->line) - (x->line < y->line);
}

cdx_result ev_labels_resolve(cdx_library *lib, const ev_labels *l, int64_t *ids,
                             size_t *missing)
{
    size_t miss = 0, n_found = 0;
    id_line *seen = malloc((l->n ? l->n : 1) * sizeof *seen);
    if (!seen) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < l->n; i++) {
        int64_t id;
        cdx_result r = ev_find(lib, l->base, l->e[i].path, &id);
        if (r == CDX_ERR_NOT_FOUND) {
            ids[i] = -1;
            miss++;
            continue;
        }
        if (r != CDX_OK) {
            free(seen);
            return r;
        }
        ids[i] = id;
        seen[n_found++] = (id_line){id, l->e[i].line};
    }
    qsort(seen, n_found, sizeof *seen, cmp_id_line);
    for (size_t i = 1; i < n_found; i++)
        if (seen[i].id == seen[i - 1].id) {
            long a = seen[i - 1].line, b = seen[i].line;
            long long dup = (long long)seen[i].id;
            free(seen);
            return cdx_set_error(CDX_ERR_FORMAT, "labels: lines %ld and %ld name the same image "
                            "(library id %lld)", a, b, dup);
        }
    free(seen);
    *missing = miss;
    return CDX_OK;
}
