/*
 * gemm.h - the one small interface to matrix multiplication.
 *
 * C[m,n] = A[m,k] * B[n,k]^T (+ bias[n]) with row-major A and B (B is a
 * Linear weight in [out, in] layout), float32.  The backend (oneDNN's
 * dnnl_sgemm, OpenBLAS cblas_sgemm, or the plain reference loop) is chosen at
 * build/start-up time behind this interface so reduced-precision kernels can
 * slot in later with the same signature.
 *
 * Adding a reduced-precision backend (BF16 / int8): add an enum value, keep
 * the float32 A/C of this interface and let the backend own a packed copy of
 * B (the weights are immutable, so a per-weight packed cache keyed by the B
 * pointer - or better a packed tensor created at model load next to the F32
 * one - works); the activations A are converted on the fly inside the
 * backend.  Callers do not change: the encoder only ever calls cdx_gemm().
 *
 * Thread-safety: every function may be called concurrently from any thread,
 * including from inside an OpenMP parallel region (the backends then run on
 * the calling thread only).  The threaded backends use the calling thread's
 * OpenMP thread count (omp_set_num_threads).
 */
#ifndef CDX_CLIP_GEMM_H
#define CDX_CLIP_GEMM_H

#include <stddef.h>
#include <stdint.h>

typedef enum cdx_gemm_backend {
    CDX_GEMM_BE_REFERENCE = 0,
    CDX_GEMM_BE_DNNL,
    CDX_GEMM_BE_OPENBLAS
} cdx_gemm_backend;

/* The backend used by cdx_gemm_nt(); the best available unless overridden
 * by $CLIPDEX_GEMM=reference|dnnl|openblas. */
cdx_gemm_backend cdx_gemm_default_backend(void);
const char *cdx_gemm_backend_name(cdx_gemm_backend b);
/* 1 when the backend was compiled in. */
int cdx_gemm_backend_available(cdx_gemm_backend b);
/* Calls a fast backend refused (bad arguments, out of memory) that the
 * reference loop then computed instead, since the process started. */
uint64_t cdx_gemm_backend_failures(void);

/* C = A B^T (+ bias broadcast over rows when bias != NULL); ldc = n. */
void cdx_gemm_nt(cdx_gemm_backend be, int m, int n, int k, const float *A,
                 const float *B, const float *bias, float *C);

/* General form used by the towers:
 *   C[m,n] = alpha * A[m,k] * op(B) + beta * C  (+ bias[n] when non-NULL)
 * op(B) = B^T with B stored [n,k] when b_trans, else B stored [k,n].
 * Leading dimensions are in elements (row-major).  beta == 0 ignores the old
 * content of C (it may be uninitialised). */
void cdx_gemm(cdx_gemm_backend be, int m, int n, int k, float alpha,
              const float *A, int lda, const float *B, int ldb, int b_trans,
              float beta, const float *bias, float *C, int ldc);

/* A transposed (training backward: dW = dY^T X, attention P^T dO):
 *   C[m,n] = alpha * A^T op(B) + beta * C, A stored [k,m] (lda >= m),
 * op(B) as for cdx_gemm().  No bias; the small-M kernels are not used. */
void cdx_gemm_ta(cdx_gemm_backend be, int m, int n, int k, float alpha,
                 const float *A, int lda, const float *B, int ldb, int b_trans,
                 float beta, float *C, int ldc);

/* Small-M kernels (gemm_small.c), AVX-512 or AVX2 + FMA, whichever
 * cdx_cpu_level() (common/cpu.h) gives; cdx_gemm_small_available() = 0 at the
 * scalar level (a direct call then runs a plain loop):
 * _nt: C = alpha A B^T + beta C with B [n,k] (a Linear weight);
 * _nn: C = alpha A B + beta C with B [k,n] (attention probabilities x V).
 * cdx_gemm() routes the dnnl and openblas backends here when
 * m <= CDX_GEMM_SMALL_M (measured on Zen 5: oneDNN re-packs B on every call,
 * which dominates at small M; $CLIPDEX_GEMM_SMALL=0 disables the routing). */
#define CDX_GEMM_SMALL_M 96
int cdx_gemm_small_available(void);
void cdx_gemm_small_nt(int m, int n, int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
void cdx_gemm_small_nn(int m, int n, int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);

/* Pre-packed weights (gemm_packed.c).  A Linear weight W [n,k] is re-laid
 * once, at model load, as panels of CDX_PACK_NR output columns, k-major and
 * zero-padded: P[(p*k + kk)*NR + j] = W[p*NR + j][kk].  The layout is the
 * same on every CPU and instruction-set level.  fast = 1 runs the kernel of
 * cdx_cpu_level() (AVX-512, AVX2 + FMA, or plain C at the scalar level);
 * fast = 0 the double-precision reference loop over the same layout.
 *   C = act(A W^T + bias (+ C when accumulate))   (bias may be NULL)
 * act: CDX_PACK_ACT_NONE or CDX_PACK_ACT_QUICK_GELU (x * sigmoid(1.702 x)). */
#define CDX_PACK_NR 64
enum { CDX_PACK_ACT_NONE = 0, CDX_PACK_ACT_QUICK_GELU = 1 };
/* floats needed for the packed copy (0 when n or k <= 0) */
size_t cdx_pack_floats(int n, int k);
void cdx_pack_weights(int n, int k, const float *W, int ldw, float *P);
/* The inverse: W [n, k] (row stride ldw) from its packed copy P (training
 * needs the plain layout, and the packed copy replaces it in a model). */
void cdx_unpack_weights(int n, int k, const float *P, float *W, int ldw);
void cdx_gemm_packed(int m, int n, int k, const float *A, int lda, const float *P,
                     const float *bias, int act, int accumulate, float *C, int ldc, int fast);

/* int8 weights and activations (gemm_q8.c; the numbers and the layout are
 * described there).  W [n,k] times smooth[k] (NULL = 1) is quantised per
 * output row to [-qmax, qmax] (cdx_q8_weight_max(): 127 with VNNI, else 63)
 * into P (cdx_q8_pack_bytes(n, k) bytes, panels of CDX_Q8_NR columns, k
 * padded to cdx_q8_kpad(k)), scale[] and colsum[] (both n rounded up to
 * CDX_Q8_NR entries).  cdx_q8_quantize_rows turns m rows of A (times
 * inv_smooth[k], NULL = 1) into u8 codes Q (ldq >= kpad(k), the padding
 * zeroed), a scale and a zero point per row.  cdx_gemm_q8 (wmax = the qmax
 * the weights were packed with):
 *   C = act(dequant(Q) dequant(P)^T + bias (+ C when accumulate))
 * fast = 1: the kernel of cdx_cpu_level() (VNNI on AVX-512 CPUs that have it,
 * AVX2 for wmax <= 63, plain C); fast = 0: the reference loop. */
#define CDX_Q8_NR 16
int cdx_q8_kpad(int k);
size_t cdx_q8_pack_bytes(int n, int k);
int cdx_q8_weight_max(void);
void cdx_q8_pack_weights(int n, int k, const float *W, int ldw, const float *smooth, int qmax,
                         int8_t *P, float *scale, int32_t *colsum);
void cdx_q8_quantize_rows(int m, int k, const float *A, int lda, const float *inv_smooth,
                          uint8_t *Q, int ldq, float *ascale, int32_t *azp);
void cdx_gemm_q8(int m, int n, int k, const uint8_t *Q, int ldq, const float *ascale,
                 const int32_t *azp, const int8_t *P, const float *wscale, const int32_t *colsum,
                 int wmax, const float *bias, int act, int accumulate, float *C, int ldc, int fast);
/* 7-bit activation codes (docs/engine.md "int8"): cdx_q8_quantize_rows_bits
 * with bits 7 gives codes in [0, 127] (bits 8: cdx_q8_quantize_rows), and
 * cdx_gemm_q8_a7, for such codes only, is cdx_gemm_q8 with the AVX2 kernel
 * that adds two k-groups' int16 sums before widening (3 multiplies per 8 k
 * instead of 4; 4 x 127 x 63 fits an int16).  Same results as cdx_gemm_q8
 * on the same codes, at every level. */
void cdx_q8_quantize_rows_bits(int m, int k, const float *A, int lda, const float *inv_smooth,
                               int bits, uint8_t *Q, int ldq, float *ascale, int32_t *azp);
void cdx_gemm_q8_a7(int m, int n, int k, const uint8_t *Q, int ldq, const float *ascale,
                    const int32_t *azp, const int8_t *P, const float *wscale, const int32_t *colsum,
                    int wmax, const float *bias, int act, int accumulate, float *C, int ldc, int fast);
/* 1 when the CPU has AVX512_VNNI (+ F, BW); the kernel cdx_gemm_q8 runs for
 * weights of range wmax: "vnni", "avx2" or "scalar" */
int cdx_q8_vnni_supported(void);
const char *cdx_q8_kernel_name(int wmax);
/* 1 when bf16 runs natively: level avx512 and the CPU has AVX512_BF16
 * (precision.c) */
int cdx_bf16_native(void);

/* bf16 weights and activations (gemm_bf16.c; layout described there).
 * W [n,k] rounded to bf16 into P (cdx_bf16_pack_elems(n, k) values, panels
 * of CDX_BF16_NR columns, k padded to cdx_bf16_kpad(k)); rows of A rounded
 * into Q (ldq >= kpad(k), padding zeroed); cdx_gemm_bf16:
 *   C = act(Q P^T + bias (+ C when accumulate)), float32 sums
 * fast = 1: vdpbf16ps where cdx_bf16_native(), else (and fast = 0) the
 * reference loop. */
#define CDX_BF16_NR 16
int cdx_bf16_kpad(int k);
size_t cdx_bf16_pack_elems(int n, int k);
uint16_t cdx_bf16_round(float f);   /* round to nearest even; NaN stays NaN */
void cdx_bf16_pack_weights(int n, int k, const float *W, int ldw, uint16_t *P);
void cdx_bf16_convert_rows(int m, int k, const float *A, int lda, uint16_t *Q, int ldq);
void cdx_gemm_bf16(int m, int n, int k, const uint16_t *Q, int ldq, const uint16_t *P,
                   const float *bias, int act, int accumulate, float *C, int ldc, int fast);
/* "avx512_bf16" or "reference" */
const char *cdx_bf16_kernel_name(void);

/* Threads for the engine's own parallel loops (cdx_par_for, common/pool.h):
 * the calling thread's OpenMP thread count (set per call by the encoder),
 * 1 inside an OpenMP parallel region or a cdx_par_for item. */
int cdx_par_threads(void);

#endif
