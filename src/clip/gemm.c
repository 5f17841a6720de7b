/*
 * gemm.c - float32 GEMM backends behind gemm.h.
 *
 * Backends:
 *  - dnnl: oneDNN's dnnl_sgemm (CMake CLIPDEX_GEMM=dnnl, macro CDX_GEMM_BE_DNNL).
 *    It JITs AVX-512 kernels when the CPU has them (detected at run time by
 *    oneDNN) and threads with OpenMP; measured ~380 GFLOP/s on this 2-core
 *    Zen 5 at 1600x3072x768 and good small-matrix speed.  Default.
 *  - openblas: cblas_sgemm (CDX_HAVE_OPENBLAS).  Debian's OpenBLAS 0.3.21 picks
 *    AVX2 kernels on Zen 5 unless OPENBLAS_CORETYPE=SkylakeX is in the
 *    environment before the library loads (see docs/engine.md).
 *  - reference: the plain triple loop with double accumulation below; the
 *    obviously-correct baseline the fast backends are tested against.
 *
 * Instruction-set cap: when $CLIPDEX_MAX_ISA is set (common/cpu.h), the
 * same cap is given to oneDNN (dnnl_set_max_cpu_isa: scalar -> sse41, the
 * lowest oneDNN has) before its first use, so the whole engine runs at the
 * capped level.  OpenBLAS picks its kernels when it loads
 * ($OPENBLAS_CORETYPE) and is not capped.  The small-M kernels follow
 * cdx_cpu_level() at each call.
 *
 * Invariants: all sizes are validated by the caller (the encoder derives them
 * from a validated config); m, n, k >= 0 and fit in int.  Nothing here
 * allocates.  Safe to call concurrently and from inside OpenMP regions.
 */
#include "clip/gemm.h"
#include "common/cpu.h"
#include "common/pool.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef CDX_GEMM_DNNL
#include <dnnl.h>
#endif
#ifdef CDX_HAVE_OPENBLAS
#include <cblas.h>
#endif

const char *cdx_gemm_backend_name(cdx_gemm_backend b)
{
    switch (b) {
    case CDX_GEMM_BE_REFERENCE: return "reference";
    case CDX_GEMM_BE_DNNL: return "dnnl";
    case CDX_GEMM_BE_OPENBLAS: return "openblas";
    }
    return "?";
}

int cdx_gemm_backend_available(cdx_gemm_backend b)
{
    switch (b) {
    case CDX_GEMM_BE_REFERENCE: return 1;
#ifdef CDX_GEMM_DNNL
    case CDX_GEMM_BE_DNNL: return 1;
#endif
#ifdef CDX_HAVE_OPENBLAS
    case CDX_GEMM_BE_OPENBLAS: return 1;
#endif
    default: return 0;
    }
}

static cdx_gemm_backend best_backend(void)
{
#ifdef CDX_GEMM_DNNL
    return CDX_GEMM_BE_DNNL;
#elif defined(CDX_HAVE_OPENBLAS)
    return CDX_GEMM_BE_OPENBLAS;
#else
    return CDX_GEMM_BE_REFERENCE;
#endif
}

cdx_gemm_backend cdx_gemm_default_backend(void)
{
    /* getenv is cheap and the result is a pure function of the environment,
     * so no caching (and no data race) is needed. */
    const char *e = getenv("CLIPDEX_GEMM");
    if (e) {
        for (int b = CDX_GEMM_BE_REFERENCE; b <= CDX_GEMM_BE_OPENBLAS; b++)
            if (!strcmp(e, cdx_gemm_backend_name((cdx_gemm_backend)b)) &&
                cdx_gemm_backend_available((cdx_gemm_backend)b))
                return (cdx_gemm_backend)b;
    }
    return best_backend();
}

/* The reference: one dot product per output in double precision. */
static void gemm_reference(int m, int n, int k, float alpha, const float *A,
                           int lda, const float *B, int ldb, int b_trans,
                           float beta, float *C, int ldc)
{
#pragma omp parallel for schedule(static) if ((long)m * n * k > 100000)
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float b = b_trans ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                s += (double)A[(size_t)i * lda + p] * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
    }
}

/* The small-M kernel is used unless $CLIPDEX_GEMM_SMALL=0 or the level is
 * scalar. */
static int small_enabled(void)
{
    static int cached = -1;   /* computed once; racing first calls agree */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("CLIPDEX_GEMM_SMALL");
        v = !(e && !strcmp(e, "0"));
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v && cdx_gemm_small_available();
}

#ifdef CDX_GEMM_DNNL
/* Forward $CLIPDEX_MAX_ISA to oneDNN once, before its first JIT. */
static void dnnl_cap_once(void)
{
    static int done;
    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE)) return;
    if (cdx_cpu_cap_from_env()) {
        static const dnnl_cpu_isa_t map[CDX_ISA_COUNT] = {dnnl_cpu_isa_sse41, dnnl_cpu_isa_avx2,
                                                          dnnl_cpu_isa_avx512_core};
        /* fails (harmlessly) when a racing thread already ran oneDNN */
        (void)dnnl_set_max_cpu_isa(map[cdx_cpu_cap()]);
    }
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}
#endif

static void add_bias(int m, int n, const float *bias, float *C, int ldc)
{
#pragma omp parallel for schedule(static) if ((long)m * n > 65536)
    for (int i = 0; i < m; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < n; j++) c[j] += bias[j];
    }
}

/* dnnl_sgemm fails only on bad arguments or out of memory: the caller then
 * falls back to the reference loop (still the right answer, much slower).
 * Not silently: every failure is counted (cdx_gemm_backend_failures). */
static atomic_ulong g_backend_failures;

#ifdef CDX_GEMM_DNNL
static int dnnl_checked(dnnl_status_t st)
{
    if (st == dnnl_success) return 1;
    atomic_fetch_add(&g_backend_failures, 1);
    return 0;
}
#endif

uint64_t cdx_gemm_backend_failures(void) { return atomic_load(&g_backend_failures); }

void cdx_gemm(cdx_gemm_backend be, int m, int n, int k, float alpha,
              const float *A, int lda, const float *B, int ldb, int b_trans,
              float beta, const float *bias, float *C, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   /* empty sum: C = beta*C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float *c = &C[(size_t)i * ldc + j];
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
    } else {
        int done = 0;
        /* the nn kernel re-reads B for every 6 rows of A: only for a small B
         * (attention); a weight-sized B (training's dX = dY W) goes to the
         * backend, which packs it once */
        if (be != CDX_GEMM_BE_REFERENCE && m <= CDX_GEMM_SMALL_M && small_enabled() &&
            (b_trans || (long)n * k <= 65536)) {
            if (b_trans) cdx_gemm_small_nt(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
            else cdx_gemm_small_nn(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
            done = 1;
        }
#ifdef CDX_GEMM_DNNL
        if (!done && be == CDX_GEMM_BE_DNNL) dnnl_cap_once();
        if (!done && be == CDX_GEMM_BE_DNNL)
            done = dnnl_checked(dnnl_sgemm('N', b_trans ? 'T' : 'N', m, n, k, alpha, A, lda,
                                           B, ldb, beta, C, ldc));
#endif
#ifdef CDX_HAVE_OPENBLAS
        if (!done && be == CDX_GEMM_BE_OPENBLAS) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans,
                        m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
            done = 1;
        }
#endif
        if (!done) gemm_reference(m, n, k, alpha, A, lda, B, ldb, b_trans, beta, C, ldc);
    }
    if (bias) add_bias(m, n, bias, C, ldc);
}

int cdx_par_threads(void)
{
    return omp_in_parallel() || cdx_par_inside() ? 1 : omp_get_max_threads();
}

void cdx_gemm_ta(cdx_gemm_backend be, int m, int n, int k, float alpha,
                 const float *A, int lda, const float *B, int ldb, int b_trans,
                 float beta, float *C, int ldc)
{
    if (m <= 0 || n <= 0) return;
    int done = 0;
    if (k <= 0) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float *c = &C[(size_t)i * ldc + j];
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
#ifdef CDX_GEMM_DNNL
    if (be == CDX_GEMM_BE_DNNL)
        done = dnnl_checked(dnnl_sgemm('T', b_trans ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb,
                                       beta, C, ldc));
#endif
#ifdef CDX_HAVE_OPENBLAS
    if (!done && be == CDX_GEMM_BE_OPENBLAS) {
        cblas_sgemm(CblasRowMajor, CblasTrans, b_trans ? CblasTrans : CblasNoTrans, m, n, k, alpha,
                    A, lda, B, ldb, beta, C, ldc);
        done = 1;
    }
#endif
    if (done) return;
#pragma omp parallel for schedule(static) if ((long)m * n * k > 100000)
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float b = b_trans ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                s += (double)A[(size_t)p * lda + i] * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

void cdx_gemm_nt(cdx_gemm_backend be, int m, int n, int k, const float *A,
                 const float *B, const float *bias, float *C)
{
    cdx_gemm(be, m, n, k, 1.0f, A, k, B, k, 1, 0.0f, bias, C, n);
}
