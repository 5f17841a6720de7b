/*
 * clipdex.h - the public API of libclipdex.
 *
 * clipdex embeds images and texts with an OpenAI/OpenCLIP ViT CLIP model
 * loaded from a Hugging Face model directory, and (in later modules) keeps
 * them in an on-disk library that answers text->image and image->image
 * queries.  This header is the only one the CLI, the server and outside
 * programs include.
 *
 * Conventions (see ../shared/STYLE.md):
 *  - Opaque handles with a constructor/destructor pair; destructors accept
 *    NULL.
 *  - Every fallible call returns a cdx_result.  On failure a human-readable
 *    message is available from cdx_last_error() in the same thread until the
 *    next failing call.  Library code never calls exit().
 *  - Options are params structs obtained from *_default_params(), so new
 *    options never break callers.
 *  - Callers own output buffers; sizes are given by the *_dim / *_size
 *    accessors.
 *
 * Thread-safety: a cdx_model is immutable once loaded and may be shared by
 * any number of threads.  A cdx_ctx (scratch memory for inference) belongs to
 * one thread at a time.
 */
#ifndef CLIPDEX_H
#define CLIPDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CDX_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- errors */

typedef enum cdx_result {
    CDX_OK = 0,
    CDX_ERR_INVALID_ARG,   /* caller passed something unusable */
    CDX_ERR_IO,            /* open/read/write/mmap failed */
    CDX_ERR_FORMAT,        /* a file or buffer is malformed */
    CDX_ERR_NOMEM,         /* allocation failed */
    CDX_ERR_UNSUPPORTED,   /* valid but not supported (dtype, image codec, ...) */
    CDX_ERR_TOO_LARGE,     /* input exceeds a configured limit */
    CDX_ERR_NETWORK,       /* a download failed */
    CDX_ERR_NOT_FOUND,     /* a named thing does not exist */
    CDX_ERR_MISMATCH,      /* e.g. a library made by another model */
    CDX_ERR_INTERNAL       /* a bug: please report */
} cdx_result;

/* Short constant name of a result code, e.g. "CDX_ERR_FORMAT". */
const char *cdx_result_str(cdx_result r);
/* Message of the last failure in this thread ("" if none). */
const char *cdx_last_error(void);

/* ---------------------------------------------------------------- model */

typedef struct cdx_model cdx_model;

typedef enum cdx_dtype {
    CDX_DTYPE_F32 = 0,
    CDX_DTYPE_F16,
    CDX_DTYPE_BF16
} cdx_dtype;

typedef struct cdx_model_params {
    /* Weight file inside the model directory; NULL = "model.safetensors". */
    const char *weights_file;
} cdx_model_params;

cdx_model_params cdx_model_default_params(void);

/* Load a Hugging Face CLIP model directory (config.json, a safetensors file,
 * vocab.json + merges.txt, preprocessor_config.json).  Every file is treated
 * as hostile: errors name the file and, where relevant, the tensor. */
cdx_result cdx_model_load(const char *dir, const cdx_model_params *params,
                          cdx_model **out);
void cdx_model_free(cdx_model *model);

typedef struct cdx_model_info {
    int embed_dim;         /* projection_dim: length of every embedding */
    int image_size;        /* model input side, e.g. 224 */
    int patch_size;
    int context_length;    /* text positions, e.g. 77 */
    int vocab_size;
    int vision_width, vision_layers, vision_heads, vision_mlp;
    int text_width, text_layers, text_heads, text_mlp;
    cdx_dtype weights_dtype;  /* dtype stored in the file (compute is F32) */
    float logit_scale;        /* the stored log value; logits use exp() */
    char fingerprint[65];     /* hex sha256 over config + weights */
} cdx_model_info;

void cdx_model_get_info(const cdx_model *model, cdx_model_info *info);

/* ---------------------------------------------------------------- tokenizer */

/* Tokenise one UTF-8 text with the model's BPE exactly as clip.tokenize does
 * (truncate=True): writes context_length ids (start token, BPE ids, end token,
 * zero padding; truncated with the end token kept last).  *n_untruncated (may
 * be NULL) receives the number of ids before truncation, start/end included. */
cdx_result cdx_tokenize(const cdx_model *model, const char *text, size_t len,
                        int32_t *ids, int *n_untruncated);

/* -------------------------------------------------- standalone tokenizer
 * (added by the tokenizer branch) The same tokenizer without loading the
 * model weights, e.g. for `clipdex tokenize`.  Immutable once loaded and
 * safe to share between threads. */

typedef struct cdx_tokenizer cdx_tokenizer;

/* Load the BPE vocabulary of a model directory: vocab.json + merges.txt, or,
 * when vocab.json is absent, OpenAI's bpe_simple_vocab_16e6.txt(.gz). */
cdx_result cdx_tokenizer_load_dir(const char *model_dir, cdx_tokenizer **out);
void cdx_tokenizer_free(cdx_tokenizer *tok);

/* Like cdx_tokenize() with an explicit context length (>= 1): writes exactly
 * context_length ids.  Texts are UTF-8 (invalid bytes read as U+FFFD) of at
 * most 1 MiB; longer ones fail with CDX_ERR_TOO_LARGE. */
cdx_result cdx_tokenizer_encode(const cdx_tokenizer *tok, const char *text,
                                size_t len, int context_length, int32_t *ids,
                                int *n_untruncated);

/* ---------------------------------------------------------------- images */

typedef struct cdx_image_params {
    int autorotate;          /* apply EXIF orientation (default 1) */
    uint64_t max_pixels;     /* refuse images with more pixels (default 100M) */
    int fast_shrink;         /* decode large JPEGs at reduced size (default 0):
                                faster, no longer bit-exact; see docs */
} cdx_image_params;

cdx_image_params cdx_image_default_params(void);

/* Facts about a decoded image (filled by the preprocess calls; may be NULL). */
typedef struct cdx_image_meta {
    int width, height;       /* as stored, before any EXIF rotation */
    int orientation;         /* EXIF orientation 1..8, 1 when absent */
    char format[16];         /* "jpeg", "png", "webp", "gif", "tiff", ... */
} cdx_image_meta;

/* Decode an image and produce the model's normalised float32 [3,S,S] input
 * (S = image_size) exactly as the reference CLIP preprocessing does. */
cdx_result cdx_preprocess_file(const cdx_model *model, const char *path,
                               const cdx_image_params *params, float *out,
                               cdx_image_meta *meta);
cdx_result cdx_preprocess_buffer(const cdx_model *model, const void *data,
                                 size_t len, const cdx_image_params *params,
                                 float *out, cdx_image_meta *meta);

/* ---------------------------------------------------------------- inference */

/* Per-thread inference state: scratch buffers sized for max_batch, reused by
 * every call (no allocation per call after the first). */
typedef struct cdx_ctx cdx_ctx;

typedef struct cdx_ctx_params {
    int n_threads;   /* threads used inside one call; 0 = all cores */
    int max_batch;   /* largest batch passed to one encode call (default 32) */
} cdx_ctx_params;

cdx_ctx_params cdx_ctx_default_params(void);
cdx_result cdx_ctx_new(const cdx_model *model, const cdx_ctx_params *params,
                       cdx_ctx **out);
void cdx_ctx_free(cdx_ctx *ctx);

/* Image tower: pixels are n x [3,S,S] float32; out is n x embed_dim.
 * normalize != 0 divides each embedding by its L2 norm. */
cdx_result cdx_encode_images(cdx_ctx *ctx, const float *pixels, int n,
                             float *out, int normalize);

/* Text tower from token ids: n x context_length int32 rows as produced by
 * cdx_tokenize; each row is pooled at its first end token. */
cdx_result cdx_encode_tokens(cdx_ctx *ctx, const int32_t *ids, int n,
                             float *out, int normalize);

/* Convenience: tokenize + encode n UTF-8 NUL-terminated texts. */
cdx_result cdx_encode_texts(cdx_ctx *ctx, const char *const *texts, int n,
                            float *out, int normalize);

/* ---------------------------------------------------------------- model cache */

typedef struct cdx_fetch_params {
    const char *revision;    /* default "main" */
    const char *endpoint;    /* default $CLIPDEX_HF_ENDPOINT or https://huggingface.co */
    const char *cache_dir;   /* default $CLIPDEX_HOME/models or ~/.local/share/clipdex/models */
    const char *token;       /* bearer token; default $HF_TOKEN */
    long connect_timeout_s;  /* default 15 */
    int quiet;               /* 1 = no progress on stderr */
} cdx_fetch_params;

cdx_fetch_params cdx_fetch_default_params(void);

/* Download a model repository (e.g. "openai/clip-vit-base-patch32") into the
 * cache, resuming partial files.  On success *out_dir (malloc'd, caller
 * frees) is the local model directory usable with cdx_model_load(). */
cdx_result cdx_model_fetch(const char *repo_id, const cdx_fetch_params *params,
                           char **out_dir);

#ifdef __cplusplus
}
#endif

#endif /* CLIPDEX_H */
