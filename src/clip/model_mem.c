/*
 * model_mem.c - construction and destruction of a cdx_model's memory.
 *
 * Ownership contract (model.h): a model owns (1) the open weight file
 * (cdx_st_file, until both towers are ready), (2) every aligned buffer of
 * cdx_model_alloc() (upcast, fused or packed weights, also those taken over
 * from a scratch model by cdx_model_take_tower), (3) the two blocks arrays,
 * (4) its tokenizer.  cdx_model_free()
 * releases exactly these, so both the file loader (model.c) and the random
 * builder used by tests and benchmarks (src/testsupport/model_random.c)
 * share one destructor.
 *
 * Lazy towers add (5) the mapped prepared file of each tower (prepared.c),
 * also released here.
 *
 * Packed weights (cdx_model_pack, cdx_model_pack_tower): every Linear weight
 * (and the patch embedding) re-laid in the panel layout of cdx_gemm_packed()
 * *replaces* the plain copy: an owned plain buffer is freed and the pointer
 * cleared (w = NULL), so resident weights stay at one copy (ViT-B/32 F32:
 * ~0.6 GB, not 1.1 GB).  Both the fast and the reference encoder paths run on
 * the packed layout then (encoder.c).  Packing happens on every CPU (the
 * packed kernels have AVX-512, AVX2 and plain-C levels); $CLIPDEX_PACK=0
 * turns it off.
 */
#include "clip/model_mem.h"
#include "clip/gemm.h"
#include "clip/prepared.h"
#include "clip/tokenizer.h"
#include "common/error.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>

cdx_model *cdx_model_new_empty(void)
{
    cdx_model *m = calloc(1, sizeof(cdx_model));
    if (m && pthread_mutex_init(&m->tower_mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static int track(cdx_model *m, void *buf)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return 0;
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = buf;
    return 1;
}

/* Free p if the model owns it (else it lives in a map: nothing to do). */
static void release(cdx_model *m, const void *p)
{
    for (int i = m->n_owned - 1; i >= 0; i--)
        if (m->owned[i] == p) {
            cdx_free_aligned(m->owned[i]);
            m->owned[i] = m->owned[--m->n_owned];
            return;
        }
}

cdx_result cdx_model_take_tower(cdx_model *m, cdx_model *s, int tower)
{
    if (m->n_owned + s->n_owned > m->cap_owned) {   /* room first: all or nothing */
        int cap = m->n_owned + s->n_owned;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        m->owned = p;
        m->cap_owned = cap;
    }
    while (s->n_owned > 0) track(m, s->owned[--s->n_owned]);
    if (tower == CDX_TOWER_TEXT) {
        free(m->text.blocks);
        m->text = s->text;
        s->text.blocks = NULL;
    } else {
        free(m->vision.blocks);
        m->vision = s->vision;
        s->vision.blocks = NULL;
    }
    return CDX_OK;
}

void cdx_model_release(cdx_model *m, const void *p)
{
    if (m && p) release(m, p);
}

float *cdx_model_alloc(cdx_model *m, size_t n_floats)
{
    float *buf = cdx_alloc_aligned(n_floats, sizeof(float));
    if (buf && !track(m, buf)) {
        cdx_free_aligned(buf);
        return NULL;
    }
    return buf;
}

void cdx_model_free(cdx_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) cdx_free_aligned(m->owned[i]);
    free(m->owned);
    free(m->vision.blocks);
    free(m->text.blocks);
    for (int i = 0; i < 2; i++)
        if (m->prep_map[i]) munmap(m->prep_map[i], m->prep_len[i]);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (m->copies_map[i][j]) munmap(m->copies_map[i][j], m->copies_len[i][j]);
    cdx_st_close(&m->st);
    free(m->wpath);
    cdx_tokenizer_free(m->tokenizer);
    pthread_mutex_destroy(&m->tower_mu);
    free(m);
}

static int pack_linear(cdx_model *m, cdx_linear *l)
{
    size_t n = cdx_pack_floats(l->out, l->in);
    float *p = n ? cdx_model_alloc(m, n) : NULL;
    if (!p) return 0;
    cdx_pack_weights(l->out, l->in, l->w, l->in, p);
    l->wp = p;
    release(m, l->w);   /* the packed copy replaces the plain one */
    l->w = NULL;
    return 1;
}

static int pack_blocks(cdx_model *m, cdx_block *blocks, int layers)
{
    for (int l = 0; l < layers; l++) {
        cdx_block *b = &blocks[l];
        if (!pack_linear(m, &b->qkv) || !pack_linear(m, &b->out) || !pack_linear(m, &b->fc1) ||
            !pack_linear(m, &b->fc2))
            return 0;
    }
    return 1;
}

cdx_result cdx_model_pack_tower(cdx_model *m, int tower)
{
    if (!cdx_prep_packed()) return CDX_OK;   /* the prepared files' key says the same */
    int ok;
    if (tower == CDX_TOWER_TEXT) {
        cdx_text_tower *t = &m->text;
        ok = pack_blocks(m, t->blocks, t->cfg.layers) && pack_linear(m, &t->proj);
    } else {
        cdx_vision_tower *v = &m->vision;
        ok = pack_blocks(m, v->blocks, v->cfg.layers) && pack_linear(m, &v->proj);
        int k = 3 * v->patch_size * v->patch_size;
        size_t n = cdx_pack_floats(v->cfg.width, k);
        float *p = ok && n ? cdx_model_alloc(m, n) : NULL;
        if (p) {
            cdx_pack_weights(v->cfg.width, k, v->patch_w, k, p);
            release(m, v->patch_w);
            v->patch_w = NULL;
        }
        v->patch_wp = p;
        ok = p != NULL;
    }
    return ok ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory for packed weights");
}

cdx_result cdx_model_pack(cdx_model *m)
{
    cdx_result r = cdx_model_pack_tower(m, CDX_TOWER_TEXT);
    if (!r) r = cdx_model_pack_tower(m, CDX_TOWER_VISION);
    if (!r) m->ready = CDX_TOWER_ALL;
    return r;
}
