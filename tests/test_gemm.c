/*
 * test_gemm.c - every compiled-in GEMM backend against the reference loop
 * (which is itself checked on a hand-computed example), over odd shapes,
 * strided operands, both B layouts, alpha/beta and bias; then the small-M
 * and packed-weight kernels called directly.  All of it at every
 * instruction-set level the CPU has (scalar, avx2, avx512), set with
 * cdx_cpu_set_cap as $CLIPDEX_MAX_ISA would.
 */
#include "clip/gemm.h"
#include "common/cpu.h"
#include "testutil.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static void check_backend(cdx_gemm_backend be, int m, int n, int k, int b_trans,
                          float alpha, float beta, int with_bias, int pad)
{
    unsigned seed = (unsigned)(m * 131 + n * 7 + k + b_trans);
    int lda = k + pad, ldb = (b_trans ? k : n) + pad, ldc = n + pad;
    size_t brows = b_trans ? (size_t)n : (size_t)k;
    float *A = malloc((size_t)m * lda * sizeof(float));
    float *B = malloc(brows * ldb * sizeof(float));
    float *bias = malloc((size_t)n * sizeof(float));
    float *C0 = malloc((size_t)m * ldc * sizeof(float));
    float *C1 = malloc((size_t)m * ldc * sizeof(float));
    for (size_t i = 0; i < (size_t)m * lda; i++) A[i] = frand(&seed);
    for (size_t i = 0; i < brows * ldb; i++) B[i] = frand(&seed);
    for (int i = 0; i < n; i++) bias[i] = frand(&seed);
    for (size_t i = 0; i < (size_t)m * ldc; i++) C0[i] = C1[i] = frand(&seed);
    cdx_gemm(CDX_GEMM_BE_REFERENCE, m, n, k, alpha, A, lda, B, ldb, b_trans, beta,
             with_bias ? bias : NULL, C0, ldc);
    cdx_gemm(be, m, n, k, alpha, A, lda, B, ldb, b_trans, beta, with_bias ? bias : NULL, C1, ldc);
    double err = 0, mx = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            double d = fabs((double)C0[(size_t)i * ldc + j] - C1[(size_t)i * ldc + j]);
            if (j >= n) CHECKF(d == 0, "padding column touched");
            if (d > err) err = d;
            if (fabs(C0[(size_t)i * ldc + j]) > mx) mx = fabs(C0[(size_t)i * ldc + j]);
        }
    /* |A|,|B| <= 1: the float32 error of a length-k dot is ~k * 6e-8 */
    CHECKF(err <= 1e-6 * (k + 4) + 1e-6 * mx, "%s m=%d n=%d k=%d bt=%d beta=%g bias=%d pad=%d: err %g",
           cdx_gemm_backend_name(be), m, n, k, b_trans, beta, with_bias, pad, err);
    free(A); free(B); free(bias); free(C0); free(C1);
}

/* cdx_gemm_ta (A stored transposed, [k, m] with lda >= m) of backend be
 * against a double loop, both op(B), beta 0 and 1, padded strides. */
static void check_ta(cdx_gemm_backend be, int m, int n, int k)
{
    unsigned seed = (unsigned)(m * 131 + n * 7 + k);
    const int lda = m + 3, ldb_t = k + 1, ldb_n = n + 2, ldc = n + 5;
    float *A = malloc((size_t)k * lda * 4), *B = malloc((size_t)(n > k ? n : k) * (lda + ldb_n + ldb_t) * 4);
    float *C = malloc((size_t)m * ldc * 4);
    for (int i = 0; i < k * lda; i++) A[i] = frand(&seed);
    for (int i = 0; i < (n > k ? n : k) * (lda + ldb_n + ldb_t); i++) B[i] = frand(&seed);
    for (int bt = 0; bt < 2; bt++)
        for (int acc = 0; acc < 2; acc++) {
            int ldb = bt ? ldb_t : ldb_n;
            for (int i = 0; i < m * ldc; i++) C[i] = 0.5f;
            cdx_gemm_ta(be, m, n, k, 0.75f, A, lda, B, ldb, bt, acc ? 1.0f : 0.0f, C, ldc);
            double worst = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                        s += (double)A[(size_t)p * lda + i] * (bt ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
                    double want = 0.75 * s + (acc ? 0.5 : 0.0);
                    worst = fmax(worst, fabs(C[(size_t)i * ldc + j] - want));
                }
            CHECKF(worst <= 1e-5 * (k + 1), "gemm_ta %s m%d n%d k%d bt%d acc%d: %g", cdx_gemm_backend_name(be), m,
                   n, k, bt, acc, worst);
        }
    free(A);
    free(B);
    free(C);
}

/* Everything that has a fast kernel, at the current cdx_cpu_level();
 * returns the number of backends tested. */
static int check_level(void)
{
    int tested = 0;
    /* m <= CDX_GEMM_SMALL_M goes to the small-M kernels when AVX-512 is
     * present, larger m to the backend itself */
    const int shapes[][3] = {{1, 1, 1}, {1, 512, 512}, {8, 512, 512}, {7, 33, 65},
                             {50, 50, 64}, {50, 64, 50}, {77, 192, 64}, {5, 150, 77},
                             {96, 70, 17}, {97, 70, 17}, {9, 40, 1100}, {130, 257, 300}};
    for (int be = CDX_GEMM_BE_REFERENCE; be <= CDX_GEMM_BE_OPENBLAS; be++) {
        if (!cdx_gemm_backend_available((cdx_gemm_backend)be)) continue;
        tested++;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int bt = 0; bt < 2; bt++) {
                check_backend((cdx_gemm_backend)be, shapes[s][0], shapes[s][1], shapes[s][2], bt,
                              1.0f, 0.0f, 0, 0);
                check_backend((cdx_gemm_backend)be, shapes[s][0], shapes[s][1], shapes[s][2], bt,
                              0.125f, 1.0f, 1, 3);
            }
    }
    /* the small-M kernels called directly (every row count 1..6 of a tile,
     * n and k tails, 64-column blocks of the nn kernel) */
    {
        unsigned seed = 9;
        for (int m = 1; m <= 13; m++)
            for (int n = 1; n <= 140; n += 23)
                for (int k = 1; k <= 70; k += 17)
                    for (int bt = 0; bt < 2; bt++) {
                        float *SA = malloc((size_t)m * k * 4), *SB = malloc((size_t)n * k * 4);
                        float *C0 = malloc((size_t)m * n * 4), *C1 = malloc((size_t)m * n * 4);
                        for (int i = 0; i < m * k; i++) SA[i] = frand(&seed);
                        for (int i = 0; i < n * k; i++) SB[i] = frand(&seed);
                        for (int i = 0; i < m * n; i++) C0[i] = C1[i] = frand(&seed);
                        cdx_gemm(CDX_GEMM_BE_REFERENCE, m, n, k, 0.5f, SA, k, SB, bt ? k : n, bt, 1.0f,
                                 NULL, C0, n);
                        if (bt) cdx_gemm_small_nt(m, n, k, 0.5f, SA, k, SB, k, 1.0f, C1, n);
                        else cdx_gemm_small_nn(m, n, k, 0.5f, SA, k, SB, n, 1.0f, C1, n);
                        CHECKF(test_max_abs_diff(C0, C1, (size_t)m * n) < 1e-5, "small %s %s m=%d n=%d k=%d",
                               cdx_isa_name(cdx_cpu_level()), bt ? "nt" : "nn", m, n, k);
                        free(SA); free(SB); free(C0); free(C1);
                    }
    }
    /* pre-packed weights: both paths against the reference GEMM on the
     * unpacked weights (+ bias, quick_gelu, residual computed here in double) */
    {
        const int pshapes[][3] = {{1, 1, 1},    {1, 512, 512}, {8, 1536, 512}, {7, 33, 65},
                                  {13, 100, 17}, {77, 130, 513}, {97, 64, 1100}, {200, 70, 40},
                                  {6, 2048, 512}, {5, 512, 2048}};
        unsigned seed = 11;
        for (size_t s = 0; s < sizeof pshapes / sizeof pshapes[0]; s++)
            for (int mode = 0; mode < 4; mode++) {
                int m = pshapes[s][0], n = pshapes[s][1], k = pshapes[s][2];
                int with_bias = mode != 0, act = mode == 2, acc = mode == 3;
                int ldc = n + 5;
                float *W = malloc((size_t)n * k * 4), *PA = malloc((size_t)m * k * 4);
                float *pb = malloc((size_t)n * 4), *P = malloc(cdx_pack_floats(n, k) * 4);
                float *C0 = malloc((size_t)m * ldc * 4), *C1 = malloc((size_t)m * ldc * 4);
                float *C2 = malloc((size_t)m * ldc * 4);
                for (size_t i = 0; i < (size_t)n * k; i++) W[i] = frand(&seed);
                for (size_t i = 0; i < (size_t)m * k; i++) PA[i] = frand(&seed);
                for (int i = 0; i < n; i++) pb[i] = frand(&seed);
                for (size_t i = 0; i < (size_t)m * ldc; i++) C1[i] = C2[i] = frand(&seed);
                cdx_gemm(CDX_GEMM_BE_REFERENCE, m, n, k, 1.0f, PA, k, W, k, 1, 0.0f, NULL, C0, ldc);
                double mx = 0;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double v = C0[(size_t)i * ldc + j];
                        if (with_bias) v += pb[j];
                        if (acc) v += C1[(size_t)i * ldc + j];
                        if (act) v = v / (1.0 + exp(-1.702 * v));
                        C0[(size_t)i * ldc + j] = (float)v;
                        if (fabs(v) > mx) mx = fabs(v);
                    }
                for (int i = 0; i < m; i++)   /* padding columns must stay untouched */
                    for (int j = n; j < ldc; j++) C0[(size_t)i * ldc + j] = C1[(size_t)i * ldc + j];
                cdx_pack_weights(n, k, W, k, P);
                CHECK(P[0] == W[0] && (n < 2 || P[1] == W[k]) && (k < 2 || P[CDX_PACK_NR] == W[1]));
                for (int fast = 0; fast < 2; fast++) {
                    float *Cx = fast ? C1 : C2;
                    cdx_gemm_packed(m, n, k, PA, k, P, with_bias ? pb : NULL,
                                    act ? CDX_PACK_ACT_QUICK_GELU : CDX_PACK_ACT_NONE, acc, Cx, ldc, fast);
                    double err = 0;
                    for (size_t i = 0; i < (size_t)m * ldc; i++) {
                        double d = fabs((double)Cx[i] - C0[i]);
                        if (d > err) err = d;
                    }
                    CHECKF(err <= 1e-6 * (k + 4) + 1e-6 * mx, "packed %s fast=%d m=%d n=%d k=%d mode=%d: err %g",
                           cdx_isa_name(cdx_cpu_level()), fast, m, n, k, mode, err);
                }
                free(W); free(PA); free(pb); free(P); free(C0); free(C1); free(C2);
            }
    }
    return tested;
}

int main(void)
{
    /* reference on a hand-computed example: A [2,3], B [2,3] (b_trans) */
    const float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, -1, 2, 1, 0}, bias[2] = {10, 20};
    float C[4];
    cdx_gemm_nt(CDX_GEMM_BE_REFERENCE, 2, 2, 3, A, B, bias, C);
    CHECK(C[0] == 1 - 3 + 10 && C[1] == 2 + 2 + 20 && C[2] == 4 - 6 + 10 && C[3] == 8 + 5 + 20);
    /* B not transposed: B as [3,2] */
    const float Bn[6] = {1, 2, 0, 1, -1, 0};
    cdx_gemm(CDX_GEMM_BE_REFERENCE, 2, 2, 3, 2.0f, A, 3, Bn, 2, 0, 0.0f, NULL, C, 2);
    CHECK(C[0] == 2 * (1 - 3) && C[1] == 2 * (2 + 2) && C[2] == 2 * (4 - 6) && C[3] == 2 * (8 + 5));
if (cdx_gemm_backend_available(CDX_GEMM_BE_DNNL))
    {   /* a call oneDNN refuses (lda < k) is computed by the reference loop
         * and counted, not silently slow */
        enum { M = 100, N = 8, K = 16, LDA = 8 };   /* M > the small-M kernels' limit */
        float *Ab = malloc(((size_t)(M - 1) * LDA + K) * 4), *Bb = malloc((size_t)N * K * 4);
        float *C0 = malloc((size_t)M * N * 4), *C1 = malloc((size_t)M * N * 4);
        unsigned seed = 5;
        for (int i = 0; i < (M - 1) * LDA + K; i++) Ab[i] = frand(&seed);
        for (int i = 0; i < N * K; i++) Bb[i] = frand(&seed);
        uint64_t before = cdx_gemm_backend_failures();
        cdx_gemm(CDX_GEMM_BE_DNNL, M, N, K, 1.0f, Ab, LDA, Bb, K, 1, 0.0f, NULL, C0, N);
        cdx_gemm(CDX_GEMM_BE_REFERENCE, M, N, K, 1.0f, Ab, LDA, Bb, K, 1, 0.0f, NULL, C1, N);
        CHECK(cdx_gemm_backend_failures() == before + 1);
        CHECK(memcmp(C0, C1, (size_t)M * N * 4) == 0);
        free(Ab); free(Bb); free(C0); free(C1);
    }
    for (int be = CDX_GEMM_BE_REFERENCE; be <= CDX_GEMM_BE_OPENBLAS; be++)
        if (cdx_gemm_backend_available((cdx_gemm_backend)be)) {
            check_ta((cdx_gemm_backend)be, 1, 1, 1);
            check_ta((cdx_gemm_backend)be, 50, 64, 1);
            check_ta((cdx_gemm_backend)be, 70, 33, 130);
            check_ta((cdx_gemm_backend)be, 128, 200, 77);
        }

    /* every instruction-set level this CPU has, each kernel family against
     * the reference (the level is what $CLIPDEX_MAX_ISA would cap) */
    int tested = 0;
    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        cdx_cpu_set_cap((cdx_isa)isa);
        CHECK(cdx_cpu_level() == (cdx_isa)isa);
        CHECK(cdx_gemm_small_available() == (isa >= CDX_ISA_AVX2));
        tested = check_level();
        printf("level %s: kernels checked\n", cdx_isa_name((cdx_isa)isa));
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    CHECK(cdx_cpu_level() == cdx_cpu_detected());
    printf("default backend: %s (%d backends tested)\n",
           cdx_gemm_backend_name(cdx_gemm_default_backend()), tested);
#ifdef CDX_EXPECT_DNNL
    CHECK(cdx_gemm_backend_available(CDX_GEMM_BE_DNNL));
#endif
    return test_finish();
}
