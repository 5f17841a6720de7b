/*
 * ops.h - the element-wise and row-wise kernels of the towers (everything
 * that is not a GEMM): LayerNorm, bias + activation epilogue, masked softmax.
 *
 * Every kernel has a plain reference implementation (double accumulation,
 * libm expf/erff: obviously correct) and fast AVX-512 and AVX2 + FMA ones
 * (__attribute__((target(...)))), chosen at each call by cdx_cpu_level()
 * (common/cpu.h: the CPU, capped by $CLIPDEX_MAX_ISA; at the scalar level
 * the reference runs).  `fast` = 0 forces the reference; tests/test_ops.c
 * compares every level with it.
 *
 * Kernels parallelise over rows (blocks claimed from the pool of
 * common/pool.h, on cdx_par_threads() threads) when the work is large
 * enough; called from inside a parallel region they run on the calling
 * thread.
 * Nothing allocates.
 */
#ifndef CDX_CLIP_OPS_H
#define CDX_CLIP_OPS_H

typedef enum cdx_epilogue {
    CDX_EPI_NONE = 0,     /* bias only */
    CDX_EPI_QUICK_GELU,   /* x * sigmoid(1.702 x) */
    CDX_EPI_GELU          /* 0.5 x (1 + erf(x / sqrt 2)) */
} cdx_epilogue;

/* 1 when the AVX-512 kernels run (cdx_cpu_level() is avx512). */
int cdx_ops_have_avx512(void);
/* The cdx_isa level the fast kernels use now. */
int cdx_ops_level(void);

/* y[r] = LayerNorm(x[r]) * g + b for `rows` rows of `dim`; y may equal x.
 * Mean and variance are computed in two passes. */
void cdx_layernorm_rows(const float *x, int ldx, float *y, int ldy, int rows,
                   int dim, const float *g, const float *b, float eps, int fast);

/* C[r, j] = act(C[r, j] + bias[j]) (bias may be NULL). */
void cdx_bias_act(float *C, int ldc, int rows, int n, const float *bias,
                  cdx_epilogue act, int fast);

/* In-place softmax of rows of S (row stride lds).  Row r uses only its first
 * valid(r) = causal ? min(n, first_valid + r) : n entries; the rest are set
 * to 0 (masked attention). */
void cdx_softmax_rows(float *S, int lds, int rows, int n, int causal,
                      int first_valid, int fast);

#endif
