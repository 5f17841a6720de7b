/*
 * model_random.h - build a cdx_model of any shape with random weights in
 * memory (no files): used by the benchmark (full-size ViT-B/32, B/16, L/14
 * shapes) and by kernel/encoder tests that need models the fixtures do not
 * have.  It lives in src/testsupport/: built into the clipdex_testsupport
 * library that tests and benchmarks link, never into clipdex or libclipdex.
 *
 * Weights are deterministic functions of (seed, tensor index, element index)
 * so a model is identical whatever the thread count.  Scales follow the
 * clip-tiny fixture recipe (width-scaled q/k so attention is peaky, LayerNorm
 * gains near 1) so activations look like a real model's.  The model has no
 * tokenizer (cdx_encode_texts fails on it; cdx_encode_tokens works).
 */
#ifndef CDX_CLIP_MODEL_RANDOM_H
#define CDX_CLIP_MODEL_RANDOM_H

#include "clip/model.h"
#include <stdint.h>

/* Fill cfg with a named shape: "ViT-B/32", "ViT-B/16", "ViT-L/14" (the real
 * OpenAI configs) or "tiny" (the clip-tiny fixture shape).  Returns
 * CDX_ERR_NOT_FOUND for an unknown name. */
cdx_result cdx_model_random_config(const char *name, cdx_clip_config *cfg);

/* A model with cfg's shape and random weights (cfg is checked for sane,
 * positive sizes). */
cdx_result cdx_model_random(const cdx_clip_config *cfg, uint64_t seed,
                            cdx_model **out);

#endif
