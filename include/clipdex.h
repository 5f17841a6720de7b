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

/* ---------------------------------------------------------------- model cache: lookup
 * (added by the fetch module for `clipdex model path` and `clipdex model list`;
 * NULL string fields of cdx_fetch_params mean "the default" everywhere.) */

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
    uint64_t bytes;             /* on-disk size of the library directory */
    int dim;                    /* embedding dimension */
    char model_fingerprint[65];
    char model_dir[4096];       /* model directory recorded at init */
} cdx_library_info;

cdx_result cdx_library_get_info(cdx_library *lib, cdx_library_info *info);

/* One catalogued image (a path or URL; several may share one content). */
typedef struct cdx_image_record {
    int64_t id;
    char path[4096];       /* absolute path, or URL */
    char sha256[65];       /* content hash (hex) */
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
} cdx_index_stats;

typedef enum cdx_index_event_kind {
    CDX_INDEX_EVENT_ADDED = 0,   /* path, id */
    CDX_INDEX_EVENT_MOVED,       /* path (new), id */
    CDX_INDEX_EVENT_DUPLICATE,   /* path, id */
    CDX_INDEX_EVENT_FAILED,      /* path, reason */
    CDX_INDEX_EVENT_REMOVED,     /* path, id */
    CDX_INDEX_EVENT_PROGRESS     /* stats only; about every 0.5 s */
} cdx_index_event_kind;

typedef struct cdx_index_event {
    cdx_index_event_kind kind;
    const char *path;      /* may be NULL for PROGRESS */
    const char *reason;    /* FAILED only */
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
    volatile int *cancel;       /* set non-zero to stop soon (commits first) */
} cdx_index_params;

cdx_index_params cdx_index_default_params(void);

/* Index files and folders (recursive; symlink loops safe) and URLs.  Bad
 * files never stop the run: they are reported (FAILED event) and counted. */
cdx_result cdx_library_index(cdx_library *lib, const char *const *paths, int n_paths,
                             const cdx_index_params *params, cdx_index_stats *stats);

/* Store image bytes under the library (DIR/images/<sha256>.<ext>), index
 * them and return the id (an existing id when that content is known). */
cdx_result cdx_library_add_buffer(cdx_library *lib, const void *data, size_t len,
                                  const cdx_image_params *image, int64_t *id);

/* ---------------------------------------------------------------- search */

typedef struct cdx_search_params {
    size_t k;                  /* results wanted (default 10, max 10000) */
    size_t offset;             /* skip this many (pagination) */
    float min_score;           /* keep scores >= min_score (default -2: all) */
    const char *path_prefix;   /* only paths starting with this, or NULL */
    int64_t after, before;     /* date range (unix s; EXIF date else mtime);
                                  0 = unbounded */
    const char *format;        /* e.g. "jpeg", or NULL */
    /* (fts branch) */
    const char *tag;           /* only images with this tag (source metadata)
                                  or keyword (embedded metadata), ASCII
                                  case-insensitive; NULL = any */
    float keyword_weight;      /* hybrid search: weight w of the keyword
                                  ranking in the fusion, 0..1 (default 0.5) */
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

/* Embeddings with the library's model (thread-safe; L2-normalised; out has
 * dim floats).  The image variants decode with default image params. */
cdx_result cdx_library_embed_text(cdx_library *lib, const char *text, float *out);
cdx_result cdx_library_embed_image_file(cdx_library *lib, const char *path, float *out);
cdx_result cdx_library_embed_image_buffer(cdx_library *lib, const void *data,
                                          size_t len, float *out);
/* The stored vector of a catalogued image (query "like this id"). */
cdx_result cdx_library_get_vector(cdx_library *lib, int64_t id, float *out);

/* -------------------------------------------- keyword, hybrid and combined
 * search (added by the fts branch; docs/search.md).  Every image has a row in
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

/* ---------------------------------------------------------------- check */

typedef struct cdx_check_report {
    uint64_t images, vectors;
    uint64_t problems;         /* 0 = consistent */
} cdx_check_report;

/* Verify catalog and vectors agree (every checksum, every reference);
 * each problem is passed to fn (may be NULL) as one line of text. */
cdx_result cdx_library_check(cdx_library *lib, void (*fn)(void *user, const char *problem),
                             void *user, cdx_check_report *report);

#ifdef __cplusplus
}
#endif

#endif /* CLIPDEX_H */
