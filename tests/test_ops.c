/*
 * test_ops.c - the fast kernels (ops.h) against their reference versions at
 * every instruction-set level the CPU has (AVX-512, AVX2; at the scalar
 * level the fast path is the reference), and the references against
 * values computed here in double precision.
 */
#include "clip/ops.h"
#include "common/cpu.h"
#include "testutil.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double mx = test_max_abs(b, n);
    return test_max_abs_diff(a, b, n) / (mx > 0 ? mx : 1);
}

static void test_layernorm(void)
{
    const int dims[] = {1, 15, 16, 17, 64, 100, 768, 1024};
    unsigned seed = 1;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int dim = dims[d], rows = 37;
        float *x = malloc((size_t)rows * dim * 4), *y0 = malloc((size_t)rows * dim * 4);
        float *y1 = malloc((size_t)rows * dim * 4), *g = malloc((size_t)dim * 4), *b = malloc((size_t)dim * 4);
        for (int i = 0; i < rows * dim; i++) x[i] = 100.0f + 3.0f * frand(&seed);  /* large mean */
        for (int i = 0; i < dim; i++) { g[i] = 1 + 0.1f * frand(&seed); b[i] = 0.1f * frand(&seed); }
        cdx_layernorm_rows(x, dim, y0, dim, rows, dim, g, b, 1e-5f, 0);
        cdx_layernorm_rows(x, dim, y1, dim, rows, dim, g, b, 1e-5f, 1);
        CHECKF(rel_err(y1, y0, (size_t)rows * dim) < 2e-5, "layernorm %s dim %d: %g", cdx_isa_name(cdx_cpu_level()), dim,
               rel_err(y1, y0, (size_t)rows * dim));
        /* reference against a direct double computation of row 3 */
        const float *xr = x + 3 * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= dim;
        for (int i = 0; i < dim; i++) {
            double want = (xr[i] - mean) / sqrt(var + 1e-5) * g[i] + b[i];
            CHECKF(fabs(y0[3 * dim + i] - want) < 1e-5 * (1 + fabs(want)), "ln ref dim %d i %d", dim, i);
        }
        /* in place */
        cdx_layernorm_rows(x, dim, x, dim, rows, dim, g, b, 1e-5f, 1);
        CHECK(rel_err(x, y0, (size_t)rows * dim) < 2e-5);
        free(x); free(y0); free(y1); free(g); free(b);
    }
}

static void test_bias_act(void)
{
    const int ns[] = {1, 16, 19, 512, 3072};
    unsigned seed = 2;
    for (size_t d = 0; d < sizeof ns / sizeof ns[0]; d++)
        for (int act = CDX_EPI_NONE; act <= CDX_EPI_GELU; act++) {
            int n = ns[d], rows = 21, ldc = n + 5;
            size_t tot = (size_t)rows * ldc;
            float *c0 = malloc(tot * 4), *c1 = malloc(tot * 4), *bias = malloc((size_t)n * 4);
            for (size_t i = 0; i < tot; i++) c0[i] = c1[i] = 12.0f * frand(&seed);  /* covers saturation */
            for (int i = 0; i < n; i++) bias[i] = frand(&seed);
            float keep = c0[0];
            cdx_bias_act(c0, ldc, rows, n, bias, (cdx_epilogue)act, 0);
            cdx_bias_act(c1, ldc, rows, n, bias, (cdx_epilogue)act, 1);
            CHECKF(test_max_abs_diff(c0, c1, tot) <= 2e-6 * test_max_abs(c0, tot), "%s act %d n %d: %g",
                   cdx_isa_name(cdx_cpu_level()), act, n, test_max_abs_diff(c0, c1, tot));
            /* reference value of element 0 */
            double v = (double)keep + bias[0], want = v;
            if (act == CDX_EPI_QUICK_GELU) want = v / (1 + exp(-1.702 * v));
            if (act == CDX_EPI_GELU) want = 0.5 * v * (1 + erf(v / sqrt(2.0)));
            CHECKF(fabs(c0[0] - want) < 1e-5 * (1 + fabs(want)), "act %d ref %g vs %g", act, c0[0], want);
            /* padding untouched */
            for (int r = 0; r < rows; r++)
                for (int j = n; j < ldc; j++) CHECK(c0[(size_t)r * ldc + j] == c1[(size_t)r * ldc + j]);
            free(c0); free(c1); free(bias);
        }
}

static void test_softmax(void)
{
    const int ns[] = {1, 7, 16, 50, 77, 257};
    unsigned seed = 3;
    for (size_t d = 0; d < sizeof ns / sizeof ns[0]; d++)
        for (int causal = 0; causal < 2; causal++) {
            int n = ns[d], rows = n, lds = n + 3;
            size_t tot = (size_t)rows * lds;
            float *s0 = malloc(tot * 4), *s1 = malloc(tot * 4);
            for (size_t i = 0; i < tot; i++) s0[i] = s1[i] = 30.0f * frand(&seed);  /* peaky */
            cdx_softmax_rows(s0, lds, rows, n, causal, 1, 0);
            cdx_softmax_rows(s1, lds, rows, n, causal, 1, 1);
            CHECKF(test_max_abs_diff(s0, s1, tot) < 1e-6, "softmax %s n %d causal %d: %g", cdx_isa_name(cdx_cpu_level()), n, causal,
                   test_max_abs_diff(s0, s1, tot));
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                for (int j = 0; j < n; j++) {
                    float p = s0[(size_t)r * lds + j];
                    if (causal && j > r) CHECK(p == 0.0f);
                    sum += p;
                }
                CHECKF(fabs(sum - 1) < 1e-5, "row sum %g", sum);
            }
            free(s0); free(s1);
        }
}

int main(void)
{
    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        cdx_cpu_set_cap((cdx_isa)isa);
        CHECK(cdx_ops_level() == isa);
        CHECK(cdx_ops_have_avx512() == (isa == CDX_ISA_AVX512));
        test_layernorm();
        test_bias_act();
        test_softmax();
        printf("level %s: checked\n", cdx_isa_name((cdx_isa)isa));
    }
    return test_finish();
}
