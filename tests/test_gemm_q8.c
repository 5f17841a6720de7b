/*
 * test_gemm_q8.c - the int8 GEMM (gemm_q8.c): the row quantiser's error
 * bound and ranges; the reference against a plain double computation on the
 * dequantised operands and (loosely) against the float32 product; every
 * kernel level this CPU has (scalar, AVX2, VNNI when present) against the
 * reference over odd shapes, bias, quick_gelu and accumulation; and the
 * AVX2 saturation case (all codes at their maximum: vpmaddubsw's int16 pair
 * sums must not saturate with 7-bit weights; 8-bit weights must not reach
 * the AVX2 kernel).
 */
#include "clip/gemm.h"
#include "common/cpu.h"
#include "testutil.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

typedef struct qmat {
    int n, k, wmax;
    int8_t *P;
    float *ws;
    int32_t *cs;
} qmat;

static qmat qpack(int n, int k, const float *W, const float *smooth, int wmax)
{
    qmat q = {n, k, wmax, malloc(cdx_q8_pack_bytes(n, k) + 64), NULL, NULL};
    size_t nr = (size_t)(n + CDX_Q8_NR - 1) / CDX_Q8_NR * CDX_Q8_NR;
    q.ws = malloc(nr * sizeof(float));
    q.cs = malloc(nr * sizeof(int32_t));
    cdx_q8_pack_weights(n, k, W, k, smooth, wmax, q.P, q.ws, q.cs);
    return q;
}

static void qfree(qmat *q)
{
    free(q->P);
    free(q->ws);
    free(q->cs);
}

/* w8[j][kk] from the packed layout */
static int w8_at(const qmat *q, int j, int kk)
{
    int kq = cdx_q8_kpad(q->k) / 4;
    return q->P[((size_t)(j / CDX_Q8_NR) * kq * CDX_Q8_NR + (size_t)(kk / 4) * CDX_Q8_NR + j % CDX_Q8_NR) * 4 +
                kk % 4];
}

static void test_quantizer(void)
{
    unsigned seed = 7;
    const int m = 9, k = 37, kp = cdx_q8_kpad(k);
    float A[9 * 37], inv[37];
    uint8_t Q[9 * 40];
    float as[9];
    int32_t zp[9];
    for (int i = 0; i < m * k; i++) A[i] = 3.0f * frand(&seed) + (i / k == 3 ? 2.5f : 0.0f);
    for (int kk = 0; kk < k; kk++) inv[kk] = 0.5f + (float)(kk % 5) * 0.25f;
    for (int kk = 0; kk < k; kk++) A[5 * k + kk] = 0.0f;   /* a zero row */
    memset(Q, 0xAB, sizeof Q);
    cdx_q8_quantize_rows(m, k, A, k, inv, Q, kp, as, zp);
    double worst = 0;
    for (int i = 0; i < m; i++) {
        CHECK(zp[i] >= 0 && zp[i] <= 255);
        for (int kk = 0; kk < kp; kk++) {
            uint8_t q = Q[i * kp + kk];
            (void)q;
            if (kk >= k) {
                CHECKF(q == 0, "padding code %d", q);
                continue;
            }
            double want = (double)A[i * k + kk] * inv[kk];
            double got = (double)as[i] * ((int)q - zp[i]);
            double err = fabs(got - want) - 0.5 * as[i];   /* within half a step */
            if (err > worst) worst = err;
        }
    }
    CHECKF(worst <= 1e-5, "quantiser: error beyond half a step by %g", worst);
    CHECK(as[5] == 0.0f && zp[5] == 0);
}

/* every level's quantiser gives the scalar level's codes, scales and zero
 * points bit for bit (lengths around the 8- and 32-wide steps, smoothing on
 * and off, all-positive, all-negative, zero and non-finite rows) */
static void test_quantizer_levels(void)
{
    static const int ks[] = {1, 7, 8, 31, 32, 33, 64, 77, 768, 3072};
    unsigned seed = 11;
    for (unsigned t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        const int m = 7, k = ks[t], kp = cdx_q8_kpad(k);
        float *A = malloc((size_t)m * k * 4), *inv = malloc((size_t)k * 4);
        uint8_t *Q0 = malloc((size_t)m * kp), *Q1 = malloc((size_t)m * kp);
        float as0[7], as1[7];
        int32_t zp0[7], zp1[7];
        for (int i = 0; i < m * k; i++) A[i] = 2.0f * frand(&seed);
        for (int kk = 0; kk < k; kk++) {
            A[1 * k + kk] = fabsf(A[1 * k + kk]) + 0.1f;   /* all positive: zp 0 */
            A[2 * k + kk] = -fabsf(A[2 * k + kk]) - 0.1f;  /* all negative: zp 255 */
            A[3 * k + kk] = 0.0f;
            inv[kk] = 0.25f + (float)(kk % 7) * 0.5f;
        }
        A[4 * k + k / 2] = 1e30f;
        A[5 * k + k / 3] = -INFINITY;
        for (int bits = 7; bits <= 8; bits++) {   /* 7: the codes of cdx_gemm_q8_a7 */
            for (int sm = 0; sm < 2; sm++) {
                cdx_cpu_set_cap(CDX_ISA_SCALAR);
                memset(Q0, 0xAB, (size_t)m * kp);
                cdx_q8_quantize_rows_bits(m, k, A, k, sm ? inv : NULL, bits, Q0, kp, as0, zp0);
                for (int isa = CDX_ISA_AVX2; isa <= (int)cdx_cpu_detected(); isa++) {
                    cdx_cpu_set_cap((cdx_isa)isa);
                    memset(Q1, 0x5C, (size_t)m * kp);
                    cdx_q8_quantize_rows_bits(m, k, A, k, sm ? inv : NULL, bits, Q1, kp, as1, zp1);
                    CHECKF(!memcmp(Q0, Q1, (size_t)m * kp) && !memcmp(as0, as1, sizeof as0) &&
                               !memcmp(zp0, zp1, sizeof zp0),
                           "quantiser level %s k%d smooth%d bits%d differs from scalar",
                           cdx_isa_name((cdx_isa)isa), k, sm, bits);
                }
                for (int i = 0; bits == 7 && i < m * kp; i++) CHECKF(Q0[i] <= 127, "7-bit code %d", Q0[i]);
            }
            CHECK(zp0[1] == 0 && zp0[2] == (bits == 7 ? 127 : 255) && as0[3] == 0.0f && as0[5] == 0.0f);
        }
        cdx_cpu_set_cap(CDX_ISA_AVX512);
        free(A); free(inv); free(Q0); free(Q1);
    }
}

/* C of every level vs the reference; the reference vs a double loop on the
 * dequantised operands and vs the float32 product */
static void check_shape(int m, int n, int k, int with_bias, int act, int accumulate, int wmax)
{
    unsigned seed = (unsigned)(m * 131 + n * 7 + k);
    const int kp = cdx_q8_kpad(k), ldc = n + 3;
    float *A = malloc((size_t)m * k * 4), *W = malloc((size_t)n * k * 4), *bias = malloc((size_t)n * 4);
    float *C0 = malloc((size_t)m * ldc * 4), *C1 = malloc((size_t)m * ldc * 4), *init = malloc((size_t)m * ldc * 4);
    uint8_t *Q = malloc((size_t)m * kp);
    float *as = malloc((size_t)m * 4);
    int32_t *zp = malloc((size_t)m * 4);
    for (int i = 0; i < m * k; i++) A[i] = frand(&seed) + 0.3f;
    for (int i = 0; i < n * k; i++) W[i] = frand(&seed) * 0.2f;
    for (int i = 0; i < n; i++) bias[i] = frand(&seed);
    for (int i = 0; i < m * ldc; i++) init[i] = frand(&seed);
    qmat q = qpack(n, k, W, NULL, wmax);
    cdx_q8_quantize_rows(m, k, A, k, NULL, Q, kp, as, zp);
    const float *b = with_bias ? bias : NULL;

    memcpy(C0, init, (size_t)m * ldc * 4);
    cdx_gemm_q8(m, n, k, Q, kp, as, zp, q.P, q.ws, q.cs, q.wmax, b, act, accumulate, C0, ldc, 0);
    /* the reference = the dequantised product, and close to the float32 one */
    double derr = 0, ferr = 0, mx = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, f = 0;
            for (int kk = 0; kk < k; kk++) {
                s += (double)as[i] * (Q[i * kp + kk] - zp[i]) * q.ws[j] * w8_at(&q, j, kk);
                f += (double)A[i * k + kk] * W[j * k + kk];
            }
            double add = (b ? b[j] : 0) + (accumulate ? init[i * ldc + j] : 0);
            s += add, f += add;
            if (act == CDX_PACK_ACT_QUICK_GELU) s = s / (1 + exp(-1.702 * s)), f = f / (1 + exp(-1.702 * f));
            double c = C0[i * ldc + j];
            derr = fmax(derr, fabs(c - s));
            ferr = fmax(ferr, fabs(c - f));
            mx = fmax(mx, fabs(f));
        }
    CHECKF(derr <= 1e-5 * (mx + 1), "q8 reference m%d n%d k%d: %g from the dequantised product", m, n, k, derr);
    /* 8-bit activations, 7- or 8-bit weights: ~1% of the row's scale per product */
    CHECKF(ferr <= 0.03 * (mx + 1) * sqrt(k / 16.0 + 1), "q8 reference m%d n%d k%d: %g from float32 (max %g)",
           m, n, k, ferr, mx);
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++) CHECK(C0[i * ldc + j] == init[i * ldc + j]);

    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        cdx_cpu_set_cap((cdx_isa)isa);
        memcpy(C1, init, (size_t)m * ldc * 4);
        cdx_gemm_q8(m, n, k, Q, kp, as, zp, q.P, q.ws, q.cs, q.wmax, b, act, accumulate, C1, ldc, 1);
        double err = 0;
        for (int i = 0; i < m * ldc; i++) err = fmax(err, fabs((double)C1[i] - C0[i]));
        CHECKF(err <= 2e-6 * (mx + 1), "q8 %s m%d n%d k%d w%d bias%d act%d acc%d: %g from the reference",
               cdx_q8_kernel_name(q.wmax), m, n, k, wmax, with_bias, act, accumulate, err);
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    qfree(&q);
    free(A); free(W); free(bias); free(C0); free(C1); free(init); free(Q); free(as); free(zp);
}

/* every code at its extreme: 255 x +-63 pairs are the most an int16 holds */
static void test_saturation(int wmax)
{
    const int m = 5, n = 20, k = 1000, kp = cdx_q8_kpad(k);
    float *A = malloc((size_t)m * k * 4), *W = malloc((size_t)n * k * 4);
    float *C0 = malloc((size_t)m * n * 4), *C1 = malloc((size_t)m * n * 4);
    uint8_t *Q = malloc((size_t)m * kp);
    float as[5];
    int32_t zp[5];
    for (int i = 0; i < m * k; i++) A[i] = 4.0f;
    for (int i = 0; i < n * k; i++) W[i] = (i / k) % 2 ? -1.0f : 1.0f;
    qmat q = qpack(n, k, W, NULL, wmax);
    cdx_q8_quantize_rows(m, k, A, k, NULL, Q, kp, as, zp);
    CHECK(Q[0] == 255 && zp[0] == 0 && w8_at(&q, 0, 0) == wmax && w8_at(&q, 1, 0) == -wmax);
    cdx_gemm_q8(m, n, k, Q, kp, as, zp, q.P, q.ws, q.cs, q.wmax, NULL, 0, 0, C0, n, 0);
    CHECKF(fabsf(C0[0] - 4.0f * k) <= 1e-3f * k, "saturation reference %g", C0[0]);
    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        cdx_cpu_set_cap((cdx_isa)isa);
        cdx_gemm_q8(m, n, k, Q, kp, as, zp, q.P, q.ws, q.cs, q.wmax, NULL, 0, 0, C1, n, 1);
        double err = 0;
        for (int i = 0; i < m * n; i++) err = fmax(err, fabs((double)C1[i] - C0[i]));
        CHECKF(err <= 1e-6 * 4.0 * k, "saturation %s w%d: %g", cdx_q8_kernel_name(q.wmax), wmax, err);
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    qfree(&q);
    free(A); free(W); free(C0); free(C1); free(Q);
}

/* SmoothQuant factors: W times smooth, A times 1/smooth = the same product */
static void test_smooth(void)
{
    const int m = 6, n = 33, k = 64, kp = cdx_q8_kpad(k);
    unsigned seed = 99;
    float A[6 * 64], W[33 * 64], sm[64], inv[64], C0[6 * 33], Cs[6 * 33];
    uint8_t Q[6 * 64];
    float as[6];
    int32_t zp[6];
    for (int i = 0; i < m * k; i++) A[i] = frand(&seed) * ((i % k) == 5 ? 40.0f : 1.0f);   /* an outlier channel */
    for (int i = 0; i < n * k; i++) W[i] = frand(&seed);
    for (int kk = 0; kk < k; kk++) sm[kk] = kk == 5 ? 6.0f : 1.0f, inv[kk] = 1.0f / sm[kk];
    double f[6 * 33], e0 = 0, es = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int kk = 0; kk < k; kk++) s += (double)A[i * k + kk] * W[j * k + kk];
            f[i * n + j] = s;
        }
    qmat q0 = qpack(n, k, W, NULL, 63), qs = qpack(n, k, W, sm, 63);
    cdx_q8_quantize_rows(m, k, A, k, NULL, Q, kp, as, zp);
    cdx_gemm_q8(m, n, k, Q, kp, as, zp, q0.P, q0.ws, q0.cs, q0.wmax, NULL, 0, 0, C0, n, 1);
    cdx_q8_quantize_rows(m, k, A, k, inv, Q, kp, as, zp);
    cdx_gemm_q8(m, n, k, Q, kp, as, zp, qs.P, qs.ws, qs.cs, qs.wmax, NULL, 0, 0, Cs, n, 1);
    for (int i = 0; i < m * n; i++) e0 = fmax(e0, fabs(C0[i] - f[i])), es = fmax(es, fabs(Cs[i] - f[i]));
    printf("  outlier channel x40: max error %.4f without smoothing, %.4f with\n", e0, es);
    CHECKF(es < e0, "smoothing did not reduce the error (%g vs %g)", es, e0);
    qfree(&q0);
    qfree(&qs);
}

/* cdx_gemm_q8_a7 (7-bit codes, two k-groups' int16 sums added before
 * widening) at every level = cdx_gemm_q8's reference on the same codes:
 * random shapes (odd k-group counts for the tail), then the worst case for
 * the int16 sum (codes 127 against weights +-wmax: +-4 x 127 x 63, k = 4096) */
static void check_a7(int m, int n, int k, int worst)
{
    unsigned seed = (unsigned)(m * 17 + n * 3 + k);
    const int kp = cdx_q8_kpad(k), wmax = 63;
    float *A = malloc((size_t)m * k * 4), *W = malloc((size_t)n * k * 4), *bias = malloc((size_t)n * 4);
    float *C0 = malloc((size_t)m * n * 4), *C1 = malloc((size_t)m * n * 4);
    uint8_t *Q = malloc((size_t)m * kp);
    float *as = malloc((size_t)m * 4);
    int32_t *zp = malloc((size_t)m * 4);
    for (int i = 0; i < m * k; i++) A[i] = worst ? 1.0f : frand(&seed);   /* worst: codes 127 */
    for (int i = 0; i < n * k; i++) W[i] = worst ? (i / k % 2 ? 1.0f : -1.0f) : frand(&seed);
    for (int i = 0; i < n; i++) bias[i] = frand(&seed);
    qmat q = qpack(n, k, W, NULL, wmax);
    cdx_q8_quantize_rows_bits(m, k, A, k, NULL, 7, Q, kp, as, zp);
    cdx_gemm_q8(m, n, k, Q, kp, as, zp, q.P, q.ws, q.cs, q.wmax, bias, 0, 0, C0, n, 0);
    double mx = 0;
    for (int i = 0; i < m * n; i++) mx = fmax(mx, fabs((double)C0[i]));
    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        cdx_cpu_set_cap((cdx_isa)isa);
        cdx_gemm_q8_a7(m, n, k, Q, kp, as, zp, q.P, q.ws, q.cs, q.wmax, bias, 0, 0, C1, n, 1);
        double err = 0;
        for (int i = 0; i < m * n; i++) err = fmax(err, fabs((double)C1[i] - C0[i]));
        CHECKF(err <= 2e-6 * (mx + 1), "q8 a7 %s m%d n%d k%d worst%d: %g from the reference",
               cdx_isa_name((cdx_isa)isa), m, n, k, worst, err);
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    qfree(&q);
    free(A); free(W); free(bias); free(C0); free(C1); free(Q); free(as); free(zp);
}

int main(void)
{
    printf("levels up to %s; VNNI %s\n", cdx_isa_name(cdx_cpu_detected()),
           cdx_q8_vnni_supported() ? "present (tested)" : "absent (its kernel is compiled, not run)");
    test_quantizer();
    test_quantizer_levels();
    static const int ms[] = {1, 3, 4, 5, 8, 9, 17, 100, 200};
    static const int ns[] = {1, 15, 16, 17, 64, 70};
    static const int ks[] = {1, 3, 4, 7, 64, 130};
    for (unsigned a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (unsigned b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (unsigned c = 0; c < sizeof ks / sizeof ks[0]; c++)
                check_shape(ms[a], ns[b], ks[c], (a + b) % 2, (a + c) % 3 == 0, (b + c) % 2,
                            (a + b + c) % 2 ? 63 : 127);
    check_shape(77, 2304, 768, 1, 0, 0, 63);
    check_shape(50, 768, 3072, 1, 1, 1, 63);
    check_shape(33, 200, 300, 1, 1, 1, 127);
    test_saturation(63);
    test_saturation(127);
    static const int a7[][3] = {{1, 1, 1}, {3, 17, 4}, {4, 16, 8}, {5, 33, 12}, {9, 70, 130}, {50, 200, 768}};
    for (unsigned t = 0; t < sizeof a7 / sizeof a7[0]; t++) check_a7(a7[t][0], a7[t][1], a7[t][2], 0);
    check_a7(5, 32, 4096, 1);
    test_smooth();
    return test_finish();
}
