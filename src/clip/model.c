/*
 * model.c - loading a Hugging Face CLIP model directory into struct cdx_model
 * (model.h), plus the small public model accessors.
 *
 * Steps at cdx_model_load(): config.json -> preprocessor_config.json
 * (optional) -> vocab.json + merges.txt (tokenizer) -> memory-map the weight
 * file -> fingerprint (from the engine cache when the file's identity is
 * unchanged, prepared.h) -> a dry run of both tower loaders that checks every
 * required tensor's HF name, dtype and exact shape (from config) without
 * touching its data -> logit_scale.
 *
 * Towers are prepared lazily by cdx_model_need(), once each, under the
 * model's tower_mu: the prepared file from the engine cache is mapped when
 * valid; otherwise the tower is built into a scratch model - every tensor
 * bound as F32 (an F32 tensor whose bytes are 64-byte aligned in the map is
 * used in place, anything else is converted into an aligned buffer; q/k/v
 * fused into one [3w, w] matrix), Linear weights packed (the packed copy
 * replaces the plain one) - saved as the prepared file and mapped from
 * there, or, when it cannot be saved, adopted by the model as it is.  The
 * weight file is unmapped once both towers are ready and none uses it in
 * place.
 *
 * Invariants: on failure nothing leaks and *out is NULL; every error names the
 * file and the tensor or field.  Extra tensors in the file are ignored.  A
 * tower is never built from a weight file whose identity changed since the
 * fingerprint was taken.
 *
 * Workload: once per process.  Cold (nothing cached): SHA-256 of the weight
 * file, F16/BF16 upcast and packing of each tower used, linear in file size.
 * Warm: configs, tokenizer, header, and one checksummed mmap per tower used.
 */
#include "clip/model.h"
#include "clip/model_mem.h"
#include "clip/prepared.h"
#include "clip/safetensors.h"
#include "clip/tokenizer.h"
#include "common/error.h"
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MAX_JSON_BYTES (4u << 20)   /* config files are a few KB */

typedef struct loader {
    cdx_model *m;
    const cdx_st_file *st;
    const char *path;   /* weight file path, for messages */
    int n_in_place;     /* tensors used directly from the map */
    int dry;            /* check names, dtypes and shapes only; bind nothing */
} loader;

cdx_model_params cdx_model_default_params(void)
{
    cdx_model_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* The tensor `name`, checked to exist with a float dtype and exactly `shape`. */
static cdx_result get_tensor(loader *L, const char *name, int ndim, const int64_t *shape,
                             const cdx_st_tensor **out)
{
    const cdx_st_tensor *t = cdx_st_find(L->st, name);
    if (!t) return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s' is missing", L->path, name);
    if (t->dtype != CDX_ST_F32 && t->dtype != CDX_ST_F16 && t->dtype != CDX_ST_BF16)
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16",
                         L->path, name, cdx_st_dtype_name(t->dtype));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[160], want[160];
        format_shape(got, sizeof got, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", L->path, name,
                         got, want);
    }
    *out = t;
    return CDX_OK;
}

/* Bind `name` to *out as F32: in place when possible, else an owned copy. */
static cdx_result load_f32(loader *L, const char *name, int ndim, const int64_t *shape,
                           const float **out)
{
    const cdx_st_tensor *t;
    cdx_result r = get_tensor(L, name, ndim, shape, &t);
    if (r || L->dry) return r;
    if (t->dtype == CDX_ST_F32 && ((uintptr_t)t->data & 63) == 0) {
        *out = (const float *)(const void *)t->data;
        L->n_in_place++;
        return CDX_OK;
    }
    float *buf = cdx_model_alloc(L->m, t->numel);
    if (!buf) return cdx_error(CDX_ERR_NOMEM, "%s: out of memory for tensor '%s'", L->path, name);
    r = cdx_st_to_f32(L->st, t, buf);
    *out = buf;
    return r;
}

/* Convert `name` into dst (a slice of a fused buffer). */
static cdx_result load_into(loader *L, const char *name, int ndim, const int64_t *shape, float *dst)
{
    const cdx_st_tensor *t;
    cdx_result r = get_tensor(L, name, ndim, shape, &t);
    return r || L->dry ? r : cdx_st_to_f32(L->st, t, dst);
}

/* Tensor names are built from our own prefixes (< 100 bytes), never from
 * input, so the 256-byte buffers cannot truncate. */
static void tname(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tname(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((const int64_t[]){__VA_ARGS__})

static cdx_result load_layernorm(loader *L, const char *prefix, int dim, cdx_layernorm *ln)
{
    char name[256];
    cdx_result r;
    tname(name, sizeof name, "%s.weight", prefix);
    if ((r = load_f32(L, name, SHAPE(dim), &ln->g))) return r;
    tname(name, sizeof name, "%s.bias", prefix);
    if ((r = load_f32(L, name, SHAPE(dim), &ln->b))) return r;
    ln->dim = dim;
    return CDX_OK;
}

static cdx_result load_linear(loader *L, const char *prefix, int in, int out, int has_bias,
                              cdx_linear *lin)
{
    char name[256];
    cdx_result r;
    tname(name, sizeof name, "%s.weight", prefix);
    if ((r = load_f32(L, name, SHAPE(out, in), &lin->w))) return r;
    lin->b = NULL;
    if (has_bias) {
        tname(name, sizeof name, "%s.bias", prefix);
        if ((r = load_f32(L, name, SHAPE(out), &lin->b))) return r;
    }
    lin->in = in;
    lin->out = out;
    return CDX_OK;
}

/* q_proj, k_proj, v_proj -> one [3w, w] weight and [3w] bias (rows q, k, v). */
static cdx_result load_qkv(loader *L, const char *prefix, int w, cdx_linear *lin)
{
    static const char *const part[3] = {"q_proj", "k_proj", "v_proj"};
    size_t ww = (size_t)w * (size_t)w;   /* w <= 16384 (config.c): no overflow */
    float *W = NULL, *B = NULL;
    if (!L->dry && (!(W = cdx_model_alloc(L->m, 3 * ww)) || !(B = cdx_model_alloc(L->m, 3 * (size_t)w))))
        return cdx_error(CDX_ERR_NOMEM, "%s: out of memory fusing %s q/k/v", L->path, prefix);
    char name[256];
    cdx_result r;
    for (int i = 0; i < 3; i++) {
        tname(name, sizeof name, "%s.self_attn.%s.weight", prefix, part[i]);
        if ((r = load_into(L, name, SHAPE(w, w), W ? W + (size_t)i * ww : NULL))) return r;
        tname(name, sizeof name, "%s.self_attn.%s.bias", prefix, part[i]);
        if ((r = load_into(L, name, SHAPE(w), B ? B + (size_t)i * (size_t)w : NULL))) return r;
    }
    *lin = (cdx_linear){.w = W, .b = B, .in = w, .out = 3 * w};
    return CDX_OK;
}

static cdx_result load_blocks(loader *L, const char *tower, const cdx_tower_config *c,
                              cdx_block **out)
{
    cdx_block *blocks = calloc((size_t)c->layers, sizeof *blocks);
    if (!blocks) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    *out = blocks;   /* owned by the model from here on (freed by cdx_model_free) */
    int w = c->width;
    for (int i = 0; i < c->layers; i++) {
        char pre[160], name[256];
        cdx_block *b = &blocks[i];
        cdx_result r;
        tname(pre, sizeof pre, "%s.encoder.layers.%d", tower, i);
        tname(name, sizeof name, "%s.layer_norm1", pre);
        if ((r = load_layernorm(L, name, w, &b->ln1))) return r;
        tname(name, sizeof name, "%s.layer_norm2", pre);
        if ((r = load_layernorm(L, name, w, &b->ln2))) return r;
        if ((r = load_qkv(L, pre, w, &b->qkv))) return r;
        tname(name, sizeof name, "%s.self_attn.out_proj", pre);
        if ((r = load_linear(L, name, w, w, 1, &b->out))) return r;
        tname(name, sizeof name, "%s.mlp.fc1", pre);
        if ((r = load_linear(L, name, w, c->mlp, 1, &b->fc1))) return r;
        tname(name, sizeof name, "%s.mlp.fc2", pre);
        if ((r = load_linear(L, name, c->mlp, w, 1, &b->fc2))) return r;
    }
    return CDX_OK;
}

/* Tower sizes from the config (what cdx_ctx_new needs; no weights). */
static void set_geometry(cdx_model *m)
{
    const cdx_clip_config *c = &m->cfg;
    cdx_vision_tower *v = &m->vision;
    v->cfg = c->vision;
    v->image_size = c->image_size;
    v->patch_size = c->patch_size;
    v->grid = c->image_size / c->patch_size;
    v->n_tokens = v->grid * v->grid + 1;   /* grid <= 256 (config.c) */
    cdx_text_tower *t = &m->text;
    t->cfg = c->text;
    t->vocab_size = c->vocab_size;
    t->context_length = c->context_length;
}

static cdx_result load_vision(loader *L)
{
    cdx_model *m = L->m;
    cdx_vision_tower *v = &m->vision;
    const cdx_clip_config *c = &m->cfg;
    int w = c->vision.width, p = c->patch_size;
    set_geometry(m);
    cdx_result r;
    if ((r = load_f32(L, "vision_model.embeddings.patch_embedding.weight", SHAPE(w, 3, p, p), &v->patch_w)) ||
        (r = load_f32(L, "vision_model.embeddings.class_embedding", SHAPE(w), &v->class_emb)) ||
        (r = load_f32(L, "vision_model.embeddings.position_embedding.weight", SHAPE(v->n_tokens, w),
                      &v->pos_emb)) ||
        (r = load_layernorm(L, "vision_model.pre_layrnorm", w, &v->ln_pre)) ||
        (r = load_blocks(L, "vision_model", &c->vision, &v->blocks)) ||
        (r = load_layernorm(L, "vision_model.post_layernorm", w, &v->ln_post)) ||
        (r = load_linear(L, "visual_projection", w, c->projection_dim, 0, &v->proj)))
        return r;
    return CDX_OK;
}

static cdx_result load_text(loader *L)
{
    cdx_model *m = L->m;
    cdx_text_tower *t = &m->text;
    const cdx_clip_config *c = &m->cfg;
    int w = c->text.width;
    set_geometry(m);
    cdx_result r;
    if ((r = load_f32(L, "text_model.embeddings.token_embedding.weight", SHAPE(c->vocab_size, w),
                      &t->tok_emb)) ||
        (r = load_f32(L, "text_model.embeddings.position_embedding.weight", SHAPE(c->context_length, w),
                      &t->pos_emb)) ||
        (r = load_blocks(L, "text_model", &c->text, &t->blocks)) ||
        (r = load_layernorm(L, "text_model.final_layer_norm", w, &t->ln_final)) ||
        (r = load_linear(L, "text_projection", w, c->projection_dim, 0, &t->proj)))
        return r;
    return CDX_OK;
}

static cdx_result load_logit_scale(loader *L)
{
    /* HF stores a 0-dim tensor; some converters write shape [1]. */
    const cdx_st_tensor *t = cdx_st_find(L->st, "logit_scale");
    int ndim = t && t->ndim == 1 ? 1 : 0;
    cdx_result r = get_tensor(L, "logit_scale", ndim, (const int64_t[]){1}, &t);
    if (r) return r;
    float v;
    if ((r = cdx_st_to_f32(L->st, t, &v))) return r;
    if (!isfinite(v) || fabsf(v) > 100.0f)
        return cdx_error(CDX_ERR_FORMAT, "%s: tensor 'logit_scale' = %g is not a sane log scale", L->path,
                         (double)v);
    L->m->logit_scale = v;
    return CDX_OK;
}

static cdx_dtype model_dtype(const cdx_st_file *st)
{
    /* The dtype of the largest tensor (the token embedding) names the file's
     * precision; checkpoints may keep a few tensors in another float type. */
    const cdx_st_tensor *t = cdx_st_find(st, "text_model.embeddings.token_embedding.weight");
    if (t && t->dtype == CDX_ST_F16) return CDX_DTYPE_F16;
    if (t && t->dtype == CDX_ST_BF16) return CDX_DTYPE_BF16;
    return CDX_DTYPE_F32;
}

/* hex sha256(config.json bytes || weight file bytes) */
static cdx_result fingerprint(const char *cfg, size_t cfg_len, const void *w, size_t w_len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, cfg, cfg_len) && EVP_DigestUpdate(ctx, w, w_len) &&
             EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) return cdx_error(CDX_ERR_INTERNAL, "SHA-256 failed (libcrypto)");
    cdx_hex(md, 32, out);
    return CDX_OK;
}

/* Read dir/name into *buf; a missing optional file yields *buf = NULL. */
static cdx_result read_json(const char *dir, const char *name, int optional, char **buf, size_t *len,
                            char **path_out)
{
    *buf = NULL;
    *len = 0;
    char *path = cdx_path_join(dir, name);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    *path_out = path;
    cdx_result r = cdx_read_file(path, MAX_JSON_BYTES, buf, len);
    if (r == CDX_ERR_NOT_FOUND && optional) {
        cdx_error_clear();
        return CDX_OK;
    }
    return r;
}

static cdx_result load_configs(cdx_model *m, const char *dir, char **cfg_json, size_t *cfg_len)
{
    char *path = NULL, *pre = NULL;
    size_t pre_len = 0;
    cdx_result r = read_json(dir, "config.json", 0, cfg_json, cfg_len, &path);
    if (!r) r = cdx_config_parse(*cfg_json, *cfg_len, path, &m->cfg);
    free(path);
    path = NULL;
    if (!r) r = read_json(dir, "preprocessor_config.json", 1, &pre, &pre_len, &path);
    if (!r) r = cdx_preproc_config_parse(pre, pre_len, path, &m->cfg);
    free(pre);
    free(path);
    return r;
}

static cdx_result load_tokenizer(cdx_model *m, const char *dir)
{
    char *vocab = cdx_path_join(dir, "vocab.json"), *merges = cdx_path_join(dir, "merges.txt");
    cdx_result r = vocab && merges ? cdx_tokenizer_load_hf(vocab, merges, &m->tokenizer)
                                   : cdx_error(CDX_ERR_NOMEM, "out of memory");
    free(vocab);
    free(merges);
    return r;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* m->fingerprint: from the cache when the file is unchanged (unless vr:
 * `model verify` always recomputes and reports what the cache held). */
static cdx_result weights_fingerprint(cdx_model *m, const char *cfg, size_t cfg_len, int same,
                                      cdx_model_verify_report *vr)
{
    char cfg_sha[65];
    cdx_sha256_hex(cfg, cfg_len, cfg_sha);
    if (same && !vr && cdx_fpcache_get(m->wpath, &m->wstat, cfg_sha, m->fingerprint) == CDX_OK) {
        m->fp_cached = 1;
        return CDX_OK;
    }
    if (same && vr && cdx_fpcache_get(m->wpath, &m->wstat, cfg_sha, vr->cached) != CDX_OK)
        vr->cached[0] = '\0';
    double started = wall_now();
    cdx_result r = fingerprint(cfg, cfg_len, m->st.base, m->st.len, m->fingerprint);
    if (!r && same) cdx_fpcache_put(m->wpath, &m->wstat, cfg_sha, m->fingerprint, started);
    if (!r && vr) {
        memcpy(vr->fingerprint, m->fingerprint, sizeof vr->fingerprint);
        vr->cache_was_wrong = vr->cached[0] && strcmp(vr->cached, m->fingerprint) != 0;
    }
    return r;
}

/* Every tensor both towers need exists with a float dtype and its shape. */
static cdx_result check_towers(cdx_model *m)
{
    cdx_model *tmp = cdx_model_new_empty();
    if (!tmp) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    tmp->cfg = m->cfg;
    loader L = {tmp, &m->st, m->wpath, 0, 1};
    cdx_result r = load_vision(&L);
    if (!r) r = load_text(&L);
    cdx_model_free(tmp);
    return r;
}

static cdx_result open_weights(cdx_model *m, const char *cfg_json, size_t cfg_len,
                               cdx_model_verify_report *vr)
{
    struct stat after;
    if (stat(m->wpath, &m->wstat) != 0) memset(&m->wstat, 0, sizeof m->wstat);
    cdx_result r = cdx_st_open(m->wpath, &m->st);
    if (r) return r;
    int same = m->wstat.st_ino && stat(m->wpath, &after) == 0 && same_file(&after, &m->wstat);
    m->dtype = model_dtype(&m->st);
    set_geometry(m);
    loader L = {m, &m->st, m->wpath, 0, 0};
    if ((r = weights_fingerprint(m, cfg_json, cfg_len, same, vr)) || (r = check_towers(m)) ||
        (r = load_logit_scale(&L)))
        return r;
    return CDX_OK;
}

static cdx_result load_model(const char *dir, const cdx_model_params *params,
                             cdx_model_verify_report *vr, cdx_model **out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_model_load: out is NULL");
    *out = NULL;
    if (!dir || !*dir) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_model_load: no model directory given");
    cdx_model_params p = params ? *params : cdx_model_default_params();
    const char *wname = p.weights_file ? p.weights_file : "model.safetensors";
    if (!*wname) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_model_load: empty weights_file");

    cdx_model *m = cdx_model_new_empty();
    char *cfg_json = NULL;
    size_t cfg_len = 0;
    cdx_result r = m && (m->wpath = cdx_path_join(dir, wname)) ? CDX_OK
                                                               : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) r = load_configs(m, dir, &cfg_json, &cfg_len);
    if (!r) r = load_tokenizer(m, dir);
    if (!r) r = open_weights(m, cfg_json, cfg_len, vr);
    free(cfg_json);
    if (r) {
        cdx_model_free(m);
        return r;
    }
    *out = m;
    return CDX_OK;
}

cdx_result cdx_model_load(const char *dir, const cdx_model_params *params, cdx_model **out)
{
    return load_model(dir, params, NULL, out);
}

/* ---------------------------------------------------------------- lazy towers */

static cdx_result build_tower(cdx_model *m, int tower)
{
    const int ti = tower == CDX_TOWER_TEXT ? 0 : 1;
    struct stat now;
    if (!m->st.base) return cdx_error(CDX_ERR_INTERNAL, "model: the weight file is no longer open");
    if (stat(m->wpath, &now) != 0 || !same_file(&now, &m->wstat))
        return cdx_error(CDX_ERR_IO, "%s changed since the model was opened; open the model again",
                         m->wpath);
    cdx_model *s = cdx_model_new_empty();
    if (!s) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    s->cfg = m->cfg;
    loader L = {s, &m->st, m->wpath, 0, 0};
    cdx_result r = tower == CDX_TOWER_TEXT ? load_text(&L) : load_vision(&L);
    if (!r) r = cdx_model_pack_tower(s, tower);
    /* the file's pages were only read to convert: let them go (a private,
     * unwritten file mapping re-reads them if a tensor is used in place) */
    if (m->st.map) madvise(m->st.map, m->st.map_len, MADV_DONTNEED);
    if (!r && cdx_prep_save(s, tower, m->fingerprint) == CDX_OK && cdx_prep_load(m, tower) == CDX_OK) {
        m->source[ti] = CDX_TOWER_SRC_BUILT_SAVED;
    } else if (!r) {
        cdx_error_clear();
        r = cdx_model_take_tower(m, s, tower);
        if (!r && L.n_in_place) m->st_pinned = 1;
        if (!r) m->source[ti] = CDX_TOWER_SRC_BUILT;
    }
    cdx_model_free(s);
    return r;
}

static cdx_result prepare_tower(cdx_model *m, int tower)
{
    if (cdx_prep_load(m, tower) == CDX_OK) {
        m->source[tower == CDX_TOWER_TEXT ? 0 : 1] = CDX_TOWER_SRC_MAPPED;
        return CDX_OK;
    }
    cdx_error_clear();
    return build_tower(m, tower);
}

cdx_result cdx_model_need(const cdx_model *cm, int towers)
{
    if (!cm) return cdx_error(CDX_ERR_INVALID_ARG, "model is NULL");
    towers &= CDX_TOWER_ALL;
    if ((__atomic_load_n(&cm->ready, __ATOMIC_ACQUIRE) & towers) == towers) return CDX_OK;
    cdx_model *m = (cdx_model *)cm;   /* logically const: filled in once, under the lock */
    pthread_mutex_lock(&m->tower_mu);
    cdx_result r = CDX_OK;
    for (int bit = CDX_TOWER_TEXT; bit <= CDX_TOWER_VISION && !r; bit <<= 1) {
        if (!(towers & bit) || (__atomic_load_n(&m->ready, __ATOMIC_RELAXED) & bit)) continue;
        r = prepare_tower(m, bit);
        if (r) r = cdx_error_prefix(r, bit == CDX_TOWER_TEXT ? "preparing the text tower"
                                                            : "preparing the vision tower");
        else __atomic_fetch_or(&m->ready, bit, __ATOMIC_RELEASE);
    }
    if (__atomic_load_n(&m->ready, __ATOMIC_RELAXED) == CDX_TOWER_ALL && !m->st_pinned)
        cdx_st_close(&m->st);
    pthread_mutex_unlock(&m->tower_mu);
    return r;
}

cdx_result cdx_model_prepare(const cdx_model *m, int towers) { return cdx_model_need(m, towers); }

void cdx_model_get_load_info(const cdx_model *m, cdx_model_load_info *info)
{
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!m) return;
    cdx_model *mm = (cdx_model *)m;
    pthread_mutex_lock(&mm->tower_mu);
    info->towers_loaded = __atomic_load_n(&m->ready, __ATOMIC_ACQUIRE);
    info->fingerprint_cached = m->fp_cached;
    info->text_source = (cdx_tower_source)m->source[0];
    info->vision_source = (cdx_tower_source)m->source[1];
    pthread_mutex_unlock(&mm->tower_mu);
}

cdx_result cdx_model_verify(const char *dir, const cdx_model_params *params,
                            cdx_model_verify_report *report)
{
    cdx_model_verify_report local;
    if (!report) report = &local;
    memset(report, 0, sizeof *report);
    cdx_model *m = NULL;
    cdx_result r = load_model(dir, params, report, &m);
    for (int bit = CDX_TOWER_TEXT; !r && bit <= CDX_TOWER_VISION; bit <<= 1) {
        cdx_result c = cdx_prep_check(m, bit);
        if (c == CDX_OK) report->prepared_ok++;
        else if (c == CDX_ERR_FORMAT) report->prepared_removed++;
        else if (c != CDX_ERR_NOT_FOUND) r = c;
    }
    if (!r) cdx_error_clear();
    cdx_model_free(m);
    return r;
}

void cdx_model_get_info(const cdx_model *m, cdx_model_info *info)
{
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!m) return;
    const cdx_clip_config *c = &m->cfg;
    info->embed_dim = c->projection_dim;
    info->image_size = c->image_size;
    info->patch_size = c->patch_size;
    info->context_length = c->context_length;
    info->vocab_size = c->vocab_size;
    info->vision_width = c->vision.width;
    info->vision_layers = c->vision.layers;
    info->vision_heads = c->vision.heads;
    info->vision_mlp = c->vision.mlp;
    info->text_width = c->text.width;
    info->text_layers = c->text.layers;
    info->text_heads = c->text.heads;
    info->text_mlp = c->text.mlp;
    info->weights_dtype = m->dtype;
    info->logit_scale = m->logit_scale;
    memcpy(info->fingerprint, m->fingerprint, sizeof info->fingerprint);
}

cdx_result cdx_tokenize(const cdx_model *m, const char *text, size_t len, int32_t *ids, int *n_untruncated)
{
    if (!m || !ids || (!text && len))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_tokenize: NULL model, text or ids");
    if (!m->tokenizer) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_tokenize: model has no tokenizer");
    cdx_result r = cdx_tokenizer_encode(m->tokenizer, text ? text : "", len, m->cfg.context_length, ids,
                                        n_untruncated);
    if (r) return r;
    /* vocab.json and config.json are separate files: an id the embedding
     * table does not have must never reach the text tower. */
    for (int i = 0; i < m->cfg.context_length; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return cdx_error(CDX_ERR_FORMAT, "token id %d is outside the model's vocabulary (vocab_size %d)",
                             (int)ids[i], m->cfg.vocab_size);
    return CDX_OK;
}
