/*
 * trainer.c - contrastive fine-tuning of CLIP (the cdx_trainer_* API of
 * clipdex.h): a training forward pass that keeps the activations backward
 * needs, the backward pass of both towers, CLIP's symmetric loss and AdamW.
 *
 * Parameters: one table of every tensor under its Hugging Face name with
 * float32 master weights in one arena, and gradients and Adam moments of the
 * trainable tensors only in three more (same offsets among themselves).  q, k and v of a layer are registered consecutively (weights,
 * then biases), so the fused [3W, W] matrix the GEMMs use is simply the
 * q_proj weight's offset.  The model passed to cdx_trainer_new is only read
 * at creation (its weights, upcast to F32 by the loader, are copied).
 *
 * Forward: like encoder.c (packed sequences, text rows only up to each
 * caption's end token: later positions cannot influence the pooled output
 * through the causal mask, so their gradient is exactly 0) but with plain
 * GEMMs on the changing weights and every activation kept for the blocks
 * that are trained.  Frozen blocks (scope LAST / PROJ) run in place on one
 * scratch slot and are never back-propagated through; their parameters get
 * no gradient and no optimizer state update.
 *
 * AdamW follows torch.optim.AdamW (torch 1.13, single-tensor path) in
 * float32: decoupled decay p *= 1 - lr*wd first, then m, v, bias-corrected
 * step with eps added after dividing sqrt(v) by sqrt(1 - beta2^t).  Decay
 * applies to the weight matrices of linear maps only (q/k/v/out, fc1/fc2,
 * both projections), as in expected/train/README.md of the fixture.
 *
 * Memory: all weights + trainable weights x 3 (gradient, m, v) plus, per trained block,
 * ~(8 W + 2 mlp) floats per token row and heads x len^2 probabilities.
 */
#include "train/fcache.h"
#include "train/grad.h"
#include "train/st_write.h"
#include "train/trainer.h"
#include "clip/model.h"
#include "clip/safetensors.h"
#include "common/error.h"
#include "common/util.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_BATCH_LIMIT 4096
#define NAME_CAP 112

typedef struct tparam {
    char name[NAME_CAP];
    int ndim;
    int64_t shape[4];
    size_t numel, off;        /* offset in the weight arena */
    size_t goff;              /* offset in the gradient / moment arenas (trainable only) */
    unsigned char decay, trainable;
} tparam;

typedef struct tlin { int w, b, in, out; } tlin;   /* param indexes; b = -1: none */
typedef struct tln { int g, b; } tln;
typedef struct tblock {
    tln ln1, ln2;
    tlin qkv, out, fc1, fc2;
    /* frozen blocks only: weights packed for cdx_gemm_packed (gemm.h) at
     * creation, NULL when not packed (no AVX-512, reference backend) */
    float *pqkv, *pout, *pfc1, *pfc2;
} tblock;

/* saved activations of one block */
typedef struct slot {
    float *h1, *qkv, *P, *att, *xmid, *h2, *hpre, *hact;
    float *mu1, *rs1, *mu2, *rs2;
} slot;

typedef struct tower {
    int vision;
    int W, H, L, mlp, E;
    float eps;
    cdx_epilogue act;
    int T;                    /* positions per sequence */
    tblock *blocks;
    tln ln_pre;               /* vision only */
    tln ln_out;
    int proj;                 /* param index, [E, W] */
    int emb_a, emb_b, emb_c;  /* vision: patch, class, position; text: token, position, -1 */
    int fb;                   /* first trained block (L: none) */
    int train_emb;
    /* activations, capacity cap_rows x cap_seqs */
    int *off, *len, *pool;
    float *col;               /* vision: im2col [n*gg, 3pp] */
    float *e0, *mu0, *rs0;    /* vision: embeddings before ln_pre */
    float *xs;                /* (L - fb + 1) x [M, W] residual streams */
    slot *slots;              /* L - fb + 1 (the last: scratch for frozen blocks) */
    float *pooled, *pln, *mup, *rsp, *emb;
    float *hp, *qp;           /* last block: LayerNorm-1 output and queries at the pooled rows */
    /* backward scratch */
    float *dx, *dtmp, *dqkv, *dbig, *dpool, *dpln, *att_scratch;
    /* frozen-prefix cache (fcache.h): the batch's frozen outputs (last:K:
     * rows like xs; proj: pooled rows), the batch indexes not found, the
     * full batch's row offsets, the keys */
    float *pre;
    int *miss, *foff;
    cdx_fcache_key *keys;
} tower;

struct cdx_trainer {
    cdx_trainer_params p;
    tparam *par;
    int n_par, cap_par;
    float *w, *g, *m, *v;     /* w: every tensor; g, m, v: trainable tensors only */
    size_t total, total_train;
    int logit_scale;          /* param index */
    int oom;                  /* a parameter registration failed (sticky) */
    int step;
    tower vis, txt;
    int grid, patch, image_size, vocab;
    int cap_n;                /* batch capacity of the activation buffers */
    float *loss_scratch, *dimg, *dtxt;
    cdx_gemm_backend be;
    int have_grads;
    cdx_fcache *fc;           /* NULL: no frozen-prefix cache */
    float *px_miss;           /* inputs of the cache misses of a batch */
    int32_t *ids_miss;
};

/* ------------------------------------------------------------ params */

cdx_trainer_params cdx_trainer_default_params(void)
{
    cdx_trainer_params p;
    memset(&p, 0, sizeof p);
    p.scope = CDX_TRAIN_ALL;
    p.last_k = 1;
    p.lr = 1e-5f;
    p.beta1 = 0.9f;
    p.beta2 = 0.98f;
    p.eps = 1e-6f;
    p.weight_decay = 0.2f;
    p.max_batch = 256;
    p.cache_bytes = (size_t)1 << 30;
    return p;
}

static int add_param(cdx_trainer *t, const char *name, int decay, int ndim, const int64_t *shape)
{
    if (t->oom) return -1;
    if (t->n_par == t->cap_par) {
        int cap = t->cap_par ? 2 * t->cap_par : 128;
        tparam *q = realloc(t->par, (size_t)cap * sizeof *q);
        if (!q) {
            t->oom = 1;
            return -1;
        }
        t->par = q;
        t->cap_par = cap;
    }
    tparam *p = &t->par[t->n_par];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->numel *= (size_t)shape[d];
    }
    p->off = t->total;
    p->decay = (unsigned char)decay;
    t->total += p->numel;
    return t->n_par++;
}

#define SH(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((const int64_t[]){__VA_ARGS__})

static int addf(cdx_trainer *t, int decay, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int addf(cdx_trainer *t, int decay, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return add_param(t, name, decay, ndim, shape);
}

static tln add_ln(cdx_trainer *t, const char *prefix, int W)
{
    tln l;
    l.g = addf(t, 0, SH(W), "%s.weight", prefix);
    l.b = addf(t, 0, SH(W), "%s.bias", prefix);
    return l;
}

static tlin add_lin(cdx_trainer *t, const char *prefix, int in, int out)
{
    tlin l = {addf(t, 1, SH(out, in), "%s.weight", prefix), -1, in, out};
    l.b = addf(t, 0, SH(out), "%s.bias", prefix);
    return l;
}

/* Registers a tower's parameters (HF names); returns 0 or -1 (no memory). */
static int register_tower(cdx_trainer *t, tower *tw, const char *prefix)
{
    char pre[96], nm[128];
    const int W = tw->W;
    tw->blocks = calloc((size_t)tw->L, sizeof *tw->blocks);
    if (!tw->blocks) return -1;
    for (int l = 0; l < tw->L; l++) {
        tblock *b = &tw->blocks[l];
        snprintf(pre, sizeof pre, "%s.encoder.layers.%d", prefix, l);
        snprintf(nm, sizeof nm, "%s.layer_norm1", pre);
        b->ln1 = add_ln(t, nm, W);
        /* q, k, v weights then biases: contiguous, i.e. fused [3W, W] and [3W] */
        b->qkv.w = addf(t, 1, SH(W, W), "%s.self_attn.q_proj.weight", pre);
        addf(t, 1, SH(W, W), "%s.self_attn.k_proj.weight", pre);
        addf(t, 1, SH(W, W), "%s.self_attn.v_proj.weight", pre);
        b->qkv.b = addf(t, 0, SH(W), "%s.self_attn.q_proj.bias", pre);
        addf(t, 0, SH(W), "%s.self_attn.k_proj.bias", pre);
        addf(t, 0, SH(W), "%s.self_attn.v_proj.bias", pre);
        b->qkv.in = W;
        b->qkv.out = 3 * W;
        snprintf(nm, sizeof nm, "%s.self_attn.out_proj", pre);
        b->out = add_lin(t, nm, W, W);
        snprintf(nm, sizeof nm, "%s.layer_norm2", pre);
        b->ln2 = add_ln(t, nm, W);
        snprintf(nm, sizeof nm, "%s.mlp.fc1", pre);
        b->fc1 = add_lin(t, nm, W, tw->mlp);
        snprintf(nm, sizeof nm, "%s.mlp.fc2", pre);
        b->fc2 = add_lin(t, nm, tw->mlp, W);
        if (b->fc2.b < 0 || b->qkv.w < 0) return -1;
    }
    return 0;
}

static float *PW(const cdx_trainer *t, int i) { return t->w + t->par[i].off; }
static float *PG(const cdx_trainer *t, int i) { return t->g + t->par[i].goff; }
static float *PGT(const cdx_trainer *t, int i) { return t->par[i].trainable ? PG(t, i) : NULL; }

static void put(cdx_trainer *t, int i, const float *src)
{
    memcpy(PW(t, i), src, t->par[i].numel * sizeof(float));
}

/* A Linear weight [out, in] into parameter i: the plain copy, or unpacked
 * from the packed one that replaces it in a prepared model. */
static void put_weight(cdx_trainer *t, int i, const float *w, const float *wp, int out, int in)
{
    if (w) memcpy(PW(t, i), w, (size_t)out * in * sizeof(float));
    else cdx_unpack_weights(out, in, wp, PW(t, i), in);
}

static void copy_block(cdx_trainer *t, const tblock *b, const cdx_block *mb)
{
    put(t, b->ln1.g, mb->ln1.g); put(t, b->ln1.b, mb->ln1.b);
    put(t, b->ln2.g, mb->ln2.g); put(t, b->ln2.b, mb->ln2.b);
    put_weight(t, b->qkv.w, mb->qkv.w, mb->qkv.wp, mb->qkv.out, mb->qkv.in);
    memcpy(PW(t, b->qkv.b), mb->qkv.b, (size_t)mb->qkv.out * sizeof(float));
    put_weight(t, b->out.w, mb->out.w, mb->out.wp, mb->out.out, mb->out.in); put(t, b->out.b, mb->out.b);
    put_weight(t, b->fc1.w, mb->fc1.w, mb->fc1.wp, mb->fc1.out, mb->fc1.in); put(t, b->fc1.b, mb->fc1.b);
    put_weight(t, b->fc2.w, mb->fc2.w, mb->fc2.wp, mb->fc2.out, mb->fc2.in); put(t, b->fc2.b, mb->fc2.b);
}

static void mark_range(cdx_trainer *t, int from, int to_excl)
{
    for (int i = from; i < to_excl; i++) t->par[i].trainable = 1;
}

/* ------------------------------------------------------------ activations */

/* saved blocks, plus a scratch slot for frozen blocks when there are any */
static int n_slots(const tower *tw) { return tw->L - tw->fb + (tw->fb > 0); }

static void free_acts(tower *tw)
{
    free(tw->off); free(tw->len); free(tw->pool);
    cdx_free_aligned(tw->col); cdx_free_aligned(tw->e0); cdx_free_aligned(tw->mu0);
    cdx_free_aligned(tw->rs0); cdx_free_aligned(tw->xs);
    if (tw->slots) {
        for (int i = 0; i < n_slots(tw); i++) {
            slot *s = &tw->slots[i];
            cdx_free_aligned(s->h1); cdx_free_aligned(s->qkv); cdx_free_aligned(s->P);
            cdx_free_aligned(s->att); cdx_free_aligned(s->xmid); cdx_free_aligned(s->h2);
            cdx_free_aligned(s->hpre); cdx_free_aligned(s->hact); cdx_free_aligned(s->mu1);
            cdx_free_aligned(s->rs1); cdx_free_aligned(s->mu2); cdx_free_aligned(s->rs2);
        }
        free(tw->slots);
    }
    cdx_free_aligned(tw->pooled); cdx_free_aligned(tw->pln); cdx_free_aligned(tw->mup);
    cdx_free_aligned(tw->rsp); cdx_free_aligned(tw->emb);
    cdx_free_aligned(tw->hp); cdx_free_aligned(tw->qp);
    cdx_free_aligned(tw->dx); cdx_free_aligned(tw->dtmp); cdx_free_aligned(tw->dqkv);
    cdx_free_aligned(tw->dbig); cdx_free_aligned(tw->dpool); cdx_free_aligned(tw->dpln);
    cdx_free_aligned(tw->att_scratch);
    cdx_free_aligned(tw->pre); free(tw->miss); free(tw->foff); free(tw->keys);
    tw->pre = NULL;
    tw->miss = tw->foff = NULL;
    tw->keys = NULL;
    tw->off = tw->len = tw->pool = NULL;
    tw->col = tw->e0 = tw->mu0 = tw->rs0 = tw->xs = NULL;
    tw->slots = NULL;
    tw->pooled = tw->pln = tw->mup = tw->rsp = tw->emb = tw->hp = tw->qp = NULL;
    tw->dx = tw->dtmp = tw->dqkv = tw->dbig = tw->dpool = tw->dpln = tw->att_scratch = NULL;
}

static float *A(size_t n) { return cdx_alloc_aligned(n ? n : 1, sizeof(float)); }

/* Buffers for n sequences of T positions; 0 or -1 (no memory). */
static int alloc_acts(tower *tw, int n, int n_img_patches_k, int nthreads, int cached)
{
    const size_t M = (size_t)n * tw->T, W = (size_t)tw->W, mlp = (size_t)tw->mlp;
    const size_t P = (size_t)n * tw->H * tw->T * tw->T;
    const int ns = n_slots(tw);
    int ok = 1;
    tw->off = malloc((size_t)n * sizeof(int));
    tw->len = malloc((size_t)n * sizeof(int));
    tw->pool = malloc((size_t)n * sizeof(int));
    if (tw->vision) {
        size_t gg = (size_t)tw->T - 1;
        tw->col = A((size_t)n * gg * (size_t)n_img_patches_k);
        tw->e0 = A(M * W);
        tw->mu0 = A(M);
        tw->rs0 = A(M);
        ok = tw->col && tw->e0 && tw->mu0 && tw->rs0;
    }
    tw->xs = A((size_t)(tw->L - tw->fb + 1) * M * W);
    tw->slots = calloc((size_t)ns, sizeof *tw->slots);
    ok = ok && tw->off && tw->len && tw->pool && tw->xs && tw->slots;
    for (int i = 0; ok && i < ns; i++) {
        slot *s = &tw->slots[i];
        s->h1 = A(M * W); s->qkv = A(3 * M * W); s->P = A(P); s->att = A(M * W);
        s->xmid = A(M * W); s->h2 = A(M * W); s->hpre = A(M * mlp); s->hact = A(M * mlp);
        s->mu1 = A(M); s->rs1 = A(M); s->mu2 = A(M); s->rs2 = A(M);
        ok = s->h1 && s->qkv && s->P && s->att && s->xmid && s->h2 && s->hpre && s->hact &&
             s->mu1 && s->rs1 && s->mu2 && s->rs2;
    }
    if (!ok) return -1;
    tw->pooled = A((size_t)n * W); tw->pln = A((size_t)n * W); tw->mup = A((size_t)n);
    tw->rsp = A((size_t)n); tw->emb = A((size_t)n * tw->E);
    tw->hp = A((size_t)n * W); tw->qp = A((size_t)n * W);
    tw->dx = A(M * W); tw->dtmp = A(M * W); tw->dqkv = A(3 * M * W); tw->dbig = A(M * mlp);
    tw->dpool = A((size_t)n * W); tw->dpln = A((size_t)n * W);
    tw->att_scratch = A((size_t)nthreads * tw->T * tw->T);
    if (cached) {
        tw->pre = A(M * W);
        tw->miss = malloc((size_t)n * sizeof(int));
        tw->foff = malloc((size_t)n * sizeof(int));
        tw->keys = malloc((size_t)n * sizeof *tw->keys);
        if (!tw->pre || !tw->miss || !tw->foff || !tw->keys) return -1;
    }
    return tw->pooled && tw->pln && tw->mup && tw->rsp && tw->emb && tw->hp && tw->qp && tw->dx && tw->dtmp &&
           tw->dqkv && tw->dbig && tw->dpool && tw->dpln && tw->att_scratch ? 0 : -1;
}

static cdx_result ensure_capacity(cdx_trainer *t, int n)
{
    if (n <= t->cap_n) return CDX_OK;
    free_acts(&t->vis);
    free_acts(&t->txt);
    cdx_free_aligned(t->loss_scratch); cdx_free_aligned(t->dimg); cdx_free_aligned(t->dtxt);
    cdx_free_aligned(t->px_miss); free(t->ids_miss);
    t->px_miss = NULL;
    t->ids_miss = NULL;
    t->cap_n = 0;
    const int E = t->vis.E, K = 3 * t->patch * t->patch;
    size_t ls = 4 * (size_t)n * E + 3 * (size_t)n * n + 2 * (size_t)n;
    t->loss_scratch = A(ls);
    t->dimg = A((size_t)n * E);
    t->dtxt = A((size_t)n * E);
    const int cv = t->fc && t->vis.fb > 0, ct = t->fc && t->txt.fb > 0;
    if (cv) t->px_miss = A((size_t)n * 3 * t->image_size * t->image_size);
    if (ct) t->ids_miss = malloc((size_t)n * t->txt.T * sizeof(int32_t));
    if (!t->loss_scratch || !t->dimg || !t->dtxt || (cv && !t->px_miss) || (ct && !t->ids_miss) ||
        alloc_acts(&t->vis, n, K, t->p.n_threads, cv) || alloc_acts(&t->txt, n, 0, t->p.n_threads, ct)) {
        free_acts(&t->vis);
        free_acts(&t->txt);
        return cdx_error(CDX_ERR_NOMEM, "trainer: out of memory for activations of %d pairs", n);
    }
    t->cap_n = n;
    return CDX_OK;
}

/* ------------------------------------------------------------ creation */

void cdx_trainer_free(cdx_trainer *t)
{
    if (!t) return;
    free_acts(&t->vis);
    free_acts(&t->txt);
    tower *tws[2] = {&t->vis, &t->txt};
    for (int k = 0; k < 2; k++)
        for (int l = 0; tws[k]->blocks && l < tws[k]->L; l++) {
            tblock *b = &tws[k]->blocks[l];
            cdx_free_aligned(b->pqkv); cdx_free_aligned(b->pout);
            cdx_free_aligned(b->pfc1); cdx_free_aligned(b->pfc2);
        }
    free(t->vis.blocks);
    free(t->txt.blocks);
    cdx_fcache_free(t->fc);
    cdx_free_aligned(t->px_miss); free(t->ids_miss);
    cdx_free_aligned(t->loss_scratch); cdx_free_aligned(t->dimg); cdx_free_aligned(t->dtxt);
    cdx_free_aligned(t->w); cdx_free_aligned(t->g); cdx_free_aligned(t->m); cdx_free_aligned(t->v);
    free(t->par);
    free(t);
}

static void tower_shape(tower *tw, const cdx_tower_config *c, int E, int T, int vision)
{
    tw->vision = vision;
    tw->W = c->width;
    tw->H = c->heads;
    tw->L = c->layers;
    tw->mlp = c->mlp;
    tw->eps = c->eps;
    tw->act = c->act == CDX_ACT_GELU ? CDX_EPI_GELU : CDX_EPI_QUICK_GELU;
    tw->E = E;
    tw->T = T;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static cdx_result check_params(const cdx_trainer_params *p, const cdx_model *m)
{
    int Lmin = m->cfg.vision.layers < m->cfg.text.layers ? m->cfg.vision.layers : m->cfg.text.layers;
    if (p->scope != CDX_TRAIN_ALL && p->scope != CDX_TRAIN_LAST && p->scope != CDX_TRAIN_PROJ)
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: unknown scope %d", (int)p->scope);
    if (p->scope == CDX_TRAIN_LAST && (p->last_k < 1 || p->last_k > Lmin))
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: last_k %d not in 1..%d", p->last_k, Lmin);
    if (!(p->lr >= 0 && p->lr < 1) || !(p->beta1 >= 0 && p->beta1 < 1) ||
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0 && p->eps < 1) ||
        !(p->weight_decay >= 0 && p->weight_decay < 100 && p->lr * p->weight_decay < 1))
        return cdx_error(CDX_ERR_INVALID_ARG,
                         "trainer: need 0 <= lr < 1, 0 <= betas < 1, 0 < eps < 1, 0 <= wd, lr*wd < 1");
    if (p->max_batch < 1 || p->max_batch > MAX_BATCH_LIMIT)
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: max_batch %d not in 1..%d", p->max_batch,
                         MAX_BATCH_LIMIT);
    if (p->cache_dir && p->cache_disk_bytes && !is_dir(p->cache_dir))
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: cache directory %s is not a directory", p->cache_dir);
    if (p->n_threads < 0 || p->n_threads > 1024)
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: n_threads %d not in 0..1024", p->n_threads);
    return CDX_OK;
}

static void copy_weights(cdx_trainer *t, const cdx_model *m)
{
    const cdx_vision_tower *v = &m->vision;
    const cdx_text_tower *x = &m->text;
    put_weight(t, t->vis.emb_a, v->patch_w, v->patch_wp, v->cfg.width, 3 * v->patch_size * v->patch_size);
    put(t, t->vis.emb_b, v->class_emb);
    put(t, t->vis.emb_c, v->pos_emb);
    put(t, t->vis.ln_pre.g, v->ln_pre.g); put(t, t->vis.ln_pre.b, v->ln_pre.b);
    for (int l = 0; l < t->vis.L; l++) copy_block(t, &t->vis.blocks[l], &v->blocks[l]);
    put(t, t->vis.ln_out.g, v->ln_post.g); put(t, t->vis.ln_out.b, v->ln_post.b);
    put_weight(t, t->vis.proj, v->proj.w, v->proj.wp, v->proj.out, v->proj.in);
    put(t, t->txt.emb_a, x->tok_emb);
    put(t, t->txt.emb_b, x->pos_emb);
    for (int l = 0; l < t->txt.L; l++) copy_block(t, &t->txt.blocks[l], &x->blocks[l]);
    put(t, t->txt.ln_out.g, x->ln_final.g); put(t, t->txt.ln_out.b, x->ln_final.b);
    put_weight(t, t->txt.proj, x->proj.w, x->proj.wp, x->proj.out, x->proj.in);
    PW(t, t->logit_scale)[0] = m->logit_scale;
}

/* Which tensors train: embeddings (ALL), blocks from fb on, the final
 * LayerNorms (not PROJ), projections and logit_scale (always). */
static void mark_trainable(cdx_trainer *t, int vis_first, int vis_after, int txt_first, int txt_after)
{
    const cdx_trainer_params *p = &t->p;
    tower *tws[2] = {&t->vis, &t->txt};
    for (int k = 0; k < 2; k++) {
        tower *tw = tws[k];
        tw->fb = p->scope == CDX_TRAIN_ALL ? 0 : p->scope == CDX_TRAIN_LAST ? tw->L - p->last_k : tw->L;
        tw->train_emb = p->scope == CDX_TRAIN_ALL;
        if (tw->fb < tw->L) mark_range(t, tw->blocks[tw->fb].ln1.g, tw->blocks[tw->L - 1].fc2.b + 1);
        if (p->scope != CDX_TRAIN_PROJ) t->par[tw->ln_out.g].trainable = t->par[tw->ln_out.b].trainable = 1;
        t->par[tw->proj].trainable = 1;
    }
    if (p->scope == CDX_TRAIN_ALL) {
        mark_range(t, vis_first, vis_after);
        mark_range(t, txt_first, txt_after);
    }
    t->par[t->logit_scale].trainable = 1;
}

static float *pack(const cdx_trainer *t, const tlin *l)
{
    size_t n = cdx_pack_floats(l->out, l->in);
    float *p = n ? A(n) : NULL;
    if (p) cdx_pack_weights(l->out, l->in, PW(t, l->w), l->in, p);
    return p;
}

/* Frozen blocks never change: pack their weights once so their forward runs
 * on the same fused kernels as inference (encoder.c).  The last block is
 * excluded (it runs pooled-only).  0, or -1 when out of memory. */
static int pack_frozen(cdx_trainer *t)
{
    const char *e = getenv("CLIPDEX_PACK");
    if (!cdx_gemm_small_available() || t->be == CDX_GEMM_BE_REFERENCE || (e && !strcmp(e, "0"))) return 0;
    tower *tws[2] = {&t->vis, &t->txt};
    for (int k = 0; k < 2; k++)
        for (int l = 0; l < tws[k]->fb && l < tws[k]->L - 1; l++) {
            tblock *b = &tws[k]->blocks[l];
            b->pqkv = pack(t, &b->qkv);
            b->pout = pack(t, &b->out);
            b->pfc1 = pack(t, &b->fc1);
            b->pfc2 = pack(t, &b->fc2);
            if (!b->pqkv || !b->pout || !b->pfc1 || !b->pfc2) return -1;
        }
    return 0;
}

cdx_result cdx_trainer_new(const cdx_model *model, const cdx_trainer_params *params,
                           cdx_trainer **out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_new: out is NULL");
    *out = NULL;
    if (!model) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_new: model is NULL");
    cdx_result pr = cdx_model_prepare(model, CDX_TOWER_ALL);   /* towers load lazily */
    if (pr) return pr;
    cdx_trainer_params p = params ? *params : cdx_trainer_default_params();
    cdx_result r = check_params(&p, model);
    if (r) return r;
    cdx_trainer *t = calloc(1, sizeof *t);
    if (!t) return cdx_error(CDX_ERR_NOMEM, "cdx_trainer_new: out of memory");
    t->p = p;
    if (!t->p.n_threads) t->p.n_threads = cdx_cpu_count();
    t->be = cdx_gemm_default_backend();
    const cdx_clip_config *c = &model->cfg;
    const int E = c->projection_dim, vw = c->vision.width, tw = c->text.width, P = c->patch_size;
    t->grid = c->image_size / P;
    t->patch = P;
    t->image_size = c->image_size;
    t->vocab = c->vocab_size;
    const int Tv = t->grid * t->grid + 1;
    tower_shape(&t->vis, &c->vision, E, Tv, 1);
    tower_shape(&t->txt, &c->text, E, c->context_length, 0);

    /* vision parameters, then text, then logit_scale (HF names) */
    int vis_first = t->n_par;
    t->vis.emb_a = addf(t, 0, SH(vw, 3, P, P), "vision_model.embeddings.patch_embedding.weight");
    t->vis.emb_b = addf(t, 0, SH(vw), "vision_model.embeddings.class_embedding");
    t->vis.emb_c = addf(t, 0, SH(Tv, vw), "vision_model.embeddings.position_embedding.weight");
    t->vis.ln_pre = add_ln(t, "vision_model.pre_layrnorm", vw);
    int vis_after = t->n_par;
    int bad = register_tower(t, &t->vis, "vision_model");
    t->vis.ln_out = add_ln(t, "vision_model.post_layernorm", vw);
    t->vis.proj = addf(t, 1, SH(E, vw), "visual_projection.weight");
    int txt_first = t->n_par;
    t->txt.emb_a = addf(t, 0, SH(c->vocab_size, tw), "text_model.embeddings.token_embedding.weight");
    t->txt.emb_b = addf(t, 0, SH(c->context_length, tw), "text_model.embeddings.position_embedding.weight");
    t->txt.emb_c = -1;
    int txt_after = t->n_par;
    bad = bad || register_tower(t, &t->txt, "text_model");
    t->txt.ln_out = add_ln(t, "text_model.final_layer_norm", tw);
    t->txt.ln_pre.g = t->txt.ln_pre.b = -1;
    t->txt.proj = addf(t, 1, SH(E, tw), "text_projection.weight");
    t->logit_scale = addf(t, 0, 0, NULL, "logit_scale");
    if (bad || t->oom) {
        cdx_trainer_free(t);
        return cdx_error(CDX_ERR_NOMEM, "cdx_trainer_new: out of memory");
    }
    t->w = A(t->total);
    if (t->w) copy_weights(t, model);
    mark_trainable(t, vis_first, vis_after, txt_first, txt_after);
    for (int i = 0; i < t->n_par; i++)   /* registration order: q/k/v stay contiguous */
        if (t->par[i].trainable) {
            t->par[i].goff = t->total_train;
            t->total_train += t->par[i].numel;
        }
    t->g = A(t->total_train);
    t->m = A(t->total_train);
    t->v = A(t->total_train);
    if (!t->w || !t->g || !t->m || !t->v || pack_frozen(t)) {
        size_t mb = (t->total + 3 * t->total_train) * 4 >> 20;
        cdx_trainer_free(t);
        return cdx_error(CDX_ERR_NOMEM, "cdx_trainer_new: out of memory for %zu MB of weights and state",
                         mb);
    }
    memset(t->g, 0, t->total_train * sizeof(float));
    memset(t->m, 0, t->total_train * sizeof(float));
    memset(t->v, 0, t->total_train * sizeof(float));
    if (p.scope != CDX_TRAIN_ALL && (p.cache_bytes || (p.cache_dir && p.cache_disk_bytes)) &&
        (r = cdx_fcache_new(p.cache_bytes, p.cache_dir, p.cache_disk_bytes, &t->fc))) {
        cdx_trainer_free(t);
        return r;
    }
    t->p.cache_dir = NULL;   /* the caller's string is not kept */
    *out = t;
    return CDX_OK;
}

cdx_result cdx_trainer_set_lr(cdx_trainer *t, float lr)
{
    if (!t || !(lr >= 0 && lr < 1) || lr * t->p.weight_decay >= 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_set_lr: lr must be in [0, 1)");
    t->p.lr = lr;
    return CDX_OK;
}

/* ------------------------------------------------------------ forward */

/* xout = block(xin); xout may equal xin. */
static void block_fwd(const cdx_trainer *t, const tower *tw, const tblock *b, slot *s,
                      const cdx_grad_seqs *sq, const float *xin, float *xout)
{
    const int M = sq->M, W = tw->W, mlp = tw->mlp;
    const cdx_gemm_backend be = t->be;
    cdx_grad_layernorm_fwd(M, W, xin, PW(t, b->ln1.g), PW(t, b->ln1.b), tw->eps, s->h1, s->mu1, s->rs1);
    cdx_grad_linear_fwd(be, M, W, 3 * W, s->h1, PW(t, b->qkv.w), PW(t, b->qkv.b), s->qkv);
    cdx_grad_attention_fwd(be, sq, W, tw->H, s->qkv, s->P, s->att);
    memcpy(s->xmid, xin, (size_t)M * W * sizeof(float));
    cdx_gemm(be, M, W, W, 1.0f, s->att, W, PW(t, b->out.w), W, 1, 1.0f, PW(t, b->out.b), s->xmid, W);
    cdx_grad_layernorm_fwd(M, W, s->xmid, PW(t, b->ln2.g), PW(t, b->ln2.b), tw->eps, s->h2, s->mu2, s->rs2);
    cdx_grad_linear_fwd(be, M, W, mlp, s->h2, PW(t, b->fc1.w), PW(t, b->fc1.b), s->hpre);
    memcpy(s->hact, s->hpre, (size_t)M * mlp * sizeof(float));
    cdx_bias_act(s->hact, mlp, M, mlp, NULL, tw->act, be != CDX_GEMM_BE_REFERENCE);
    if (xout != s->xmid) memcpy(xout, s->xmid, (size_t)M * W * sizeof(float));
    cdx_gemm(be, M, W, mlp, 1.0f, s->hact, mlp, PW(t, b->fc2.w), mlp, 1, 1.0f, PW(t, b->fc2.b), xout, W);
}

/* Rows up to which packed weights beat the backend (encoder.c's PACKED_MAX_M). */
#define PACKED_MAX_M 1024

/* A frozen block in place on x with packed weights and fused epilogues
 * (nothing is kept for backward).  s: the scratch slot. */
static void block_fwd_packed(const cdx_trainer *t, const tower *tw, const tblock *b, slot *s,
                             const cdx_grad_seqs *sq, float *x)
{
    const int M = sq->M, W = tw->W, mlp = tw->mlp;
    cdx_layernorm_rows(x, W, s->h1, W, M, W, PW(t, b->ln1.g), PW(t, b->ln1.b), tw->eps, 1);
    cdx_gemm_packed(M, 3 * W, W, s->h1, W, b->pqkv, PW(t, b->qkv.b), CDX_PACK_ACT_NONE, 0, s->qkv, 3 * W, 1);
    cdx_grad_attention_fwd(t->be, sq, W, tw->H, s->qkv, s->P, s->att);
    cdx_gemm_packed(M, W, W, s->att, W, b->pout, PW(t, b->out.b), CDX_PACK_ACT_NONE, 1, x, W, 1);
    cdx_layernorm_rows(x, W, s->h2, W, M, W, PW(t, b->ln2.g), PW(t, b->ln2.b), tw->eps, 1);
    if (tw->act == CDX_EPI_QUICK_GELU) {
        cdx_gemm_packed(M, mlp, W, s->h2, W, b->pfc1, PW(t, b->fc1.b), CDX_PACK_ACT_QUICK_GELU, 0, s->hact, mlp, 1);
    } else {
        cdx_gemm_packed(M, mlp, W, s->h2, W, b->pfc1, PW(t, b->fc1.b), CDX_PACK_ACT_NONE, 0, s->hact, mlp, 1);
        cdx_bias_act(s->hact, mlp, M, mlp, NULL, tw->act, 1);
    }
    cdx_gemm_packed(M, W, mlp, s->hact, mlp, b->pfc2, PW(t, b->fc2.b), CDX_PACK_ACT_NONE, 1, x, W, 1);
}

/* The last block, computed where it matters (as encoder.c's block_last):
 * LayerNorm 1, keys and values for every row; query, attention,
 * out-projection and MLP at the pooled rows only.  Output: tw->pooled. */
static void block_last_fwd(const cdx_trainer *t, const tower *tw, const tblock *b, slot *s,
                           const cdx_grad_seqs *sq, const float *xin)
{
    const int M = sq->M, W = tw->W, mlp = tw->mlp, n = sq->n;
    const cdx_gemm_backend be = t->be;
    const float *wqkv = PW(t, b->qkv.w), *bqkv = PW(t, b->qkv.b);
    cdx_grad_layernorm_fwd(M, W, xin, PW(t, b->ln1.g), PW(t, b->ln1.b), tw->eps, s->h1, s->mu1, s->rs1);
    cdx_gemm(be, M, 2 * W, W, 1.0f, s->h1, W, wqkv + (size_t)W * W, W, 1, 0.0f, bqkv + W, s->qkv + W, 3 * W);
    for (int i = 0; i < n; i++) {
        size_t r = (size_t)(tw->off[i] + tw->pool[i]);
        memcpy(tw->hp + (size_t)i * W, s->h1 + r * W, (size_t)W * sizeof(float));
        memcpy(s->xmid + (size_t)i * W, xin + r * W, (size_t)W * sizeof(float));
    }
    cdx_grad_linear_fwd(be, n, W, W, tw->hp, wqkv, bqkv, tw->qp);
    for (int i = 0; i < n; i++)
        memcpy(s->qkv + (size_t)(tw->off[i] + tw->pool[i]) * 3 * W, tw->qp + (size_t)i * W,
               (size_t)W * sizeof(float));
    cdx_grad_attention_pooled_fwd(be, sq, tw->pool, W, tw->H, s->qkv, s->P, s->att);
    cdx_gemm(be, n, W, W, 1.0f, s->att, W, PW(t, b->out.w), W, 1, 1.0f, PW(t, b->out.b), s->xmid, W);
    cdx_grad_layernorm_fwd(n, W, s->xmid, PW(t, b->ln2.g), PW(t, b->ln2.b), tw->eps, s->h2, s->mu2, s->rs2);
    cdx_grad_linear_fwd(be, n, W, mlp, s->h2, PW(t, b->fc1.w), PW(t, b->fc1.b), s->hpre);
    memcpy(s->hact, s->hpre, (size_t)n * mlp * sizeof(float));
    cdx_bias_act(s->hact, mlp, n, mlp, NULL, tw->act, be != CDX_GEMM_BE_REFERENCE);
    memcpy(tw->pooled, s->xmid, (size_t)n * W * sizeof(float));
    cdx_gemm(be, n, W, mlp, 1.0f, s->hact, mlp, PW(t, b->fc2.w), mlp, 1, 1.0f, PW(t, b->fc2.b), tw->pooled, W);
}

/* The frozen part of a tower from xs (its first residual stream): blocks
 * before fb in place on xs; when every block is frozen (proj), also the last
 * block, into tw->pooled. */
static void tower_fwd_frozen(const cdx_trainer *t, tower *tw, const cdx_grad_seqs *sq)
{
    const int ns = tw->L - tw->fb, last = tw->L - 1;
    for (int l = 0; l < tw->fb && l < last; l++) {   /* in place, scratch slot */
        if (tw->blocks[l].pqkv && sq->M <= PACKED_MAX_M)
            block_fwd_packed(t, tw, &tw->blocks[l], &tw->slots[ns], sq, tw->xs);
        else
            block_fwd(t, tw, &tw->blocks[l], &tw->slots[ns], sq, tw->xs, tw->xs);
    }
    if (ns == 0) block_last_fwd(t, tw, &tw->blocks[last], &tw->slots[0], sq, tw->xs);
}

/* The trained blocks from xs (the frozen part's output), saving what
 * backward needs; then the final LayerNorm and projection of the pooled
 * rows into tw->emb. */
static void tower_fwd_trained(const cdx_trainer *t, tower *tw, const cdx_grad_seqs *sq, int n)
{
    const size_t MW = (size_t)sq->M * tw->W;
    const int ns = tw->L - tw->fb, last = tw->L - 1;
    for (int l = tw->fb; l < last; l++)
        block_fwd(t, tw, &tw->blocks[l], &tw->slots[l - tw->fb], sq, tw->xs + (size_t)(l - tw->fb) * MW,
                  tw->xs + (size_t)(l - tw->fb + 1) * MW);
    if (ns > 0)
        block_last_fwd(t, tw, &tw->blocks[last], &tw->slots[last - tw->fb], sq, tw->xs + (size_t)(last - tw->fb) * MW);
    cdx_grad_layernorm_fwd(n, tw->W, tw->pooled, PW(t, tw->ln_out.g), PW(t, tw->ln_out.b), tw->eps,
                           tw->pln, tw->mup, tw->rsp);
    cdx_grad_linear_fwd(t->be, n, tw->W, tw->E, tw->pln, PW(t, tw->proj), NULL, tw->emb);
}

static cdx_grad_seqs seqs_of(const tower *tw, int n, int M)
{
    cdx_grad_seqs sq = {n, M, !tw->vision, tw->off, tw->len};
    return sq;
}

static void vision_layout(tower *tw, int n)
{
    for (int s = 0; s < n; s++) {
        tw->off[s] = s * tw->T;
        tw->len[s] = tw->T;
        tw->pool[s] = 0;
    }
}

/* Patch, class and position embeddings and the pre-LayerNorm into xs;
 * the layout of n images.  Returns the rows. */
static int vision_embed(cdx_trainer *t, const float *pixels, int n)
{
    tower *tw = &t->vis;
    const int W = tw->W, p = t->patch, g = t->grid, gg = g * g, T = tw->T, S = t->image_size;
    const int K = 3 * p * p, M = n * T;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n * gg; r++) {   /* im2col, rows (b, gy, gx), columns (c, y, x) */
        int b = r / gg, gy = (r % gg) / g, gx = r % g;
        float *dst = tw->col + (size_t)r * K;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < p; y++)
                memcpy(dst + (size_t)(ch * p + y) * p,
                       pixels + (((size_t)b * 3 + ch) * S + (size_t)gy * p + y) * S + (size_t)gx * p,
                       (size_t)p * sizeof(float));
    }
    cdx_grad_linear_fwd(t->be, n * gg, K, W, tw->col, PW(t, tw->emb_a), NULL, tw->dtmp);
    const float *cls = PW(t, tw->emb_b), *pos = PW(t, tw->emb_c);
    for (int r = 0; r < M; r++) {
        int b = r / T, i = r % T;
        const float *src = i == 0 ? cls : tw->dtmp + ((size_t)b * gg + i - 1) * W;
        for (int j = 0; j < W; j++) tw->e0[(size_t)r * W + j] = src[j] + pos[(size_t)i * W + j];
    }
    cdx_grad_layernorm_fwd(M, W, tw->e0, PW(t, tw->ln_pre.g), PW(t, tw->ln_pre.b), tw->eps, tw->xs,
                           tw->mu0, tw->rs0);
    vision_layout(tw, n);
    return M;
}

/* argmax like torch: the first position holding the largest id */
static int pool_position(const int32_t *ids, int T)
{
    int best = 0;
    for (int i = 1; i < T; i++)
        if (ids[i] > ids[best]) best = i;
    return best;
}

/* The layout of n captions: rows up to each end token; returns the rows. */
static int text_layout(tower *tw, const int32_t *ids, int n)
{
    int M = 0;
    for (int s = 0; s < n; s++) {
        tw->pool[s] = pool_position(ids + (size_t)s * tw->T, tw->T);
        tw->len[s] = tw->pool[s] + 1;
        tw->off[s] = M;
        M += tw->len[s];
    }
    return M;
}

/* Token and position embeddings of n captions into xs; returns the rows. */
static int text_embed(cdx_trainer *t, const int32_t *ids, int n)
{
    tower *tw = &t->txt;
    const int W = tw->W, T = tw->T;
    const int M = text_layout(tw, ids, n);
    const float *tok = PW(t, tw->emb_a), *pos = PW(t, tw->emb_b);
    for (int s = 0; s < n; s++)
        for (int i = 0; i < tw->len[s]; i++) {
            const float *te = tok + (size_t)ids[(size_t)s * T + i] * W;
            float *dst = tw->xs + (size_t)(tw->off[s] + i) * W;
            for (int j = 0; j < W; j++) dst[j] = te[j] + pos[(size_t)i * W + j];
        }
    return M;
}

static int tower_embed(cdx_trainer *t, tower *tw, const float *pixels, const int32_t *ids, int n)
{
    return tw->vision ? vision_embed(t, pixels, n) : text_embed(t, ids, n);
}

/* The frozen output of sequence i: its rows of xs (last:K) or its pooled
 * row (proj), as floats and as a place in a buffer laid out like xs
 * (base + row offset off) or like pooled (base + i). */
static size_t frozen_floats(const tower *tw, int i)
{
    return (size_t)(tw->fb < tw->L ? tw->len[i] : 1) * tw->W;
}
static float *frozen_at(const tower *tw, float *base, int i, int off)
{
    return base + (size_t)(tw->fb < tw->L ? off : i) * tw->W;
}

/* The forward pass of a tower over n inputs (images or captions); returns
 * the rows.  With the frozen-prefix cache, the frozen part runs only for the
 * inputs not found in it (compacted into a smaller batch), whose outputs are
 * then stored; the trained part runs on the whole batch as without it. */
static int tower_fwd(cdx_trainer *t, tower *tw, const float *pixels, const int32_t *ids, int n)
{
    if (!t->fc || tw->fb == 0) {
        int M = tower_embed(t, tw, pixels, ids, n);
        cdx_grad_seqs sq = seqs_of(tw, n, M);
        tower_fwd_frozen(t, tw, &sq);
        tower_fwd_trained(t, tw, &sq, n);
        return M;
    }
    const size_t per = tw->vision ? (size_t)3 * t->image_size * t->image_size : (size_t)tw->T;
    const uint64_t tag = (uint64_t)tw->vision << 32 | (uint64_t)tw->fb;
    int M = n * tw->T;
    if (tw->vision) vision_layout(tw, n);
    else M = text_layout(tw, ids, n);
    float *dst = tw->fb < tw->L ? tw->xs : tw->pooled;
    int nm = 0;
    for (int i = 0; i < n; i++) {
        tw->foff[i] = tw->vision ? i * tw->T : tw->off[i];
        tw->keys[i] = tw->vision ? cdx_fcache_hash(pixels + i * per, per * sizeof(float), tag)
                                 : cdx_fcache_hash(ids + i * per, (size_t)tw->len[i] * sizeof(int32_t), tag);
        size_t nf = tw->vision ? (size_t)(tw->fb < tw->L ? tw->T : 1) * tw->W : frozen_floats(tw, i);
        if (!cdx_fcache_get(t->fc, tw->keys[i], frozen_at(tw, tw->pre, i, tw->foff[i]), nf)) tw->miss[nm++] = i;
    }
    if (nm) {   /* the misses as one smaller batch, computed in xs */
        for (int j = 0; j < nm; j++) {
            if (tw->vision) memcpy(t->px_miss + j * per, pixels + tw->miss[j] * per, per * sizeof(float));
            else memcpy(t->ids_miss + j * per, ids + tw->miss[j] * per, per * sizeof(int32_t));
        }
        int Mm = tower_embed(t, tw, t->px_miss, t->ids_miss, nm);
        cdx_grad_seqs sm = seqs_of(tw, nm, Mm);
        tower_fwd_frozen(t, tw, &sm);
        for (int j = 0; j < nm; j++) {
            int i = tw->miss[j];
            const float *src = frozen_at(tw, dst, j, tw->off[j]);
            memcpy(frozen_at(tw, tw->pre, i, tw->foff[i]), src, frozen_floats(tw, j) * sizeof(float));
            (void)cdx_fcache_put(t->fc, tw->keys[i], src, frozen_floats(tw, j));   /* full: recompute later */
        }
        if (tw->vision) vision_layout(tw, n);
        else text_layout(tw, ids, n);
    }
    memcpy(dst, tw->pre, (tw->fb < tw->L ? (size_t)M : (size_t)n) * tw->W * sizeof(float));
    cdx_grad_seqs sq = seqs_of(tw, n, M);
    tower_fwd_trained(t, tw, &sq, n);
    return M;
}

/* ------------------------------------------------------------ backward */

static void block_bwd(const cdx_trainer *t, const tower *tw, const tblock *b, const slot *s,
                      const cdx_grad_seqs *sq, const float *xin, float *dx)
{
    const int M = sq->M, W = tw->W, mlp = tw->mlp;
    const cdx_gemm_backend be = t->be;
    cdx_grad_linear_bwd(be, M, mlp, W, s->hact, PW(t, b->fc2.w), dx, tw->dbig, 0, PGT(t, b->fc2.w),
                        PGT(t, b->fc2.b));
    cdx_grad_act_bwd(tw->act, (size_t)M * mlp, s->hpre, tw->dbig);
    cdx_grad_linear_bwd(be, M, W, mlp, s->h2, PW(t, b->fc1.w), tw->dbig, tw->dtmp, 0, PGT(t, b->fc1.w),
                        PGT(t, b->fc1.b));
    cdx_grad_layernorm_bwd(M, W, s->xmid, PW(t, b->ln2.g), s->mu2, s->rs2, tw->dtmp, dx, 1,
                           PGT(t, b->ln2.g), PGT(t, b->ln2.b));
    cdx_grad_linear_bwd(be, M, W, W, s->att, PW(t, b->out.w), dx, tw->dtmp, 0, PGT(t, b->out.w),
                        PGT(t, b->out.b));
    cdx_grad_attention_bwd(be, sq, W, tw->H, s->qkv, s->P, tw->dtmp, tw->dqkv, tw->att_scratch);
    cdx_grad_linear_bwd(be, M, W, 3 * W, s->h1, PW(t, b->qkv.w), tw->dqkv, tw->dtmp, 0,
                        PGT(t, b->qkv.w), PGT(t, b->qkv.b));
    cdx_grad_layernorm_bwd(M, W, xin, PW(t, b->ln1.g), s->mu1, s->rs1, tw->dtmp, dx, 1,
                           PGT(t, b->ln1.g), PGT(t, b->ln1.b));
}

/* Backward of block_last_fwd from dp = d(pooled) [n, W] (modified) to
 * dx = d(xin) [M, W] (written). */
static void block_last_bwd(const cdx_trainer *t, const tower *tw, const tblock *b, const slot *s,
                           const cdx_grad_seqs *sq, const float *xin, float *dp, float *dx)
{
    const int M = sq->M, W = tw->W, mlp = tw->mlp, n = sq->n;
    const cdx_gemm_backend be = t->be;
    const size_t WW = (size_t)W * W;
    cdx_grad_linear_bwd(be, n, mlp, W, s->hact, PW(t, b->fc2.w), dp, tw->dbig, 0, PGT(t, b->fc2.w),
                        PGT(t, b->fc2.b));
    cdx_grad_act_bwd(tw->act, (size_t)n * mlp, s->hpre, tw->dbig);
    cdx_grad_linear_bwd(be, n, W, mlp, s->h2, PW(t, b->fc1.w), tw->dbig, tw->dtmp, 0, PGT(t, b->fc1.w),
                        PGT(t, b->fc1.b));
    cdx_grad_layernorm_bwd(n, W, s->xmid, PW(t, b->ln2.g), s->mu2, s->rs2, tw->dtmp, dp, 1,
                           PGT(t, b->ln2.g), PGT(t, b->ln2.b));
    cdx_grad_linear_bwd(be, n, W, W, s->att, PW(t, b->out.w), dp, tw->dtmp, 0, PGT(t, b->out.w),
                        PGT(t, b->out.b));
    float *dq = tw->dpln, *dkv = tw->dqkv;
    cdx_grad_attention_pooled_bwd(be, sq, tw->pool, W, tw->H, s->qkv, s->P, tw->dtmp, dq, dkv, tw->att_scratch);
    float *gw = PGT(t, b->qkv.w), *gb = PGT(t, b->qkv.b);
    cdx_grad_linear_bwd(be, M, W, 2 * W, s->h1, PW(t, b->qkv.w) + WW, dkv, tw->dtmp, 0, gw ? gw + WW : NULL,
                        gb ? gb + W : NULL);
    cdx_grad_linear_bwd(be, n, W, W, tw->hp, PW(t, b->qkv.w), dq, tw->qp, 0, gw, gb);
    for (int i = 0; i < n; i++) {
        float *d = tw->dtmp + (size_t)(tw->off[i] + tw->pool[i]) * W;
        for (int j = 0; j < W; j++) d[j] += tw->qp[(size_t)i * W + j];
    }
    cdx_grad_layernorm_bwd(M, W, xin, PW(t, b->ln1.g), s->mu1, s->rs1, tw->dtmp, dx, 0,
                           PGT(t, b->ln1.g), PGT(t, b->ln1.b));
    for (int i = 0; i < n; i++) {   /* the residual path of the pooled rows */
        float *d = dx + (size_t)(tw->off[i] + tw->pool[i]) * W;
        for (int j = 0; j < W; j++) d[j] += dp[(size_t)i * W + j];
    }
}

/* From d(embedding) [n, E] in demb down to the tower's trained part;
 * returns with tw->dx = d(first residual stream) when embeddings train. */
static void tower_bwd(const cdx_trainer *t, tower *tw, const cdx_grad_seqs *sq, int n, const float *demb)
{
    const int W = tw->W, ns = tw->L - tw->fb;
    const size_t MW = (size_t)sq->M * W;
    cdx_grad_linear_bwd(t->be, n, W, tw->E, tw->pln, PW(t, tw->proj), demb, tw->dpln, 0,
                        PG(t, tw->proj), NULL);
    cdx_grad_layernorm_bwd(n, W, tw->pooled, PW(t, tw->ln_out.g), tw->mup, tw->rsp, tw->dpln, tw->dpool,
                           0, PGT(t, tw->ln_out.g), PGT(t, tw->ln_out.b));
    if (ns == 0) return;
    const int last = tw->L - 1;
    block_last_bwd(t, tw, &tw->blocks[last], &tw->slots[last - tw->fb], sq, tw->xs + (size_t)(last - tw->fb) * MW,
                   tw->dpool, tw->dx);
    for (int l = last - 1; l >= tw->fb; l--)
        block_bwd(t, tw, &tw->blocks[l], &tw->slots[l - tw->fb], sq, tw->xs + (size_t)(l - tw->fb) * MW,
                  tw->dx);
}

static void vision_emb_bwd(const cdx_trainer *t, int n)
{
    const tower *tw = &t->vis;
    const int W = tw->W, T = tw->T, gg = T - 1, K = 3 * t->patch * t->patch, M = n * T;
    float *de = tw->dtmp;
    cdx_grad_layernorm_bwd(M, W, tw->e0, PW(t, tw->ln_pre.g), tw->mu0, tw->rs0, tw->dx, de, 0,
                           PG(t, tw->ln_pre.g), PG(t, tw->ln_pre.b));
    float *gc = PG(t, tw->emb_b), *gp = PG(t, tw->emb_c), *dp = tw->dqkv;
    for (int r = 0; r < M; r++) {
        int b = r / T, i = r % T;
        const float *d = de + (size_t)r * W;
        for (int j = 0; j < W; j++) gp[(size_t)i * W + j] += d[j];
        if (i == 0)
            for (int j = 0; j < W; j++) gc[j] += d[j];
        else
            memcpy(dp + ((size_t)b * gg + i - 1) * W, d, (size_t)W * sizeof(float));
    }
    cdx_grad_linear_bwd(t->be, n * gg, K, W, tw->col, PW(t, tw->emb_a), dp, NULL, 0, PG(t, tw->emb_a), NULL);
}

static void text_emb_bwd(const cdx_trainer *t, const int32_t *ids, int n)
{
    const tower *tw = &t->txt;
    const int W = tw->W, T = tw->T;
    float *gt = PG(t, tw->emb_a), *gp = PG(t, tw->emb_b);
    for (int s = 0; s < n; s++)
        for (int i = 0; i < tw->len[s]; i++) {
            const float *d = tw->dx + (size_t)(tw->off[s] + i) * W;
            float *a = gt + (size_t)ids[(size_t)s * T + i] * W, *b = gp + (size_t)i * W;
            for (int j = 0; j < W; j++) {
                a[j] += d[j];
                b[j] += d[j];
            }
        }
}

/* ------------------------------------------------------------ step */

static cdx_result check_batch(const cdx_trainer *t, const float *pixels, const int32_t *tokens, int n)
{
    if (!pixels || !tokens || n < 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: need n >= 1 pairs, pixels and tokens");
    if (n > t->p.max_batch)
        return cdx_error(CDX_ERR_TOO_LARGE, "trainer: batch of %d pairs exceeds max_batch %d", n,
                         t->p.max_batch);
    const size_t nt = (size_t)n * t->txt.T, np = (size_t)n * 3 * t->image_size * t->image_size;
    for (size_t i = 0; i < nt; i++)
        if (tokens[i] < 0 || tokens[i] >= t->vocab)
            return cdx_error(CDX_ERR_INVALID_ARG, "trainer: pair %zu position %zu: token id %d not in 0..%d",
                             i / t->txt.T, i % t->txt.T, (int)tokens[i], t->vocab - 1);
    for (size_t i = 0; i < np; i++)
        if (!isfinite(pixels[i]))
            return cdx_error(CDX_ERR_INVALID_ARG, "trainer: image %zu has a non-finite pixel value",
                             i / (np / (size_t)n));
    return CDX_OK;
}

static double forward_loss(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n, int *Mt,
                           float *logits, int grads)
{
    tower_fwd(t, &t->vis, pixels, NULL, n);
    *Mt = tower_fwd(t, &t->txt, NULL, tokens, n);
    float ds = 0;
    double loss = cdx_grad_clip_loss(n, t->vis.E, t->vis.emb, t->txt.emb, PW(t, t->logit_scale)[0],
                                     logits, grads ? t->dimg : NULL, grads ? t->dtxt : NULL,
                                     grads ? &ds : NULL, t->loss_scratch);
    if (grads) PG(t, t->logit_scale)[0] = ds;
    return loss;
}

static void adamw(cdx_trainer *t)
{
    const cdx_trainer_params *p = &t->p;
    t->step++;
    const double bc1 = 1.0 - pow((double)p->beta1, t->step), bc2 = 1.0 - pow((double)p->beta2, t->step);
    cdx_grad_adamw_k k = {1.0f, p->beta1, (float)(1.0 - (double)p->beta1), p->beta2,
                          (float)(1.0 - (double)p->beta2), (float)sqrt(bc2), (float)(p->lr / bc1), p->eps};
    const float decay = (float)(1.0 - (double)p->lr * p->weight_decay);
    const int fast = t->be != CDX_GEMM_BE_REFERENCE;
    /* one parallel region for every tensor (memory-bound: ~28 bytes per value) */
#pragma omp parallel firstprivate(k)
    for (int i = 0; i < t->n_par; i++) {
        const tparam *q = &t->par[i];
        if (!q->trainable) continue;
        k.decay = q->decay ? decay : 1.0f;
        cdx_grad_adamw(q->numel, t->w + q->off, t->g + q->goff, t->m + q->goff, t->v + q->goff, &k, fast);
    }
}

static int enter_threads(const cdx_trainer *t)
{
    int prev = omp_get_max_threads();
    omp_set_num_threads(t->p.n_threads);
    return prev;
}

/* Forward, loss and backward: gradients of the trainable tensors in t->g. */
static cdx_result forward_backward(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                                   double *loss_out)
{
    cdx_result r = check_batch(t, pixels, tokens, n);
    if (!r) r = ensure_capacity(t, n);
    if (r) return r;
    for (int i = 0; i < t->n_par; i++)
        if (t->par[i].trainable) memset(PG(t, i), 0, t->par[i].numel * sizeof(float));
    int Mt;
    double loss = forward_loss(t, pixels, tokens, n, &Mt, NULL, 1);
    if (!isfinite(loss))
        return cdx_error(CDX_ERR_INVALID_ARG, "trainer: the loss is not finite (%g); step skipped", loss);
    cdx_grad_seqs sv = seqs_of(&t->vis, n, n * t->vis.T), st = seqs_of(&t->txt, n, Mt);
    tower_bwd(t, &t->vis, &sv, n, t->dimg);
    if (t->vis.train_emb) vision_emb_bwd(t, n);
    tower_bwd(t, &t->txt, &st, n, t->dtxt);
    if (t->txt.train_emb) text_emb_bwd(t, tokens, n);
    t->have_grads = 1;
    *loss_out = loss;
    return CDX_OK;
}

cdx_result cdx_trainer_gradients(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                                 double *loss)
{
    if (!t || !loss) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_gradients: bad arguments");
    int prev = enter_threads(t);
    cdx_result r = forward_backward(t, pixels, tokens, n, loss);
    omp_set_num_threads(prev);
    return r;
}

cdx_result cdx_trainer_step(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                            cdx_train_stats *stats)
{
    if (!t) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_step: trainer is NULL");
    const float ls = PW(t, t->logit_scale)[0];
    double loss = 0;
    int prev = enter_threads(t);
    cdx_result r = forward_backward(t, pixels, tokens, n, &loss);
    if (!r) adamw(t);
    omp_set_num_threads(prev);
    if (r) return r;
    if (stats) {
        stats->loss = loss;
        stats->logit_scale = ls;
        stats->step = t->step;
    }
    return CDX_OK;
}

cdx_result cdx_trainer_eval(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                            double *loss, float *logits)
{
    if (!t || !loss) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_eval: bad arguments");
    cdx_result r = check_batch(t, pixels, tokens, n);
    if (!r) r = ensure_capacity(t, n);
    if (r) return r;
    int prev = enter_threads(t), Mt;
    *loss = forward_loss(t, pixels, tokens, n, &Mt, logits, 0);
    omp_set_num_threads(prev);
    return CDX_OK;
}

static void copy_normalized(int n, int E, const float *src, float *dst)
{
    for (int i = 0; i < n; i++) {
        const float *x = src + (size_t)i * E;
        double s = 0;
        for (int j = 0; j < E; j++) s += (double)x[j] * x[j];
        double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (int j = 0; j < E; j++) dst[(size_t)i * E + j] = (float)(x[j] * inv);
    }
}

cdx_result cdx_trainer_embed(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                             float *img, float *txt)
{
    if (!t) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_embed: trainer is NULL");
    cdx_result r = check_batch(t, pixels, tokens, n);
    if (!r) r = ensure_capacity(t, n);
    if (r) return r;
    int prev = enter_threads(t);
    tower_fwd(t, &t->vis, pixels, NULL, n);
    tower_fwd(t, &t->txt, NULL, tokens, n);
    omp_set_num_threads(prev);
    if (img) copy_normalized(n, t->vis.E, t->vis.emb, img);
    if (txt) copy_normalized(n, t->txt.E, t->txt.emb, txt);
    return CDX_OK;
}

cdx_result cdx_trainer_save(const cdx_trainer *t, const char *path, int what)
{
    if (!t || !path || (what != CDX_TRAINER_SAVE_PARAMS && what != CDX_TRAINER_SAVE_GRADS))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_save: bad arguments");
    if (what == CDX_TRAINER_SAVE_GRADS && !t->have_grads)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_save: no step taken yet, no gradients");
    cdx_st_out *o = calloc((size_t)t->n_par, sizeof *o);
    if (!o) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < t->n_par; i++) {
        const tparam *q = &t->par[i];
        if (what == CDX_TRAINER_SAVE_GRADS && !q->trainable) continue;
        o[k].name = q->name;
        o[k].ndim = q->ndim;
        o[k].shape = q->shape;
        o[k].data = what == CDX_TRAINER_SAVE_GRADS ? t->g + q->goff : t->w + q->off;
        k++;
    }
    char meta[160];
    snprintf(meta, sizeof meta, "{\"format\":\"pt\",\"producer\":\"clipdex %s\",\"content\":\"%s\",\"step\":\"%d\"}",
             CDX_VERSION_STRING, what == CDX_TRAINER_SAVE_GRADS ? "gradients" : "parameters", t->step);
    cdx_result r = cdx_st_write_f32(path, o, k, meta);
    free(o);
    return r;
}

int cdx_trainer_n_tensors(const cdx_trainer *t) { return t ? t->n_par : 0; }

int cdx_trainer_tensor_at(cdx_trainer *t, int i, cdx_trainer_tensor *out)
{
    if (!t || i < 0 || i >= t->n_par) return -1;
    const tparam *q = &t->par[i];
    if (!q->trainable) cdx_fcache_clear(t->fc);   /* a frozen weight may be written through out->w */
    out->name = q->name;
    out->w = t->w + q->off;
    out->g = q->trainable ? t->g + q->goff : NULL;
    out->numel = q->numel;
    out->trainable = q->trainable;
    out->decay = q->decay;
    return 0;
}

/* ------------------------------------------------------------ checkpoints */

#define STEP_TENSOR "trainer.step"

cdx_result cdx_trainer_save_state(const cdx_trainer *t, const char *path)
{
    if (!t || !path) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_save_state: bad arguments");
    cdx_st_out *o = calloc((size_t)3 * t->n_par + 1, sizeof *o);
    char (*names)[NAME_CAP + 8] = calloc((size_t)2 * t->n_par, sizeof *names);
    if (!o || !names) {
        free(o);
        free(names);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    static const int64_t one[1] = {1};
    float step = (float)t->step;
    int k = 0;
    for (int i = 0; i < t->n_par; i++) {
        const tparam *q = &t->par[i];
        o[k++] = (cdx_st_out){q->name, q->ndim, q->shape, t->w + q->off};
        if (!q->trainable) continue;
        snprintf(names[2 * i], sizeof names[0], "adam_m.%s", q->name);
        snprintf(names[2 * i + 1], sizeof names[0], "adam_v.%s", q->name);
        o[k++] = (cdx_st_out){names[2 * i], q->ndim, q->shape, t->m + q->goff};
        o[k++] = (cdx_st_out){names[2 * i + 1], q->ndim, q->shape, t->v + q->goff};
    }
    o[k++] = (cdx_st_out){STEP_TENSOR, 1, one, &step};
    cdx_result r = cdx_st_write_f32(path, o, k, "{\"format\":\"pt\",\"content\":\"clipdex trainer state\"}");
    free(o);
    free(names);
    return r;
}

/* the F32 tensor `name` with exactly n elements, or NULL (error set) */
static const cdx_st_tensor *state_tensor(const cdx_st_file *f, const char *path, const char *name, size_t n)
{
    const cdx_st_tensor *x = cdx_st_find(f, name);
    if (!x) cdx_error(CDX_ERR_MISMATCH, "%s: tensor '%s' is missing (another model or scope?)", path, name);
    else if (x->dtype != CDX_ST_F32 || x->numel != n)
        cdx_error(CDX_ERR_MISMATCH, "%s: tensor '%s' has %zu elements of %s, expected %zu F32", path, name,
                  x->numel, cdx_st_dtype_name(x->dtype), n);
    else return x;
    return NULL;
}

cdx_result cdx_trainer_load_state(cdx_trainer *t, const char *path)
{
    if (!t || !path) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_trainer_load_state: bad arguments");
    cdx_st_file f;
    cdx_result r = cdx_st_open(path, &f);
    if (r) return r;
    char name[NAME_CAP + 8];
    const cdx_st_tensor *st = state_tensor(&f, path, STEP_TENSOR, 1);
    r = st ? CDX_OK : CDX_ERR_MISMATCH;
    /* first pass: check everything; second: copy */
    for (int pass = 0; pass < 2 && !r; pass++)
        for (int i = 0; i < t->n_par && !r; i++) {
            const tparam *q = &t->par[i];
            for (int part = 0; part < (q->trainable ? 3 : 1) && !r; part++) {
                snprintf(name, sizeof name, "%s%s", part == 0 ? "" : part == 1 ? "adam_m." : "adam_v.", q->name);
                const cdx_st_tensor *x = state_tensor(&f, path, name, q->numel);
                if (!x) r = CDX_ERR_MISMATCH;
                else if (pass == 1) {
                    float *dst = part == 0 ? t->w + q->off : (part == 1 ? t->m : t->v) + q->goff;
                    r = cdx_st_to_f32(&f, x, dst);
                }
            }
        }
    float step = 0;
    if (!r) r = cdx_st_to_f32(&f, st, &step);
    if (!r && !(step >= 0 && step < 16777216.0f)) r = cdx_error(CDX_ERR_FORMAT, "%s: bad step count", path);
    if (!r) t->step = (int)step;
    cdx_fcache_clear(t->fc);   /* the frozen weights may have changed (even on a failed copy) */
    cdx_st_close(&f);
    return r;
}

int cdx_trainer_steps_done(const cdx_trainer *t) { return t ? t->step : 0; }

void cdx_trainer_cache_stats(const cdx_trainer *t, cdx_train_cache_stats *s)
{
    if (!s) return;
    cdx_fcache_stats(t ? t->fc : NULL, s);
}
