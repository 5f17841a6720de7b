/*
 * model_random.c - random-weight models (see model_random.h).
 *
 * Memory: every tensor is one cdx_model_alloc() buffer owned by the model and
 * released by cdx_model_free().  A ViT-L/14 shape is ~430M floats (1.7 GB);
 * filling runs in parallel with a counter-based generator (splitmix64).
 */
#include "testsupport/model_random.h"
#include "clip/model_mem.h"
#include "common/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tower_cfg(cdx_tower_config *t, int width, int layers, int heads, int mlp)
{
    t->width = width; t->layers = layers; t->heads = heads; t->mlp = mlp;
    t->eps = 1e-5f;
    t->act = CDX_ACT_QUICK_GELU;
}

cdx_result cdx_model_random_config(const char *name, cdx_clip_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->image_size = 224;
    cfg->vocab_size = 49408;
    cfg->context_length = 77;
    if (!strcmp(name, "ViT-B/32") || !strcmp(name, "ViT-B/16")) {
        tower_cfg(&cfg->vision, 768, 12, 12, 3072);
        tower_cfg(&cfg->text, 512, 12, 8, 2048);
        cfg->projection_dim = 512;
        cfg->patch_size = strcmp(name, "ViT-B/32") ? 16 : 32;
    } else if (!strcmp(name, "ViT-L/14")) {
        tower_cfg(&cfg->vision, 1024, 24, 16, 4096);
        tower_cfg(&cfg->text, 768, 12, 12, 3072);
        cfg->projection_dim = 768;
        cfg->patch_size = 14;
    } else if (!strcmp(name, "tiny")) {
        tower_cfg(&cfg->vision, 128, 2, 2, 512);
        tower_cfg(&cfg->text, 64, 2, 2, 256);
        cfg->projection_dim = 64;
        cfg->patch_size = 32;
    } else {
        return cdx_error(CDX_ERR_NOT_FOUND, "unknown model shape '%s'", name);
    }
    cdx_preproc_config *p = &cfg->pre;
    p->resize_shortest = p->crop = cfg->image_size;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(p->mean, mean, sizeof mean);
    memcpy(p->std, std, sizeof std);
    return CDX_OK;
}

typedef struct builder {
    cdx_model *m;
    uint64_t seed;
    uint64_t tensor;   /* running tensor index: part of every element's seed */
    int failed;
} builder;

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* n floats = mean + stddev * u, u uniform with unit variance. */
static float *tensor(builder *bd, size_t n, float mean, float stddev)
{
    uint64_t t = splitmix64(bd->seed ^ (++bd->tensor * 0xD1B54A32D192ED03ull));
    float *p = bd->failed ? NULL : cdx_model_alloc(bd->m, n);
    if (!p) { bd->failed = 1; return NULL; }
    const double scale = stddev * sqrt(12.0) / 18446744073709551616.0;
#pragma omp parallel for schedule(static) if (n > 100000)
    for (size_t i = 0; i < n; i++)
        p[i] = mean + (float)(((double)splitmix64(t + i) - 9223372036854775808.0) * scale);
    return p;
}

static void linear(builder *bd, cdx_linear *l, int out, int in, float stddev, int bias)
{
    l->in = in; l->out = out;
    l->w = tensor(bd, (size_t)out * in, 0, stddev);
    l->b = bias ? tensor(bd, (size_t)out, 0, 0.02f) : NULL;
}

static void layernorm(builder *bd, cdx_layernorm *ln, int dim)
{
    ln->dim = dim;
    ln->g = tensor(bd, (size_t)dim, 1.0f, 0.05f);
    ln->b = tensor(bd, (size_t)dim, 0.0f, 0.02f);
}

static cdx_block *blocks(builder *bd, const cdx_tower_config *c)
{
    cdx_block *b = calloc((size_t)c->layers, sizeof *b);
    if (!b) { bd->failed = 1; return NULL; }
    float w = (float)c->width;
    for (int i = 0; i < c->layers; i++) {
        layernorm(bd, &b[i].ln1, c->width);
        layernorm(bd, &b[i].ln2, c->width);
        linear(bd, &b[i].qkv, 3 * c->width, c->width, 1.2f / sqrtf(w), 1);
        linear(bd, &b[i].out, c->width, c->width, 0.5f / sqrtf(w), 1);
        linear(bd, &b[i].fc1, c->mlp, c->width, 1.0f / sqrtf(w), 1);
        linear(bd, &b[i].fc2, c->width, c->mlp, 0.5f / sqrtf((float)c->mlp), 1);
    }
    return b;
}

static int tower_ok(const cdx_tower_config *t)
{
    return t->width > 0 && t->width <= 8192 && t->heads > 0 && t->width % t->heads == 0 &&
           t->layers > 0 && t->layers <= 128 && t->mlp > 0 && t->mlp <= 65536 && t->eps > 0;
}

cdx_result cdx_model_random(const cdx_clip_config *cfg, uint64_t seed, cdx_model **out)
{
    *out = NULL;
    if (!tower_ok(&cfg->vision) || !tower_ok(&cfg->text) || cfg->projection_dim <= 0 ||
        cfg->projection_dim > 8192 || cfg->patch_size <= 0 || cfg->image_size <= 0 ||
        cfg->image_size > 4096 || cfg->image_size % cfg->patch_size ||
        cfg->vocab_size <= 0 || cfg->vocab_size > 1000000 ||
        cfg->context_length <= 0 || cfg->context_length > 4096)
        return cdx_error(CDX_ERR_INVALID_ARG, "random model: invalid config");
    cdx_model *m = cdx_model_new_empty();
    if (!m) return cdx_error(CDX_ERR_NOMEM, "random model: out of memory");
    builder bd = {m, seed, 0, 0};
    m->cfg = *cfg;
    m->dtype = CDX_DTYPE_F32;
    m->logit_scale = logf(100.0f);
    snprintf(m->fingerprint, sizeof m->fingerprint, "random-%016llx", (unsigned long long)seed);

    cdx_vision_tower *v = &m->vision;
    v->cfg = cfg->vision;
    v->image_size = cfg->image_size;
    v->patch_size = cfg->patch_size;
    v->grid = cfg->image_size / cfg->patch_size;
    v->n_tokens = v->grid * v->grid + 1;
    int vw = cfg->vision.width, p = cfg->patch_size;
    v->patch_w = tensor(&bd, (size_t)vw * 3 * p * p, 0, 0.02f);
    v->class_emb = tensor(&bd, (size_t)vw, 0, 0.1f);
    v->pos_emb = tensor(&bd, (size_t)v->n_tokens * vw, 0, 0.05f);
    layernorm(&bd, &v->ln_pre, vw);
    v->blocks = blocks(&bd, &cfg->vision);
    layernorm(&bd, &v->ln_post, vw);
    linear(&bd, &v->proj, cfg->projection_dim, vw, 1.0f / sqrtf((float)vw), 0);

    cdx_text_tower *t = &m->text;
    t->cfg = cfg->text;
    t->vocab_size = cfg->vocab_size;
    t->context_length = cfg->context_length;
    int tw = cfg->text.width;
    t->tok_emb = tensor(&bd, (size_t)cfg->vocab_size * tw, 0, 0.02f);
    t->pos_emb = tensor(&bd, (size_t)cfg->context_length * tw, 0, 0.02f);
    t->blocks = blocks(&bd, &cfg->text);
    layernorm(&bd, &t->ln_final, tw);
    linear(&bd, &t->proj, cfg->projection_dim, tw, 1.0f / sqrtf((float)tw), 0);

    if (bd.failed || cdx_model_pack(m) != CDX_OK) {
        cdx_model_free(m);
        return cdx_error(CDX_ERR_NOMEM, "random model: out of memory");
    }
    *out = m;
    return CDX_OK;
}
