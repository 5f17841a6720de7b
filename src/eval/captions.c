/*
 * captions.c - caption retrieval evaluation (see captions.h).
 *
 * Invariants: every gallery image has >= 1 caption; txt_img[t] indexes the
 * gallery.  Workload: all captions embedded once (batched), one stored
 * vector per image, then captions x images dot products twice (t2i, i2t):
 * about 2 * 25000 * 5000 * 512 flops for the COCO 5k test split.
 */
#include "captions.h"
#include "evutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void ev_captions_free(ev_captions *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        for (size_t j = 0; j < c->im[i].n_caps; j++) free(c->im[i].caps[j]);
        free(c->im[i].caps);
        free(c->im[i].key);
    }
    free(c->im);
    free(c->base);
    memset(c, 0, sizeof *c);
}

static cdx_result parse_image(const char *name, const char *key, json_t *arr,
                              ev_caption_image *im, size_t *total)
{
    if (!*key) return cdx_set_error(CDX_ERR_FORMAT, "%s: empty image key", name);
    if (!json_is_array(arr))
        return cdx_set_error(CDX_ERR_FORMAT, "%s: \"%s\": expected an array of captions", name, key);
    size_t n = json_array_size(arr);
    if (n == 0) return cdx_set_error(CDX_ERR_FORMAT, "%s: \"%s\": no captions", name, key);
    if (n > EV_MAX_ITEMS - *total)
        return cdx_set_error(CDX_ERR_TOO_LARGE, "%s: more than %zu captions", name, EV_MAX_ITEMS);
    im->key = ev_strdup(key);
    im->caps = calloc(n, sizeof *im->caps);
    if (!im->key || !im->caps) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < n; j++) {
        json_t *s = json_array_get(arr, j);
        if (!json_is_string(s) || json_string_length(s) == 0)
            return cdx_set_error(CDX_ERR_FORMAT, "%s: \"%s\"[%zu]: expected a non-empty string", name,
                            key, j);
        if (json_string_length(s) > EV_MAX_CAPTION_BYTES)
            return cdx_set_error(CDX_ERR_FORMAT, "%s: \"%s\"[%zu]: caption longer than %d bytes", name,
                            key, j, EV_MAX_CAPTION_BYTES);
        if (!(im->caps[j] = ev_strdup(json_string_value(s))))
            return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
        im->n_caps++;
    }
    *total += n;
    return CDX_OK;
}

cdx_result ev_captions_parse(const char *name, const char *data, size_t len, ev_captions *out)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cdx_set_error(CDX_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column,
                        je.text);
    cdx_result r = CDX_OK;
    if (!json_is_object(root)) {
        r = cdx_set_error(CDX_ERR_FORMAT, "%s: expected an object {\"image\": [\"caption\", ...]}", name);
        goto done;
    }
    size_t n = json_object_size(root);
    if (n == 0) {
        r = cdx_set_error(CDX_ERR_FORMAT, "%s: no images", name);
        goto done;
    }
    if (n > EV_MAX_ITEMS) {
        r = cdx_set_error(CDX_ERR_TOO_LARGE, "%s: more than %zu images", name, EV_MAX_ITEMS);
        goto done;
    }
    out->im = calloc(n, sizeof *out->im);
    if (!out->im || !(out->base = ev_dirname(name))) {
        r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        r = parse_image(name, key, val, &out->im[out->n], &out->n_caps);
        out->n++; /* counted even when partial, so free() releases it */
        if (r != CDX_OK) goto done;
    }
done:
    json_decref(root);
    if (r != CDX_OK) ev_captions_free(out);
    return r;
}

cdx_result ev_captions_load(const char *path, ev_captions *out)
{
    char *data = NULL;
    size_t len = 0;
    cdx_result r = ev_read_file(path, EV_MAX_FILE_BYTES, &data, &len);
    if (r != CDX_OK) return r;
    r = ev_captions_parse(path, data, len, out);
    free(data);
    return r;
}

ev_captions_params ev_captions_default_params(void)
{
    ev_captions_params p;
    memset(&p, 0, sizeof p);
    p.ks[0] = 1;
    p.ks[1] = 5;
    p.ks[2] = 10;
    p.n_k = 3;
    return p;
}

void ev_captions_chance(const size_t *caps_per_image, size_t n_img, size_t k, double *t2i,
                        double *i2t)
{
    size_t m = 0;
    for (size_t i = 0; i < n_img; i++) m += caps_per_image[i];
    *t2i = n_img ? (double)(k < n_img ? k : n_img) / (double)n_img : 0;
    double s = 0;
    for (size_t i = 0; i < n_img; i++) {
        double miss = 1; /* P(none of the c captions in the top k) */
        size_t c = caps_per_image[i];
        for (size_t j = 0; j < k && miss > 0; j++)
            miss = m - j > c ? miss * (double)(m - c - j) / (double)(m - j) : 0;
        s += 1 - miss;
    }
    *i2t = n_img ? s / (double)n_img : 0;
}

/* ---------------------------------------------------------------- running */

/* Library id of a caption key (see captions.h), or CDX_ERR_NOT_FOUND. */
static cdx_result find_key(cdx_library *lib, const ev_captions *caps, const char *root,
                           const char *key, ev_image **all, size_t *n_all, int64_t *id)
{
    cdx_result r;
    if (root) return ev_find(lib, root, key, id);
    if (ev_find(lib, caps->base, key, id) == CDX_OK) return CDX_OK;
    char *images = malloc(strlen(caps->base) + 8);
    if (!images) return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    memcpy(images, caps->base, strlen(caps->base));
    memcpy(images + strlen(caps->base), "/images", 8);
    r = ev_find(lib, images, key, id);
    free(images);
    if (r == CDX_OK) return CDX_OK;
    if (!*all && (r = ev_library_list(lib, all, n_all)) != CDX_OK) return r;
    size_t kl = strlen(key), matches = 0;
    for (size_t i = 0; i < *n_all; i++) {
        const char *p = (*all)[i].path;
        size_t pl = strlen(p);
        if (pl > kl && p[pl - kl - 1] == '/' && !strcmp(p + pl - kl, key)) {
            *id = (*all)[i].id;
            matches++;
        }
    }
    if (matches > 1)
        return cdx_set_error(CDX_ERR_INVALID_ARG, "image \"%s\" matches %zu library paths; give "
                        "--images-root", key, matches);
    return matches ? CDX_OK : cdx_set_error(CDX_ERR_NOT_FOUND, "%s: not in the library", key);
}

typedef struct gal {
    int64_t id;
    size_t src;    /* index in caps->im */
} gal;

static int cmp_gal(const void *a, const void *b)
{
    int64_t x = ((const gal *)a)->id, y = ((const gal *)b)->id;
    return (x > y) - (x < y);
}

cdx_result ev_captions_run(cdx_library *lib, const ev_captions *caps,
                           const ev_captions_params *params, ev_captions_report *out)
{
    memset(out, 0, sizeof *out);
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    if (r != CDX_OK) return ev_lib_error(r, "library info");
    const int dim = info.dim;
    ev_image *all = NULL;
    size_t n_all = 0, n = 0, nt = 0;
    gal *g = malloc(caps->n * sizeof *g);
    size_t *txt_img = NULL, *t2i = NULL, *i2t = NULL, *cpi = NULL;
    const char **texts = NULL;
    float *img = NULL, *txt = NULL, *scratch = NULL;
    if (!g) goto nomem;

    /* 1. Gallery: captioned images found in the library, in id order. */
    for (size_t i = 0; i < caps->n; i++) {
        int64_t id;
        r = find_key(lib, caps, params->images_root, caps->im[i].key, &all, &n_all, &id);
        if (r == CDX_ERR_NOT_FOUND) {
            if (!out->missing++)
                snprintf(out->first_missing, sizeof out->first_missing, "%s", caps->im[i].key);
            continue;
        }
        if (r != CDX_OK) goto done;
        g[n++] = (gal){id, i};
    }
    if (n == 0) {
        r = cdx_set_error(CDX_ERR_NOT_FOUND, "none of the %zu captioned images is in the library "
                     "(first: %s); index them or give --images-root", caps->n, out->first_missing);
        goto done;
    }
    qsort(g, n, sizeof *g, cmp_gal);
    for (size_t i = 1; i < n; i++)
        if (g[i].id == g[i - 1].id) {
            r = cdx_set_error(CDX_ERR_INVALID_ARG, "\"%s\" and \"%s\" are the same library image",
                         caps->im[g[i - 1].src].key, caps->im[g[i].src].key);
            goto done;
        }
    for (size_t i = 0; i < n; i++) nt += caps->im[g[i].src].n_caps;

    /* 2. Vectors. */
    img = malloc(n * (size_t)dim * sizeof *img);
    txt = malloc(nt * (size_t)dim * sizeof *txt);
    texts = malloc(nt * sizeof *texts);
    txt_img = malloc(nt * sizeof *txt_img);
    t2i = malloc(nt * sizeof *t2i);
    i2t = malloc(n * sizeof *i2t);
    cpi = malloc(n * sizeof *cpi);
    scratch = malloc((n > nt ? n : nt) * sizeof *scratch);
    if (!img || !txt || !texts || !txt_img || !t2i || !i2t || !cpi || !scratch) goto nomem;
    for (size_t i = 0, t = 0; i < n; i++) {
        const ev_caption_image *ci = &caps->im[g[i].src];
        cpi[i] = ci->n_caps;
        for (size_t j = 0; j < ci->n_caps; j++, t++) {
            texts[t] = ci->caps[j];
            txt_img[t] = i;
        }
        r = cdx_library_get_vector(lib, g[i].id, img + i * (size_t)dim);
        if (r != CDX_OK) {
            r = ev_lib_error(r, ci->key);
            goto done;
        }
    }
    if ((r = ev_embed_texts(lib, texts, nt, txt)) != CDX_OK) goto done;

    /* 3. Ranks and recalls. */
    ev_caption_ranks(img, n, txt, nt, txt_img, dim, t2i, i2t, scratch);
    out->n_images = n;
    out->n_captions = nt;
    out->n_k = params->n_k;
    for (int k = 0; k < params->n_k; k++) {
        out->ks[k] = params->ks[k];
        out->t2i[k] = ev_recall_at(t2i, nt, params->ks[k]);
        out->i2t[k] = ev_recall_at(i2t, n, params->ks[k]);
        ev_captions_chance(cpi, n, params->ks[k], &out->chance_t2i[k], &out->chance_i2t[k]);
    }
    r = CDX_OK;
    goto done;
nomem:
    r = cdx_set_error(CDX_ERR_NOMEM, "out of memory");
done:
    ev_images_free(all, n_all);
    free(g);
    free(txt_img);
    free(t2i);
    free(i2t);
    free(cpi);
    free(texts);
    free(img);
    free(txt);
    free(scratch);
    return r;
}
