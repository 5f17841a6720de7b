/*
 * encoder.c - the CLIP vision and text towers (forward pass) with Hugging
 * Face CLIP semantics, and the public cdx_ctx / cdx_encode_* API.
 *
 * Forward pass (both towers): embeddings -> L pre-norm residual blocks
 * (x += attn(ln1(x)); x += mlp(ln2(x))) -> final LayerNorm at the pooled
 * position -> projection.  Vision: im2col patches x patch_w^T, class token
 * first, + positions, pre_layrnorm, pooled at the class token.  Text: token +
 * position embeddings, causal attention, pooled at argmax(ids) (the first end
 * token 49407 in tokenizer output).
 *
 * Layout of a batch: the B sequences of a chunk are packed row-wise into one
 * [M, width] activation matrix (sequence s occupies rows off[s] ..
 * off[s]+len[s]-1), so every Linear is one GEMM with M = sum of lengths.
 * Attention runs per (sequence, head) on the fused qkv rows.
 *
 * Work that cannot change the pooled output is skipped (unless taps are set,
 * in which case everything is computed so the taps are complete):
 *  - text rows are only computed up to their pooled position (causal mask:
 *    later positions never influence earlier ones), so an 8-token query costs
 *    ~8/77 of a full row;
 *  - in the last block only the pooled row of each sequence needs the
 *    attention output, out-projection and MLP (K/V still need every row).
 *
 * Threads: every call sets the calling thread's OpenMP thread count to the
 * ctx's n_threads for its duration (restored on return): the GEMM backend
 * threads inside, and our own kernels parallelise over rows or (sequence,
 * head) pairs.  The model is read-only; all mutable state is the ctx's
 * scratch, allocated once in cdx_ctx_new for max_batch sequences (larger
 * calls are processed in chunks of max_batch), so several ctx on one model
 * may run concurrently in different threads.
 *
 * Reference mode (cdx_ctx_set_reference) routes every GEMM to the reference
 * loop and every kernel to its reference implementation.
 */
#include "clip/encoder.h"
#include "clip/gemm.h"
#include "clip/model.h"
#include "clip/model_mem.h"
#include "clip/ops.h"
#include "clip/prepared.h"
#include "common/error.h"
#include "common/pool.h"
#include "common/util.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDX_MAX_BATCH_LIMIT 4096
#define CDX_MAX_THREADS 1024

struct cdx_ctx {
    const cdx_model *m;
    int n_threads, max_batch;
    int reference;
    cdx_gemm_backend be;
    int have_taps;
    cdx_taps taps;

    /* scratch, sized in cdx_ctx_new for max_batch sequences of either tower */
    float *x;        /* [M, width] residual stream */
    float *h;        /* [M, width] LayerNorm output / attention output */
    float *qkv;      /* [M, 3*width] */
    float *big;      /* [M, mlp] MLP hidden, or im2col patches */
    float *scores;   /* n_threads x ([T, T] probabilities + [dh, T] keys^T) */
    size_t scores_slot, kt_offset;
    float *px, *pa;  /* [B, width] residual / attention at the pooled rows */
    int *off, *len, *pool;   /* [B] packing of the current chunk */
    int32_t *ids;    /* [B, context_length] for cdx_encode_texts */

    /* precision (clipdex.h cdx_precision; int8: see "int8" below) */
    cdx_precision prec;      /* resolved: fp32, bf16 or int8 */
    int calib;               /* calibration pass: record cdx_linear_q8.amax */
    uint8_t *aq;             /* int8: quantised activations [rows, kpad] */
    float *ascale;           /* [rows] */
    int32_t *azp;            /* [rows] */
    int q8_a7;               /* int8, vision tower: 7-bit codes where the weights are 6-bit */
};

typedef struct seq_batch {
    int n;        /* sequences */
    int M;        /* packed rows */
    int causal;
    const int *off, *len, *pool;
} seq_batch;

/* ------------------------------------------------------------ ctx */

cdx_ctx_params cdx_ctx_default_params(void)
{
    cdx_ctx_params p = {0, 32, CDX_PRECISION_FP32};
    return p;
}

void cdx_ctx_free(cdx_ctx *ctx)
{
    if (!ctx) return;
    cdx_free_aligned(ctx->x);
    cdx_free_aligned(ctx->h);
    cdx_free_aligned(ctx->qkv);
    cdx_free_aligned(ctx->big);
    cdx_free_aligned(ctx->scores);
    cdx_free_aligned(ctx->px);
    cdx_free_aligned(ctx->pa);
    free(ctx->off);
    free(ctx->len);
    free(ctx->pool);
    free(ctx->ids);
    cdx_free_aligned(ctx->aq);
    free(ctx->ascale);
    free(ctx->azp);
    free(ctx);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* a*b*c floats, 0 on overflow */
static size_t mul3(size_t a, size_t b, size_t c)
{
    size_t r;
    if (!cdx_mul_ok(a, b, &r) || !cdx_mul_ok(r, c, &r)) return 0;
    return r;
}

cdx_result cdx_ctx_new(const cdx_model *model, const cdx_ctx_params *params,
                       cdx_ctx **out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_ctx_new: out is NULL");
    *out = NULL;
    if (!model) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_ctx_new: model is NULL");
    cdx_ctx_params p = params ? *params : cdx_ctx_default_params();
    if (p.max_batch < 1 || p.max_batch > CDX_MAX_BATCH_LIMIT)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_ctx_new: max_batch %d not in 1..%d",
                         p.max_batch, CDX_MAX_BATCH_LIMIT);
    if (p.n_threads < 0 || p.n_threads > CDX_MAX_THREADS)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_ctx_new: n_threads %d not in 0..%d",
                         p.n_threads, CDX_MAX_THREADS);
    cdx_precision prec;
    cdx_result pr = cdx_precision_resolve(p.precision, &prec);
    if (pr) return pr;
    cdx_ctx *c = calloc(1, sizeof *c);
    if (!c) return cdx_error(CDX_ERR_NOMEM, "cdx_ctx_new: out of memory");
    c->prec = prec;
    c->m = model;
    c->max_batch = p.max_batch;
    c->n_threads = p.n_threads ? p.n_threads : cdx_cpu_count();
    c->be = cdx_gemm_default_backend();

    const cdx_vision_tower *v = &model->vision;
    const cdx_text_tower *t = &model->text;
    size_t B = (size_t)p.max_batch;
    size_t Tv = (size_t)v->n_tokens, Tt = (size_t)t->context_length;
    size_t vw = (size_t)v->cfg.width, tw = (size_t)t->cfg.width;
    size_t pp3 = mul3(3, (size_t)v->patch_size, (size_t)v->patch_size);
    size_t act = max_sz(mul3(B, Tv, vw), mul3(B, Tt, tw));
    size_t big = max_sz(mul3(B, Tv, (size_t)v->cfg.mlp), mul3(B, Tt, (size_t)t->cfg.mlp));
    big = max_sz(big, mul3(B, (size_t)v->grid * v->grid, pp3));
    size_t T = max_sz(Tv, Tt);
    size_t dh = max_sz(vw / (size_t)v->cfg.heads, tw / (size_t)t->cfg.heads);
    c->kt_offset = (T * T + 15) & ~(size_t)15;      /* keep parts 64-byte aligned */
    c->scores_slot = c->kt_offset + ((dh * T + 15) & ~(size_t)15);
    size_t wmax = max_sz(vw, tw);
    if (!act || !big || !pp3 || !mul3(3, act, 1) || !mul3((size_t)c->n_threads, c->scores_slot, 1)) {
        free(c);
        return cdx_error(CDX_ERR_TOO_LARGE, "cdx_ctx_new: scratch size overflows");
    }
    c->x = cdx_alloc_aligned(act, sizeof(float));
    c->h = cdx_alloc_aligned(act, sizeof(float));
    c->qkv = cdx_alloc_aligned(3 * act, sizeof(float));
    c->big = cdx_alloc_aligned(big, sizeof(float));
    c->scores = cdx_alloc_aligned((size_t)c->n_threads * c->scores_slot, sizeof(float));
    c->px = cdx_alloc_aligned(B * wmax, sizeof(float));
    c->pa = cdx_alloc_aligned(B * wmax, sizeof(float));
    c->off = malloc(B * sizeof(int));
    c->len = malloc(B * sizeof(int));
    c->pool = malloc(B * sizeof(int));
    c->ids = malloc(B * Tt * sizeof(int32_t));
    if (prec == CDX_PRECISION_INT8 || prec == CDX_PRECISION_BF16) {
        /* codes of the largest Linear input (+ k padding): 1 byte (int8) or 2 (bf16) */
        size_t rows = max_sz(mul3(B, Tv, 1), mul3(B, Tt, 1));
        c->aq = cdx_alloc_aligned(big + 4 * rows, prec == CDX_PRECISION_BF16 ? 2 : 1);
        c->ascale = malloc(rows * sizeof(float));
        c->azp = malloc(rows * sizeof(int32_t));
        if (!c->aq || !c->ascale || !c->azp) {
            cdx_ctx_free(c);
            return cdx_error(CDX_ERR_NOMEM, "cdx_ctx_new: out of memory for int8 scratch");
        }
    }
    if (!c->x || !c->h || !c->qkv || !c->big || !c->scores || !c->px || !c->pa ||
        !c->off || !c->len || !c->pool || !c->ids) {
        cdx_ctx_free(c);
        return cdx_error(CDX_ERR_NOMEM, "cdx_ctx_new: out of memory for scratch (max_batch %d)",
                         p.max_batch);
    }
    *out = c;
    return CDX_OK;
}

void cdx_ctx_set_taps(cdx_ctx *ctx, const cdx_taps *taps)
{
    if (!ctx) return;
    ctx->have_taps = taps != NULL;
    if (taps) ctx->taps = *taps;
    else memset(&ctx->taps, 0, sizeof ctx->taps);
}

void cdx_ctx_set_reference(cdx_ctx *ctx, int on)
{
    if (!ctx) return;
    ctx->reference = on != 0;
    ctx->be = on ? CDX_GEMM_BE_REFERENCE : cdx_gemm_default_backend();
}

/* ------------------------------------------------------------ blocks */

static cdx_epilogue epilogue_of(cdx_act a)
{
    return a == CDX_ACT_GELU ? CDX_EPI_GELU : CDX_EPI_QUICK_GELU;
}

/* Pre-packed weights (gemm_packed.c) up to PACKED_MAX_M rows: measured on
 * Zen 5 (2 threads) 1.3-1.6x oneDNN's sgemm from 8 to 800 rows (which
 * re-packs the weights on every call), equal at 1600 rows where, in the
 * whole image tower at batch 32, oneDNN stayed ~3% ahead: larger calls keep
 * using the backend. */
#define PACKED_MAX_M 1024

/* The packed copy replaces the plain weights (model_mem.c): when only wp
 * exists it serves every call, the reference mode included (the packed
 * kernel's reference loop, fast = 0). */
static int use_packed(const cdx_ctx *c, const float *w, const float *wp, int rows)
{
    return wp && (!w || (!c->reference && rows <= PACKED_MAX_M));
}

/* ---- int8 (docs/engine.md, "Precision"): per-row 7-bit codes of x (times
 * the Linear's 1/smooth), then the int8 GEMM with the epilogue fused. */
typedef struct q8_rows_job {
    const cdx_ctx *c;
    const float *x, *inv_smooth;
    int k, kp, rows, bits;
} q8_rows_job;

#define Q8_ROW_BLOCK 16

static void q8_rows_item(void *arg, int w, int slot)
{
    const q8_rows_job *j = arg;
    int r0 = w * Q8_ROW_BLOCK, n = j->rows - r0 < Q8_ROW_BLOCK ? j->rows - r0 : Q8_ROW_BLOCK;
    (void)slot;
    cdx_q8_quantize_rows_bits(n, j->k, j->x + (size_t)r0 * j->k, j->k, j->inv_smooth, j->bits,
                              j->c->aq + (size_t)r0 * j->kp, j->kp, j->c->ascale + r0, j->c->azp + r0);
}

static void linear_q8(const cdx_ctx *c, const cdx_linear *l, int rows, const float *x, float *y,
                      int accumulate, cdx_epilogue epi)
{
    const cdx_linear_q8 *q = l->q8;
    /* vision blocks with 6-bit weights (the AVX2 kernel): 7-bit codes, whose
     * kernel adds two k-groups in int16 (1.15-1.25x in q8_bench); the text
     * tower keeps 8 bits (7 took clip-tiny's min text cosine to 0.977) */
    const int a7 = c->q8_a7 && q->wmax <= 63;
    q8_rows_job j = {c, x, q->inv_smooth, l->in, cdx_q8_kpad(l->in), rows, a7 ? 7 : 8};
    int blocks = (rows + Q8_ROW_BLOCK - 1) / Q8_ROW_BLOCK;
    cdx_par_for(blocks, (long)rows * l->in > 65536 ? cdx_par_threads() : 1, q8_rows_item, &j);
    (a7 ? cdx_gemm_q8_a7 : cdx_gemm_q8)(rows, l->out, l->in, c->aq, j.kp, c->ascale, c->azp, q->w, q->scale, q->colsum,
                q->wmax, l->b, epi == CDX_EPI_QUICK_GELU ? CDX_PACK_ACT_QUICK_GELU : CDX_PACK_ACT_NONE,
                accumulate, y, l->out, !c->reference);
    if (epi == CDX_EPI_GELU) cdx_bias_act(y, l->out, rows, l->out, NULL, epi, !c->reference);
}

/* ---- bf16: x rounded to bf16 (into the int8 scratch, 2 bytes a value) */
typedef struct bf_rows_job {
    const cdx_ctx *c;
    const float *x;
    int k, kp, rows;
} bf_rows_job;

static void bf_rows_item(void *arg, int w, int slot)
{
    const bf_rows_job *j = arg;
    int r0 = w * Q8_ROW_BLOCK, n = j->rows - r0 < Q8_ROW_BLOCK ? j->rows - r0 : Q8_ROW_BLOCK;
    (void)slot;
    cdx_bf16_convert_rows(n, j->k, j->x + (size_t)r0 * j->k, j->k,
                          (uint16_t *)j->c->aq + (size_t)r0 * j->kp, j->kp);
}

static void linear_bf16(const cdx_ctx *c, const cdx_linear *l, int rows, const float *x, float *y,
                        int accumulate, cdx_epilogue epi)
{
    bf_rows_job j = {c, x, l->in, cdx_bf16_kpad(l->in), rows};
    int blocks = (rows + Q8_ROW_BLOCK - 1) / Q8_ROW_BLOCK;
    cdx_par_for(blocks, (long)rows * l->in > 65536 ? cdx_par_threads() : 1, bf_rows_item, &j);
    cdx_gemm_bf16(rows, l->out, l->in, (const uint16_t *)c->aq, j.kp, l->bf, l->b,
                  epi == CDX_EPI_QUICK_GELU ? CDX_PACK_ACT_QUICK_GELU : CDX_PACK_ACT_NONE, accumulate,
                  y, l->out, !c->reference);
    if (epi == CDX_EPI_GELU) cdx_bias_act(y, l->out, rows, l->out, NULL, epi, !c->reference);
}

/* calibration: the largest |x| of each input channel */
static void record_amax(const cdx_linear *l, int rows, const float *x)
{
    float *amax = l->q8->amax;
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < l->in; k++) {
            float v = fabsf(x[(size_t)r * l->in + k]);
            if (v > amax[k]) amax[k] = v;
        }
}

/* y = x W^T + b (+ y when accumulate) */
static void linear(const cdx_ctx *c, const cdx_linear *l, int rows, const float *x,
                   float *y, int accumulate, cdx_epilogue epi)
{
    if (c->prec == CDX_PRECISION_BF16 && l->bf) {
        linear_bf16(c, l, rows, x, y, accumulate, epi);
        return;
    }
    if (l->q8) {
        if (c->calib) record_amax(l, rows, x);
        else if (c->prec == CDX_PRECISION_INT8) {
            linear_q8(c, l, rows, x, y, accumulate, epi);
            return;
        }
    }
    if (use_packed(c, l->w, l->wp, rows)) {
        int fused = epi != CDX_EPI_GELU;   /* the packed kernel fuses quick_gelu only */
        cdx_gemm_packed(rows, l->out, l->in, x, l->in, l->wp, l->b,
                        epi == CDX_EPI_QUICK_GELU ? CDX_PACK_ACT_QUICK_GELU : CDX_PACK_ACT_NONE,
                        accumulate, y, l->out, !c->reference);
        if (!fused) cdx_bias_act(y, l->out, rows, l->out, NULL, epi, !c->reference);
        return;
    }
    cdx_gemm(c->be, rows, l->out, l->in, 1.0f, x, l->in, l->w, l->in, 1,
             accumulate ? 1.0f : 0.0f, NULL, y, l->out);
    cdx_bias_act(y, l->out, rows, l->out, l->b, epi, !c->reference);
}

/* Multi-head attention on fused qkv rows [M, 3W].  pool_only: one query per
 * sequence (its pooled row), output row s of out; else every row, output row
 * off[s]+i of out.  out has row stride W.
 * Each (sequence, head) task copies its keys transposed ([dh, L], per-thread
 * scratch next to its scores) so both products are A x B GEMMs with long
 * rows: on AVX-512 and AVX2 they run on the small-M broadcast kernel directly (no
 * per-call backend overhead, no horizontal sums over a k of only 64). */
#define ATT_CHUNK 6   /* query rows per causal chunk: one tile of the nn kernel */

typedef struct att_job {
    cdx_ctx *c;
    const seq_batch *sb;
    int W, H, dh, ld, pool_only, fast, direct;
    float scale;
    float *out;
} att_job;

/* task = (sequence, head); slot (< cdx_par_threads() = the ctx's n_threads,
 * set by enter_threads) picks the thread's scores scratch */
static void attention_task(void *arg, int task, int slot)
{
    const att_job *j = arg;
    cdx_ctx *c = j->c;
    const seq_batch *sb = j->sb;
    const int W = j->W, H = j->H, dh = j->dh, ld = j->ld, fast = j->fast;
    const float scale = j->scale;
    int s = task / H, hd = task % H;
    int L = sb->len[s];
    const float *base = c->qkv + (size_t)sb->off[s] * ld + (size_t)hd * dh;
    int q0 = j->pool_only ? sb->pool[s] : 0, nq = j->pool_only ? 1 : L;
    int nk = sb->causal ? q0 + nq : L;
    float *S = c->scores + (size_t)slot * c->scores_slot;
    float *Kt = S + c->kt_offset;
    float *o = j->pool_only ? j->out + (size_t)s * W + (size_t)hd * dh
                            : j->out + (size_t)sb->off[s] * W + (size_t)hd * dh;
    for (int jj = 0; jj < nk; jj++) {
        const float *kr = base + W + (size_t)jj * ld;
        for (int d = 0; d < dh; d++) Kt[(size_t)d * nk + jj] = kr[d];
    }
    if (j->direct && sb->causal && nq > ATT_CHUNK) {
        /* causal: a chunk of query rows only needs the keys up to its
         * last row (the masked triangle is neither computed nor read) */
        for (int r0 = 0; r0 < nq; r0 += ATT_CHUNK) {
            int rows = nq - r0 < ATT_CHUNK ? nq - r0 : ATT_CHUNK, nkr = q0 + r0 + rows;
            float *Sr = S + (size_t)r0 * nk;
            cdx_gemm_small_nn(rows, nkr, dh, scale, base + (size_t)(q0 + r0) * ld, ld, Kt, nk,
                              0.0f, Sr, nk);
            cdx_softmax_rows(Sr, nk, rows, nkr, 1, q0 + r0 + 1, fast);
            cdx_gemm_small_nn(rows, dh, nkr, 1.0f, Sr, nk, base + 2 * W, ld, 0.0f,
                              o + (size_t)r0 * W, W);
        }
    } else if (j->direct) {
        cdx_gemm_small_nn(nq, nk, dh, scale, base + (size_t)q0 * ld, ld, Kt, nk, 0.0f, S, nk);
        cdx_softmax_rows(S, nk, nq, nk, sb->causal, q0 + 1, fast);
        cdx_gemm_small_nn(nq, dh, nk, 1.0f, S, nk, base + 2 * W, ld, 0.0f, o, W);
    } else {
        /* the backend on this thread only (its OpenMP team would nest) */
        int prev = omp_get_max_threads();
        omp_set_num_threads(1);
        cdx_gemm(c->be, nq, nk, dh, scale, base + (size_t)q0 * ld, ld, Kt, nk, 0, 0.0f, NULL, S, nk);
        cdx_softmax_rows(S, nk, nq, nk, sb->causal, q0 + 1, fast);
        cdx_gemm(c->be, nq, dh, nk, 1.0f, S, nk, base + 2 * W, ld, 0, 0.0f, NULL, o, W);
        omp_set_num_threads(prev);
    }
}

static void attention(cdx_ctx *c, const cdx_tower_config *cfg, const seq_batch *sb,
                      int pool_only, float *out)
{
    const int W = cfg->width, H = cfg->heads, fast = !c->reference;
    att_job j = {c, sb, W, H, W / H, 3 * W, pool_only, fast, fast && cdx_gemm_small_available(),
                 1.0f / sqrtf((float)(W / H)), out};
    cdx_par_for(sb->n * H, cdx_par_threads(), attention_task, &j);
}

static void layernorm(const cdx_ctx *c, const cdx_layernorm *ln, float eps,
                      const float *x, float *y, int rows)
{
    cdx_layernorm_rows(x, ln->dim, y, ln->dim, rows, ln->dim, ln->g, ln->b, eps, !c->reference);
}

/* One residual block over all packed rows of x. */
static void block_full(cdx_ctx *c, const cdx_block *bk, const cdx_tower_config *cfg,
                       const seq_batch *sb, float *x)
{
    const int M = sb->M;
    layernorm(c, &bk->ln1, cfg->eps, x, c->h, M);
    linear(c, &bk->qkv, M, c->h, c->qkv, 0, CDX_EPI_NONE);
    attention(c, cfg, sb, 0, c->h);
    linear(c, &bk->out, M, c->h, x, 1, CDX_EPI_NONE);
    layernorm(c, &bk->ln2, cfg->eps, x, c->h, M);
    linear(c, &bk->fc1, M, c->h, c->big, 0, epilogue_of(cfg->act));
    linear(c, &bk->fc2, M, c->big, x, 1, CDX_EPI_NONE);
}

/* The last block computed only where it matters: K/V for every row, the
 * rest for the pooled row of each sequence.  Result: c->px [n, W]. */
static void block_last(cdx_ctx *c, const cdx_block *bk, const cdx_tower_config *cfg,
                       const seq_batch *sb, const float *x)
{
    const int W = cfg->width, n = sb->n;
    layernorm(c, &bk->ln1, cfg->eps, x, c->h, sb->M);
    linear(c, &bk->qkv, sb->M, c->h, c->qkv, 0, CDX_EPI_NONE);
    attention(c, cfg, sb, 1, c->pa);
    for (int s = 0; s < n; s++)
        memcpy(c->px + (size_t)s * W, x + (size_t)(sb->off[s] + sb->pool[s]) * W,
               (size_t)W * sizeof(float));
    linear(c, &bk->out, n, c->pa, c->px, 1, CDX_EPI_NONE);
    layernorm(c, &bk->ln2, cfg->eps, c->px, c->h, n);
    linear(c, &bk->fc1, n, c->h, c->big, 0, epilogue_of(cfg->act));
    linear(c, &bk->fc2, n, c->big, c->px, 1, CDX_EPI_NONE);
}

/* All blocks; leaves the residual stream at each pooled row in c->px. */
static void run_blocks(cdx_ctx *c, const cdx_block *blocks, const cdx_tower_config *cfg,
                       const seq_batch *sb, float *layer0_tap, size_t tap_ld_rows)
{
    const int W = cfg->width;
    int full = c->have_taps;
    for (int l = 0; l < cfg->layers; l++) {
        if (l == cfg->layers - 1 && !full) {
            block_last(c, &blocks[l], cfg, sb, c->x);
            return;
        }
        block_full(c, &blocks[l], cfg, sb, c->x);
        if (l == 0 && layer0_tap)
            for (int s = 0; s < sb->n; s++)
                memcpy(layer0_tap + (size_t)s * tap_ld_rows * W, c->x + (size_t)sb->off[s] * W,
                       (size_t)sb->len[s] * W * sizeof(float));
    }
    for (int s = 0; s < sb->n; s++)
        memcpy(c->px + (size_t)s * W, c->x + (size_t)(sb->off[s] + sb->pool[s]) * W,
               (size_t)W * sizeof(float));
}

static void normalize_rows(float *v, int rows, int dim)
{
    for (int r = 0; r < rows; r++) {
        float *x = v + (size_t)r * dim;
        double s = 0;
        for (int i = 0; i < dim; i++) s += (double)x[i] * x[i];
        if (s > 0) {
            float inv = (float)(1.0 / sqrt(s));
            for (int i = 0; i < dim; i++) x[i] *= inv;
        }
    }
}

/* ------------------------------------------------------------ vision */

typedef struct vis_job {
    cdx_ctx *c;
    const float *pixels;
} vis_job;

/* im2col row r = (b, gy, gx): the patch flattened (c, y, x) like patch_w */
static void im2col_row(void *arg, int r, int slot)
{
    const vis_job *j = arg;
    const cdx_vision_tower *v = &j->c->m->vision;
    const int p = v->patch_size, g = v->grid, S = v->image_size, K = 3 * p * p, gg = g * g;
    int b = r / gg, gy = (r % gg) / g, gx = r % g;
    float *dst = j->c->big + (size_t)r * K;
    (void)slot;
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < p; y++)
            memcpy(dst + (size_t)(ch * p + y) * p,
                   j->pixels + (((size_t)b * 3 + ch) * S + (size_t)gy * p + y) * S + (size_t)gx * p,
                   (size_t)p * sizeof(float));
}

/* token row r = (b, t): class token or patch embedding, + position */
static void embed_row(void *arg, int r, int slot)
{
    const vis_job *j = arg;
    const cdx_vision_tower *v = &j->c->m->vision;
    const int W = v->cfg.width, T = v->n_tokens, gg = v->grid * v->grid;
    int b = r / T, t = r % T;
    const float *src = t == 0 ? v->class_emb : j->c->h + ((size_t)b * gg + t - 1) * W;
    const float *pos = v->pos_emb + (size_t)t * W;
    float *dst = j->c->x + (size_t)r * W;
    (void)slot;
    for (int i = 0; i < W; i++) dst[i] = src[i] + pos[i];
}

static void vision_chunk(cdx_ctx *c, const float *pixels, int nb, float *out, int b0)
{
    const cdx_vision_tower *v = &c->m->vision;
    const int W = v->cfg.width, p = v->patch_size, g = v->grid, T = v->n_tokens;
    const int K = 3 * p * p, gg = g * g;
    const int fast = !c->reference;

    /* im2col: row (b, gy, gx) = the patch flattened (c, y, x) like patch_w */
    vis_job j = {c, pixels};
    cdx_par_for(nb * gg, cdx_par_threads(), im2col_row, &j);
    if (use_packed(c, v->patch_w, v->patch_wp, nb * gg))
        cdx_gemm_packed(nb * gg, W, K, c->big, K, v->patch_wp, NULL, CDX_PACK_ACT_NONE, 0, c->h, W,
                        !c->reference);
    else
        cdx_gemm(c->be, nb * gg, W, K, 1.0f, c->big, K, v->patch_w, K, 1, 0.0f, NULL, c->h, W);
    cdx_par_for(nb * T, cdx_par_threads(), embed_row, &j);
    layernorm(c, &v->ln_pre, v->cfg.eps, c->x, c->x, nb * T);
    const cdx_taps *tp = c->have_taps ? &c->taps : NULL;
    if (tp && tp->vision_ln_pre)
        memcpy(tp->vision_ln_pre + (size_t)b0 * T * W, c->x, (size_t)nb * T * W * sizeof(float));

    for (int b = 0; b < nb; b++) {
        c->off[b] = b * T;
        c->len[b] = T;
        c->pool[b] = 0;
    }
    seq_batch sb = {nb, nb * T, 0, c->off, c->len, c->pool};
    c->q8_a7 = 1;
    run_blocks(c, v->blocks, &v->cfg, &sb,
               tp && tp->vision_layer0_out ? tp->vision_layer0_out + (size_t)b0 * T * W : NULL, T);
    c->q8_a7 = 0;
    cdx_layernorm_rows(c->px, W, c->pa, W, nb, W, v->ln_post.g, v->ln_post.b, v->cfg.eps, fast);
    if (tp && tp->vision_pooled_ln_post)
        memcpy(tp->vision_pooled_ln_post + (size_t)b0 * W, c->pa, (size_t)nb * W * sizeof(float));
    linear(c, &v->proj, nb, c->pa, out, 0, CDX_EPI_NONE);
}

/* ------------------------------------------------------------ int8 preparation
 *
 * On the first int8 use of a tower: calibrate (a float32 pass over a few
 * built-in inputs records max |input| per channel of every block Linear),
 * then quantise each block Linear with SmoothQuant factors
 * s_k = sqrt(amax_k / max_j |W[j,k]|) (alpha = 0.5): the weights carry s,
 * the activation quantiser divides by it, so channels with outliers are
 * flattened before the per-row scale is taken.  $CLIPDEX_INT8_SMOOTH=0
 * turns the factors off (s = 1), for comparison.
 *
 * The copies (int8 and bf16 alike) are made once per model, precision,
 * settings and instruction set: saved in the engine cache beside the
 * tower's prepared file and mapped by later loads (prepared.h), which then
 * neither calibrate nor read the float32 block weights at all. */

static cdx_linear *block_linear(cdx_block *b, int i)
{
    return i == 0 ? &b->qkv : i == 1 ? &b->out : i == 2 ? &b->fc1 : &b->fc2;
}

static cdx_result q8_alloc(cdx_model *m, cdx_linear *l)
{
    if (l->q8) {
        memset(l->q8->amax, 0, (size_t)l->in * sizeof(float));
        return CDX_OK;
    }
    cdx_linear_q8 *q = (cdx_linear_q8 *)cdx_model_alloc(m, (sizeof *q + 3) / 4);
    float *amax = cdx_model_alloc(m, (size_t)l->in);
    if (!q || !amax) return cdx_error(CDX_ERR_NOMEM, "int8 weights: out of memory");
    memset(q, 0, sizeof *q);
    memset(amax, 0, (size_t)l->in * sizeof(float));
    q->amax = amax;
    l->q8 = q;
    return CDX_OK;
}

/* a few deterministic inputs through the float32 tower, recording amax */
static cdx_result q8_calibrate(const cdx_model *m, int tower)
{
    cdx_ctx_params p = cdx_ctx_default_params();
    p.max_batch = 5;
    cdx_ctx *c = NULL;
    cdx_result r = cdx_ctx_new(m, &p, &c);
    if (r) return r;
    c->calib = 1;
    uint32_t seed = 12345;
#define LCG() (seed = seed * 1664525u + 1013904223u, seed >> 8)
    float out[5 * 4096];
    if (tower == CDX_TOWER_VISION) {   /* gradient, checkerboard, noise, waves */
        const int S = m->vision.image_size;
        float *px = malloc((size_t)4 * 3 * S * S * sizeof(float));
        if (!px) r = cdx_error(CDX_ERR_NOMEM, "int8 calibration: out of memory");
        for (int b = 0; px && b < 4; b++)
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) {
                        float v = b == 0   ? -1.5f + 3.0f * (float)(x + y + 17 * ch) / (2.0f * S)
                                  : b == 1 ? (((x / 8) + (y / 8) + ch) % 2 ? 1.5f : -1.5f)
                                  : b == 2 ? -1.8f + 3.8f * (float)(LCG() & 0xFFFF) / 65535.0f
                                           : 1.2f * sinf(0.2f * x + ch) * cosf(0.13f * y);
                        px[(((size_t)b * 3 + ch) * S + y) * S + x] = v;
                    }
        if (px && m->vision.proj.out <= 4096) r = cdx_encode_images(c, px, 4, out, 0);
        free(px);
    } else {   /* start token, words, end token (the largest id: pooled there) */
        const int T = m->text.context_length, V = m->text.vocab_size;
        static const int lens[5] = {5, 11, 19, 37, 75};
        int32_t *ids = calloc((size_t)5 * T, sizeof *ids);
        if (!ids) r = cdx_error(CDX_ERR_NOMEM, "int8 calibration: out of memory");
        for (int s = 0; ids && s < 5 && V > 3 && T > 2; s++) {
            int L = lens[s] < T - 2 ? lens[s] : T - 2;
            int32_t *row = ids + (size_t)s * T;
            row[0] = V - 2;
            for (int i = 1; i <= L; i++) row[i] = 1 + (int32_t)(LCG() % (uint32_t)(V - 3));
            row[L + 1] = V - 1;
        }
        if (ids && m->text.proj.out <= 4096) r = cdx_encode_tokens(c, ids, 5, out, 0);
        free(ids);
    }
#undef LCG
    cdx_ctx_free(c);
    return r;
}

static int smooth_on(void)
{
    const char *e = getenv("CLIPDEX_INT8_SMOOTH");
    return !(e && !strcmp(e, "0"));
}

/* tmp: out*in floats of scratch, smooth: in floats */
static cdx_result q8_quantize(cdx_model *m, cdx_linear *l, float *tmp, float *smooth)
{
    cdx_linear_q8 *q = l->q8;
    const int n = l->out, k = l->in;
    const float *W = l->w;
    if (!W) {
        cdx_unpack_weights(n, k, l->wp, tmp, k);
        W = tmp;
    }
    size_t nr = (size_t)(n + CDX_Q8_NR - 1) / CDX_Q8_NR * CDX_Q8_NR;
    q->inv_smooth = cdx_model_alloc(m, (size_t)k);
    q->scale = cdx_model_alloc(m, nr);
    q->colsum = (int32_t *)cdx_model_alloc(m, nr);
    q->w = (int8_t *)cdx_model_alloc(m, (cdx_q8_pack_bytes(n, k) + 3) / 4);
    if (!q->inv_smooth || !q->scale || !q->colsum || !q->w)
        return cdx_error(CDX_ERR_NOMEM, "int8 weights: out of memory");
    for (int kk = 0; kk < k; kk++) smooth[kk] = 0.0f;
    for (int j = 0; j < n; j++)
        for (int kk = 0; kk < k; kk++) {
            float v = fabsf(W[(size_t)j * k + kk]);
            if (v > smooth[kk]) smooth[kk] = v;
        }
    const int on = smooth_on();
    for (int kk = 0; kk < k; kk++) {
        float a = q->amax[kk], w = smooth[kk], s = 1.0f;
        if (on && a > 0.0f && w > 0.0f && isfinite(a)) s = sqrtf(a / w);
        s = s < 1e-3f ? 1e-3f : s > 1e3f ? 1e3f : s;
        smooth[kk] = s;
        q->inv_smooth[kk] = 1.0f / s;
    }
    q->wmax = cdx_q8_weight_max();
    cdx_q8_pack_weights(n, k, W, k, smooth, q->wmax, q->w, q->scale, q->colsum);
    return CDX_OK;
}

/* What the int8 / bf16 copies depend on besides the weights (their
 * prepared file's key, prepared.h): layout, weight range, SmoothQuant. */
static void copies_recipe(cdx_precision prec, char *buf, size_t cap)
{
    if (prec == CDX_PRECISION_BF16)
        snprintf(buf, cap, "layout=bf16-nr%d-kpad2", CDX_BF16_NR);
    else
        snprintf(buf, cap, "layout=q8-nr%d-k4; wmax=%d; smooth=%s; calibration=v1", CDX_Q8_NR,
                 cdx_q8_weight_max(), smooth_on() ? "sqrt(amax/wmax)" : "off");
}

/* The owned buffers of the copies just made (int8: 4 per Linear, bf16: 1) */
static int copies_buffers(cdx_model *m, int tower, cdx_precision prec, const void **out)
{
    const int text = tower == CDX_TOWER_TEXT;
    cdx_block *blocks = text ? m->text.blocks : m->vision.blocks;
    const int layers = text ? m->text.cfg.layers : m->vision.cfg.layers;
    int n = 0;
    for (int b = 0; b < layers; b++)
        for (int i = 0; i < 4; i++) {
            cdx_linear *l = block_linear(&blocks[b], i);
            if (prec == CDX_PRECISION_BF16) {
                out[n++] = l->bf;
                continue;
            }
            out[n++] = l->q8->w;
            out[n++] = l->q8->scale;
            out[n++] = l->q8->colsum;
            out[n++] = l->q8->inv_smooth;
        }
    return n;
}

/* The copies were just made in owned buffers: save them in the engine
 * cache and use the mapped file instead (the buffers are freed; the pages
 * are shared with other processes and can be dropped).  When that fails
 * the owned buffers stay.  Then drop the float32 tower's pages that making
 * the copies touched. */
static void save_copies(cdx_model *m, int tower, cdx_precision prec, const char *recipe)
{
    const int ti = tower == CDX_TOWER_TEXT ? 0 : 1, ci = prec == CDX_PRECISION_BF16;
    const int layers = tower == CDX_TOWER_TEXT ? m->text.cfg.layers : m->vision.cfg.layers;
    const void **old = malloc((size_t)layers * 16 * sizeof *old);
    m->copies_source[ti][ci] = CDX_TOWER_SRC_BUILT;
    int n = old ? copies_buffers(m, tower, prec, old) : 0;
    if (old && cdx_prep_save_copies(m, tower, prec, recipe) == CDX_OK &&
        cdx_prep_load_copies(m, tower, prec, recipe) == CDX_OK) {
        for (int i = 0; i < n; i++) cdx_model_release(m, old[i]);
        m->copies_source[ti][ci] = CDX_TOWER_SRC_BUILT_SAVED;
    }
    cdx_error_clear();
    free(old);
    cdx_prep_drop_pages(m, tower);
}

static cdx_result build_q8(cdx_model *m, int tower)
{
    const int text = tower == CDX_TOWER_TEXT;
    cdx_block *blocks = text ? m->text.blocks : m->vision.blocks;
    const int layers = text ? m->text.cfg.layers : m->vision.cfg.layers;
    cdx_result r = CDX_OK;
    size_t most = 0;
    for (int b = 0; b < layers && !r; b++)
        for (int i = 0; i < 4 && !r; i++) {
            cdx_linear *l = block_linear(&blocks[b], i);
            r = q8_alloc(m, l);
            if (!r) l->q8->wmax = cdx_q8_weight_max();
            size_t sz = (size_t)l->out * (size_t)l->in + (size_t)l->in;
            most = sz > most ? sz : most;
        }
    char recipe[160];
    copies_recipe(CDX_PRECISION_INT8, recipe, sizeof recipe);
    if (!r && cdx_prep_load_copies(m, tower, CDX_PRECISION_INT8, recipe) == CDX_OK) {
        m->copies_source[text ? 0 : 1][0] = CDX_TOWER_SRC_MAPPED;
        return CDX_OK;
    }
    cdx_error_clear();
    if (!r) r = q8_calibrate(m, tower);
    if (r) return cdx_error_prefix(r, "int8 calibration");
    float *tmp = cdx_alloc_aligned(most, sizeof(float));
    if (!tmp) return cdx_error(CDX_ERR_NOMEM, "int8 weights: out of memory");
    for (int b = 0; b < layers && !r; b++)
        for (int i = 0; i < 4 && !r; i++) {
            cdx_linear *l = block_linear(&blocks[b], i);
            r = q8_quantize(m, l, tmp, tmp + (size_t)l->out * l->in);
        }
    cdx_free_aligned(tmp);
    if (!r) save_copies(m, tower, CDX_PRECISION_INT8, recipe);
    return r;
}

/* bf16 copies of the block Linears (round to nearest even from the float32
 * weights: a bf16 file's own values) */
static cdx_result build_bf16(cdx_model *m, int tower)
{
    const int text = tower == CDX_TOWER_TEXT;
    cdx_block *blocks = text ? m->text.blocks : m->vision.blocks;
    const int layers = text ? m->text.cfg.layers : m->vision.cfg.layers;
    char recipe[160];
    copies_recipe(CDX_PRECISION_BF16, recipe, sizeof recipe);
    if (cdx_prep_load_copies(m, tower, CDX_PRECISION_BF16, recipe) == CDX_OK) {
        m->copies_source[text ? 0 : 1][1] = CDX_TOWER_SRC_MAPPED;
        return CDX_OK;
    }
    cdx_error_clear();
    cdx_result r = CDX_OK;
    float *tmp = NULL;
    size_t tmp_n = 0;
    for (int b = 0; b < layers && !r; b++)
        for (int i = 0; i < 4 && !r; i++) {
            cdx_linear *l = block_linear(&blocks[b], i);
            size_t n = (size_t)l->out * l->in;
            const float *W = l->w;
            if (!W && n > tmp_n) {
                cdx_free_aligned(tmp);
                tmp = cdx_alloc_aligned(tmp_n = n, sizeof(float));
            }
            uint16_t *P = (uint16_t *)cdx_model_alloc(m, (cdx_bf16_pack_elems(l->out, l->in) + 1) / 2);
            if (!P || (!W && !tmp)) {
                r = cdx_error(CDX_ERR_NOMEM, "bf16 weights: out of memory");
                break;
            }
            if (!W) {
                cdx_unpack_weights(l->out, l->in, l->wp, tmp, l->in);
                W = tmp;
            }
            cdx_bf16_pack_weights(l->out, l->in, W, l->in, P);
            l->bf = P;
        }
    cdx_free_aligned(tmp);
    if (!r) save_copies(m, tower, CDX_PRECISION_BF16, recipe);
    return r;
}

/* The tower's int8 or bf16 copies, made once (under the model's tower_mu). */
static cdx_result need_q8(const cdx_ctx *c, int tower)
{
    if (c->prec == CDX_PRECISION_BF16) {
        if (__atomic_load_n(&c->m->bf16_ready, __ATOMIC_ACQUIRE) & tower) return CDX_OK;
        cdx_model *m = (cdx_model *)c->m;
        pthread_mutex_lock(&m->tower_mu);
        cdx_result r = CDX_OK;
        if (!(__atomic_load_n(&m->bf16_ready, __ATOMIC_RELAXED) & tower)) {
            r = build_bf16(m, tower);
            if (!r) __atomic_fetch_or(&m->bf16_ready, tower, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&m->tower_mu);
        return r;
    }
    if (c->prec != CDX_PRECISION_INT8) return CDX_OK;
    if (__atomic_load_n(&c->m->q8_ready, __ATOMIC_ACQUIRE) & tower) return CDX_OK;
    cdx_model *m = (cdx_model *)c->m;   /* logically const: filled in once, under the lock */
    pthread_mutex_lock(&m->tower_mu);
    cdx_result r = CDX_OK;
    if (!(__atomic_load_n(&m->q8_ready, __ATOMIC_RELAXED) & tower)) {
        r = build_q8(m, tower);
        if (!r) __atomic_fetch_or(&m->q8_ready, tower, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&m->tower_mu);
    return r;
}

/* bytes of the weights a forward pass at precision p reads */
static size_t linear_bytes(const cdx_linear *l, cdx_precision p)
{
    size_t b = l->b ? (size_t)l->out * sizeof(float) : 0;
    if (p == CDX_PRECISION_BF16 && l->bf)
        return b + cdx_bf16_pack_elems(l->out, l->in) * sizeof(uint16_t);
    if (p == CDX_PRECISION_INT8 && l->q8 && l->q8->w)
        return b + cdx_q8_pack_bytes(l->out, l->in) + (size_t)l->in * sizeof(float) +
               (size_t)(l->out + CDX_Q8_NR - 1) / CDX_Q8_NR * CDX_Q8_NR * 8;
    return b + (l->wp ? cdx_pack_floats(l->out, l->in) : (size_t)l->out * l->in) * sizeof(float);
}

static size_t blocks_bytes(const cdx_block *bk, const cdx_tower_config *cfg, cdx_precision p)
{
    size_t b = 0;
    for (int i = 0; bk && i < cfg->layers; i++) {
        cdx_block *x = (cdx_block *)&bk[i];
        for (int j = 0; j < 4; j++) b += linear_bytes(block_linear(x, j), p);
        b += (size_t)4 * cfg->width * sizeof(float);   /* two LayerNorms */
    }
    return b;
}

size_t cdx_model_weight_bytes(const cdx_model *m, cdx_precision p, int towers)
{
    size_t b = 0;
    if (towers & CDX_TOWER_TEXT) {
        const cdx_text_tower *t = &m->text;
        b += (size_t)(t->vocab_size + t->context_length) * t->cfg.width * sizeof(float);
        b += blocks_bytes(t->blocks, &t->cfg, p) + linear_bytes(&t->proj, p);
    }
    if (towers & CDX_TOWER_VISION) {
        const cdx_vision_tower *v = &m->vision;
        size_t k = (size_t)3 * v->patch_size * v->patch_size;
        b += (v->patch_wp ? cdx_pack_floats(v->cfg.width, (int)k) : (size_t)v->cfg.width * k) * sizeof(float);
        b += (size_t)(v->n_tokens + 1) * v->cfg.width * sizeof(float);
        b += blocks_bytes(v->blocks, &v->cfg, p) + linear_bytes(&v->proj, p);
    }
    return b;
}

static int enter_threads(const cdx_ctx *c)
{
    int prev = omp_get_max_threads();
    omp_set_num_threads(c->n_threads);
    return prev;
}

cdx_result cdx_encode_images(cdx_ctx *ctx, const float *pixels, int n, float *out,
                             int normalize)
{
    if (!ctx || n < 0 || (n > 0 && (!pixels || !out)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_encode_images: bad arguments");
    cdx_result r = cdx_model_need(ctx->m, CDX_TOWER_VISION);   /* lazy: first image */
    if (!r) r = need_q8(ctx, CDX_TOWER_VISION);
    if (r) return r;
    const cdx_vision_tower *v = &ctx->m->vision;
    const size_t per = (size_t)3 * v->image_size * v->image_size;
    const int E = v->proj.out;
    int prev = enter_threads(ctx);
    for (int b0 = 0; b0 < n; b0 += ctx->max_batch) {
        int nb = n - b0 < ctx->max_batch ? n - b0 : ctx->max_batch;
        vision_chunk(ctx, pixels + (size_t)b0 * per, nb, out + (size_t)b0 * E, b0);
    }
    omp_set_num_threads(prev);
    if (normalize) normalize_rows(out, n, E);
    return CDX_OK;
}

/* ------------------------------------------------------------ text */

/* argmax like torch: the first position holding the largest id. */
static int pool_position(const int32_t *ids, int T)
{
    int best = 0;
    for (int i = 1; i < T; i++)
        if (ids[i] > ids[best]) best = i;
    return best;
}

static void text_chunk(cdx_ctx *c, const int32_t *ids, int nb, float *out, int b0)
{
    const cdx_text_tower *t = &c->m->text;
    const int W = t->cfg.width, T = t->context_length;
    const cdx_taps *tp = c->have_taps ? &c->taps : NULL;
    int M = 0;
    for (int s = 0; s < nb; s++) {
        c->pool[s] = pool_position(ids + (size_t)s * T, T);
        c->len[s] = tp ? T : c->pool[s] + 1;
        c->off[s] = M;
        M += c->len[s];
    }
    for (int s = 0; s < nb; s++)   /* ~M x W adds: not worth threads */
        for (int i = 0; i < c->len[s]; i++) {
            const float *te = t->tok_emb + (size_t)ids[(size_t)s * T + i] * W;
            const float *pe = t->pos_emb + (size_t)i * W;
            float *dst = c->x + (size_t)(c->off[s] + i) * W;
            for (int j = 0; j < W; j++) dst[j] = te[j] + pe[j];
        }
    if (tp && tp->text_embeddings)   /* taps set: every row has T positions */
        memcpy(tp->text_embeddings + (size_t)b0 * T * W, c->x, (size_t)nb * T * W * sizeof(float));
    seq_batch sb = {nb, M, 1, c->off, c->len, c->pool};
    run_blocks(c, t->blocks, &t->cfg, &sb,
               tp && tp->text_layer0_out ? tp->text_layer0_out + (size_t)b0 * T * W : NULL, T);
    layernorm(c, &t->ln_final, t->cfg.eps, c->px, c->pa, nb);
    if (tp && tp->text_pooled_ln_final)
        memcpy(tp->text_pooled_ln_final + (size_t)b0 * W, c->pa, (size_t)nb * W * sizeof(float));
    linear(c, &t->proj, nb, c->pa, out, 0, CDX_EPI_NONE);
}

/* Encode n token rows; taps (if set) receive them as rows tap0 .. tap0+n-1. */
static cdx_result encode_tokens_at(cdx_ctx *ctx, const int32_t *ids, int n, float *out,
                                   int normalize, int tap0)
{
    cdx_result r = cdx_model_need(ctx->m, CDX_TOWER_TEXT);   /* lazy: first text */
    if (!r) r = need_q8(ctx, CDX_TOWER_TEXT);
    if (r) return r;
    const cdx_text_tower *t = &ctx->m->text;
    const int T = t->context_length, E = t->proj.out;
    for (size_t i = 0; i < (size_t)n * T; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab_size)
            return cdx_error(CDX_ERR_INVALID_ARG,
                             "cdx_encode_tokens: row %zu position %zu: token id %d not in 0..%d",
                             i / T + (size_t)tap0, i % T, (int)ids[i], t->vocab_size - 1);
    int prev = enter_threads(ctx);
    for (int b0 = 0; b0 < n; b0 += ctx->max_batch) {
        int nb = n - b0 < ctx->max_batch ? n - b0 : ctx->max_batch;
        text_chunk(ctx, ids + (size_t)b0 * T, nb, out + (size_t)b0 * E, tap0 + b0);
    }
    omp_set_num_threads(prev);
    if (normalize) normalize_rows(out, n, E);
    return CDX_OK;
}

cdx_result cdx_encode_tokens(cdx_ctx *ctx, const int32_t *ids, int n, float *out,
                             int normalize)
{
    if (!ctx || n < 0 || (n > 0 && (!ids || !out)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_encode_tokens: bad arguments");
    return encode_tokens_at(ctx, ids, n, out, normalize, 0);
}

cdx_result cdx_encode_texts(cdx_ctx *ctx, const char *const *texts, int n, float *out,
                            int normalize)
{
    if (!ctx || n < 0 || (n > 0 && (!texts || !out)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_encode_texts: bad arguments");
    const int T = ctx->m->text.context_length, E = ctx->m->cfg.projection_dim;
    /* tokenised max_batch texts at a time into ctx->ids (no allocation) */
    for (int b0 = 0; b0 < n; b0 += ctx->max_batch) {
        int nb = n - b0 < ctx->max_batch ? n - b0 : ctx->max_batch;
        for (int s = 0; s < nb; s++) {
            const char *txt = texts[b0 + s];
            if (!txt) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_encode_texts: text %d is NULL", b0 + s);
            cdx_result r = cdx_tokenize(ctx->m, txt, strlen(txt), ctx->ids + (size_t)s * T, NULL);
            if (r != CDX_OK) {
                char what[64];
                snprintf(what, sizeof what, "cdx_encode_texts: text %d", b0 + s);
                return cdx_error_prefix(r, what);
            }
        }
        cdx_result r = encode_tokens_at(ctx, ctx->ids, nb, out + (size_t)b0 * E, normalize, b0);
        if (r != CDX_OK) return r;
    }
    return CDX_OK;
}
