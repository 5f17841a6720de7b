/*
 * clipgen.h - deterministic CLIP-like synthetic embeddings for benchmarks
 * and recall tests (header-only; bench/quant_bench.c, tests/test_quant.c).
 *
 * Not uniform noise: unit vectors built as
 *   x = normalise(mean + a_c * sigma . z_k + a_p * sigma . z)
 * with a shared mean direction (|mean| = 0.5: CLIP image embeddings share
 * one), cluster centres z_k whose sizes are uneven (cluster = floor(K u^2),
 * so low ids are much larger), and a per-dimension spread sigma_d that
 * decays (1 / sqrt(1 + d/8), scaled to unit norm) like the spectrum of real
 * embeddings.  Queries come from a shifted distribution: a cluster centre
 * plus noise plus a fixed offset direction (the text/image modality gap),
 * so their cosine with the data is low (~0.2-0.4) as for CLIP text queries.
 * Row i and query i depend only on (seed, i): generation is parallel and
 * repeatable.
 */
#ifndef CDX_BENCH_CLIPGEN_H
#define CDX_BENCH_CLIPGEN_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct clipgen {
    int dim, n_clusters;
    uint64_t seed;
    float *mean, *sigma, *shift, *centres;   /* centres: n_clusters x dim */
} clipgen;

static inline uint64_t clipgen_mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double clipgen_unif(uint64_t *st)
{
    return ((double)(clipgen_mix(st) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* n approximately standard normal values: the sum of four 16-bit uniforms
 * (Irwin-Hall, rescaled), no transcendental call - generation of 10^9
 * values stays in seconds. */
static inline void clipgen_gauss(uint64_t *st, float *out, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t r = clipgen_mix(st);
        float u = (float)((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
        out[i] = (u * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;   /* mean 0, variance 1 */
    }
}

static inline void clipgen_normalise(float *v, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++) s += (double)v[d] * v[d];
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int d = 0; d < dim; d++) v[d] *= inv;
}

static inline void clipgen_free(clipgen *g)
{
    if (!g) return;
    free(g->mean); free(g->sigma); free(g->shift); free(g->centres);
    free(g);
}

static inline clipgen *clipgen_new(int dim, int n_clusters, uint64_t seed)
{
    clipgen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->dim = dim; g->n_clusters = n_clusters; g->seed = seed;
    g->mean = malloc((size_t)dim * sizeof(float));
    g->sigma = malloc((size_t)dim * sizeof(float));
    g->shift = malloc((size_t)dim * sizeof(float));
    g->centres = malloc((size_t)n_clusters * (size_t)dim * sizeof(float));
    if (!g->mean || !g->sigma || !g->shift || !g->centres) { clipgen_free(g); return NULL; }
    uint64_t st = seed * 0x100000001B3ull + 17;
    clipgen_gauss(&st, g->mean, dim);
    clipgen_normalise(g->mean, dim);
    for (int d = 0; d < dim; d++) g->mean[d] *= 0.5f;
    double s = 0;
    for (int d = 0; d < dim; d++) { g->sigma[d] = 1.0f / sqrtf(1.0f + (float)d / 8.0f); s += g->sigma[d] * g->sigma[d]; }
    for (int d = 0; d < dim; d++) g->sigma[d] /= (float)sqrt(s);
    clipgen_gauss(&st, g->shift, dim);
    clipgen_normalise(g->shift, dim);
    for (int k = 0; k < n_clusters; k++) {
        float *c = g->centres + (size_t)k * dim;
        clipgen_gauss(&st, c, dim);
        for (int d = 0; d < dim; d++) c[d] = g->mean[d] + 0.8f * g->sigma[d] * c[d];
    }
    return g;
}

/* Data row i (dim floats, unit length).  tmp: dim floats. */
static inline void clipgen_row(const clipgen *g, uint64_t i, float *out)
{
    uint64_t st = (g->seed + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xD1B54A32D192ED03ull);
    int k = (int)(g->n_clusters * pow(clipgen_unif(&st), 2.0));
    if (k >= g->n_clusters) k = g->n_clusters - 1;
    const float *c = g->centres + (size_t)k * g->dim;
    clipgen_gauss(&st, out, g->dim);
    for (int d = 0; d < g->dim; d++) out[d] = c[d] + 0.6f * g->sigma[d] * out[d];
    clipgen_normalise(out, g->dim);
}

/* Query i: from the shifted distribution (see above). */
static inline void clipgen_query(const clipgen *g, uint64_t i, float *out)
{
    uint64_t st = (g->seed + 7) * 0xA24BAED4963EE407ull ^ (i * 0x9FB21C651E98DF25ull);
    int k = (int)(g->n_clusters * pow(clipgen_unif(&st), 2.0));
    if (k >= g->n_clusters) k = g->n_clusters - 1;
    const float *c = g->centres + (size_t)k * g->dim;
    clipgen_gauss(&st, out, g->dim);
    for (int d = 0; d < g->dim; d++) out[d] = c[d] + 0.8f * g->sigma[d] * out[d] + 0.9f * g->shift[d];
    clipgen_normalise(out, g->dim);
}

#endif
