/*
 * model_mem.c - construction and destruction of a cdx_model's memory.
 *
 * Ownership contract (model.h): a model owns (1) the mmap of its weight file,
 * (2) every aligned buffer registered with cdx_model_track() (upcast or fused
 * weights), (3) the two blocks arrays, (4) its tokenizer.  cdx_model_free()
 * releases exactly these, so both the file loader (model.c) and the random
 * builder used by benchmarks (model_random.c) share one destructor.
 *
 * Packed weights (cdx_model_pack): copies of every Linear weight (and the
 * patch embedding) in the panel layout of cdx_gemm_packed(), also
 * cdx_model_alloc() buffers: as much memory again as the weights (ViT-B/32:
 * +151 MB text, +350 MB vision).  For F32 files used in place the unpacked
 * weights are then clean file-backed pages the fast path never touches again
 * (only the reference mode and $CLIPDEX_PACK=0 read them).
 */
#include "clip/model_mem.h"
#include "clip/gemm.h"
#include "clip/tokenizer.h"
#include "common/error.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

cdx_model *cdx_model_new_empty(void)
{
    return calloc(1, sizeof(cdx_model));
}

float *cdx_model_alloc(cdx_model *m, size_t n_floats)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    float *buf = cdx_alloc_aligned(n_floats, sizeof(float));
    if (!buf) return NULL;
    m->owned[m->n_owned++] = buf;
    return buf;
}

void cdx_model_free(cdx_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) cdx_free_aligned(m->owned[i]);
    free(m->owned);
    free(m->vision.blocks);
    free(m->text.blocks);
    if (m->map) munmap(m->map, m->map_len);
    cdx_tokenizer_free(m->tokenizer);
    free(m);
}

static int pack_linear(cdx_model *m, cdx_linear *l)
{
    size_t n = cdx_pack_floats(l->out, l->in);
    float *p = n ? cdx_model_alloc(m, n) : NULL;
    if (!p) return 0;
    cdx_pack_weights(l->out, l->in, l->w, l->in, p);
    l->wp = p;
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

cdx_result cdx_model_pack(cdx_model *m)
{
    const char *e = getenv("CLIPDEX_PACK");
    if (e && !strcmp(e, "0")) return CDX_OK;   /* packed on every CPU: one layout for all levels */
    cdx_text_tower *t = &m->text;
    cdx_vision_tower *v = &m->vision;
    int ok = pack_blocks(m, t->blocks, t->cfg.layers) && pack_linear(m, &t->proj) &&
             pack_blocks(m, v->blocks, v->cfg.layers) && pack_linear(m, &v->proj);
    if (ok) {
        int k = 3 * v->patch_size * v->patch_size;
        size_t n = cdx_pack_floats(v->cfg.width, k);
        float *p = n ? cdx_model_alloc(m, n) : NULL;
        if (p) cdx_pack_weights(v->cfg.width, k, v->patch_w, k, p);
        v->patch_wp = p;
        ok = p != NULL;
    }
    return ok ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory for packed weights");
}
