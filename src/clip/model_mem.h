/*
 * model_mem.h - allocation helpers shared by everything that builds a
 * cdx_model (see model_mem.c for the ownership contract).
 */
#ifndef CDX_CLIP_MODEL_MEM_H
#define CDX_CLIP_MODEL_MEM_H

#include "clip/model.h"

/* A zeroed model (NULL when out of memory). */
cdx_model *cdx_model_new_empty(void);

/* A 64-byte aligned float buffer owned by (and freed with) the model; NULL
 * when out of memory or on size overflow. */
float *cdx_model_alloc(cdx_model *m, size_t n_floats);

/* Free p now if the model owns it (cdx_model_alloc); anything else (a
 * mapped tensor, NULL) is left alone. */
void cdx_model_release(cdx_model *m, const void *p);

/* Makes the packed weight copies (cdx_linear.wp, vision patch_wp) the fast
 * kernels use, when the CPU has AVX-512 and $CLIPDEX_PACK is not "0"; each
 * replaces its plain copy (w = NULL, owned buffer freed).  _tower: one tower
 * (CDX_TOWER_*); cdx_model_pack: both, for a model built whole (random
 * models), which it marks ready.  Fails only when out of memory. */
cdx_result cdx_model_pack_tower(cdx_model *m, int tower);
cdx_result cdx_model_pack(cdx_model *m);

/* Move tower `tower` of s (built in a scratch model) into m, with every
 * buffer s owns.  On failure (out of memory) s still owns everything. */
cdx_result cdx_model_take_tower(cdx_model *m, cdx_model *s, int tower);

#endif
