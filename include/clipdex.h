/*
 * clipdex.h - the public API of libclipdex.
 *
 * clipdex embeds images and texts with an OpenAI/OpenCLIP ViT CLIP model
 * loaded from a Hugging Face model directory, and keeps them in an on-disk
 * library that answers text->image and image->image queries.  This header
 * is the only one the CLI, the server and outside programs include.
 *
 * Conventions:
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
 * Thread-safety: a cdx_model is immutable once loaded (its towers are
 * filled in once, on first use, under a lock) and may be shared by any
 * number of threads.  A cdx_ctx (scratch memory for inference) belongs to
 * one thread at a time.
 */
#ifndef CLIPDEX_H
#define CLIPDEX_H

#include <stddef.h>
#include <stdint.h>

/* A flag another thread (or a signal handler) sets to ask a long call to
 * stop; read with atomic loads.  C++ callers get the same layout. */
#ifdef __cplusplus
#include <atomic>
typedef std::atomic<int> cdx_cancel_flag;
#else
#include <stdatomic.h>
typedef atomic_int cdx_cancel_flag;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Symbol export.  libclipdex.so is built with -fvisibility=hidden, so only
 * what this header declares is exported: CDX_API marks one declaration, and
 * the visibility pragma below applies it to every declaration up to the end
 * of the header (tests/e2e_abi.sh checks the .so's exports against it). */
#if defined(__GNUC__)
#define CDX_API __attribute__((visibility("default")))
#pragma GCC visibility push(default)
#else
#define CDX_API
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
/* Set this thread's message (what cdx_last_error() returns) and return
 * code: code built on the library (the CLI, eval, the server) reports its
 * own failures on the same channel. */
cdx_result cdx_set_error(cdx_result code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

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

/* ---------------------------------------------------------------- model: lazy towers
 * cdx_model_load() reads configs, tokenizer and the weight file's header
 * (checking every tensor's name, dtype and shape) and takes the fingerprint
 * from the engine cache when the weight file is unchanged; each tower's
 * weights are prepared on first use (first text encode: text tower; first
 * image encode: vision tower), thread-safely, from the engine cache's
 * prepared weights when present (docs/model-cache.md).  Loading errors of a
 * tower are then reported by the encode call. */
enum { CDX_TOWER_TEXT = 1, CDX_TOWER_VISION = 2, CDX_TOWER_ALL = 3 };

typedef enum cdx_tower_source {
    CDX_TOWER_SRC_NONE = 0,      /* not prepared yet */
    CDX_TOWER_SRC_MAPPED,        /* prepared weights mapped from the engine cache */
    CDX_TOWER_SRC_BUILT_SAVED,   /* converted from the weight file, saved, then mapped */
    CDX_TOWER_SRC_BUILT          /* converted in memory (cache off or not writable) */
} cdx_tower_source;

typedef struct cdx_model_load_info {
    int towers_loaded;            /* CDX_TOWER_* bits */
    int fingerprint_cached;       /* 1: the fingerprint came from the cache */
    cdx_tower_source text_source, vision_source;
} cdx_model_load_info;

/* Prepare `towers` (CDX_TOWER_* bits) now instead of on first use. */
cdx_result cdx_model_prepare(const cdx_model *model, int towers);
void cdx_model_get_load_info(const cdx_model *model, cdx_model_load_info *info);

typedef struct cdx_model_verify_report {
    char fingerprint[65];   /* recomputed from the files */
    char cached[65];        /* the cache's entry for the unchanged files ("" = none) */
    int cache_was_wrong;    /* that entry differed from the recomputed one (replaced) */
    int prepared_ok;        /* prepared towers found and valid */
    int prepared_removed;   /* damaged or stale prepared towers deleted */
} cdx_model_verify_report;

/* Recompute the model's fingerprint from every byte, refresh the
 * fingerprint cache, and validate its prepared towers (deleting damaged
 * ones).  CDX_OK also when the cache was wrong (see the report). */
cdx_result cdx_model_verify(const char *dir, const cdx_model_params *params,
                            cdx_model_verify_report *report);

/* ---------------------------------------------------------------- tokenizer */

/* Tokenise one UTF-8 text with the model's BPE exactly as clip.tokenize does
 * (truncate=True): writes context_length ids (start token, BPE ids, end token,
 * zero padding; truncated with the end token kept last).  *n_untruncated (may
 * be NULL) receives the number of ids before truncation, start/end included. */
cdx_result cdx_tokenize(const cdx_model *model, const char *text, size_t len,
                        int32_t *ids, int *n_untruncated);

/* -------------------------------------------------- standalone tokenizer
 * The same tokenizer without loading the model weights, e.g. for `clipdex
 * tokenize`.  Immutable once loaded and safe to share between threads. */

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
    uint64_t phash;          /* 64-bit DCT perceptual hash of the displayed
                                image (docs/search.md "Near-duplicates") */
    int has_phash;           /* 0 when it could not be computed */
} cdx_image_meta;

/* Decode an image and produce the model's normalised float32 [3,S,S] input
 * (S = image_size) exactly as the reference CLIP preprocessing does. */
cdx_result cdx_preprocess_file(const cdx_model *model, const char *path,
                               const cdx_image_params *params, float *out,
                               cdx_image_meta *meta);
cdx_result cdx_preprocess_buffer(const cdx_model *model, const void *data,
                                 size_t len, const cdx_image_params *params,
                                 float *out, cdx_image_meta *meta);

/* The 64-bit perceptual hash of an encoded image (decoded with params, NULL
 * = defaults), as indexing stores it; cdx_phash_distance = differing bits. */
cdx_result cdx_image_phash(const void *data, size_t len, const cdx_image_params *params,
                           uint64_t *out);
int cdx_phash_distance(uint64_t a, uint64_t b);

/* ---------------------------------------------------------------- inference */

/* Per-thread inference state: scratch buffers sized for max_batch, reused by
 * every call (no allocation per call after the first). */
typedef struct cdx_ctx cdx_ctx;

/* Numeric precision of the towers' Linear layers (docs/engine.md,
 * "Precision").  fp32: everything in float32.  int8: block Linears with
 * int8 weights (per output channel) and 7-bit activations quantised per row,
 * SmoothQuant scaling; patch embedding, attention products, projections,
 * norms and activations stay float32.  bf16: GEMM inputs rounded to bf16,
 * float32 accumulation.  auto: the fastest one this CPU runs natively whose
 * fidelity holds (int8 with AVX2 or AVX512_VNNI, else bf16 with
 * AVX512_BF16, else fp32).  Explicit int8 needs AVX2 (or VNNI), bf16
 * AVX512_BF16; see cdx_precision_resolve. */
typedef enum cdx_precision {
    CDX_PRECISION_FP32 = 0,
    CDX_PRECISION_AUTO,
    CDX_PRECISION_BF16,
    CDX_PRECISION_INT8
} cdx_precision;

/* "fp32", "auto", "bf16", "int8" */
const char *cdx_precision_name(cdx_precision p);
/* Parses a name; returns 0 and leaves *out alone when unknown. */
int cdx_precision_parse(const char *s, cdx_precision *out);
/* The precision a request runs at on this CPU: auto resolves to one; an
 * explicit bf16 or int8 the CPU cannot run natively fails with
 * CDX_ERR_UNSUPPORTED and a message saying why ($CLIPDEX_PRECISION_EMULATE=1,
 * for tests, runs them on the reference path instead). */
cdx_result cdx_precision_resolve(cdx_precision req, cdx_precision *out);

typedef struct cdx_ctx_params {
    int n_threads;   /* threads used inside one call; 0 = all cores */
    int max_batch;   /* largest batch passed to one encode call (default 32) */
    cdx_precision precision;   /* default CDX_PRECISION_FP32 */
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

/* ---------------------------------------------------------------- fine-tuning */

/* Contrastive fine-tuning of a loaded model (src/train/): the trainer keeps
 * float32 master copies of the weights (whatever the file's dtype), their
 * gradients and AdamW state; the model itself is never modified.  One
 * trainer per thread; it uses n_threads OpenMP threads inside a call. */
typedef struct cdx_trainer cdx_trainer;

typedef enum cdx_train_scope {
    CDX_TRAIN_ALL = 0,   /* every parameter */
    CDX_TRAIN_LAST,      /* the last last_k blocks of each tower, the final
                            LayerNorms, both projections and logit_scale */
    CDX_TRAIN_PROJ       /* both projections and logit_scale */
} cdx_train_scope;

typedef struct cdx_trainer_params {
    cdx_train_scope scope;
    int last_k;              /* blocks per tower for CDX_TRAIN_LAST (>= 1) */
    float lr, beta1, beta2, eps;
    float weight_decay;      /* decoupled; weight matrices of linear maps only */
    int n_threads;           /* 0 = all cores */
    int max_batch;           /* largest n passed to a step (default 256) */
    /* Frozen-prefix cache (scopes LAST and PROJ; ALL has no frozen part):
     * the frozen blocks' output per image and per caption, keyed by a hash of
     * the input, computed once and reused by later steps, evals and embeds
     * (the first epoch fills it, later epochs skip the frozen blocks).  Up to
     * cache_bytes in RAM (default 1 GiB; 0 = off), then up to
     * cache_disk_bytes in an unlinked spill file in cache_dir (NULL = none);
     * beyond both the frozen part is recomputed.  Cleared by
     * cdx_trainer_load_state. */
    size_t cache_bytes;
    const char *cache_dir;
    size_t cache_disk_bytes;
} cdx_trainer_params;

/* scope ALL, lr 1e-5, betas (0.9, 0.98), eps 1e-6, weight decay 0.2 */
cdx_trainer_params cdx_trainer_default_params(void);
cdx_result cdx_trainer_new(const cdx_model *model, const cdx_trainer_params *params,
                           cdx_trainer **out);
void cdx_trainer_free(cdx_trainer *t);

typedef struct cdx_train_stats {
    double loss;             /* loss of the batch BEFORE the update */
    float logit_scale;       /* stored (log) value before the update */
    int step;                /* optimizer steps taken so far (after this one) */
} cdx_train_stats;

/* One step on n (image, caption) pairs: pixels n x [3,S,S], tokens n x
 * context_length (pair i is the positive pair).  Forward, symmetric
 * contrastive loss with the model's learned logit scale, backward, AdamW.
 * On error (bad input, non-finite loss) the parameters are unchanged. */
cdx_result cdx_trainer_step(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                            cdx_train_stats *stats);
/* The loss (and logits [n, n] when non-NULL) at the current parameters,
 * without changing anything. */
cdx_result cdx_trainer_eval(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                            double *loss, float *logits);
/* L2-normalised embeddings [n, embed_dim] of the images and captions at the
 * current parameters (img or txt may be NULL: that tower is still run). */
cdx_result cdx_trainer_embed(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                             float *img, float *txt);
cdx_result cdx_trainer_set_lr(cdx_trainer *t, float lr);

/* Write a safetensors file (F32, the model's own tensor names, logit_scale
 * 0-dimensional) atomically: CDX_TRAINER_SAVE_PARAMS = every parameter
 * (a complete model.safetensors); CDX_TRAINER_SAVE_GRADS = the gradients of
 * the trainable tensors from the last step. */
enum { CDX_TRAINER_SAVE_PARAMS = 0, CDX_TRAINER_SAVE_GRADS = 1 };
cdx_result cdx_trainer_save(const cdx_trainer *t, const char *path, int what);
/* Checkpoints: every parameter, the Adam moments of the trainable tensors
 * and the step count in one safetensors file (written atomically).  Loading
 * checks every tensor's name and size against this trainer (same model
 * shape and scope) and changes nothing on error. */
cdx_result cdx_trainer_save_state(const cdx_trainer *t, const char *path);
cdx_result cdx_trainer_load_state(cdx_trainer *t, const char *path);
int cdx_trainer_steps_done(const cdx_trainer *t);

/* What the frozen-prefix cache did since the trainer was created. */
typedef struct cdx_train_cache_stats {
    uint64_t hits, misses;   /* lookups of one image or caption */
    uint64_t refused;        /* values not stored: over both bounds or spill I/O failed */
    uint64_t entries;
    uint64_t ram_bytes, disk_bytes;
} cdx_train_cache_stats;
/* All zero when the cache is off or the scope has no frozen part. */
void cdx_trainer_cache_stats(const cdx_trainer *t, cdx_train_cache_stats *s);

/* ---------------------------------------------------------------- HTTP client
 * The one libcurl client of clipdex: URL queries, URL ingestion, fleet
 * workers, evaluation files and the server's image_url all fetch through
 * cdx_http_get (model downloads share its set-up, see src/fetch/http.h). */

typedef enum cdx_http_failure {
    CDX_HTTP_OK = 0,
    CDX_HTTP_BAD_URL,     /* not an http(s) URL, or malformed */
    CDX_HTTP_REFUSED,     /* private/loopback/... address and !allow_private */
    CDX_HTTP_TOO_LARGE,   /* body above max_bytes */
    CDX_HTTP_TIMEOUT,
    CDX_HTTP_REDIRECTS,   /* too many redirects, or one to another protocol */
    CDX_HTTP_STATUS,      /* the final response was not 2xx (status in out) */
    CDX_HTTP_NOT_IMAGE,   /* require_image and a Content-Type not image/... */
    CDX_HTTP_FAILED       /* DNS, connection, TLS, empty body, ... */
} cdx_http_failure;

typedef struct cdx_http_params {
    long connect_timeout_ms;  /* default 15000 */
    long timeout_ms;          /* default 60000 (whole transfer) */
    uint64_t max_bytes;       /* default 64 MiB; checked while receiving */
    long max_redirects;       /* default 5; 0 = do not follow */
    int allow_private;        /* default 0: refuse loopback, private, link-local,
                               * ... peers, checked on the address curl connects
                               * to (every hop, after DNS); proxies ignored */
    int require_image;        /* default 0: 1 = Content-Type image/... or
                               * application/octet-stream (or absent) */
    int any_status;           /* default 0: 1 = return the body whatever the
                               * final status (the caller judges out->status;
                               * an empty body is then no error either) */
    const char *post_json;    /* default NULL: non-NULL = POST this body as
                               * application/json instead of a GET */
    const char *bearer;       /* default NULL: "Authorization: Bearer <it>" */
} cdx_http_params;

cdx_http_params cdx_http_default_params(void);

typedef struct cdx_http_response {
    char *data;               /* malloc'd body, NUL-terminated; caller frees */
    size_t len;
    long status;              /* final HTTP status (0 when none) */
    int64_t mtime;            /* Last-Modified as Unix time, 0 when absent */
    long retry_after_s;       /* Retry-After in seconds (0 when absent or an
                               * HTTP date) */
    cdx_http_failure failure; /* CDX_HTTP_OK on success */
} cdx_http_response;

/* GET url into out.  On failure out->data is NULL, out->failure says why
 * and cdx_last_error() names it (CDX_ERR_TOO_LARGE for TOO_LARGE,
 * CDX_ERR_INVALID_ARG for BAD_URL, CDX_ERR_NETWORK otherwise). */
cdx_result cdx_http_get(const char *url, const cdx_http_params *params,
                        cdx_http_response *out);

/* 1 when sa is a public unicast address (what allow_private = 0 admits). */
struct sockaddr;
int cdx_http_addr_is_public(const struct sockaddr *sa);

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

/* ---------------------------------------------------------------- model cache: lookup
 * (as used by `clipdex model path` and `clipdex model list`; NULL string
 * fields of cdx_fetch_params mean "the default" everywhere.) */

/* The cache root: params->cache_dir, else $CLIPDEX_HOME/models, else
 * $XDG_DATA_HOME/clipdex/models, else ~/.local/share/clipdex/models.
 * *out is malloc'd (caller frees); nothing is created on disk. */
cdx_result cdx_model_cache_root(const cdx_fetch_params *params, char **out);

/* The cache directory of repo_id at params->revision, whether or not it
 * exists.  *complete (may be NULL) is set to 1 when a fetch finished there
 * (marker present and every required file in place), else 0.  Fails with
 * CDX_ERR_INVALID_ARG for a malformed repo id or revision. */
cdx_result cdx_model_cache_dir(const char *repo_id, const cdx_fetch_params *params,
                               char **out_dir, int *complete);

typedef struct cdx_cache_entry {
    const char *repo_id;   /* "owner/name" */
    const char *revision;  /* e.g. "main" or "refs/pr/3" */
    const char *dir;       /* local directory */
    uint64_t bytes;        /* sum of its files, partial downloads included */
    int complete;          /* as for cdx_model_cache_dir() */
} cdx_cache_entry;

/* Calls fn for every model directory in the cache, sorted by repo id then
 * revision; pointers are valid during the call only.  A non-zero return of
 * fn stops the walk.  A missing cache root is an empty cache. */
cdx_result cdx_model_cache_list(const cdx_fetch_params *params,
                                int (*fn)(const cdx_cache_entry *e, void *user),
                                void *user);

/* ---------------------------------------------------------------- model registry
 * Named, versioned models with aliases, lineage and evaluation results, in
 * <model cache root>/registry.db (see docs/models.md).  A version is the
 * model's content fingerprint; references are NAME (its latest version),
 * NAME@ALIAS, NAME@VERSION-PREFIX (>= 8 hex digits) or @VERSION-PREFIX.
 * Safe for concurrent use by several processes. */

typedef struct cdx_registry cdx_registry;

typedef struct cdx_registry_model {
    char version[65];          /* content fingerprint (hex sha256) */
    char name[129];
    char dir[4096];            /* model directory (absolute) */
    int64_t registered;        /* unix seconds */
    char clipdex_version[32];  /* clipdex that registered it */
    char aliases[512];         /* comma-separated, sorted */
    char lineage[8192];        /* JSON object (truncated past 8 KiB here) */
} cdx_registry_model;

/* Open (creating) the registry at path, or, when path is NULL, in the model
 * cache root of params (NULL = defaults). */
cdx_result cdx_registry_open(const char *path, const cdx_fetch_params *params, cdx_registry **out);
void cdx_registry_close(cdx_registry *reg);
/* Nonzero when name is a valid model name. */
int cdx_registry_name_ok(const char *name);
/* Register the model in model_dir (loaded to validate it and compute its
 * fingerprint) under name, with lineage (a JSON object, NULL = {}).  The
 * same files again under the same name update the directory (and lineage
 * when given); under another name: CDX_ERR_MISMATCH.  out may be NULL. */
cdx_result cdx_registry_register(cdx_registry *reg, const char *model_dir, const char *name,
                                 const char *lineage_json, cdx_registry_model *out);
cdx_result cdx_registry_resolve(cdx_registry *reg, const char *ref, cdx_registry_model *out);
/* A model given as a directory (holding config.json) or a registry
 * reference (NAME, NAME@ALIAS, NAME@VERSION-PREFIX, @VERSION-PREFIX) in the
 * default registry: its directory into dir and, for a registry reference,
 * its name into name (left as it is for a directory; name_cap 0 = none). */
cdx_result cdx_registry_resolve_dir(const char *ref, char *dir, size_t dir_cap, char *name, size_t name_cap);
/* Point alias at the version ref resolves to (moving it if set). */
cdx_result cdx_registry_tag(cdx_registry *reg, const char *ref, const char *alias);
cdx_result cdx_registry_untag(cdx_registry *reg, const char *name, const char *alias);
/* Forget one version (NAME@VERSION or NAME@ALIAS): its aliases and
 * evaluations too.  The model files are left alone. */
cdx_result cdx_registry_remove(cdx_registry *reg, const char *ref);
/* Every registered version, by name then registration time; a non-zero
 * return of fn stops the walk. */
cdx_result cdx_registry_list(cdx_registry *reg, int (*fn)(const cdx_registry_model *m, void *user),
                             void *user);
/* Attach evaluation results (a JSON object, e.g. `clipdex eval --json`) of
 * kind ("zero-shot", "captions", "queries") to the version ref names. */
cdx_result cdx_registry_record_eval(cdx_registry *reg, const char *ref, const char *kind,
                                    const char *metrics_json);
/* All evaluations of a version as a JSON array (malloc'd text). */
cdx_result cdx_registry_evals(cdx_registry *reg, const char *version, char **json_out);

/* ================================================================ library
 *
 * A library is a directory holding a SQLite catalog (WAL) and a vector file
 * (L2-normalised embeddings, see docs/storage-format.md), bound to one model
 * by its fingerprint.  A cdx_library handle may be used from many threads at
 * once: searches and embeddings run concurrently (the handle keeps a pool of
 * inference contexts); writes (index, add, remove) are serialised inside.
 * Any number of processes may read; one writer at a time (a lock file).
 * Crash safety: a vector is durable (fsync) before the catalog transaction
 * that refers to it commits; whatever a call reported committed survives a
 * kill at any moment.
 */

typedef struct cdx_library cdx_library;

/* Compaction: rewriting the vector file without the rows no image refers
 * to any more (removed or replaced contents, orphans of interrupted runs).
 * Crash-safe and concurrent with searches: see docs/library.md
 * "Compaction". */
typedef struct cdx_compact_params {
    /* Thresholds of automatic compaction (after index and remove) and of
     * cdx_library_compact with only_if_needed: the vector file has at least
     * min_dead dead rows AND they are at least dead_fraction of its rows.
     * dead_fraction <= 0 disables automatic compaction. */
    double dead_fraction;     /* default 0.25 */
    uint64_t min_dead;        /* default 1024 */
    int only_if_needed;       /* cdx_library_compact: apply the thresholds
                                 (default 0: compact when any row is dead) */
} cdx_compact_params;

cdx_compact_params cdx_compact_default_params(void);

typedef struct cdx_compact_report {
    int compacted;            /* 1 when a new vector file replaced the old */
    uint64_t rows_before;     /* vector rows before (live + dead) */
    uint64_t rows_after;      /* vector rows after (= live rows when compacted) */
    uint64_t bytes_before, bytes_after;   /* vector file sizes */
    uint64_t bytes_freed;     /* bytes_before - bytes_after */
    double seconds;
} cdx_compact_report;

typedef struct cdx_library_params {
    /* create: the model to bind (required).  open: NULL = the model directory
     * recorded in the library; otherwise a directory whose fingerprint must
     * equal the library's (CDX_ERR_MISMATCH with a clear message if not). */
    const char *model_dir;
    int create;       /* create (init) the library when it does not exist */
    int writable;     /* take the writer lock (index/add/remove/prune) */
    int load_model;   /* load the model (needed to embed; default 1; 0 for
                         info/check/rm/search by vector or by id) */
    int n_threads;    /* inference and scan threads; 0 = all cores */
    cdx_compact_params compact;   /* automatic compaction after index/remove
                                     (cdx_compact_default_params()) */
    uint64_t ann_min_rows;        /* build and use the approximate index from
                                     this many vectors on; 0 = default
                                     ($CLIPDEX_ANN_MIN_ROWS, else the measured
                                     crossover, docs/search.md) */
    cdx_precision precision;   /* of the towers (default fp32); resolved at
                                  open when load_model (an explicit precision
                                  the CPU lacks fails there); recorded in the
                                  catalog by index (cdx_library_info.precision) */
} cdx_library_params;

cdx_library_params cdx_library_default_params(void);

/* Default library directory: $CLIPDEX_LIBRARY, else "./clipdex-library". */
const char *cdx_library_default_dir(void);

cdx_result cdx_library_open(const char *dir, const cdx_library_params *params,
                            cdx_library **out);
void cdx_library_close(cdx_library *lib);

/* The loaded model (NULL when opened with load_model = 0). */
const cdx_model *cdx_library_model(const cdx_library *lib);

typedef struct cdx_library_info {
    uint64_t images;            /* catalogued paths/URLs */
    uint64_t vectors;           /* distinct embedded contents */
    uint64_t bytes;             /* on-disk size of the library directory
                                   (cached: recounted after the catalog
                                   changes, else at most every 30 s) */
    int dim;                    /* embedding dimension */
    char model_fingerprint[65];
    char model_dir[4096];       /* model directory recorded at init */
    uint64_t vector_rows;       /* rows in the vector file (live + dead) */
    uint64_t dead_rows;         /* rows no image refers to (compaction frees them) */
    uint64_t reclaimable_bytes; /* what compacting now would free */
    char precision[32];         /* precision(s) the vectors were embedded at:
                                   "fp32", "int8", "bf16", or several joined
                                   by "+" in order of first use ("fp32" for
                                   libraries older than the record) */
    char run_precision[8];      /* precision this handle embeds at ("" when
                                   opened without the model) */
    uint64_t ocr_images;        /* images with OCR text */
    uint64_t ocr_read;          /* contents read by OCR (with or without text) */
    uint64_t ocr_skipped;       /* of those, skipped: no text-like regions */
} cdx_library_info;

cdx_result cdx_library_get_info(cdx_library *lib, cdx_library_info *info);

/* One catalogued image (a path or URL; several may share one content). */
typedef struct cdx_image_record {
    int64_t id;
    char path[4096];       /* absolute path, or URL */
    char sha256[65];       /* content hash (hex); for imported vectors the
                              vector's key (see cdx_library_import) */
    uint64_t size;         /* bytes */
    int64_t mtime;         /* unix seconds (0 for URLs without Last-Modified) */
    int width, height;     /* as stored */
    char format[16];       /* "jpeg", "png", ... */
    int64_t taken;         /* EXIF DateTimeOriginal as unix seconds (UTC as
                              written), 0 when absent */
    char camera[128];      /* EXIF "Make Model", "" when absent */
    int64_t added;         /* unix seconds */
} cdx_image_record;

cdx_result cdx_library_get_image(cdx_library *lib, int64_t id, cdx_image_record *rec);
/* The id of a catalogued path or URL (paths are made absolute first). */
cdx_result cdx_library_find(cdx_library *lib, const char *path_or_url, int64_t *id);
/* Remove one catalogued path (its vector goes when no path refers to it). */
cdx_result cdx_library_remove(cdx_library *lib, int64_t id);

/* Rewrite the vector file without its dead rows (writable handles).  Ids,
 * vectors and scores are unchanged; slots are renumbered.  Searches of this
 * and other handles (other processes too) keep working meanwhile and see
 * the new file after the switch.  params may be NULL (defaults), report
 * may be NULL.  Needs free disk space for the live rows' copy. */
cdx_result cdx_library_compact(cdx_library *lib, const cdx_compact_params *params,
                               cdx_compact_report *report);

/* ---------------------------------------------------------------- indexing */

typedef struct cdx_index_stats {
    uint64_t found;        /* candidate files/URLs seen so far */
    uint64_t added;        /* new entries embedded and committed */
    uint64_t unchanged;    /* skipped: same size + mtime as catalogued */
    uint64_t moved;        /* new path of known content (not re-embedded) */
    uint64_t duplicates;   /* new path whose content another path has */
    uint64_t failed;       /* bad files (reported with a reason) */
    uint64_t removed;      /* pruned entries whose files are gone */
    double seconds;
    double images_per_s;   /* embedded images per second */
    uint64_t skipped;      /* not images by name nor by content (README.md,
                              notes.csv in a photo folder): not "failed" */
    uint64_t ocr_read;     /* (params.ocr) new contents read by Tesseract */
    uint64_t ocr_skipped;  /*   ... skipped by the text-likeness test */
} cdx_index_stats;

typedef enum cdx_index_event_kind {
    CDX_INDEX_EVENT_ADDED = 0,   /* path, id */
    CDX_INDEX_EVENT_MOVED,       /* path (new), id */
    CDX_INDEX_EVENT_DUPLICATE,   /* path, id */
    CDX_INDEX_EVENT_FAILED,      /* path, reason */
    CDX_INDEX_EVENT_REMOVED,     /* path, id */
    CDX_INDEX_EVENT_PROGRESS,    /* stats only; about every 0.5 s */
    CDX_INDEX_EVENT_SKIPPED      /* path, reason: not an image by name nor
                                    content (counted apart from failures) */
} cdx_index_event_kind;

typedef struct cdx_index_event {
    cdx_index_event_kind kind;
    const char *path;      /* may be NULL for PROGRESS */
    const char *reason;    /* FAILED and SKIPPED only */
    int64_t id;
    const cdx_index_stats *stats;   /* running totals */
} cdx_index_event;

typedef void (*cdx_index_callback)(void *user, const cdx_index_event *ev);

typedef struct cdx_index_params {
    int prune;                  /* remove entries whose files are gone (under
                                   the given folders) */
    const char *urls_file;      /* text file of URLs, one per line, or NULL */
    uint64_t max_file_bytes;    /* skip larger files (default 256 MiB) */
    long url_timeout_s;         /* total time per URL (default 60) */
    uint64_t url_max_bytes;     /* default 64 MiB */
    int batch_size;             /* images per embedding batch (default 32) */
    cdx_image_params image;     /* decoding options */
    cdx_index_callback callback;   /* called from the calling thread */
    void *user;
    cdx_cancel_flag *cancel;    /* set non-zero to stop soon (commits first);
                                   may be NULL */
    int codes;                  /* companion code files to build after indexing:
                                   bits 1 << CDX_SCAN_INT8 / _BIT / _PCA8;
                                   existing companions are always brought up to date */
    int ocr;                    /* read text in new images with Tesseract (on the
                                   decode workers; docs/search.md) */
    const char *ocr_lang;       /* Tesseract languages, "eng+deu" (NULL = "eng") */
    int gone_ok;                /* a given path that does not exist is no
                                   failure (with prune its entries go): the
                                   watcher's passes (cdx_library_watch) */
} cdx_index_params;

cdx_index_params cdx_index_default_params(void);

/* Index files and folders (recursive; symlink loops safe) and URLs.  Bad
 * files never stop the run: they are reported (FAILED event) and counted. */
cdx_result cdx_library_index(cdx_library *lib, const char *const *paths, int n_paths,
                             const cdx_index_params *params, cdx_index_stats *stats);

/* ---------------------------------------------------------------- watching
 * Keep a library in step with folders (docs/fleet.md "Watching folders without a broker"): a full
 * pass on start (index + prune), then inotify events, debounced, indexed in
 * passes of the changed paths (new and changed files embedded, moved ones
 * recognised by content, deleted ones removed); a full pass again when the
 * kernel's event queue overflows or *rescan is set.  Folders created later
 * are watched.  Hidden names and the library's own folder are ignored. */

typedef struct cdx_watch_pass {
    const char *reason;         /* "start", "overflow", "request" (full
                                   passes) or "changes" */
    int full;                   /* 1 = every folder rescanned */
    uint64_t paths;             /* changed paths in this pass (0 when full) */
    const cdx_index_stats *stats;   /* this pass's counts */
} cdx_watch_pass;

typedef struct cdx_watch_params {
    cdx_index_params index;     /* options of each pass (batch, image, codes,
                                   callback for its events); prune, gone_ok,
                                   urls_file and cancel are set by the watcher */
    int debounce_ms;            /* index once no event came for this long (500) */
    int max_delay_ms;           /* ...or this long after the first pending one,
                                   during a steady stream of events (5000) */
    void (*pass)(void *user, const cdx_watch_pass *pass);   /* after each pass */
    void *user;
    cdx_cancel_flag *cancel;    /* set to stop (the current pass commits first) */
    cdx_cancel_flag *rescan;    /* set to ask for a full pass (cleared here) */
} cdx_watch_params;

typedef struct cdx_watch_stats {
    uint64_t passes, full_passes, overflows;
    uint64_t added, moved, duplicates, removed, failed, skipped;   /* summed */
} cdx_watch_stats;

cdx_watch_params cdx_watch_default_params(void);
/* Run until *cancel (writable library with its model).  Searches on the
 * same handle keep working meanwhile. */
cdx_result cdx_library_watch(cdx_library *lib, const char *const *dirs, int n_dirs,
                             const cdx_watch_params *params, cdx_watch_stats *stats);

/* Store image bytes under the library (DIR/images/<sha256>.<ext>), index
 * them and return the id (an existing id when that content is known). */
cdx_result cdx_library_add_buffer(cdx_library *lib, const void *data, size_t len,
                                  const cdx_image_params *image, int64_t *id);

/* Like cdx_library_add_buffer; *created (may be NULL) is 1 when a new image
 * was catalogued, 0 when the content was already known (the existing id is
 * returned). */
cdx_result cdx_library_add_buffer_ex(cdx_library *lib, const void *data, size_t len,
                                     const cdx_image_params *image, int64_t *id, int *created);

/* ---------------------------------------------------------------- listing */

#define CDX_LIST_MAX 10000

/* Images in id order: skip offset, then up to limit (<= CDX_LIST_MAX)
 * records into recs; *n receives the count, *total (may be NULL) the number
 * of catalogued images. */
cdx_result cdx_library_list_images(cdx_library *lib, uint64_t offset, size_t limit,
                                   cdx_image_record *recs, size_t *n, uint64_t *total);

/* ---------------------------------------------------------------- import / export
 *
 * Import embeddings computed elsewhere: a .npy of float32 or float16 [N, D]
 * (D = the library's dimension) and a metadata file with one row per vector
 * (CSV with a header line, or JSON Lines): `path` (or `image_path`) or
 * `url`, optionally width, height, format, mtime, taken, camera, size, and
 * source metadata title, description, tags (';'-separated, or a JSON array)
 * for the full-text index.
 * Both files are validated completely before anything is written: a bad
 * file imports nothing.  Rows are then committed in batches (vectors
 * fsynced before the catalog transaction naming them); an entry whose path
 * is already catalogued with the same vector is skipped, so running the
 * same import again after an interruption resumes it.  An imported content
 * is keyed by the sha256 of "clipdex-vector-v1\0" + its normalised float32
 * bytes (there are no image bytes to hash); see docs/library.md. */

typedef struct cdx_import_stats {
    uint64_t rows;          /* rows of the input processed so far */
    uint64_t total_rows;    /* rows in the input */
    uint64_t added;         /* new images */
    uint64_t updated;       /* catalogued paths given another vector */
    uint64_t unchanged;     /* catalogued with this vector already (resume) */
    uint64_t duplicates;    /* new images whose vector was already stored */
    double seconds;
} cdx_import_stats;

typedef struct cdx_import_params {
    const char *meta_format;        /* "csv", "jsonl" or NULL = by extension */
    const char *model_fingerprint;  /* NULL, or must equal the library's */
    const char *base_dir;           /* relative paths are under it; NULL = cwd */
    size_t batch_size;              /* rows per transaction (default 4096) */
    void (*progress)(void *user, const cdx_import_stats *st);  /* per batch */
    void *user;
    cdx_cancel_flag *cancel;        /* non-zero: stop after the current batch */
} cdx_import_params;

cdx_import_params cdx_import_default_params(void);

cdx_result cdx_library_import(cdx_library *lib, const char *vectors_path, const char *meta_path,
                              const cdx_import_params *params, cdx_import_stats *stats);

/* Add n images whose vectors were computed elsewhere with this library's
 * model (vecs: n x dim floats, normalised here), e.g. results of fleet
 * workers.  Per record: path (absolute path or URL), sha256 (hex of the
 * image bytes: the content key, as for indexed files; "" = keyed by the
 * vector as imports are), size, mtime, width, height, format, taken,
 * camera.  One transaction, vectors fsynced first.  A path catalogued with
 * the same sha256 already is left unchanged (stats->unchanged), so adding
 * the same records again changes nothing.  model_fingerprint (may be NULL)
 * must equal the library's.  stats (may be NULL) accumulates. */
cdx_result cdx_library_add_vectors(cdx_library *lib, const cdx_image_record *recs, const float *vecs,
                                   size_t n, const char *model_fingerprint, cdx_import_stats *stats);
/* Record that `added` vectors just added (cdx_library_add_vectors) were
 * embedded at `precision` (never auto): joined into
 * cdx_library_info.precision as a local index run does. */
cdx_result cdx_library_note_precision(cdx_library *lib, cdx_precision precision, uint64_t added);

/* Write every image's vector (float32 [N, D] .npy, one row per image in id
 * order) and a JSON Lines file of the same rows (id, path, sha256, size,
 * width, height, format, mtime, taken, camera, added), each written to a
 * temporary name and renamed when complete.  *n (may be NULL) = rows. */
cdx_result cdx_library_export(cdx_library *lib, const char *npy_path, const char *jsonl_path,
                              uint64_t *n);

/* ---------------------------------------------------------------- search */

/* How a semantic search was answered (cdx_search_params.info). */
typedef struct cdx_search_info {
    int approximate;    /* 1 = candidates came from the approximate index
                           (scores are still exact; a true top-k image may be
                           missing); 0 = every allowed vector was scored */
    int probes;         /* lists scanned, when approximate */
} cdx_search_info;

typedef struct cdx_search_params {
    size_t k;                  /* results wanted (default 10, max 10000) */
    size_t offset;             /* skip this many (pagination) */
    float min_score;           /* keep scores >= min_score (default -2: all) */
    const char *path_prefix;   /* only paths starting with this, or NULL */
    int64_t after, before;     /* date range (unix s; EXIF date else mtime);
                                  0 = unbounded */
    const char *format;        /* e.g. "jpeg", or NULL */
    int scan;                  /* CDX_SCAN_F32 (default), CDX_SCAN_INT8, CDX_SCAN_BIT,
                                  CDX_SCAN_PCA8: scan compressed codes, re-score
                                  in float32 */
    size_t rescore;            /* compressed scans: candidates re-scored =
                                  (offset+k) * rescore; 0 = the scan's default
                                  (int8 4, bit 40, pca8 10; max 1000) */
    const char *tag;           /* only images with this tag (source metadata)
                                  or keyword (embedded metadata), ASCII
                                  case-insensitive; NULL = any */
    float keyword_weight;      /* hybrid search: weight w of the keyword
                                  ranking in the fusion, 0..1 (default 0.5) */
    /* approximate index (docs/search.md): used by default on libraries of
     * at least cdx_library_params.ann_min_rows vectors, float32 scans only */
    int exact;                 /* 1 = never the approximate index */
    int probes;                /* lists scanned: the recall / speed knob
                                  (0 = default: lists/5, at most
                                  4 sqrt(lists); 1..65536) */
    cdx_search_info *info;     /* out (may be NULL): how it was answered */
    const char *model_fingerprint;  /* the model the query vectors come from
                                  (cdx_library_pin_fingerprint); when the
                                  library's vectors are another model's (a
                                  reindex switched meanwhile): CDX_ERR_MISMATCH,
                                  embed again.  NULL = not checked */
} cdx_search_params;

cdx_search_params cdx_search_default_params(void);

typedef struct cdx_hit {
    int64_t id;       /* image id (one path per hit; duplicates of one
                         content are separate hits with equal scores) */
    float score;      /* cosine similarity */
} cdx_hit;

/* Exact search with an L2-normalised query vector of the library's dim.
 * hits has room for params->k entries; *n_hits receives the count, *total
 * (may be NULL) the number of images passing the filters and min_score. */
cdx_result cdx_library_search_vector(cdx_library *lib, const float *query,
                                     const cdx_search_params *params,
                                     cdx_hit *hits, size_t *n_hits, uint64_t *total);

/* ---------------------------------------------------------------- search: several
 * queries, raw vectors (added by the vecio branch) */

#define CDX_SEARCH_MAX_QUERIES 4096

/* Search nq L2-normalised queries (nq x dim floats, row-major) in one scan
 * of the vectors.  hits has room for nq * params->k entries: query i's
 * results are hits[i*k .. i*k + n_hits[i]); totals (may be NULL) receives
 * per query the number of images passing the filters and min_score, counted
 * during the same scan.  Each query's results equal a single
 * cdx_library_search_vector() call with it. */
cdx_result cdx_library_search_vectors(cdx_library *lib, const float *queries, size_t nq,
                                      const cdx_search_params *params, cdx_hit *hits,
                                      size_t *n_hits, uint64_t *totals);

/* Divide v by its L2 norm.  CDX_ERR_INVALID_ARG for a non-finite value or
 * a vector without a usable length (all zeros). */
cdx_result cdx_vector_normalize(float *v, int dim);

/* Search with a vector computed elsewhere (any length; normalised here).
 * dim must equal the library's (CDX_ERR_MISMATCH otherwise). */
cdx_result cdx_library_search_raw(cdx_library *lib, const float *vec, int dim,
                                  const cdx_search_params *params, cdx_hit *hits,
                                  size_t *n_hits, uint64_t *total);

/* Read query vectors from a file: a .npy of float32 or float16, shape (D,)
 * or (N, D), or (any other name) raw little-endian float32 values, a
 * multiple of dim.  Every vector must have dim values (CDX_ERR_MISMATCH
 * otherwise).  *out (malloc'd, caller frees) receives *n x dim floats as
 * stored (not normalised).  Files above 1 GiB are refused. */
cdx_result cdx_vectors_read(const char *path, int dim, float **out, size_t *n);

/* Embeddings with the library's model (thread-safe; L2-normalised; out has
 * dim floats).  The image variants decode with default image params. */
cdx_result cdx_library_embed_text(cdx_library *lib, const char *text, float *out);
/* n texts in batched text-tower calls (16 per call) on one context; out has
 * n x dim floats, identical (to float rounding) to n cdx_library_embed_text
 * calls.  On error nothing useful is in out. */
cdx_result cdx_library_embed_texts(cdx_library *lib, const char *const *texts, size_t n,
                                   float *out);
/* n encoded images (data[i], len[i] bytes): each decoded on its own,
 * results[i] = CDX_OK or why image i could not be decoded (its row of out,
 * n x dim floats, is then untouched); the decodable ones go through the
 * image tower in batches (16 per call).  The return value is an error of
 * the call itself (memory, inference), not of one image. */
cdx_result cdx_library_embed_image_buffers(cdx_library *lib, const void *const *data,
                                           const size_t *len, size_t n, float *out,
                                           cdx_result *results);
cdx_result cdx_library_embed_image_file(cdx_library *lib, const char *path, float *out);
cdx_result cdx_library_embed_image_buffer(cdx_library *lib, const void *data,
                                          size_t len, float *out);
/* The stored vector of a catalogued image (query "like this id"). */
cdx_result cdx_library_get_vector(cdx_library *lib, int64_t id, float *out);

/* ---------------------------------------------------------------- compressed codes */

/* How a search scans the vectors (cdx_search_params.scan).  The compressed
 * scans read a companion file of codes (DIR/codes-int8.cdxc, codes-bit.cdxc)
 * built from the float32 vectors on first use or by indexing, pick
 * candidates by estimated score and re-score them exactly: scores returned
 * are exact float32 cosines, but a true top-k image can be missed (recall
 * measured in docs/search.md).  A stale companion (another vector file id
 * after compaction, other row count) is rebuilt or extended, never used. */
enum {
    CDX_SCAN_F32 = 0,
    CDX_SCAN_INT8 = 1,    /* int8 codes of every dimension */
    CDX_SCAN_BIT = 2,     /* 1-bit codes (rotated) */
    CDX_SCAN_PCA8 = 3     /* int8 codes of the top dim/4 PCA components (needs OpenBLAS) */
};
#define CDX_SCAN_LAST CDX_SCAN_PCA8

/* "f32", "int8", "bit", "pca8"; NULL for an unknown value. */
const char *cdx_scan_name(int scan);
/* Parse a scan name; -1 when unknown. */
int cdx_scan_parse(const char *name);

typedef struct cdx_codes_info {
    int scan;                   /* CDX_SCAN_INT8, CDX_SCAN_BIT or CDX_SCAN_PCA8 */
    int present;                /* the companion file exists and parses */
    int fresh;                  /* it covers exactly the current vector file */
    int damaged;                /* verify only: the data checksum failed */
    uint64_t rows;              /* rows it covers */
    uint64_t file_bytes;        /* its size on disk */
    uint64_t bytes_per_image;   /* resident bytes per vector when scanning */
    int coded_dim;              /* dimensions coded (after PCA / rotation) */
    char path[4096];
} cdx_codes_info;

/* State of a companion without changing it; verify = also read it all and
 * check its data checksum. */
cdx_result cdx_library_codes_info(cdx_library *lib, int scan, int verify, cdx_codes_info *info);
/* Build or bring up to date the companion of scan now, reading it all and
 * rebuilding it when damaged (any handle: the companion has its own lock). */
cdx_result cdx_library_build_codes(cdx_library *lib, int scan);
/* -------------------------------------------- keyword, hybrid and combined
 * search (docs/search.md).  Every image has a row in
 * a full-text index (SQLite FTS5) over its path, file name, source metadata
 * (title, description, tags), metadata embedded in its bytes (EXIF/IPTC/XMP
 * title, description, keywords, artist, camera, places) and OCR text. */

typedef enum cdx_search_mode {
    CDX_SEARCH_SEMANTIC = 0,   /* CLIP embeddings only */
    CDX_SEARCH_KEYWORD,        /* full-text index only (FTS5 query syntax) */
    CDX_SEARCH_HYBRID          /* both rankings fused (reciprocal rank fusion) */
} cdx_search_mode;

/* "semantic" / "keyword" / "hybrid" <-> mode; parse fails with
 * CDX_ERR_INVALID_ARG and a message listing the modes. */
cdx_result cdx_search_mode_parse(const char *name, cdx_search_mode *out);
const char *cdx_search_mode_name(cdx_search_mode mode);

/* *yes = 1 when some image has text beyond its path (source or embedded
 * metadata, OCR): front-ends then default to hybrid search. */
cdx_result cdx_library_has_text(cdx_library *lib, int *yes);

/* Keyword search with an FTS5 query ("words", "a phrase", pref*, AND, OR,
 * NOT, column:word; at most 4096 bytes).  Hits are ranked by BM25 with
 * column weights; score = -bm25 (higher is better; not a cosine, so
 * params->min_score is not used).  Malformed syntax is CDX_ERR_INVALID_ARG
 * with a message saying what is wrong.  *total = all matches. */
cdx_result cdx_library_search_keyword(cdx_library *lib, const char *query,
                                      const cdx_search_params *params,
                                      cdx_hit *hits, size_t *n_hits, uint64_t *total);

/* Hybrid search: the semantic ranking of `vector` (filters and min_score
 * applied) and the keyword ranking of `text` (free text: each word is a
 * term, any may match, common English words such as "a", "the", "of",
 * "photo" are skipped; no syntax) fused by reciprocal rank fusion:
 *   score = (1 - w) / (60 + rank_semantic) + w / (60 + rank_keyword)
 * (ranks from 1; a list an image is absent from adds 0; w =
 * params->keyword_weight).  Each list contributes its best max(100,
 * 2 * (offset + k)) images.  *total = images passing the filters (and
 * min_score).  With a min_score (> -1.5), only images of the thresholded
 * semantic list are returned, so every result has cosine >= min_score. */
cdx_result cdx_library_search_hybrid(cdx_library *lib, const float *vector, const char *text,
                                     const cdx_search_params *params,
                                     cdx_hit *hits, size_t *n_hits, uint64_t *total);

/* A combined query: out = normalise(sum_i weights[i] * normalise(vecs[i]))
 * for n rows of dim floats (row-major).  Weights are finite, non-zero and
 * within [-10, 10]; a part of norm 0 or a sum of norm ~0 (parts that cancel
 * out) is CDX_ERR_INVALID_ARG.  n <= 64. */
cdx_result cdx_query_combine(const float *vecs, const float *weights, int n, int dim,
                             float *out);

/* Metadata from a source (a feed, an import, the API) for one image. */
typedef struct cdx_source_meta {
    const char *title;             /* NULL = "" */
    const char *description;       /* NULL = "" */
    const char *const *tags;       /* n_tags strings (trimmed, deduplicated) */
    size_t n_tags;
} cdx_source_meta;

/* Replace the source metadata of image id (writable handle; UTF-8; title
 * and description at most 64 KiB, tags at most 256 bytes each and 16 KiB
 * in all).  The full-text index follows in the same transaction. */
cdx_result cdx_library_set_source_meta(cdx_library *lib, int64_t id, const cdx_source_meta *meta);

/* All text known of one image (malloc'd strings, free with
 * cdx_image_text_free).  tags and keywords are lists with one entry per
 * line; embedded holds the embedded title/description/artist/places. */
typedef struct cdx_image_text {
    char *title, *description, *tags;     /* source metadata */
    char *embedded, *keywords;            /* read from the file */
    char *ocr;                            /* read from the pixels */
} cdx_image_text;

cdx_result cdx_library_get_text(cdx_library *lib, int64_t id, cdx_image_text *out);
void cdx_image_text_free(cdx_image_text *t);

/* ---------------------------------------------------------------- OCR
 * Text inside images (docs/search.md): Tesseract reads images whose grey
 * copy passes a cheap text-likeness test; the words go into the catalog's
 * ocr_text and the full-text index (`ocr` column). */

/* Check a language list ("eng", "eng+deu"; NULL = "eng") against the
 * installed Tesseract data: CDX_ERR_NOT_FOUND naming the missing language
 * and the installed ones, CDX_ERR_INVALID_ARG for a malformed list. */
cdx_result cdx_ocr_check_langs(const char *langs);

typedef struct cdx_ocr_stats {
    uint64_t todo;           /* contents to read in this run */
    uint64_t read;           /* read by Tesseract */
    uint64_t with_text;      /*   of which some text was found */
    uint64_t skipped;        /* no text-like regions: not read */
    uint64_t failed;         /* unreadable, gone, changed since indexing
                                (index again), or URLs / imported vectors */
    double seconds;
} cdx_ocr_stats;

typedef struct cdx_ocr_params {
    const char *lang;        /* NULL = "eng" */
    int force;               /* read again what was read with lang before */
    int n_threads;           /* reading threads, one Tesseract each (0 = cores) */
    cdx_image_params image;  /* decoding limits */
    void (*progress)(void *user, const cdx_ocr_stats *st);   /* ~every 0.5 s and
                                                                at the end */
    void *user;
    cdx_cancel_flag *cancel; /* stop soon; what was read is committed */
} cdx_ocr_params;

cdx_ocr_params cdx_ocr_default_params(void);
/* Read the catalogued image files not yet read with params->lang (every one
 * with force) and store their text, in batches of one transaction each
 * (writable handle).  A file whose bytes no longer match the catalogued
 * content is not read (failed).  Running it again resumes. */
cdx_result cdx_library_ocr(cdx_library *lib, const cdx_ocr_params *params, cdx_ocr_stats *stats);
/* ---------------------------------------------------------------- near-duplicates
 * (docs/search.md "Near-duplicates").  Candidates: the k nearest images of
 * every image by embedding similarity (one cdx_library_search_vectors call
 * per batch of images, so whatever that call scans with - the exact scan,
 * int8 codes, an approximate index - serves it); confirmed by the perceptual hashes made
 * at indexing time (cdx_image_meta.phash) so unrelated look-alikes are not
 * merged; confirmed pairs are joined into groups (union-find). */

#define CDX_DUPES_MAX_NEIGHBOURS 100

typedef struct cdx_dupes_params {
    float threshold;          /* candidates: cosine similarity >= threshold,
                                 0 < threshold <= 1 (default 0.9) */
    int max_distance;         /* confirmed: pHash Hamming distance <= this,
                                 0..32 (default 12) */
    size_t neighbours;        /* candidates per image, 1..100 (default 8) */
    int scan;                 /* candidate scan (default CDX_SCAN_F32: it
                                 scores a whole batch of images per pass over
                                 the rows; the compressed scans run one query
                                 per pass, ~17x slower here, docs/search.md) */
    int rehash;               /* 1: hash images that have no hash (writable
                                 handles; default); 2: re-hash every image */
    void (*progress)(void *user, const char *stage, uint64_t done, uint64_t total);
    void *user;
    cdx_cancel_flag *cancel;  /* non-zero: stop soon (out->cancelled) */
} cdx_dupes_params;

cdx_dupes_params cdx_dupes_default_params(void);

typedef struct cdx_dupe {
    int64_t id;
    int keeper;               /* 1 for the group's suggested keeper */
    int64_t via;              /* the image it was matched with (its most
                                 similar confirmed pair) */
    float similarity;         /* cosine similarity with via */
    int distance;             /* pHash bits differing from via; -1 when both
                                 are the same content (identical bytes) */
} cdx_dupe;

typedef struct cdx_dupe_group {
    size_t first, count;      /* members[first .. first + count) */
    int64_t keeper;           /* most pixels, then oldest (EXIF date, else
                                 mtime), then smallest id */
} cdx_dupe_group;

typedef struct cdx_dupes {
    cdx_dupe_group *groups;
    size_t n_groups;
    cdx_dupe *members;
    size_t n_members;
    uint64_t images;          /* images examined */
    uint64_t unhashed;        /* images without a hash (URLs, imported
                                 vectors, unreadable files): grouped only
                                 with identical contents */
    uint64_t hashed;          /* hashes computed by this run */
    uint64_t candidates;      /* candidate pairs above the threshold */
    uint64_t rejected;        /* candidates the hashes did not confirm */
    double seconds;
    int cancelled;            /* params->cancel stopped the search early:
                                 the groups cover the images searched */
} cdx_dupes;

/* *out: malloc'd, free with cdx_dupes_free.  Bad parameters are
 * CDX_ERR_INVALID_ARG with a message naming the allowed range. */
cdx_result cdx_library_dupes(cdx_library *lib, const cdx_dupes_params *params, cdx_dupes **out);
void cdx_dupes_free(cdx_dupes *d);
/* Source records from the fleet (docs/fleet.md): per catalogued path its
 * title, description and tags (full-text indexed, as set_source_meta), the
 * whole source record as JSON text (owner, licence, page, geo; at most
 * 256 KiB) and, for contents whose bytes are not stored (URLs), a
 * thumbnail JPEG (at most 1 MiB) that /thumb serves.  All records in one
 * transaction; a path not catalogued is skipped (*applied counts the rest).
 * A record with neither text nor source_json only stores its thumbnail.
 * Any invalid record fails the call before anything is written. */
typedef struct cdx_source_record {
    const char *path;              /* catalogued path or URL */
    cdx_source_meta meta;
    const char *source_json;       /* NULL: none (a stored one is removed) */
    const void *thumbnail;         /* NULL: keep what is stored */
    size_t thumbnail_len;
    const char *embedded_text;     /* the file's own EXIF/IPTC/XMP text (one
                                      item per line) and keywords (one per
                                      line), as `index` reads them, for the
                                      full-text index; both NULL: keep */
    const char *embedded_keywords;
} cdx_source_record;

cdx_result cdx_library_set_sources(cdx_library *lib, const cdx_source_record *recs, size_t n, size_t *applied);
/* The source record of image id as JSON text (malloc'd), *json = NULL when
 * it has none. */
cdx_result cdx_library_get_source(cdx_library *lib, int64_t id, char **json);
/* The stored thumbnail JPEG of image id (malloc'd); CDX_ERR_NOT_FOUND when
 * none was stored (files: the server makes one from the file). */
cdx_result cdx_library_get_thumbnail(cdx_library *lib, int64_t id, void **jpeg, size_t *len);

/* ---------------------------------------------------------------- check */

/* State of the approximate index DIR/ann.cdxi: derived data, rebuilt
 * whenever it is not usable (docs/search.md). */
typedef enum cdx_ann_state {
    CDX_ANN_UNUSED = 0,    /* library below ann_min_rows: searches are exact */
    CDX_ANN_OK,            /* intact, covers every vector */
    CDX_ANN_MISSING,
    CDX_ANN_STALE,         /* made for another vector file (compaction) or
                              trained for far fewer vectors */
    CDX_ANN_DAMAGED,       /* checksum failure or torn tail */
    CDX_ANN_BEHIND         /* intact, vectors were added since */
} cdx_ann_state;

const char *cdx_ann_state_str(cdx_ann_state s);

typedef struct cdx_check_report {
    uint64_t images, vectors;
    uint64_t problems;         /* 0 = consistent */
    /* the approximate index: the state check found, whether check rebuilt
     * or extended it (not a problem of the library), the vectors it covers
     * afterwards; a failed rebuild counts as a problem */
    cdx_ann_state ann_state;
    int ann_rebuilt;
    uint64_t ann_rows;
} cdx_check_report;

/* Verify catalog and vectors agree (every checksum, every reference);
 * each problem is passed to fn (may be NULL) as one line of text. */
cdx_result cdx_library_check(cdx_library *lib, void (*fn)(void *user, const char *problem),
                             void *user, cdx_check_report *report);

/* ================================================================ fleet
 * Streaming ingestion through NATS JetStream (docs/fleet.md): producers
 * publish work records, workers embed them, `index --from` commits the
 * results into a library.  A pipeline is named by nats://HOST:PORT/NAME;
 * its streams, consumers and key-value bucket are created on first use. */

typedef struct cdx_fleet cdx_fleet;

typedef struct cdx_fleet_params {
    int timeout_ms;          /* connect and request timeout (default 5000) */
} cdx_fleet_params;

cdx_fleet_params cdx_fleet_default_params(void);
/* Connect and create (or find) the pipeline's streams and bucket. */
cdx_result cdx_fleet_open(const char *url, const cdx_fleet_params *params, cdx_fleet **out);
void cdx_fleet_close(cdx_fleet *f);

typedef struct cdx_feed_stats {
    uint64_t published;      /* new work records */
    uint64_t duplicates;     /* record ids the stream had already (dedup) */
    uint64_t skipped;        /* not images by name (folders only) */
} cdx_feed_stats;

/* One work record per image file under dir (recursive; record id
 * "file:<sha256 of the absolute path, 32 hex>", message id that plus
 * "@<size>.<mtime>"), or per URL of a text file (one per line, '#'
 * comments; id "url:<...>" = message id).  Republishing is deduplicated by
 * the broker (within its one-hour window). */
cdx_result cdx_fleet_feed_folder(cdx_fleet *f, const char *dir, cdx_feed_stats *stats);
cdx_result cdx_fleet_feed_urls(cdx_fleet *f, const char *file, cdx_feed_stats *stats);
/* feed_folder, then keep publishing files written or moved into dir (and
 * folders created under it) until *cancel (inotify; the message id of a
 * file includes its size and mtime, so a changed file is published again). */
cdx_result cdx_fleet_feed_watch(cdx_fleet *f, const char *dir, cdx_cancel_flag *cancel, cdx_feed_stats *stats);

/* feed flickr: page through flickr.photos.search and publish one work
 * record per photo (image URL + title, description, tags, owner, licence,
 * date taken, page, geo; id and message id "flickr:<photo id>").  Calls are
 * spaced to stay within rate_per_hour; failures (no response, HTTP 429/5xx,
 * transient Flickr errors, malformed pages) are retried with exponential
 * backoff, then the feed stops with an error naming the page.  Photos
 * without an id or image URL are skipped (stats->skipped). */
typedef struct cdx_flickr_params {
    const char *api_key;     /* required */
    const char *text;        /* exactly one of text, tags (comma-separated, */
    const char *tags;        /*   any may match) and user_id */
    const char *user_id;
    int64_t since;           /* min_upload_date (unix s); 0 = none */
    uint64_t max;            /* photos to publish (new + duplicates); 0 = all */
    int per_page;            /* 1..500 (default 100) */
    double rate_per_hour;    /* API calls per hour, retries included (3600) */
    int max_retries;         /* per page (default 6) */
    int backoff_ms;          /* first retry delay, doubled each time (1000) */
    const char *endpoint;    /* NULL: $CLIPDEX_FLICKR_ENDPOINT or Flickr's */
    void (*log)(void *user, const char *line);   /* retries and skipped photos */
    void *user;
    cdx_cancel_flag *cancel;
} cdx_flickr_params;

cdx_flickr_params cdx_flickr_default_params(void);
cdx_result cdx_fleet_feed_flickr(cdx_fleet *f, const cdx_flickr_params *params, cdx_feed_stats *stats);

typedef struct cdx_worker_stats {
    uint64_t fetched;        /* work messages received (redeliveries too) */
    uint64_t done;           /* results published and acked */
    uint64_t dead;           /* dead-lettered */
    uint64_t retried;        /* transient failures handed back (nak) */
    /* where the time went (wall seconds, bench/fleet_bench.sh prints them):
     * set-up (model check, consumer, inference context), waiting for work,
     * reading and decoding, embedding, publishing results and acking */
    double setup_s, wait_s, decode_s, embed_s, publish_s;
} cdx_worker_stats;

typedef struct cdx_worker_params {
    int n_threads;           /* decode threads and inference threads (default 1) */
    int batch;               /* messages per fetch = embedding micro-batch (32) */
    int max_wait_ms;         /* longest wait to fill a batch (default 1000) */
    int ack_wait_ms;         /* when creating the work consumer (default 30000) */
    int max_deliver;         /* deliveries before a transient failure is
                                dead-lettered (default 5) */
    uint64_t max_bytes;      /* larger images are dead-lettered (64 MiB) */
    long url_timeout_s;      /* per download (default 60) */
    void (*log)(void *user, const char *line);   /* one line per dead letter
                                                    and retry; may be NULL */
    void *user;
    cdx_cancel_flag *cancel; /* set to stop after the current batch */
    cdx_precision precision; /* of the towers (default fp32; auto resolves on
                                this CPU); every worker of a pipeline must
                                embed at the same one: the first records it
                                (CDX_ERR_MISMATCH otherwise); results carry it
                                and the library records it (docs/fleet.md) */
} cdx_worker_params;

cdx_worker_params cdx_worker_default_params(void);
/* Run a worker until *cancel: the model's fingerprint must equal the
 * pipeline's (the first worker records it; CDX_ERR_MISMATCH otherwise). */
cdx_result cdx_fleet_work(cdx_fleet *f, const cdx_model *model, const cdx_worker_params *params,
                          cdx_worker_stats *stats);

typedef struct cdx_fleet_index_params {
    int follow;              /* keep consuming; else stop once the work and
                                results streams are drained */
    int batch;               /* results per commit (default 256) */
    int max_wait_ms;         /* longest wait to fill a batch (default 1000) */
    const char *consumer;    /* durable consumer name (default "library"; one
                                per library fed from the pipeline) */
    int ack_wait_ms;         /* when creating that consumer: how soon the
                                batch of a killed run comes back (30000) */
    void (*progress)(void *user, const cdx_import_stats *st);   /* per commit */
    void *user;
    cdx_cancel_flag *cancel;
    int replica;             /* a read replica: also apply the pipeline's
                                deletions (consumer of the same name on the
                                deletions stream); removed counted in *deleted */
    uint64_t *deleted;       /* may be NULL */
    uint64_t *published;     /* owner (not replica): records of its outbox
                                published, see cdx_fleet_publish_outbox (may be NULL) */
} cdx_fleet_index_params;

cdx_fleet_index_params cdx_fleet_index_default_params(void);
/* Commit the results stream into lib (writable) in batches, acking each
 * batch only after its commit; redelivered results change nothing. */
cdx_result cdx_fleet_index(cdx_fleet *f, cdx_library *lib, const cdx_fleet_index_params *params,
                           cdx_import_stats *stats);

/* ---------------------------------------------------------------- reindex (model lifecycle)
 * Move a library to another model (docs/models.md "Reindex and rollback").
 * Every content is embedded again with the new model into a NEW vector file
 * while the current one keeps serving (no writer lock is held meanwhile);
 * rows already embedded by an interrupted run are kept (the run resumes).
 * The switch takes the writer lock and is one catalog transaction: slots,
 * vector file, model version, model directory and dimension together.  The
 * previous vector file and model reference are kept for a rollback until
 * the next reindex or cdx_library_drop_previous(). */
typedef struct cdx_reindex_params {
    const char *model_dir;      /* the new model's directory (required) */
    const char *model_name;     /* its registry name, shown by info (NULL: none) */
    int batch_size;             /* images per encode call (default 16) */
    int n_threads;              /* inference threads (0 = all cores) */
    int drop_missing;           /* images that cannot be read again (file gone,
                                   changed or undecodable) are removed from the
                                   library at the switch; 0: the switch is
                                   refused while there are any */
    int no_switch;              /* embed only (resumable); switch later */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *user;
    cdx_cancel_flag *cancel;    /* non-zero: stop after the current batch */
} cdx_reindex_params;

cdx_reindex_params cdx_reindex_default_params(void);

typedef struct cdx_reindex_report {
    uint64_t contents;          /* distinct contents of the library */
    uint64_t resumed;           /* rows found from an interrupted run */
    uint64_t embedded;          /* embedded by this call */
    uint64_t missing;           /* could not be read (dropped with drop_missing) */
    char first_missing[1024];   /* "path: reason" of the first one */
    int switched;               /* the library now uses the new model */
    double seconds;
} cdx_reindex_report;

cdx_result cdx_library_reindex(const char *dir, const cdx_reindex_params *params,
                               cdx_reindex_report *report);
/* Switch back to the previous vector file and model (one transaction; the
 * set switched away from becomes the previous one, so a second rollback
 * switches forward again).  Images added since the switch have no vector
 * in the previous set: refused (CDX_ERR_MISMATCH) unless force, which
 * removes them; *removed (may be NULL) receives their count. */
cdx_result cdx_library_rollback(const char *dir, int force, uint64_t *removed);
/* Forget the previous set: its vector file is deleted. */
cdx_result cdx_library_drop_previous(const char *dir);
/* A read-only handle follows a switch made by another process: when the
 * catalog names another model version, load that model (same dimension;
 * CDX_ERR_MISMATCH asks to reopen otherwise) and use it for new queries.
 * Cheap when nothing changed (one catalog version read).  *changed (may be
 * NULL) = 1 when it switched.  Writable handles: nothing to do. */
cdx_result cdx_library_sync_model(cdx_library *lib, int *changed);
/* The registry name recorded with the library's model ("" when none). */
cdx_result cdx_library_model_name(cdx_library *lib, char *out, size_t cap);
/* A writable handle (a writable server's) reindexes, rolls back or drops
 * the previous set itself: the same steps and crash safety as above, the
 * handle's writer lock covers the switch (images it adds meanwhile are
 * embedded again before it), and its queries move to the new model at the
 * switch.  The dimension cannot change (CDX_ERR_UNSUPPORTED: use
 * cdx_library_reindex with the handle closed). */
cdx_result cdx_library_reindex_handle(cdx_library *lib, const cdx_reindex_params *params,
                                      cdx_reindex_report *report);
cdx_result cdx_library_rollback_handle(cdx_library *lib, int force, uint64_t *removed);
cdx_result cdx_library_drop_previous_handle(cdx_library *lib);

/* Pins: a query pins the handle's current model generation (the model and
 * its inference contexts), embeds through the pin and searches with
 * cdx_search_params.model_fingerprint = cdx_library_pin_fingerprint(), so
 * its vectors and the set it searches come from one model even when a
 * switch happens meanwhile (the search then fails with CDX_ERR_MISMATCH:
 * release, take again, embed again).  A switch drops the handle's reference
 * to the old generation; the last unpin frees it.  Release every pin
 * before cdx_library_close().  The plain cdx_library_embed_* calls pin
 * for the length of the call. */
typedef struct cdx_library_pin cdx_library_pin;
cdx_result cdx_library_pin_take(cdx_library *lib, cdx_library_pin **out);
void cdx_library_pin_release(cdx_library_pin *pin);   /* NULL is fine */
const char *cdx_library_pin_fingerprint(const cdx_library_pin *pin);
const cdx_model *cdx_library_pin_model(const cdx_library_pin *pin);
cdx_result cdx_library_pin_embed_texts(cdx_library_pin *pin, const char *const *texts, size_t n,
                                       float *out);
cdx_result cdx_library_pin_embed_image_buffers(cdx_library_pin *pin, const void *const *data,
                                               const size_t *len, size_t n, float *out,
                                               cdx_result *results);
/* Model generations and vector files this handle keeps alive (the current
 * ones plus those pinned by queries in flight): bounded whatever the
 * number of switches followed. */
void cdx_library_live_sets(cdx_library *lib, int *models, int *vector_files);
/* The owning library removed path (whose content was sha256, 64 hex):
 * publish it to the pipeline's deletions stream (message id from path and
 * sha256, so republishing is deduplicated).  Replicas remove the path
 * only while it still has that content (a newer content is kept). */
cdx_result cdx_fleet_publish_deletion(cdx_fleet *f, const char *path, const char *sha256);

/* The pipeline a library is fed from (DIR/pipeline, set by `index --from`
 * and `serve --ingest`): removals from it are published to the pipeline's
 * deletions for its replicas.  get: url[0] = '\0' when none; cap >= 600. */
cdx_result cdx_library_set_pipeline(cdx_library *lib, const char *url);
cdx_result cdx_library_get_pipeline(cdx_library *lib, char *url, size_t cap);
/* The owner's outbox (docs/fleet.md "Deletions"): a library with a
 * pipeline records every change of its images (added, removed, moved,
 * content replaced: by index, --prune, the watchers, rm, DELETE, uploads,
 * reindex --drop-missing) in its catalog, in the transaction that makes
 * it, so a crash loses none.  cdx_fleet_publish_outbox publishes the
 * recorded changes in order to the pipeline's deletions stream (additions
 * with their vectors, so a replica gets what the owner indexed itself)
 * and forgets them once the broker has them; *published (may be NULL)
 * counts the records sent.  Republishing after a crash is deduplicated.
 * The consumer's own commits are muted (replicas read the same results):
 * cdx_library_outbox_mute(1) stops recording for the calling thread
 * (`rm --no-publish`), 0 resumes.  pending: changes not yet published. */
cdx_result cdx_fleet_publish_outbox(cdx_fleet *f, cdx_library *lib, uint64_t *published);
void cdx_library_outbox_mute(int on);
cdx_result cdx_library_outbox_pending(cdx_library *lib, uint64_t *n);
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CLIPDEX_H */
