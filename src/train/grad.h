/*
 * grad.h - forward-with-saved-state and backward kernels of every operation
 * the CLIP towers use, for training (trainer.c).
 *
 * Conventions: row-major float32; a Linear weight is [out, in] (y = x W^T +
 * b) as in model.h; parameter gradients (dW, db, dg, ...) are always
 * ACCUMULATED (+=) so a weight used several times sums its gradients;
 * input gradients (dx) are written, or accumulated when the function says
 * so.  The big products go through the GEMM interface (gemm.h): dX = dY W,
 * dW += dY^T X.  Everything else is plain loops parallelised over rows (or
 * columns for reductions) with OpenMP; nothing allocates.
 *
 * Each backward is checked against central finite differences in
 * tests/test_backward.c.
 */
#ifndef CDX_TRAIN_GRAD_H
#define CDX_TRAIN_GRAD_H

#include "clip/gemm.h"
#include "clip/ops.h"

#include <stddef.h>

/* Y[M,out] = X[M,in] W^T + b (b may be NULL). */
void cdx_grad_linear_fwd(cdx_gemm_backend be, int M, int in, int out, const float *X,
                         const float *W, const float *b, float *Y);
/* dX = dY W (+ dX when dx_accumulate; dX may be NULL: not wanted);
 * dW += dY^T X (dW may be NULL); db += column sums of dY (db may be NULL). */
void cdx_grad_linear_bwd(cdx_gemm_backend be, int M, int in, int out, const float *X,
                         const float *W, const float *dY, float *dX, int dx_accumulate,
                         float *dW, float *db);

/* LayerNorm over rows of dim (biased variance): y = (x - mu) * rstd * g + b;
 * saves mu[rows], rstd[rows].  y may not alias x. */
void cdx_grad_layernorm_fwd(int rows, int dim, const float *x, const float *g, const float *b,
                            float eps, float *y, float *mu, float *rstd);
/* dx (= or += when dx_accumulate) from dy; dg += sum dy*xhat, db += sum dy
 * (dg, db may be NULL; dx may be NULL). */
void cdx_grad_layernorm_bwd(int rows, int dim, const float *x, const float *g, const float *mu,
                            const float *rstd, const float *dy, float *dx, int dx_accumulate,
                            float *dg, float *db);

/* Activation backward: dh[i] *= act'(h[i]) for n elements (h = pre-activation).
 * quick_gelu runs in float on AVX2 CPUs (double elsewhere). */
void cdx_grad_act_bwd(cdx_epilogue act, size_t n, const float *h, float *dh);

/* A packed batch of sequences (like encoder.c): sequence s is rows
 * off[s] .. off[s]+len[s]-1 of every [M, .] matrix. */
typedef struct cdx_grad_seqs {
    int n, M, causal;
    const int *off, *len;
} cdx_grad_seqs;

/* floats of saved probabilities for a batch: sum_s heads * len[s]^2; and
 * the per-thread scratch cdx_grad_attention_bwd needs (max len^2). */
size_t cdx_grad_attention_saved(const cdx_grad_seqs *sq, int heads);

/* Multi-head attention on fused rows qkv [M, 3W] (q | k | v, head h at
 * columns h*dh): out [M, W]; P receives the probabilities
 * (cdx_grad_attention_saved floats, per sequence then head, [len, len]). */
void cdx_grad_attention_fwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, int W, int heads,
                            const float *qkv, float *P, float *out);
/* dqkv [M, 3W] (written) from dout [M, W]; scratch: n_threads * max len^2
 * floats (omp_get_max_threads() threads). */
void cdx_grad_attention_bwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, int W, int heads,
                            const float *qkv, const float *P, const float *dout, float *dqkv,
                            float *scratch);

/* The same for one query per sequence: its pooled row pool[s] (an index
 * within the sequence), attending to every row of the sequence (the pooled
 * row is the last one under the causal mask, so no mask is needed).  qkv's
 * K and V columns are read for every row, Q only at the pooled rows.
 * out: [n, W]; P1: n * heads * len[s] probabilities (sequence, head, key). */
size_t cdx_grad_attention_pooled_saved(const cdx_grad_seqs *sq, int heads);
void cdx_grad_attention_pooled_fwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, const int *pool, int W,
                                   int heads, const float *qkv, float *P1, float *out);
/* From dout [n, W]: dq [n, W] (the pooled rows' queries) and dkv [M, 2W]
 * (keys | values of every row), both written; scratch: n_threads * max len. */
void cdx_grad_attention_pooled_bwd(cdx_gemm_backend be, const cdx_grad_seqs *sq, const int *pool, int W,
                                   int heads, const float *qkv, const float *P1, const float *dout,
                                   float *dq, float *dkv, float *scratch);

/* AdamW constants of one tensor and step (trainer.c derives them):
 * w = w*decay - step * m / (sqrt(v)/bc2s + eps) after m = b1 m + a1 g,
 * v = b2 v + a2 g^2. */
typedef struct cdx_grad_adamw_k { float decay, b1, a1, b2, a2, bc2s, step, eps; } cdx_grad_adamw_k;
/* The update of n elements, as an orphaned `omp for` (nowait): call it from
 * every thread of a parallel region (or outside one: one thread does all).
 * fast = 1: AVX2 where the CPU has it, bit-identical to fast = 0. */
void cdx_grad_adamw(size_t n, float *w, const float *g, float *m, float *v, const cdx_grad_adamw_k *k,
                    int fast);

/* CLIP's symmetric contrastive loss over n pairs.  img, txt: [n, E] raw
 * embeddings; logit_scale: the log of the scale.  Returns the loss; writes
 * logits [n, n] (may be NULL) and, when dimg/dtxt/dscale are non-NULL,
 * the gradients (dimg, dtxt written; *dscale written).  scratch: 4*n*E +
 * 3*n*n + 2*n floats. */
double cdx_grad_clip_loss(int n, int E, const float *img, const float *txt, float logit_scale,
                          float *logits, float *dimg, float *dtxt, float *dscale, float *scratch);

#endif
