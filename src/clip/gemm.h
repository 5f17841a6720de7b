/*
 * gemm.h - the one small interface to matrix multiplication.
 *
 * C[m,n] = A[m,k] * B[n,k]^T (+ bias[n]) with row-major A and B (B is a
 * Linear weight in [out, in] layout), float32.  The backend (oneDNN's
 * dnnl_sgemm, OpenBLAS cblas_sgemm, or the plain reference loop) is chosen at
 * build/start-up time behind this interface so reduced-precision kernels can
 * slot in later with the same signature.
 */
#ifndef CDX_CLIP_GEMM_H
#define CDX_CLIP_GEMM_H

#include <stddef.h>

typedef enum cdx_gemm_backend {
    CDX_GEMM_REFERENCE = 0,
    CDX_GEMM_DNNL,
    CDX_GEMM_OPENBLAS
} cdx_gemm_backend;

/* The backend used by cdx_gemm_nt(); the best available unless overridden
 * by $CLIPDEX_GEMM=reference|dnnl|openblas. */
cdx_gemm_backend cdx_gemm_default_backend(void);
const char *cdx_gemm_backend_name(cdx_gemm_backend b);

/* C = A B^T (+ bias broadcast over rows when bias != NULL); ldc = n. */
void cdx_gemm_nt(cdx_gemm_backend be, int m, int n, int k, const float *A,
                 const float *B, const float *bias, float *C);

#endif
