/*
 * model_mem.c - construction and destruction of a cdx_model's memory.
 *
 * Ownership contract (model.h): a model owns (1) the mmap of its weight file,
 * (2) every aligned buffer registered with cdx_model_track() (upcast or fused
 * weights), (3) the two blocks arrays, (4) its tokenizer.  cdx_model_free()
 * releases exactly these, so both the file loader (model.c) and the random
 * builder used by benchmarks (model_random.c) share one destructor.
 */
#include "clip/model_mem.h"
#include "clip/tokenizer.h"
#include "common/error.h"
#include "common/util.h"

#include <stdlib.h>
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
