/*
 * test_backward.c - every backward pass of the training code checked against
 * central finite differences: linear, LayerNorm, quick_gelu and gelu,
 * multi-head attention with and without the causal mask (sequences of
 * different lengths packed together) and with one query per sequence (the
 * last block), the contrastive loss (through both
 * L2 normalisations and the logit scale), and the whole model - patch,
 * class, token and position embeddings, end-token pooling, projections -
 * on a small random CLIP, tensor by tensor, for all parameters and for the
 * last block only (whose gradients must equal the full run's).
 *
 * Method: a scalar objective (sum of outputs times fixed random weights, or
 * the loss itself); for each input, the directional derivative along a
 * random direction u, (f(x + h u) - f(x - h u)) / 2h, is compared with
 * <grad, u>.  Computations use the reference GEMM (double accumulation) so
 * the float32 noise stays far below the tolerance.
 */
#include "testutil.h"
#include <omp.h>
#include "testsupport/model_random.h"
#include "common/cpu.h"
#include "train/grad.h"
#include "train/trainer.h"

static const cdx_gemm_backend BE = CDX_GEMM_BE_REFERENCE;

static uint64_t rng = 88172645463325252ull;
static double urand(void)   /* uniform [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}
static float *rvec(size_t n, double scale)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = (float)(urand() * scale);
    return v;
}
static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* The objective of one op test: recomputes the forward from the current inputs. */
typedef double (*objective)(void *ctx);

/* Check <grad, u> against finite differences of f along u for x[n]. */
/* (f(x0 + h u) - f(x0 - h u)) / 2h; leaves x = x0 */
static double central(objective f, void *ctx, float *x, const float *x0, const float *u, size_t n, double h)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(x0[i] + h * u[i]);
    double fp = f(ctx);
    for (size_t i = 0; i < n; i++) x[i] = (float)(x0[i] - h * u[i]);
    double fm = f(ctx);
    memcpy(x, x0, n * sizeof(float));
    return (fp - fm) / (2 * h);
}

/* reps == 1 (whole-model checks: float32 loss noise over many layers)
 * allows 5e-3 absolute, else 1e-3. */
static void check_dirs(int reps, const char *what, objective f, void *ctx, float *x, size_t n,
                       const float *grad, double h, double rtol)
{
    for (int rep = 0; rep < reps; rep++) {
        float *u = rvec(n, 1.0), *x0 = malloc(n * sizeof(float));
        memcpy(x0, x, n * sizeof(float));
        double d1 = central(f, ctx, x, x0, u, n, h), an = dotd(grad, u, n), tol = rtol * fabs(an) + (reps == 1 ? 5e-3 : 1e-3);
        double fd = d1;
        if (fabs(fd - an) > tol)   /* curvature: Richardson extrapolation cancels the h^2 term */
            fd = (4 * central(f, ctx, x, x0, u, n, h / 2) - d1) / 3;
        CHECKF(fabs(fd - an) <= tol, "%s: finite difference %.7g (plain %.7g), analytic %.7g", what, fd, d1, an);
        free(u);
        free(x0);
    }
}

#define check_dir(...) check_dirs(3, __VA_ARGS__)

/* ------------------------------------------------------------ linear */

typedef struct lin_ctx { int M, in, out; float *X, *W, *b, *Y, *R; } lin_ctx;
static double lin_f(void *p)
{
    lin_ctx *c = p;
    cdx_grad_linear_fwd(BE, c->M, c->in, c->out, c->X, c->W, c->b, c->Y);
    return dotd(c->Y, c->R, (size_t)c->M * c->out);
}

static void test_linear(void)
{
    lin_ctx c = {5, 7, 6, NULL, NULL, NULL, NULL, NULL};
    c.X = rvec(35, 1); c.W = rvec(42, 0.5); c.b = rvec(6, 0.1); c.Y = rvec(30, 0); c.R = rvec(30, 1);
    float *dX = rvec(35, 1), *dX0 = malloc(35 * sizeof(float)), *dW = calloc(42, sizeof(float)),
          *db = calloc(6, sizeof(float));
    memcpy(dX0, dX, 35 * sizeof(float));
    cdx_grad_linear_bwd(BE, 5, 7, 6, c.X, c.W, c.R, dX, 1, dW, db);   /* accumulate into dX */
    for (int i = 0; i < 35; i++) dX[i] -= dX0[i];
    check_dir("linear dX", lin_f, &c, c.X, 35, dX, 1e-2, 1e-4);
    check_dir("linear dW", lin_f, &c, c.W, 42, dW, 1e-2, 1e-4);
    check_dir("linear db", lin_f, &c, c.b, 6, db, 1e-2, 1e-4);
    /* dW accumulates: a second call doubles it */
    float w0 = dW[3];
    cdx_grad_linear_bwd(BE, 5, 7, 6, c.X, c.W, c.R, NULL, 0, dW, NULL);
    CHECK(fabsf(dW[3] - 2 * w0) <= 1e-5f * fabsf(w0) + 1e-7f);
    /* the fast backend agrees with the reference */
    float *dWf = calloc(42, sizeof(float)), *dXf = calloc(35, sizeof(float));
    cdx_grad_linear_bwd(cdx_gemm_default_backend(), 5, 7, 6, c.X, c.W, c.R, dXf, 0, dWf, NULL);
    CHECK(test_max_abs_diff(dXf, dX, 35) < 1e-5 && fabs(2 * dWf[3] - dW[3]) < 1e-5);
    free(c.X); free(c.W); free(c.b); free(c.Y); free(c.R);
    free(dX); free(dX0); free(dW); free(db); free(dWf); free(dXf);
}

/* ------------------------------------------------------------ layernorm */

typedef struct ln_ctx { int rows, dim; float *x, *g, *b, *y, *mu, *rs, *R; } ln_ctx;
static double ln_f(void *p)
{
    ln_ctx *c = p;
    cdx_grad_layernorm_fwd(c->rows, c->dim, c->x, c->g, c->b, 1e-5f, c->y, c->mu, c->rs);
    return dotd(c->y, c->R, (size_t)c->rows * c->dim);
}

static void test_layernorm(void)
{
    ln_ctx c = {4, 10, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    c.x = rvec(40, 2); c.g = rvec(10, 1); c.b = rvec(10, 0.1); c.y = rvec(40, 0);
    c.mu = rvec(4, 0); c.rs = rvec(4, 0); c.R = rvec(40, 1);
    for (int i = 0; i < 10; i++) c.g[i] += 1.0f;
    ln_f(&c);
    float *dx = calloc(40, sizeof(float)), *dg = calloc(10, sizeof(float)), *db = calloc(10, sizeof(float));
    cdx_grad_layernorm_bwd(4, 10, c.x, c.g, c.mu, c.rs, c.R, dx, 0, dg, db);
    check_dir("layernorm dx", ln_f, &c, c.x, 40, dx, 1e-3, 1e-3);
    check_dir("layernorm dg", ln_f, &c, c.g, 10, dg, 1e-3, 1e-3);
    check_dir("layernorm db", ln_f, &c, c.b, 10, db, 1e-3, 1e-3);
    /* matches the inference kernel's output */
    float *y2 = calloc(40, sizeof(float));
    cdx_layernorm_rows(c.x, 10, y2, 10, 4, 10, c.g, c.b, 1e-5f, 0);
    ln_f(&c);
    CHECK(test_max_abs_diff(y2, c.y, 40) < 1e-5);
    free(c.x); free(c.g); free(c.b); free(c.y); free(c.mu); free(c.rs); free(c.R);
    free(dx); free(dg); free(db); free(y2);
}

/* ------------------------------------------------------------ activations */

typedef struct act_ctx { cdx_epilogue act; int n; float *x, *y, *R; } act_ctx;
static double act_f(void *p)
{
    act_ctx *c = p;
    memcpy(c->y, c->x, (size_t)c->n * sizeof(float));
    cdx_bias_act(c->y, c->n, 1, c->n, NULL, c->act, 0);
    return dotd(c->y, c->R, (size_t)c->n);
}

static void test_activations(void)
{
    const cdx_epilogue acts[2] = {CDX_EPI_QUICK_GELU, CDX_EPI_GELU};
    /* every level this CPU has (quick_gelu: AVX2 float path, scalar double);
     * 67 values: 8 full AVX2 vectors and a tail */
    for (int lvl = cdx_cpu_level(); lvl >= CDX_ISA_SCALAR; lvl--) {
        cdx_cpu_set_cap((cdx_isa)lvl);
        for (int a = 0; a < 2; a++) {
            act_ctx c = {acts[a], 67, rvec(67, 4), rvec(67, 0), rvec(67, 1)};
            float *d = malloc(67 * sizeof(float));
            memcpy(d, c.R, 67 * sizeof(float));
            cdx_grad_act_bwd(c.act, 67, c.x, d);
            check_dir(a ? "gelu" : "quick_gelu", act_f, &c, c.x, 67, d, 1e-3, 1e-3);
            free(c.x); free(c.y); free(c.R); free(d);
        }
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
}

/* AdamW: the vector path equals the scalar one bit for bit (and a step
 * moves a weight against its gradient). */
static void test_adamw(void)
{
    const size_t n = 20003;
    float *w0 = rvec(n, 1), *g = rvec(n, 1), *m0 = rvec(n, 0.1), *v0 = rvec(n, 0.1);
    for (size_t i = 0; i < n; i++) v0[i] = v0[i] * v0[i];
    float *w[2], *m[2], *v[2];
    cdx_grad_adamw_k k = {0.999f, 0.9f, 0.1f, 0.98f, 0.02f, 0.3f, 1e-3f, 1e-6f};
    for (int f = 0; f < 2; f++) {
        w[f] = malloc(n * sizeof(float)); m[f] = malloc(n * sizeof(float)); v[f] = malloc(n * sizeof(float));
        memcpy(w[f], w0, n * sizeof(float)); memcpy(m[f], m0, n * sizeof(float)); memcpy(v[f], v0, n * sizeof(float));
#pragma omp parallel num_threads(2)
        cdx_grad_adamw(n, w[f], g, m[f], v[f], &k, f);
    }
    CHECKF(!memcmp(w[0], w[1], n * sizeof(float)) && !memcmp(m[0], m[1], n * sizeof(float)) &&
           !memcmp(v[0], v[1], n * sizeof(float)), "adamw: the fast path differs from the scalar one");
    memcpy(m[0], m0, n * sizeof(float)); memset(m0, 0, n * sizeof(float)); memset(v0, 0, n * sizeof(float));
    memcpy(w[0], w0, n * sizeof(float));
    k.decay = 1.0f;
    cdx_grad_adamw(n, w[0], g, m0, v0, &k, 1);   /* from zero moments: w moves by ~step against g */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (g[i] != 0 && !((w[0][i] - w0[i]) * g[i] < 0)) bad++;
    CHECKF(bad == 0, "adamw: %zu weights did not move against their gradient", bad);
    for (int f = 0; f < 2; f++) { free(w[f]); free(m[f]); free(v[f]); }
    free(w0); free(g); free(m0); free(v0);
}

/* ------------------------------------------------------------ attention */

typedef struct att_ctx { cdx_grad_seqs sq; int W, H; float *qkv, *P, *out, *R; } att_ctx;
static double att_f(void *p)
{
    att_ctx *c = p;
    cdx_grad_attention_fwd(BE, &c->sq, c->W, c->H, c->qkv, c->P, c->out);
    return dotd(c->out, c->R, (size_t)c->sq.M * c->W);
}

static void test_attention(int causal)
{
    static const int off[2] = {0, 5}, len[2] = {5, 3};
    att_ctx c = {{2, 8, causal, off, len}, 8, 2, NULL, NULL, NULL, NULL};
    c.qkv = rvec(8 * 24, 1.5); c.out = rvec(64, 0); c.R = rvec(64, 1);
    c.P = rvec(cdx_grad_attention_saved(&c.sq, 2), 0);
    att_f(&c);
    float *dqkv = calloc(8 * 24, sizeof(float)), *scr = calloc((size_t)omp_get_max_threads() * 25, sizeof(float));
    cdx_grad_attention_bwd(BE, &c.sq, 8, 2, c.qkv, c.P, c.R, dqkv, scr);
    check_dir(causal ? "attention (causal) dqkv" : "attention dqkv", att_f, &c, c.qkv, 8 * 24, dqkv, 1e-3, 1e-3);
    att_f(&c);
    if (causal)   /* first row of a sequence attends only to itself: out = its v */
        CHECK(fabsf(c.out[8 * 5 + 1] - c.qkv[24 * 5 + 16 + 1]) < 1e-6f);
    /* k bias invariance: sum over rows of dK per head column is 0 */
    double sk = 0;
    for (int r = 0; r < 5; r++) sk += dqkv[r * 24 + 8];
    CHECK(fabs(sk) < 1e-5);
    free(c.qkv); free(c.out); free(c.R); free(c.P); free(dqkv); free(scr);
}

/* one query per sequence (the last block): pooled rows 0 (vision: class
 * token, attends to all) and len-1 (text: end token, the causal mask then
 * allows every row) */
typedef struct patt_ctx { cdx_grad_seqs sq; const int *pool; float *qkv, *P, *out, *R; } patt_ctx;
static double patt_f(void *p)
{
    patt_ctx *c = p;
    cdx_grad_attention_pooled_fwd(BE, &c->sq, c->pool, 8, 2, c->qkv, c->P, c->out);
    return dotd(c->out, c->R, 2 * 8);
}

static void test_attention_pooled(void)
{
    static const int off[2] = {0, 5}, len[2] = {5, 3}, pool[2] = {0, 2};
    patt_ctx c = {{2, 8, 0, off, len}, pool, rvec(8 * 24, 1.5), NULL, rvec(16, 0), rvec(16, 1)};
    c.P = rvec(cdx_grad_attention_pooled_saved(&c.sq, 2), 0);
    patt_f(&c);
    float *dq = calloc(16, sizeof(float)), *dkv = calloc(8 * 16, sizeof(float)), *dqkv = calloc(8 * 24, sizeof(float));
    float *scr = calloc((size_t)omp_get_max_threads() * 5, sizeof(float));
    cdx_grad_attention_pooled_bwd(BE, &c.sq, pool, 8, 2, c.qkv, c.P, c.R, dq, dkv, scr);
    for (int r = 0; r < 8; r++) {   /* back into the fused layout: Q at the pooled rows only */
        memcpy(dqkv + r * 24 + 8, dkv + r * 16, 16 * sizeof(float));
        if (r == 0 || r == 7) memcpy(dqkv + r * 24, dq + (r ? 8 : 0), 8 * sizeof(float));
    }
    check_dir("pooled attention dqkv", patt_f, &c, c.qkv, 8 * 24, dqkv, 1e-3, 1e-3);
    patt_f(&c);
    /* equals the full attention's output at those rows (text row: causal) */
    float *full = calloc(64, sizeof(float)), *P = calloc(cdx_grad_attention_saved(&c.sq, 2), sizeof(float));
    cdx_grad_attention_fwd(BE, &c.sq, 8, 2, c.qkv, P, full);
    CHECK(test_max_abs_diff(full, c.out, 8) < 1e-6);
    cdx_grad_seqs causal = c.sq;
    causal.causal = 1;
    cdx_grad_attention_fwd(BE, &causal, 8, 2, c.qkv, P, full);
    CHECK(test_max_abs_diff(full + 7 * 8, c.out + 8, 8) < 1e-6);
    free(c.qkv); free(c.P); free(c.out); free(c.R); free(dq); free(dkv); free(dqkv); free(scr); free(full); free(P);
}

/* ------------------------------------------------------------ loss */

typedef struct loss_ctx { int n, E; float *img, *txt, ls; float *scr; } loss_ctx;
static double loss_f(void *p)
{
    loss_ctx *c = p;
    return cdx_grad_clip_loss(c->n, c->E, c->img, c->txt, c->ls, NULL, NULL, NULL, NULL, c->scr);
}

static void test_loss(void)
{
    loss_ctx c = {4, 6, rvec(24, 1), rvec(24, 1), 1.5f, rvec(4 * 24 + 3 * 16 + 8, 0)};
    float *di = calloc(24, sizeof(float)), *dt = calloc(24, sizeof(float)), ds = 0, logits[16];
    double L = cdx_grad_clip_loss(4, 6, c.img, c.txt, c.ls, logits, di, dt, &ds, c.scr);
    CHECK(L > 0 && isfinite(L));
    check_dir("loss dimg", loss_f, &c, c.img, 24, di, 1e-3, 1e-3);
    check_dir("loss dtxt", loss_f, &c, c.txt, 24, dt, 1e-3, 1e-3);
    check_dir("loss dlogit_scale", loss_f, &c, &c.ls, 1, &ds, 1e-3, 1e-3);
    /* scaling an embedding does not change the loss (normalised): grad . x = 0 */
    CHECK(fabs(dotd(di, c.img, 6)) < 1e-5);
    /* identical pairs, huge scale: loss -> 0 */
    float e[4 * 3] = {1, 0, 0, 0, 1, 0, 0, 0, 1, -1, 0, 0};
    CHECK(cdx_grad_clip_loss(4, 3, e, e, 5.0f, NULL, NULL, NULL, NULL, c.scr) < 1e-6);
    free(c.img); free(c.txt); free(c.scr); free(di); free(dt);
}

/* ------------------------------------------------------------ whole model */

typedef struct model_ctx { cdx_trainer *t; const float *px; const int32_t *tok; int n; } model_ctx;
static double model_f(void *p)
{
    model_ctx *c = p;
    double L = 0;
    cdx_result r = cdx_trainer_eval(c->t, c->px, c->tok, c->n, &L, NULL);
    if (r) fprintf(stderr, "eval: %s\n", cdx_last_error());
    return L;
}

static void test_model(void)
{
    cdx_clip_config cfg;
    cdx_model_random_config("tiny", &cfg);
    cfg.image_size = 64;
    cfg.patch_size = 16;
    cfg.vision.width = 32; cfg.vision.heads = 2; cfg.vision.mlp = 64;
    cfg.text.width = 32; cfg.text.heads = 4; cfg.text.mlp = 48;
    cfg.text.act = CDX_ACT_GELU;   /* both activations */
    cfg.vocab_size = 100;
    cfg.context_length = 12;
    cfg.projection_dim = 16;
    cdx_model *m = NULL;
    CHECK(cdx_model_random(&cfg, 7, &m) == CDX_OK);
    if (!m) return;
    const int n = 3, T = 12;
    float *px = rvec((size_t)n * 3 * 64 * 64, 1.5);
    int32_t tok[3 * 12] = {0};
    const int eot[3] = {5, 9, 3};
    for (int s = 0; s < n; s++) {
        tok[s * T] = 98;
        for (int i = 1; i < eot[s]; i++) tok[s * T + i] = 1 + (int)((urand() + 1) * 45);
        tok[s * T + eot[s]] = 99;
    }
    tok[1 * T + 2] = tok[1 * T + 4];   /* a repeated token id: gradients add up */
    cdx_trainer_params p = cdx_trainer_default_params();
    p.n_threads = 2;
    cdx_trainer *t = NULL, *tl = NULL;
    CHECK(cdx_trainer_new(m, &p, &t) == CDX_OK);
    p.scope = CDX_TRAIN_LAST;
    p.last_k = 1;
    CHECK(cdx_trainer_new(m, &p, &tl) == CDX_OK);
    double L = 0, Ll = 0;
    CHECK(cdx_trainer_gradients(t, px, tok, n, &L) == CDX_OK);
    CHECK(cdx_trainer_gradients(tl, px, tok, n, &Ll) == CDX_OK);
    CHECK(L == Ll);
    model_ctx c = {t, px, tok, n};
    int nt = cdx_trainer_n_tensors(t), n_train = 0;
    for (int i = 0; i < nt; i++) {
        cdx_trainer_tensor a, b;
        cdx_trainer_tensor_at(t, i, &a);
        cdx_trainer_tensor_at(tl, i, &b);
        CHECK(a.trainable);
        /* k_proj.bias has an exactly-zero gradient; everything else is checked by FD */
        double h = 1e-3 * fmax(test_max_abs(a.w, a.numel), 1.0);
        check_dirs(1, a.name, model_f, &c, a.w, a.numel, a.g, h, 2e-2);
        if (b.trainable) {
            n_train++;
            CHECKF(test_max_abs_diff(a.g, b.g, b.numel) <= 1e-6 * (test_max_abs(a.g, a.numel) + 1e-6),
                   "%s: last-block gradient differs from the full run's", a.name);
        }
        if (strstr(a.name, "token_embedding")) {   /* rows of unused ids get exactly 0 */
            size_t used = 0;
            for (size_t r = 0; r < 100; r++) used += test_max_abs(a.g + r * 32, 32) > 0;
            CHECKF(used >= 4 && used <= 6 + 10 + 4 - 1, "token rows with a gradient: %zu", used);
        }
    }
    /* last:1 trains block 1 of each tower (16 tensors each), 2 final LayerNorm
     * tensors and a projection per tower, and logit_scale */
    CHECKF(n_train == 2 * (16 + 3) + 1, "last:1 trains %d tensors", n_train);
    cdx_trainer_free(t);
    cdx_trainer_free(tl);
    cdx_model_free(m);
    free(px);
}

int main(void)
{
    test_linear();
    test_layernorm();
    test_activations();
    test_adamw();
    test_attention(0);
    test_attention(1);
    test_attention_pooled();
    test_loss();
    setenv("CLIPDEX_GEMM", "reference", 1);   /* the trainer picks its backend at creation */
    test_model();
    return test_finish();
}
