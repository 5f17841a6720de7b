/*
 * zeroshot.c - zero-shot classification of library images with prompt
 * ensembling (see zeroshot.h).
 *
 * Invariants: class embeddings are unit vectors (a class whose averaged
 * embedding is zero is an error); every image belongs to exactly one class.
 * Workload: classes x templates text embeddings (80k for ImageNet with the
 * 80 CLIP templates, batched through a private inference context), one
 * stored vector per image, and an images x classes score pass.
 */
#include "zeroshot.h"
#include "evutil.h"
#include "metrics.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- templates */

void ev_templates_free(ev_templates *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) free(t->t[i]);
    free(t->t);
    memset(t, 0, sizeof *t);
}

/* Add one template; where is "line N" or "templates[N]" for messages. */
static cdx_result tmpl_add(const char *name, const char *where, ev_vec *v, const char *s,
                           size_t len)
{
    if (len == 0) return cdx_set_error(CDX_ERR_FORMAT, "%s: %s: empty template", name, where);
    if (len > EV_MAX_TEMPLATE_BYTES)
        return cdx_set_error(CDX_ERR_FORMAT, "%s: %s: template longer than %d bytes", name, where,
                        EV_MAX_TEMPLATE_BYTES);
    if (memchr(s, '\0', len)) return cdx_set_error(CDX_ERR_FORMAT, "%s: %s: NUL byte", name, where);
    char *c = malloc(len + 1);
    if (!c) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = '\0';
    if (!strstr(c, "{}")) {
        free(c);
        return cdx_set_error(CDX_ERR_FORMAT, "%s: %s: template has no \"{}\" for the class name", name,
                        where);
    }
    if (ev_vec_push(v, &c, sizeof c, EV_MAX_TEMPLATES) != CDX_OK) {
        free(c);
        return cdx_set_error(CDX_ERR_TOO_LARGE, "%s: more than %d templates", name, EV_MAX_TEMPLATES);
    }
    return CDX_OK;
}

static cdx_result tmpl_json(const char *name, const char *data, size_t len, ev_vec *v)
{
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cdx_set_error(CDX_ERR_FORMAT, "%s:%d: invalid JSON: %s", name, je.line, je.text);
    json_t *arr = json_is_object(root) ? json_object_get(root, "templates") : root;
    cdx_result r = CDX_OK;
    if (!json_is_array(arr)) {
        r = cdx_set_error(CDX_ERR_FORMAT, "%s: expected an array of templates or an object with a "
                     "\"templates\" array", name);
    } else {
        size_t i;
        json_t *s;
        json_array_foreach(arr, i, s) {
            if (!json_is_string(s)) {
                r = cdx_set_error(CDX_ERR_FORMAT, "%s: templates[%zu] is not a string", name, i);
                break;
            }
            char where[48];
            snprintf(where, sizeof where, "templates[%zu]", i);
            r = tmpl_add(name, where, v, json_string_value(s), json_string_length(s));
            if (r != CDX_OK) break;
        }
    }
    json_decref(root);
    return r;
}

cdx_result ev_templates_parse(const char *name, const char *data, size_t len, ev_templates *out)
{
    memset(out, 0, sizeof *out);
    ev_vec v = {0};
    cdx_result r = CDX_OK;
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n')) i++;
    if (i < len && (data[i] == '[' || data[i] == '{')) {
        r = tmpl_json(name, data, len, &v);
    } else {
        const char *p = data, *end = data + len;
        long line = 0;
        while (p < end && r == CDX_OK) {
            line++;
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            size_t n = (size_t)(le - p);
            if (n && p[n - 1] == '\r') n--;
            char where[48];
            snprintf(where, sizeof where, "line %ld", line);
            if (n) r = tmpl_add(name, where, &v, p, n);
            p = nl ? nl + 1 : end;
        }
    }
    out->t = v.data;
    out->n = v.n;
    if (r == CDX_OK && out->n == 0) r = cdx_set_error(CDX_ERR_FORMAT, "%s: no templates", name);
    if (r != CDX_OK) ev_templates_free(out);
    return r;
}

cdx_result ev_templates_load(const char *path, ev_templates *out)
{
    char *data = NULL;
    size_t len = 0;
    cdx_result r = ev_read_file(path, EV_MAX_FILE_BYTES, &data, &len);
    if (r != CDX_OK) return r;
    r = ev_templates_parse(path, data, len, out);
    free(data);
    return r;
}

char *ev_template_fill(const char *tmpl, const char *name)
{
    size_t holes = 0, tl = strlen(tmpl), nl = strlen(name);
    for (const char *p = strstr(tmpl, "{}"); p; p = strstr(p + 2, "{}")) holes++;
    size_t n = tl - 2 * holes + holes * nl + 1;
    char *out = malloc(n), *w = out;
    if (!out) return NULL;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(w, name, nl);
            w += nl;
            p += 2;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return out;
}

/* ---------------------------------------------------------------- summary */

void ev_zeroshot_report_free(ev_zeroshot_report *r)
{
    if (!r) return;
    if (r->cls)
        for (int c = 0; c < r->n_classes; c++) free(r->cls[c].name);
    free(r->cls);
    memset(r, 0, sizeof *r);
}

static int cmp_conf(const void *a, const void *b)
{
    const ev_zs_confusion *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->truth != y->truth) return x->truth - y->truth;
    return x->pred - y->pred;
}

static int cmp_pair(const void *a, const void *b)
{
    const ev_zs_confusion *x = a, *y = b;
    if (x->truth != y->truth) return x->truth - y->truth;
    return x->pred - y->pred;
}

void ev_zeroshot_summarise(const int *truth, const int *pred, const size_t *rank, size_t n,
                           ev_zeroshot_report *r)
{
    size_t top1 = 0, top5 = 0;
    for (int c = 0; c < r->n_classes; c++) {
        ev_zs_class *k = &r->cls[c];
        k->n = k->top1 = k->top5 = k->predicted = k->confused_n = 0;
        k->confused_with = -1;
    }
    ev_zs_confusion *errs = malloc((n ? n : 1) * sizeof *errs);
    size_t ne = 0;
    for (size_t i = 0; i < n; i++) {
        ev_zs_class *k = &r->cls[truth[i]];
        k->n++;
        r->cls[pred[i]].predicted++;
        if (rank[i] == 0) k->top1++, top1++;
        if (rank[i] < (size_t)r->top5_k) k->top5++, top5++;
        if (pred[i] != truth[i] && errs) errs[ne++] = (ev_zs_confusion){truth[i], pred[i], 1};
    }
    r->n_images = n;
    r->top1 = n ? (double)top1 / (double)n : 0;
    r->top5 = n ? (double)top5 / (double)n : 0;
    r->distinct_predicted = 0;
    for (int c = 0; c < r->n_classes; c++) r->distinct_predicted += r->cls[c].predicted > 0;
    /* Count each (truth, pred) pair, then keep the most frequent. */
    r->n_conf = 0;
    if (!errs) return;
    qsort(errs, ne, sizeof *errs, cmp_pair);
    size_t w = 0;
    for (size_t i = 0; i < ne;) {
        size_t e = i;
        while (e < ne && errs[e].truth == errs[i].truth && errs[e].pred == errs[i].pred) e++;
        errs[w] = errs[i];
        errs[w++].count = e - i;
        i = e;
    }
    for (size_t i = 0; i < w; i++) {
        ev_zs_class *k = &r->cls[errs[i].truth];
        if (errs[i].count > k->confused_n) { /* first (lowest pred) wins ties */
            k->confused_n = errs[i].count;
            k->confused_with = errs[i].pred;
        }
    }
    qsort(errs, w, sizeof *errs, cmp_conf);
    r->n_conf = w < EV_ZS_TOP_CONFUSIONS ? w : EV_ZS_TOP_CONFUSIONS;
    memcpy(r->conf, errs, r->n_conf * sizeof *errs);
    free(errs);
}

/* ---------------------------------------------------------------- running */

typedef struct zs_item {
    int64_t id;
    const char *label;
} zs_item;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Folder label of a path: its parent directory's name, '_' -> ' '. */
static char *folder_label(const char *path)
{
    if (ev_is_url(path)) return NULL;
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return NULL;
    const char *s = slash;
    while (s > path && s[-1] != '/') s--;
    size_t n = (size_t)(slash - s);
    if (n == 0) return NULL;
    char *l = malloc(n + 1);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) l[i] = s[i] == '_' ? ' ' : s[i];
    l[n] = '\0';
    return l;
}

/* Class embeddings: the normalised mean of the normalised prompt
 * embeddings.  Embeds whole classes in chunks of about 1024 texts. */
static cdx_result class_embeddings(cdx_library *lib, char **names, int n_cls,
                                   const ev_templates *tp, int dim, float *out)
{
    size_t T = tp->n, per_chunk = T >= 1024 ? 1 : 1024 / T;
    char **texts = calloc(per_chunk * T, sizeof *texts);
    float *emb = malloc(per_chunk * T * (size_t)dim * sizeof *emb);
    cdx_result r = CDX_OK;
    if (!texts || !emb) r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    for (int c0 = 0; r == CDX_OK && c0 < n_cls; c0 += (int)per_chunk) {
        int nc = n_cls - c0 < (int)per_chunk ? n_cls - c0 : (int)per_chunk;
        size_t nt = 0;
        for (int c = 0; c < nc && r == CDX_OK; c++)
            for (size_t t = 0; t < T; t++) {
                texts[nt] = ev_template_fill(tp->t[t], names[c0 + c]);
                if (!texts[nt++]) r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
            }
        if (r == CDX_OK) r = ev_embed_texts(lib, (const char *const *)texts, nt, emb);
        for (size_t i = 0; i < nt; i++) {
            free(texts[i]);
            texts[i] = NULL;
        }
        for (int c = 0; c < nc && r == CDX_OK; c++) {
            float *o = out + (size_t)(c0 + c) * dim;
            memset(o, 0, (size_t)dim * sizeof *o);
            for (size_t t = 0; t < T; t++) {
                const float *e = emb + ((size_t)c * T + t) * dim;
                for (int d = 0; d < dim; d++) o[d] += e[d];
            }
            if (ev_normalize(o, dim) != 0)
                r = cdx_set_error(CDX_ERR_INTERNAL, "class \"%s\": zero prompt embedding", names[c0 + c]);
        }
    }
    free(texts);
    free(emb);
    return r;
}

static const char *const default_template = "a photo of a {}.";

cdx_result ev_zeroshot_run(cdx_library *lib, const ev_zeroshot_params *params,
                           ev_zeroshot_report *out)
{
    memset(out, 0, sizeof *out);
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    if (r != CDX_OK) return ev_lib_error(r, "library info");
    const int dim = info.dim;
    char *def_t[1] = {(char *)default_template};
    ev_templates def = {def_t, 1};
    const ev_templates *tp = params->templates ? params->templates : &def;

    ev_image *all = NULL;
    size_t n_all = 0, n = 0;
    zs_item *items = NULL;
    char **folder = NULL, **names = NULL;
    int64_t *ids = NULL;
    int *truth = NULL, *pred = NULL;
    size_t *rank = NULL;
    float *img = NULL, *cls = NULL, *scratch = NULL;

    /* 1. (id, label) of every image to classify. */
    if (params->from_folders) {
        if ((r = ev_library_list(lib, &all, &n_all)) != CDX_OK) goto done;
        items = malloc((n_all ? n_all : 1) * sizeof *items);
        folder = calloc(n_all ? n_all : 1, sizeof *folder);
        if (!items || !folder) goto nomem;
        for (size_t i = 0; i < n_all; i++) {
            folder[i] = folder_label(all[i].path);
            if (!folder[i]) {
                out->unlabelled++;
                continue;
            }
            items[n++] = (zs_item){all[i].id, folder[i]};
        }
    } else {
        const ev_labels *l = params->labels;
        if (!l) {
            r = cdx_set_error(CDX_ERR_INVALID_ARG, "zero-shot needs labels (a file or folders)");
            goto done;
        }
        ids = malloc((l->n ? l->n : 1) * sizeof *ids);
        items = malloc((l->n ? l->n : 1) * sizeof *items);
        if (!ids || !items) goto nomem;
        if ((r = ev_labels_resolve(lib, l, ids, &out->missing)) != CDX_OK) goto done;
        for (size_t i = 0; i < l->n; i++)
            if (ids[i] >= 0) items[n++] = (zs_item){ids[i], l->e[i].label};
    }
    if (n == 0) {
        r = cdx_set_error(CDX_ERR_INVALID_ARG, "no labelled image of the library to classify");
        goto done;
    }

    /* 2. Classes: distinct labels, sorted. */
    names = malloc(n * sizeof *names);
    if (!names) goto nomem;
    for (size_t i = 0; i < n; i++) names[i] = (char *)items[i].label;
    qsort(names, n, sizeof *names, cmp_str);
    int n_cls = 0;
    for (size_t i = 0; i < n; i++)
        if (n_cls == 0 || strcmp(names[n_cls - 1], names[i])) names[n_cls++] = names[i];
    if (n_cls > EV_MAX_CLASSES) {
        r = cdx_set_error(CDX_ERR_TOO_LARGE, "%d classes; at most %d", n_cls, EV_MAX_CLASSES);
        goto done;
    }
    out->cls = calloc((size_t)n_cls, sizeof *out->cls);
    if (!out->cls) goto nomem;
    out->n_classes = n_cls;
    for (int c = 0; c < n_cls; c++)
        if (!(out->cls[c].name = ev_strdup(names[c]))) goto nomem;
    out->n_templates = tp->n;
    out->top5_k = n_cls < 5 ? n_cls : 5;
    out->chance_top1 = 1.0 / n_cls;
    out->chance_top5 = (double)out->top5_k / n_cls;

    /* 3. Vectors: images (stored) and classes (prompt ensembles). */
    truth = malloc(n * sizeof *truth);
    pred = malloc(n * sizeof *pred);
    rank = malloc(n * sizeof *rank);
    img = malloc(n * (size_t)dim * sizeof *img);
    cls = malloc((size_t)n_cls * dim * sizeof *cls);
    scratch = malloc((size_t)n_cls * sizeof *scratch);
    if (!truth || !pred || !rank || !img || !cls || !scratch) goto nomem;
    for (size_t i = 0; i < n; i++) {
        const char *key = items[i].label;
        char **hit = bsearch(&key, names, (size_t)n_cls, sizeof *names, cmp_str);
        truth[i] = (int)(hit - names);
        r = cdx_library_get_vector(lib, items[i].id, img + i * (size_t)dim);
        if (r != CDX_OK) {
            r = ev_lib_error(r, "stored vector");
            goto done;
        }
    }
    if ((r = class_embeddings(lib, names, n_cls, tp, dim, cls)) != CDX_OK) goto done;

    /* 4. Classify and summarise. */
    ev_zeroshot_rank(img, n, truth, cls, n_cls, dim, rank, pred, scratch);
    ev_zeroshot_summarise(truth, pred, rank, n, out);
    r = CDX_OK;
    goto done;
nomem:
    r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
done:
    if (folder)
        for (size_t i = 0; i < n_all; i++) free(folder[i]);
    free(folder);
    ev_images_free(all, n_all);
    free(items);
    free(names);
    free(ids);
    free(truth);
    free(pred);
    free(rank);
    free(img);
    free(cls);
    free(scratch);
    if (r != CDX_OK) ev_zeroshot_report_free(out);
    return r;
}
