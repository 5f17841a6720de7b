/*
 * model.h - the in-memory CLIP model shared by the loader (model.c,
 * safetensors.c, config.c) and the towers (encoder.c).
 *
 * Towers are loaded lazily (model.c): cdx_model_load() reads the configs,
 * the tokenizer and the safetensors header (every tensor's name, dtype and
 * shape is checked there), sets each tower's geometry (cfg, sizes), and
 * leaves the weights to cdx_model_need(), which prepares a tower once, under
 * tower_mu, on first use; `ready` is then published with release order and
 * read with acquire order, so a reader that saw the bit sees the pointers.
 *
 * Invariants once cdx_model_need() returned CDX_OK for a tower:
 *  - every pointer of that tower is non-NULL (unless documented "may be
 *    NULL"), 64-byte aligned, and points to float32 data of exactly the
 *    documented shape;
 *  - its weights are read-only for the model's lifetime and may be shared by
 *    any number of threads;
 *  - a Linear has its packed copy `wp` or its plain `w`, never needs both:
 *    when packed, `w` is NULL (the packed copy replaces it; memory);
 *  - F16/BF16 files are upcast to F32 (compute is always F32); the tower's
 *    pointers lead into its mapped prepared file (prepared.h), or, when that
 *    could not be saved, into owned buffers and (aligned F32 tensors, used
 *    in place) the weight file's map.
 *
 * Layouts follow Hugging Face: a Linear weight is [out, in] (y = x W^T + b).
 * q/k/v projections are fused at load into one [3*width, width] matrix (rows
 * q, then k, then v) so one GEMM computes all three.
 */
#ifndef CDX_CLIP_MODEL_H
#define CDX_CLIP_MODEL_H

#include "clipdex.h"
#include "clip/config.h"
#include "clip/safetensors.h"

#include <pthread.h>
#include <sys/stat.h>

typedef struct cdx_tokenizer cdx_tokenizer;

/* The int8 copy of a block Linear (gemm_q8.c), made by the encoder on the
 * first int8 use of its tower (cdx_model.q8_ready); owned by the model. */
typedef struct cdx_linear_q8 {
    int8_t *w;            /* cdx_q8_pack_bytes(out, in) bytes */
    float *scale;         /* [out rounded up to CDX_Q8_NR] per output channel */
    int32_t *colsum;      /* [same] */
    float *inv_smooth;    /* [in] 1 / SmoothQuant factor (the weights carry it) */
    float *amax;          /* [in] max |input| per channel seen in calibration */
    int wmax;             /* weight range [-wmax, wmax] (cdx_q8_weight_max) */
} cdx_linear_q8;

typedef struct cdx_linear {
    const float *w;   /* [out, in] */
    const float *b;   /* [out]; may be NULL (projections have no bias) */
    int in, out;
    /* w re-laid for cdx_gemm_packed() (gemm.h), made once by
     * cdx_model_pack() at load; may be NULL ($CLIPDEX_PACK=0).
     * When wp is set, w is NULL. */
    const float *wp;
    cdx_linear_q8 *q8;   /* block Linears at int8 precision; NULL until then */
    uint16_t *bf;        /* block Linears at bf16 precision (gemm_bf16.c layout);
                            NULL until the first bf16 use (encoder.c) */
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
    const float *patch_w;   /* [width, 3*patch*patch]: conv weight flattened (c, y, x);
                               NULL when patch_wp is set */
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

    /* ownership (model_mem.c) */
    void **owned;       /* aligned buffers to free (model_mem.c) */
    int n_owned, cap_owned;

    /* lazy towers (model.c, prepared.c) */
    pthread_mutex_t tower_mu;
    int ready;               /* CDX_TOWER_* bits; __atomic acquire/release */
    cdx_st_file st;          /* the weight file, open until both towers are ready */
    int st_pinned;           /* a tower uses tensors in place from st: keep it */
    char *wpath;             /* weight file path */
    struct stat wstat;       /* its identity when opened */
    int fp_cached;           /* fingerprint came from the cache */
    int source[2];           /* per tower (text, vision): cdx_tower_source */
    void *prep_map[2];       /* mapped prepared file per tower, or NULL */
    size_t prep_len[2];
    int q8_ready;            /* CDX_TOWER_* bits with int8 copies (encoder.c);
                                set under tower_mu, __atomic acquire/release */
    int bf16_ready;          /* the same for the bf16 copies */
    void *copies_map[2][2];  /* [tower][0 int8, 1 bf16]: mapped prepared copies */
    size_t copies_len[2][2];
    int copies_source[2][2]; /* cdx_tower_source of those copies (tests, benches) */
};

/* Prepare the towers in `towers` (CDX_TOWER_* bits) if not yet done.
 * Thread-safe; the model is logically const (only lazily filled in). */
cdx_result cdx_model_need(const cdx_model *m, int towers);

#endif
