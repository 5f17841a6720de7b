/*
 * encoder.h - the CLIP vision and text towers (forward pass), internal API.
 *
 * The public entry points (cdx_ctx_*, cdx_encode_*) are declared in
 * clipdex.h.  This header adds hooks used by tests to compare intermediate
 * activations with the reference.
 */
#ifndef CDX_CLIP_ENCODER_H
#define CDX_CLIP_ENCODER_H

#include "clipdex.h"

/* Optional taps filled by the next encode call on ctx (test use).  Each
 * pointer, when non-NULL, receives the named activation for the whole batch:
 *  vision: ln_pre [n, tokens, width], layer0_out [n, tokens, width],
 *          pooled_ln_post [n, width]
 *  text:   embeddings [n, ctx_len, width] (token + position),
 *          layer0_out [n, ctx_len, width] (all positions),
 *          pooled_ln_final [n, width]
 * Set with cdx_ctx_set_taps(ctx, &taps); pass NULL to clear. */
typedef struct cdx_taps {
    float *vision_ln_pre, *vision_layer0_out, *vision_pooled_ln_post;
    float *text_embeddings, *text_layer0_out, *text_pooled_ln_final;
} cdx_taps;

void cdx_ctx_set_taps(cdx_ctx *ctx, const cdx_taps *taps);

/* Use the plain reference kernels instead of the optimised ones (tests). */
void cdx_ctx_set_reference(cdx_ctx *ctx, int on);

/* Bytes of the weights a forward pass of `towers` (CDX_TOWER_* bits) at
 * precision p reads (int8: the int8 copies where they exist, the float32
 * tensors that stay float32, e.g. embeddings and projections). */
size_t cdx_model_weight_bytes(const cdx_model *m, cdx_precision p, int towers);

#endif
