/*
 * ann_synth.h - synthetic CLIP-like embeddings for the ANN benchmark and
 * tests (header-only; bench/ann_bench.c, tests/test_ann.c).
 *
 * Not uniform noise: what makes nearest-neighbour search on CLIP vectors
 * easy or hard is reproduced:
 *  - a shared mean direction (image embeddings of unrelated photos have
 *    cosine ~0.4-0.5 with each other);
 *  - clusters (topics) of very uneven sizes (Zipf weights, exponent 1);
 *  - variance decaying over the spectrum (a few directions carry most of
 *    it), rotated out of the axes by random signs + a Walsh-Hadamard
 *    transform (dims that are powers of two; others stay axis-aligned);
 *  - queries from a shifted distribution: text queries share a different
 *    mean direction ("modality gap"), so the best query-image cosine is
 *    ~0.3 while image-image is ~0.5+;
 *  - every vector unit length.
 * Deterministic: row i depends only on (seed, i), so any thread count gives
 * the same data.
 */
#ifndef CDX_BENCH_ANN_SYNTH_H
#define CDX_BENCH_ANN_SYNTH_H

#include "search/quant.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct ann_synth {
    int dim, nclusters;
    float *mean_img, *mean_txt;   /* unit */
    float *centers;               /* nclusters x dim, decaying spectrum */
    float *spread;                /* per-cluster noise scale */
    double *cdf;                  /* cluster choice (Zipf) */
    float *sigma;                 /* per-dim noise std (decaying) */
    float *signs;                 /* rotation signs */
    uint64_t seed;
} ann_synth;

static inline uint64_t synth_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline double synth_unif(uint64_t *s)
{
    *s = synth_mix(*s);
    return ((*s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline float synth_gauss(uint64_t *s)
{
    double u = synth_unif(s), v = synth_unif(s);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static inline void synth_normalize(float *v, int dim)
{
    double n = 0;
    for (int i = 0; i < dim; i++) n += (double)v[i] * v[i];
    float inv = n > 0 ? (float)(1.0 / sqrt(n)) : 0.0f;
    for (int i = 0; i < dim; i++) v[i] *= inv;
}

/* Random signs then an orthonormal Walsh-Hadamard transform. */
static inline void synth_rotate(const ann_synth *g, float *v)
{
    int n = g->dim;
    if (n & (n - 1)) return;
    for (int i = 0; i < n; i++) v[i] *= g->signs[i];
    quant_fwht(v, n);
    float sc = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) v[i] *= sc;
}

static inline void synth_free(ann_synth *g)
{
    free(g->mean_img);
    free(g->mean_txt);
    free(g->centers);
    free(g->spread);
    free(g->cdf);
    free(g->sigma);
    free(g->signs);
    memset(g, 0, sizeof *g);
}

/* Set up a generator for about n vectors; 0 on success. */
static inline int synth_init(ann_synth *g, int dim, uint64_t n, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->dim = dim;
    g->seed = seed;
    uint64_t nc = n / 200;
    g->nclusters = (int)(nc < 16 ? 16 : nc > 20000 ? 20000 : nc);
    g->mean_img = malloc(dim * sizeof(float));
    g->mean_txt = malloc(dim * sizeof(float));
    g->centers = malloc((size_t)g->nclusters * dim * sizeof(float));
    g->spread = malloc(g->nclusters * sizeof(float));
    g->cdf = malloc(g->nclusters * sizeof(double));
    g->sigma = malloc(dim * sizeof(float));
    g->signs = malloc(dim * sizeof(float));
    if (!g->mean_img || !g->mean_txt || !g->centers || !g->spread || !g->cdf || !g->sigma || !g->signs) {
        synth_free(g);
        return -1;
    }
    uint64_t s = synth_mix(seed ^ 0xc11bull);
    for (int d = 0; d < dim; d++) {
        g->sigma[d] = (float)pow(d + 1.0, -0.3);
        g->signs[d] = synth_unif(&s) < 0.5 ? -1.0f : 1.0f;
    }
    for (int d = 0; d < dim; d++) g->mean_img[d] = g->sigma[d] * synth_gauss(&s);
    synth_normalize(g->mean_img, dim);
    double dp = 0;   /* mean_txt = 0.5 mean_img + 0.866 (a unit direction orthogonal to it) */
    for (int d = 0; d < dim; d++) g->mean_txt[d] = g->sigma[d] * synth_gauss(&s);
    synth_normalize(g->mean_txt, dim);
    for (int d = 0; d < dim; d++) dp += (double)g->mean_txt[d] * g->mean_img[d];
    for (int d = 0; d < dim; d++) g->mean_txt[d] -= (float)dp * g->mean_img[d];
    synth_normalize(g->mean_txt, dim);
    for (int d = 0; d < dim; d++) g->mean_txt[d] = 0.5f * g->mean_img[d] + 0.866f * g->mean_txt[d];
    double tot = 0;
    for (int c = 0; c < g->nclusters; c++) {
        float *ctr = g->centers + (size_t)c * dim;
        for (int d = 0; d < dim; d++) ctr[d] = g->sigma[d] * synth_gauss(&s);
        synth_normalize(ctr, dim);
        g->spread[c] = (float)(0.7 + 0.6 * synth_unif(&s));
        tot += 1.0 / (c + 1.0);
        g->cdf[c] = tot;
    }
    for (int c = 0; c < g->nclusters; c++) g->cdf[c] /= tot;
    return 0;
}

static inline int synth_cluster(const ann_synth *g, uint64_t *s)
{
    double u = synth_unif(s);
    int lo = 0, hi = g->nclusters - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (g->cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Image vector i (dim floats, unit). */
static inline void synth_image(const ann_synth *g, uint64_t i, float *out)
{
    uint64_t s = synth_mix(g->seed * 0x100000001b3ull + i);
    int c = synth_cluster(g, &s);
    const float *ctr = g->centers + (size_t)c * g->dim;
    float sp = g->spread[c];
    for (int d = 0; d < g->dim; d++)
        out[d] = 0.67f * g->mean_img[d] + 0.5f * ctr[d] + 0.1f * sp * g->sigma[d] * synth_gauss(&s);
    synth_normalize(out, g->dim);
    synth_rotate(g, out);
}

/* Query vector i (text-like: other mean, looser around its topic). */
static inline void synth_query(const ann_synth *g, uint64_t i, float *out)
{
    uint64_t s = synth_mix((g->seed ^ 0x7e57ull) * 0x100000001b3ull + i);
    int c = synth_cluster(g, &s);
    const float *ctr = g->centers + (size_t)c * g->dim;
    for (int d = 0; d < g->dim; d++)
        out[d] = 0.5f * g->mean_txt[d] + 0.2f * ctr[d] + 0.2f * g->sigma[d] * synth_gauss(&s);
    synth_normalize(out, g->dim);
    synth_rotate(g, out);
}

#endif
