/*
 * q8_bench.c - the int8 Linear (row quantiser + cdx_gemm_q8) against the
 * float32 packed GEMM (cdx_gemm_packed) and oneDNN's integer GEMM
 * (dnnl_gemm_u8s8s32, integer part only: no quantiser, no dequantising
 * epilogue, so it is flattered), on the Linear shapes of ViT-B/32, one
 * thread, thread CPU time (best of a few repeats: on a shared machine CPU
 * time is what the kernel costs, wall time is what the neighbours leave).
 *
 *   q8_bench [--json] [--reps N]
 *
 * Prints per shape (rows x out x in): GFLOP/s of each and the ratios
 * q8 / fp32 and q8 / dnnl_u8s8s32.  The kernel is the one cdx_cpu_level()
 * and cdx_q8_weight_max() select ("vnni", "avx2" or "scalar").
 */
#include "clip/gemm.h"
#include "common/cpu.h"
#include "common/util.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if __has_include(<dnnl.h>)
#include <dnnl.h>
#define HAVE_DNNL 1
#else
#define HAVE_DNNL 0
#endif

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

int main(int argc, char **argv)
{
    int json = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: q8_bench [--json] [--reps N]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 100) reps = 3;
    omp_set_num_threads(1);   /* cdx_par_threads() = 1: one thread */
    static const int shapes[][3] = {{1, 2304, 768},  {8, 1536, 512},   {8, 2048, 512},
                                    {8, 512, 2048},  {77, 2304, 768},  {77, 2048, 512},
                                    {50, 2304, 768}, {50, 3072, 768},  {50, 768, 3072},
                                    {400, 3072, 768}, {400, 768, 3072}, {1600, 2304, 768},
                                    {1600, 3072, 768}, {1600, 768, 3072}};
    const int wmax = cdx_q8_weight_max();
    if (!json)
        printf("int8 kernel %s (weights +-%d), 1 thread, thread CPU time, best of %d\n%-18s %9s %9s %9s %8s %8s %9s\n",
               cdx_q8_kernel_name(wmax), wmax, reps, "rows x out x in", "fp32", "int8", "dnnl_s32",
               "int8/fp32", "int8/dnnl", "int8_a7");
    for (unsigned s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], kp = cdx_q8_kpad(k);
        unsigned seed = 1;
        float *A = malloc((size_t)m * k * 4), *W = malloc((size_t)n * k * 4), *C = malloc((size_t)m * n * 4);
        float *P = cdx_alloc_aligned(cdx_pack_floats(n, k), 4);
        int8_t *Pq = cdx_alloc_aligned(cdx_q8_pack_bytes(n, k), 1), *Wq = malloc((size_t)n * k);
        size_t nr = (size_t)(n + CDX_Q8_NR - 1) / CDX_Q8_NR * CDX_Q8_NR;
        float *ws = malloc(nr * 4), *as = malloc((size_t)m * 4);
        int32_t *cs = malloc(nr * 4), *zp = malloc((size_t)m * 4), *Ci = malloc((size_t)m * n * 4);
        uint8_t *Q = malloc((size_t)m * kp);
        for (size_t i = 0; i < (size_t)m * k; i++) A[i] = frand(&seed);
        for (size_t i = 0; i < (size_t)n * k; i++) W[i] = frand(&seed) * 0.05f;
        for (size_t i = 0; i < (size_t)n * k; i++) Wq[i] = (int8_t)(frand(&seed) * 60);
        cdx_pack_weights(n, k, W, k, P);
        cdx_q8_pack_weights(n, k, W, k, NULL, wmax, Pq, ws, cs);
        double best[4] = {1e9, 1e9, 1e9, 1e9};
        for (int r = 0; r < reps; r++) {
            double t0 = cpu_now();
            cdx_gemm_packed(m, n, k, A, k, P, NULL, CDX_PACK_ACT_NONE, 0, C, n, 1);
            double t1 = cpu_now();
            cdx_q8_quantize_rows(m, k, A, k, NULL, Q, kp, as, zp);
            cdx_gemm_q8(m, n, k, Q, kp, as, zp, Pq, ws, cs, wmax, NULL, CDX_PACK_ACT_NONE, 0, C, n, 1);
            double t2 = cpu_now();
#if HAVE_DNNL
            int32_t co = 0;
            dnnl_gemm_u8s8s32('N', 'T', 'F', m, n, k, 1.0f, Q, kp, 0, Wq, k, 0, 0.0f, Ci, n, &co);
#endif
            double t3 = cpu_now();
            cdx_q8_quantize_rows_bits(m, k, A, k, NULL, 7, Q, kp, as, zp);
            cdx_gemm_q8_a7(m, n, k, Q, kp, as, zp, Pq, ws, cs, wmax, NULL, CDX_PACK_ACT_NONE, 0, C, n, 1);
            double t4 = cpu_now();
            best[3] = fmin(best[3], t4 - t3);
            best[0] = fmin(best[0], t1 - t0);
            best[1] = fmin(best[1], t2 - t1);
            best[2] = fmin(best[2], t3 - t2);
        }
        double fl = 2.0 * m * n * k / 1e9;
        double g0 = fl / best[0], g1 = fl / best[1], g2 = HAVE_DNNL ? fl / best[2] : 0, g3 = fl / best[3];
        if (json)
            printf("{\"rows\":%d,\"out\":%d,\"in\":%d,\"int8_kernel\":\"%s\",\"fp32_gflops\":%.2f,"
                   "\"int8_gflops\":%.2f,\"dnnl_u8s8s32_gflops\":%.2f,\"int8_over_fp32\":%.3f,"
                   "\"int8_over_dnnl\":%.3f,\"int8_a7_gflops\":%.2f}\n",
                   m, n, k, cdx_q8_kernel_name(wmax), g0, g1, g2, g1 / g0, g2 > 0 ? g1 / g2 : 0.0, g3);
        else
            printf("%5d x %4d x %4d %9.1f %9.1f %9.1f %8.2f %8.2f %9.1f\n", m, n, k, g0, g1, g2, g1 / g0,
                   g2 > 0 ? g1 / g2 : 0.0, g3);
        fflush(stdout);
        free(A); free(W); free(C); cdx_free_aligned(P); cdx_free_aligned(Pq); free(Wq);
        free(ws); free(as); free(cs); free(zp); free(Ci); free(Q);
    }
    return 0;
}
