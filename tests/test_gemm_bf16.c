/*
 * test_gemm_bf16.c - the bf16 GEMM (gemm_bf16.c): rounding to bf16 (ties to
 * even, NaN, infinities, the largest values); the reference against a double
 * computation on the rounded operands and (loosely) the float32 product,
 * over odd shapes, bias, quick_gelu and accumulation; and the AVX512_BF16
 * kernel against the reference where the CPU has it (here it is compiled,
 * not run, unless the CPU has AVX512_BF16).
 */
#include "clip/gemm.h"
#include "common/cpu.h"
#include "testutil.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static float bf(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_round(void)
{
    CHECK(cdx_bf16_round(1.0f) == 0x3F80);
    CHECK(cdx_bf16_round(-2.0f) == 0xC000);
    CHECK(cdx_bf16_round(from_bits(0x3F808000u)) == 0x3F80);   /* tie: to even (down) */
    CHECK(cdx_bf16_round(from_bits(0x3F818000u)) == 0x3F82);   /* tie: to even (up) */
    CHECK(cdx_bf16_round(from_bits(0x3F808001u)) == 0x3F81);   /* above the tie */
    CHECK(cdx_bf16_round(INFINITY) == 0x7F80 && cdx_bf16_round(-INFINITY) == 0xFF80);
    uint16_t n = cdx_bf16_round(NAN);
    CHECK((n & 0x7F80) == 0x7F80 && (n & 0x7F));
    CHECK(cdx_bf16_round(from_bits(0x7F7FFFFFu)) == 0x7F80);     /* FLT_MAX rounds to inf, as RNE does */
    unsigned seed = 3;
    for (int i = 0; i < 10000; i++) {
        float f = frand(&seed) * 1000.0f;
        float g = bf(cdx_bf16_round(f));
        CHECKF(fabsf(g - f) <= fabsf(f) * (1.0f / 256.0f), "round %g -> %g", f, g);
        CHECK(cdx_bf16_round(g) == cdx_bf16_round(f));   /* bf16 values are fixed points */
    }
}

static void check_shape(int m, int n, int k, int with_bias, int act, int accumulate)
{
    unsigned seed = (unsigned)(m * 31 + n * 17 + k);
    const int kp = cdx_bf16_kpad(k), ldc = n + 2;
    float *A = malloc((size_t)m * k * 4), *W = malloc((size_t)n * k * 4), *bias = malloc((size_t)n * 4);
    float *C0 = malloc((size_t)m * ldc * 4), *C1 = malloc((size_t)m * ldc * 4), *init = malloc((size_t)m * ldc * 4);
    uint16_t *Q = malloc((size_t)m * kp * 2), *P = malloc(cdx_bf16_pack_elems(n, k) * 2);
    for (int i = 0; i < m * k; i++) A[i] = frand(&seed);
    for (int i = 0; i < n * k; i++) W[i] = frand(&seed) * 0.1f;
    for (int i = 0; i < n; i++) bias[i] = frand(&seed);
    for (int i = 0; i < m * ldc; i++) init[i] = frand(&seed);
    cdx_bf16_pack_weights(n, k, W, k, P);
    cdx_bf16_convert_rows(m, k, A, k, Q, kp);
    const float *b = with_bias ? bias : NULL;
    memcpy(C0, init, (size_t)m * ldc * 4);
    cdx_gemm_bf16(m, n, k, Q, kp, P, b, act, accumulate, C0, ldc, 0);
    double derr = 0, ferr = 0, mx = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, f = 0;
            for (int kk = 0; kk < k; kk++) {
                s += (double)bf(cdx_bf16_round(A[i * k + kk])) * bf(cdx_bf16_round(W[j * k + kk]));
                f += (double)A[i * k + kk] * W[j * k + kk];
            }
            double add = (b ? b[j] : 0) + (accumulate ? init[i * ldc + j] : 0);
            s += add, f += add;
            if (act == CDX_PACK_ACT_QUICK_GELU) s = s / (1 + exp(-1.702 * s)), f = f / (1 + exp(-1.702 * f));
            derr = fmax(derr, fabs(C0[i * ldc + j] - s));
            ferr = fmax(ferr, fabs(C0[i * ldc + j] - f));
            mx = fmax(mx, fabs(f));
        }
    /* float32 sums of k products: ~k * 6e-8 relative */
    CHECKF(derr <= 1e-6 * (k + 4) * (mx + 1), "bf16 reference m%d n%d k%d: %g from the rounded product", m, n, k, derr);
    CHECKF(ferr <= 0.01 * (mx + 1) * sqrt(k / 16.0 + 1), "bf16 reference m%d n%d k%d: %g from float32", m, n, k, ferr);
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++) CHECK(C0[i * ldc + j] == init[i * ldc + j]);
    if (cdx_bf16_native()) {
        memcpy(C1, init, (size_t)m * ldc * 4);
        cdx_gemm_bf16(m, n, k, Q, kp, P, b, act, accumulate, C1, ldc, 1);
        double err = 0;
        for (int i = 0; i < m * ldc; i++) err = fmax(err, fabs((double)C1[i] - C0[i]));
        CHECKF(err <= 1e-5 * (mx + 1), "bf16 %s m%d n%d k%d: %g from the reference", cdx_bf16_kernel_name(), m,
               n, k, err);
    }
    free(A); free(W); free(bias); free(C0); free(C1); free(init); free(Q); free(P);
}

int main(void)
{
    printf("AVX512_BF16 %s\n", cdx_bf16_native() ? "present: the vdpbf16ps kernel is tested"
                                                  : "absent: the vdpbf16ps kernel is compiled, not run");
    test_round();
    static const int ms[] = {1, 3, 8, 9, 17, 100};
    static const int ns[] = {1, 15, 16, 17, 70};
    static const int ks[] = {1, 2, 3, 64, 129};
    for (unsigned a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (unsigned b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (unsigned c = 0; c < sizeof ks / sizeof ks[0]; c++)
                check_shape(ms[a], ns[b], ks[c], (a + b) % 2, (a + c) % 3 == 0, (b + c) % 2);
    check_shape(77, 768, 768, 1, 1, 1);
    return test_finish();
}
