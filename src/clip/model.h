/*
 * model.h - the in-memory CLIP model shared by the loader (model.c,
 * safetensors.c, config.c) and the towers (encoder.c).
 *
 * Invariants once cdx_model_load() returns:
 *  - every pointer below is non-NULL (unless documented "may be NULL"), 64-byte
 *    aligned, and points to float32 data of exactly the documented shape;
 *  - weights are read-only for the model's lifetime; the struct is immutable
 *    and may be shared by any number of threads;
 *  - F16/BF16 files are upcast to F32 at load (compute is always F32); F32
 *    tensors that are aligned in the memory-mapped file are used in place.
 *
 * Layouts follow Hugging Face: a Linear weight is [out, in] (y = x W^T + b).
 * q/k/v projections are fused at load into one [3*width, width] matrix (rows
 * q, then k, then v) so one GEMM computes all three.
 */
#ifndef CDX_CLIP_MODEL_H
#define CDX_CLIP_MODEL_H

#include "clipdex.h"
#include "clip/config.h"

typedef struct cdx_tokenizer cdx_tokenizer;

typedef struct cdx_linear {
    const float *w;   /* [out, in] */
    const float *b;   /* [out]; may be NULL (projections have no bias) */
    int in, out;
    /* w re-laid for cdx_gemm_packed() (gemm.h), made once by
     * cdx_model_pack() at load; may be NULL ($CLIPDEX_PACK=0) */
    const float *wp;
} cdx_linear;

typedef struct cdx_layernorm {
    const float *g, *b;   /* [dim] */
    int dim;
} cdx_layernorm;

typedef struct cdx_block {
    cdx_layernorm ln1, ln2;
    cdx_linear qkv;   /* [3*width, width], fused q|k|v */
    cdx_linear out;   /* [width, width] */
    cdx_linear fc1;   /* [mlp, width] */
    cdx_linear fc2;   /* [width, mlp] */
} cdx_block;

typedef struct cdx_vision_tower {
    cdx_tower_config cfg;
    int image_size, patch_size;
    int grid;          /* image_size / patch_size */
    int n_tokens;      /* grid*grid + 1 (class token first) */
    const float *patch_w;   /* [width, 3*patch*patch]: conv weight flattened (c, y, x) */
    const float *patch_wp;  /* patch_w packed for cdx_gemm_packed(); may be NULL */
    const float *class_emb; /* [width] */
    const float *pos_emb;   /* [n_tokens, width] */
    cdx_layernorm ln_pre;
    cdx_block *blocks;      /* [layers] */
    cdx_layernorm ln_post;
    cdx_linear proj;        /* [embed_dim, width], no bias */
} cdx_vision_tower;

typedef struct cdx_text_tower {
    cdx_tower_config cfg;
    int vocab_size, context_length;
    const float *tok_emb;   /* [vocab_size, width] */
    const float *pos_emb;   /* [context_length, width] */
    cdx_block *blocks;      /* [layers] */
    cdx_layernorm ln_final;
    cdx_linear proj;        /* [embed_dim, width], no bias */
} cdx_text_tower;

struct cdx_model {
    cdx_clip_config cfg;          /* config.json + preprocessor_config.json */
    cdx_vision_tower vision;
    cdx_text_tower text;
    float logit_scale;            /* stored (log) value */
    cdx_dtype dtype;              /* dtype of the weight file */
    char fingerprint[65];
    cdx_tokenizer *tokenizer;

    /* ownership (model.c) */
    void *map;          /* mmap of the safetensors file */
    size_t map_len;
    void **owned;       /* aligned buffers to free (model_mem.c) */
    int n_owned, cap_owned;
};

#endif
