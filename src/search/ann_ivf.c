/*
 * ann_ivf.c - the IVF index of int8 codes (see ann_ivf.h).
 *
 * Training is spherical k-means (vectors and centroids are unit length, the
 * similarity is the inner product) on a random sample, with the
 * assignments computed by GEMM (clip/gemm.h) in blocks.  Lists are plain
 * growable arrays (slots, scales, codes), so a list scan is one sequential
 * stream; insertion grows a list by half its size.  The int8 kernel uses
 * AVX2's maddubs on |q| and sign(q)*code (exact: 127*127*2 < 2^15), with a
 * plain C reference that must agree bit for bit.
 */
#include "search/ann_ivf.h"

#include "clip/gemm.h"
#include "common/cpu.h"
#include "common/error.h"
#include "common/util.h"
#include "search/dot.h"
#include "search/quant.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ASSIGN_BLOCK 2048
#define PAR_MIN_CODES 131072
#define ANN_BITS_MIN_SCAN 65536    /* sign-code first stage from this many codes scanned */
#define ANN_BITS_KEEP_DIV 50       /* ... keeping 1/50 of them for the int8 stage */
#define ANN_BITS_KEEP_MAX 8192     /* ... but at most this many (or 8 x rerank) */
#define FS_BLOCK 32                /* sign codes scanned together */
#define FS_PREFETCH 4096           /* bytes ahead the block scan prefetches */
#define FS_MAP_MIN ((size_t)256 << 10)   /* sign-code blocks of this size: a mapping of their own */

typedef struct ivf_list {
    uint32_t n, cap;
    uint32_t *slots;
    float *scales;
    int8_t *codes;
    uint8_t *fs;          /* sign codes of the rotated residuals, in blocks of
                             FS_BLOCK rows (fast-scan layout, below) */
    float *bw;            /* n: sign-code estimator weight |r|^2 / sum |r'| */
    int in_arena;         /* codes and fs point into the index's arena */
} ivf_list;

struct ann_ivf {
    int dim, nlist;
    size_t cb;            /* code bytes per row */
    float *cent;          /* nlist x dim */
    ivf_list *lists;
    uint64_t count;
    int bwords;           /* 64-bit words of a sign code */
    int fsg;              /* 4-dim groups of a sign code (even) */
    size_t fsb;           /* bytes of a block of FS_BLOCK sign codes: fsg * 16 */
    float *rsign;         /* dim: signs of the fixed rotation */
    /* two-level assignment (nlist >= GROUP_MIN_LISTS): the centroids in
     * ngroups groups; a row is compared with the centroids of the
     * group_probes groups most similar to it only */
    int ngroups, group_probes;
    float *gcent;         /* ngroups x dim, unit */
    float *gmcent;        /* nlist x dim: the centroids in group order */
    uint32_t *gmemb;      /* nlist: list number of each, in group order */
    uint32_t *gstart;     /* ngroups + 1 */
    void *arena;          /* codes and sign codes of the lists reserved at once */
    size_t arena_bytes;
};

/* ---------------------------------------------------------------- kernels */

int32_t ann_i8dot_ref(const int8_t *a, const int8_t *b, size_t n)
{
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}

__attribute__((target("avx2"))) static int32_t i8dot_avx2(const int8_t *a, const int8_t *b, size_t n)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i qa = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i cb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i qa2 = _mm256_loadu_si256((const __m256i *)(a + i + 32));
        __m256i cb2 = _mm256_loadu_si256((const __m256i *)(b + i + 32));
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(qa), _mm256_sign_epi8(cb, qa));
        __m256i p2 = _mm256_maddubs_epi16(_mm256_abs_epi8(qa2), _mm256_sign_epi8(cb2, qa2));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p, ones));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p2, ones));
    }
    for (; i < n; i += 32) {
        __m256i qa = _mm256_loadu_si256((const __m256i *)(a + i));
        __m256i cb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(qa), _mm256_sign_epi8(cb, qa));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p, ones));
    }
    acc0 = _mm256_add_epi32(acc0, acc1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc0), _mm256_extracti128_si256(acc0, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

typedef int32_t (*i8dot_fn)(const int8_t *, const int8_t *, size_t);

static i8dot_fn pick_i8dot(void)
{
    static i8dot_fn fn;
    if (!fn) {
        const char *e = getenv("CLIPDEX_SIMD");
        int scalar = e && !strcmp(e, "scalar");
        __builtin_cpu_init();
        fn = !scalar && __builtin_cpu_supports("avx2") ? i8dot_avx2 : ann_i8dot_ref;
    }
    return fn;
}

int32_t ann_i8dot(const int8_t *a, const int8_t *b, size_t n) { return pick_i8dot()(a, b, n); }

/* ---------------------------------------------------------------- basics */

size_t ann_ivf_code_bytes(int dim) { return ((size_t)dim + 31) & ~(size_t)31; }

int ann_ivf_auto_nlist(uint64_t n)
{
    int nl = 1;
    while ((uint64_t)nl * nl * 2 <= n && nl < ANN_IVF_MAX_LISTS / 2) nl *= 2;
    if (nl < 16) nl = n >= 16 ? 16 : (int)(n ? n : 1);
    return nl;
}

int ann_ivf_default_probes(int nlist)
{
    /* A fifth of the lists, but at most 4 sqrt(lists) (from 400 lists):
     * recall@10 ~0.97 on CLIP-like text queries at 1M (128 of 1024 lists)
     * and 10M (256 of 4096; docs/search.md).  The share of lists needed
     * falls as the index grows: a fifth scans 3x more than needed at 10M. */
    int p = nlist / 5, cap = (int)(4.0 * sqrt((double)nlist) + 0.5);
    if (p > cap) p = cap;
    if (p < 8) p = 8;
    return p > nlist ? nlist : p;
}

ann_ivf_train_params ann_ivf_default_train_params(void)
{
    ann_ivf_train_params p = {0};
    p.iters = 8;
    p.per_list = 40;
    p.seed = 1;
    return p;
}

ann_search_params ann_default_search_params(void)
{
    ann_search_params p = {0};
    p.k = 10;
    p.min_score = -INFINITY;
    return p;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void normalize(float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)v[i] * v[i];
    if (s <= 0) return;
    float inv = (float)(1.0 / sqrt(s));
    for (int i = 0; i < dim; i++) v[i] *= inv;
}

/* ---------------------------------------------------------------- sign codes */

/* In place, orthonormal Walsh-Hadamard transform of n (a power of two). */
static void wht(float *v, int n)
{
    quant_fwht(v, n);
    float sc = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) v[i] *= sc;
}

/* The fixed rotation of the sign codes (orthogonal): random signs, then a
 * Walsh-Hadamard transform of the first and of the last P dims (P the
 * largest power of two <= dim; one transform when dim is a power of two).
 * It spreads a decaying spectrum evenly over the dims, which the 1-bit
 * estimator assumes. */
static void rotate(const ann_ivf *ix, float *v)
{
    int P = 1;
    while (P * 2 <= ix->dim) P *= 2;
    for (int d = 0; d < ix->dim; d++) v[d] *= ix->rsign[d];
    wht(v, P);
    if (P < ix->dim) wht(v + ix->dim - P, P);
}

/* Sign code of a row's int8 code (scale * code - its list's centroid,
 * rotated): bits, the estimator weight |r|^2 / sum|r'_d| and the bit
 * count.  <q, r> ~ w * <Rq, b> with b in {-1, +1}^dim (RaBitQ's
 * estimator).  tmp: dim floats. */
static void sign_code(const ann_ivf *ix, const int8_t *code, float scale, const float *c, float *tmp,
                      uint64_t *bits, float *w)
{
    float nn = 0, s1 = 0;
    for (int d = 0; d < ix->dim; d++) {
        tmp[d] = scale * code[d] - c[d];
        nn += tmp[d] * tmp[d];
    }
    rotate(ix, tmp);
    memset(bits, 0, (size_t)ix->bwords * 8);
    for (int d = 0; d < ix->dim; d++) {
        s1 += fabsf(tmp[d]);
        uint64_t pos = tmp[d] > 0;
        bits[d / 64] |= pos << (d % 64);
    }
    *w = s1 > 0 ? nn / s1 : 0.0f;
}

/* Fast-scan layout of the sign codes (the 4-bit look-up scan of FAISS's
 * IndexIVFFastScan and RaBitQ, written here for 1-bit codes because no
 * Debian library scans them): a list's codes are cut into blocks of
 * FS_BLOCK = 32 rows; the code of a row is fsg groups of 4 bits (dims
 * 4g..4g+3), and a block stores group g of its 32 rows in the 16 bytes at
 * g * 16: byte j holds row j's group in its low nibble and row j + 16's in
 * its high one.  A query's contribution of one group is then a 16-entry
 * table looked up for 32 rows with two byte shuffles (fs_block_avx2).
 * Rows are written into a block one at a time as they are inserted. */
static void fs_put(const ann_ivf *ix, uint8_t *fs, uint32_t pos, const uint64_t *bits)
{
    uint8_t *blk = fs + (size_t)(pos / FS_BLOCK) * ix->fsb;
    unsigned j = pos % FS_BLOCK, sh = j < 16 ? 0 : 4;
    uint8_t keep = j < 16 ? 0xf0 : 0x0f;
    for (int g = 0; g < ix->fsg; g++) {
        int d = 4 * g;
        unsigned nib = d < ix->bwords * 64 ? (unsigned)(bits[d / 64] >> (d % 64)) & 0xf : 0;
        uint8_t *b = blk + (size_t)g * 16 + (j & 15);
        *b = (uint8_t)((*b & keep) | nib << sh);
    }
}

/* ---------------------------------------------------------------- groups */

#define GROUP_MIN_LISTS 1024
#define GROUP_PROBES 8

static void free_groups(ann_ivf *ix)
{
    free(ix->gcent);
    free(ix->gmcent);
    free(ix->gmemb);
    free(ix->gstart);
    ix->gcent = ix->gmcent = NULL;
    ix->gmemb = ix->gstart = NULL;
    ix->ngroups = 0;
}

/* Spherical k-means of the centroids into ~sqrt(nlist) groups (a cheap,
 * deterministic step done whenever the centroids are set). */
static cdx_result build_groups(ann_ivf *ix)
{
    free_groups(ix);
    if (ix->nlist < GROUP_MIN_LISTS) return CDX_OK;
    int G = (int)sqrt((double)ix->nlist), dim = ix->dim, nl = ix->nlist;
    const dot_kernel *kern = dot_kernel_best();
    ix->gcent = malloc((size_t)G * dim * sizeof(float));
    ix->gmcent = malloc((size_t)nl * dim * sizeof(float));
    ix->gmemb = malloc((size_t)nl * sizeof *ix->gmemb);
    ix->gstart = calloc((size_t)G + 1, sizeof *ix->gstart);
    uint32_t *g = malloc((size_t)nl * sizeof *g);
    float *sc = malloc((size_t)G * sizeof *sc);
    float *sums = malloc((size_t)G * dim * sizeof(float));
    if (!ix->gcent || !ix->gmcent || !ix->gmemb || !ix->gstart || !g || !sc || !sums) {
        free(g);
        free(sc);
        free(sums);
        free_groups(ix);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    ix->ngroups = G;
    ix->group_probes = GROUP_PROBES;
    for (int k = 0; k < G; k++)
        memcpy(ix->gcent + (size_t)k * dim, ix->cent + (size_t)(k * (nl / G)) * dim, (size_t)dim * sizeof(float));
    for (int it = 0; it < 10; it++) {
        for (int l = 0; l < nl; l++) {
            const float *c = ix->cent + (size_t)l * dim;
            kern->tile(&c, 1, ix->gcent, (size_t)G, (size_t)dim, (size_t)dim, sc, (size_t)G);
            uint32_t b = 0;
            for (int k = 1; k < G; k++)
                if (sc[k] > sc[b]) b = (uint32_t)k;
            g[l] = b;
        }
        memset(sums, 0, (size_t)G * dim * sizeof(float));
        memset(ix->gstart, 0, ((size_t)G + 1) * sizeof *ix->gstart);
        for (int l = 0; l < nl; l++) {
            float *s = sums + (size_t)g[l] * dim;
            for (int d = 0; d < dim; d++) s[d] += ix->cent[(size_t)l * dim + d];
            ix->gstart[g[l] + 1]++;
        }
        for (int k = 0; k < G; k++) {
            float *c = ix->gcent + (size_t)k * dim;
            if (ix->gstart[k + 1]) memcpy(c, sums + (size_t)k * dim, (size_t)dim * sizeof(float));
            else memcpy(c, ix->cent + (size_t)((k * 7919 + it) % nl) * dim, (size_t)dim * sizeof(float));
            normalize(c, dim);
        }
    }
    /* members in group order (from the last assignment) */
    for (int k = 0; k < G; k++) ix->gstart[k + 1] += ix->gstart[k];
    uint32_t *fill = (uint32_t *)sc;   /* G entries of scratch */
    memcpy(fill, ix->gstart, (size_t)G * sizeof *fill);
    for (int l = 0; l < nl; l++) {
        uint32_t at = fill[g[l]]++;
        ix->gmemb[at] = (uint32_t)l;
        memcpy(ix->gmcent + (size_t)at * dim, ix->cent + (size_t)l * dim, (size_t)dim * sizeof(float));
    }
    free(g);
    free(sc);
    free(sums);
    return CDX_OK;
}

void ann_ivf_set_group_probes(ann_ivf *ix, int group_probes)
{
    if (ix->ngroups) ix->group_probes = group_probes < 0 ? 0 : group_probes;
}

static void fs_release(uint8_t *fs, size_t bytes)
{
    if (!fs) return;
    if (bytes >= FS_MAP_MIN) munmap(fs, bytes);
    else cdx_free_aligned(fs);
}

cdx_result ann_ivf_from_centroids(int dim, int nlist, const float *centroids, ann_ivf **out)
{
    if (dim < 1 || dim > 16384 || nlist < 1 || nlist > ANN_IVF_MAX_LISTS)
        return cdx_error(CDX_ERR_INVALID_ARG, "ann index: bad geometry (dim %d, %d lists)", dim, nlist);
    ann_ivf *ix = calloc(1, sizeof *ix);
    if (!ix) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    ix->dim = dim;
    ix->nlist = nlist;
    ix->cb = ann_ivf_code_bytes(dim);
    ix->cent = malloc((size_t)nlist * dim * sizeof(float));
    ix->lists = calloc((size_t)nlist, sizeof *ix->lists);
    if (!ix->cent || !ix->lists) {
        ann_ivf_free(ix);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    ix->bwords = (dim + 63) / 64;
    ix->fsg = ((dim + 3) / 4 + 1) & ~1;
    ix->fsb = (size_t)ix->fsg * 16;
    ix->rsign = malloc((size_t)dim * sizeof(float));
    if (!ix->rsign) {
        ann_ivf_free(ix);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    uint64_t rs = 0x5157a11ull;   /* fixed: sign codes are derived data */
    for (int d = 0; d < dim; d++) ix->rsign[d] = splitmix(&rs) >> 63 ? -1.0f : 1.0f;
    if (centroids) {
        memcpy(ix->cent, centroids, (size_t)nlist * dim * sizeof(float));
        cdx_result r = build_groups(ix);
        if (r) {
            ann_ivf_free(ix);
            return r;
        }
    }
    *out = ix;
    return CDX_OK;
}

void ann_ivf_free(ann_ivf *ix)
{
    if (!ix) return;
    for (int l = 0; ix->lists && l < ix->nlist; l++) {
        free(ix->lists[l].slots);
        free(ix->lists[l].scales);
        if (!ix->lists[l].in_arena) {
            free(ix->lists[l].codes);
            fs_release(ix->lists[l].fs, (size_t)(ix->lists[l].cap / FS_BLOCK) * ix->fsb);
        }
        free(ix->lists[l].bw);
    }
    free(ix->lists);
    if (ix->arena) munmap(ix->arena, ix->arena_bytes);
    free(ix->cent);
    free(ix->rsign);
    free_groups(ix);
    free(ix);
}

int ann_ivf_dim(const ann_ivf *ix) { return ix->dim; }
int ann_ivf_nlist(const ann_ivf *ix) { return ix->nlist; }
uint64_t ann_ivf_count(const ann_ivf *ix) { return ix->count; }
const float *ann_ivf_centroids(const ann_ivf *ix) { return ix->cent; }

uint64_t ann_ivf_bytes(const ann_ivf *ix)
{
    uint64_t b = (uint64_t)ix->nlist * (ix->dim * sizeof(float) + sizeof(ivf_list));
    for (int l = 0; l < ix->nlist; l++)
        b += (uint64_t)ix->lists[l].cap * (ix->cb + sizeof(float) + sizeof(uint32_t) + sizeof(float)) +
             (uint64_t)(ix->lists[l].cap / FS_BLOCK) * ix->fsb;
    b += (uint64_t)ix->ngroups * ix->dim * sizeof(float) + (uint64_t)ix->nlist * (ix->dim * sizeof(float) + 4);
    return b;
}

/* ---------------------------------------------------------------- assignment */

/* Copy rows [first, first+m) of src into X (m x dim, contiguous). */
static void gather_rows(const cdx_rows *src, uint64_t first, size_t m, float *X)
{
    for (size_t i = 0; i < m; i++)
        memcpy(X + i * src->dim, cdx_rows_at(src, first + i), (size_t)src->dim * sizeof(float));
}

/* best[i] = the centroid most similar to row i of X (m rows); S is scratch
 * of m * nlist floats. */
static void assign(const float *X, size_t m, const float *C, int nlist, int dim, float *S,
                   uint32_t *best)
{
    cdx_gemm_nt(cdx_gemm_default_backend(), (int)m, nlist, dim, X, C, NULL, S);
    for (size_t i = 0; i < m; i++) {
        const float *s = S + i * nlist;
        uint32_t b = 0;
        for (int l = 1; l < nlist; l++)
            if (s[l] > s[b]) b = (uint32_t)l;
        best[i] = b;
    }
}

/* best[i] = the list of row i of X (m rows): through the groups when the
 * index has them (the group_probes best groups' centroids only), else all
 * centroids by GEMM.  S: scratch of m * nlist floats.  The grouped path
 * stays GEMM-shaped: per group, one product of the rows that probe it with
 * its centroids. */
static void assign_rows(const ann_ivf *ix, const float *X, size_t m, float *S, uint32_t *best)
{
    if (!ix->ngroups || ix->group_probes <= 0) {
        assign(X, m, ix->cent, ix->nlist, ix->dim, S, best);
        return;
    }
    int G = ix->ngroups, GP = ix->group_probes < G ? ix->group_probes : G, dim = ix->dim;
    if (GP > 64) GP = 64;
    float *gs = S;                                   /* m x G */
    float *bs = S + m * (size_t)G;                   /* m: best score so far */
    uint32_t *tops = (uint32_t *)(bs + m);           /* m x GP groups */
    uint32_t *cnt = tops + m * (size_t)GP;           /* G + 1 */
    uint32_t *rows = cnt + G + 1;                    /* m x GP: rows probing each group */
    float *Xg = (float *)(rows + m * (size_t)GP);    /* up to m x dim */
    float *Sg = Xg + m * (size_t)dim;                /* up to m x (largest group) */
    cdx_gemm_nt(cdx_gemm_default_backend(), (int)m, G, dim, X, ix->gcent, NULL, gs);
    memset(cnt, 0, ((size_t)G + 1) * sizeof *cnt);
    for (size_t i = 0; i < m; i++) {
        const float *g = gs + i * G;
        uint32_t *top = tops + i * GP;
        int nt = 0;
        for (int k = 0; k < G; k++) {   /* the GP best groups, insertion */
            if (nt == GP && g[k] <= g[top[nt - 1]]) continue;
            int j = nt < GP ? nt++ : nt - 1;
            while (j > 0 && g[top[j - 1]] < g[k]) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = (uint32_t)k;
        }
        for (int t = 0; t < GP; t++) cnt[top[t] + 1]++;
        bs[i] = -INFINITY;
        best[i] = 0;
    }
    for (int k = 0; k < G; k++) cnt[k + 1] += cnt[k];
    for (size_t i = 0; i < m; i++)
        for (int t = 0; t < GP; t++) rows[cnt[tops[i * GP + t]]++] = (uint32_t)i;
    for (int k = G; k > 0; k--) cnt[k] = cnt[k - 1];   /* back to starts */
    cnt[0] = 0;
    for (int k = 0; k < G; k++) {
        uint32_t a = ix->gstart[k], e = ix->gstart[k + 1], r0 = cnt[k], r1 = cnt[k + 1];
        if (e == a || r1 == r0) continue;
        for (uint32_t r = r0; r < r1; r++)
            memcpy(Xg + (size_t)(r - r0) * dim, X + (size_t)rows[r] * dim, (size_t)dim * sizeof(float));
        cdx_gemm_nt(cdx_gemm_default_backend(), (int)(r1 - r0), (int)(e - a), dim, Xg,
                    ix->gmcent + (size_t)a * dim, NULL, Sg);
        for (uint32_t r = r0; r < r1; r++) {
            const float *sc = Sg + (size_t)(r - r0) * (e - a);
            uint32_t i = rows[r];
            for (uint32_t j = 0; j < e - a; j++) {
                uint32_t l = ix->gmemb[a + j];
                if (sc[j] > bs[i] || (sc[j] == bs[i] && l < best[i])) {
                    bs[i] = sc[j];
                    best[i] = l;
                }
            }
        }
    }
}

/* Scratch floats assign_rows needs for m rows. */
static size_t assign_scratch(const ann_ivf *ix, size_t m)
{
    size_t big = 0;
    for (int k = 0; k < ix->ngroups; k++)
        if (ix->gstart[k + 1] - ix->gstart[k] > big) big = ix->gstart[k + 1] - ix->gstart[k];
    size_t grouped = m * ix->ngroups + m + 2 * m * 64 + ix->ngroups + 1 + m * ix->dim + m * big;
    size_t flat = m * ix->nlist;
    return grouped > flat ? grouped : flat;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

cdx_result ann_ivf_train(const cdx_rows *src, uint64_t n, const ann_ivf_train_params *params,
                         ann_ivf **out)
{
    ann_ivf_train_params defaults = ann_ivf_default_train_params();
    const ann_ivf_train_params *p = params ? params : &defaults;
    if (!src || !out || n == 0 || n > src->count || n > ANN_IVF_MAX_ROWS)
        return cdx_error(CDX_ERR_INVALID_ARG, "ann index: nothing to train on");
    int dim = src->dim;
    int nlist = p->nlist > 0 ? p->nlist : ann_ivf_auto_nlist(n);
    if ((uint64_t)nlist > n) nlist = (int)n;
    if (nlist > ANN_IVF_MAX_LISTS) nlist = ANN_IVF_MAX_LISTS;
    size_t per = p->per_list ? p->per_list : 40;
    uint64_t S = (uint64_t)nlist * per;
    if (S > n) S = n;
    float *X = malloc((size_t)S * dim * sizeof(float));
    float *sums = malloc((size_t)nlist * dim * sizeof(float));
    float *scr = malloc((size_t)ASSIGN_BLOCK * nlist * sizeof(float));
    uint32_t *best = malloc((size_t)S * sizeof *best);
    uint64_t *cnt = malloc((size_t)nlist * sizeof *cnt);
    ann_ivf *ix = NULL;
    cdx_result r = X && sums && scr && best && cnt ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) r = ann_ivf_from_centroids(dim, nlist, NULL, &ix);
    if (r) goto done;
    uint64_t seed = p->seed;
    /* the sample's rows in file order: on a mapped file larger than memory
     * random order re-reads the same read-ahead windows many times */
    for (uint64_t i = 0; i < S; i++) best[i] = (uint32_t)(S == n ? i : splitmix(&seed) % n);
    if (S < n) qsort(best, (size_t)S, sizeof *best, cmp_u32);
    for (uint64_t i = 0; i < S; i++)
        memcpy(X + i * dim, cdx_rows_at(src, best[i]), (size_t)dim * sizeof(float));
    for (int l = 0; l < nlist; l++)   /* evenly spaced sample rows */
        memcpy(ix->cent + (size_t)l * dim, X + (size_t)(l * (S / nlist)) * dim, (size_t)dim * sizeof(float));
    int iters = p->iters > 0 ? p->iters : 8;
    for (int it = 0; it < iters; it++) {
        for (uint64_t i = 0; i < S; i += ASSIGN_BLOCK) {
            size_t m = S - i < ASSIGN_BLOCK ? (size_t)(S - i) : ASSIGN_BLOCK;
            assign(X + i * dim, m, ix->cent, nlist, dim, scr, best + i);
        }
        memset(sums, 0, (size_t)nlist * dim * sizeof(float));
        memset(cnt, 0, (size_t)nlist * sizeof *cnt);
        for (uint64_t i = 0; i < S; i++) {
            float *s = sums + (size_t)best[i] * dim;
            const float *x = X + i * dim;
            for (int d = 0; d < dim; d++) s[d] += x[d];
            cnt[best[i]]++;
        }
        for (int l = 0; l < nlist; l++) {
            float *c = ix->cent + (size_t)l * dim;
            if (cnt[l]) memcpy(c, sums + (size_t)l * dim, (size_t)dim * sizeof(float));
            else memcpy(c, X + (splitmix(&seed) % S) * dim, (size_t)dim * sizeof(float));
            normalize(c, dim);
        }
    }
    r = build_groups(ix);
done:
    free(X);
    free(sums);
    free(scr);
    free(best);
    free(cnt);
    if (r) {
        ann_ivf_free(ix);
        return r;
    }
    *out = ix;
    return CDX_OK;
}

/* ---------------------------------------------------------------- encoding */

cdx_result ann_segment_alloc(ann_segment *seg, size_t n, int dim)
{
    memset(seg, 0, sizeof *seg);
    seg->n = n;
    seg->lists = malloc((n ? n : 1) * sizeof *seg->lists);
    seg->scales = malloc((n ? n : 1) * sizeof *seg->scales);
    seg->codes = malloc((n ? n : 1) * ann_ivf_code_bytes(dim));
    if (!seg->lists || !seg->scales || !seg->codes) {
        ann_segment_free(seg);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    return CDX_OK;
}

void ann_segment_free(ann_segment *seg)
{
    if (!seg) return;
    free(seg->lists);
    free(seg->scales);
    free(seg->codes);
    memset(seg, 0, sizeof *seg);
}

/* int8 code of x (dim floats) into code (cb bytes, zero padded); returns
 * the scale. */
static float quantize(const float *x, int dim, size_t cb, int8_t *code)
{
    float m = 0;
    for (int d = 0; d < dim; d++) {
        float a = fabsf(x[d]);
        m = a > m ? a : m;
    }
    float scale = m > 0 ? m / 127.0f : 1.0f;
    float inv = 1.0f / scale;
    for (int d = 0; d < dim; d++) {
        float v = nearbyintf(x[d] * inv);
        code[d] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    memset(code + dim, 0, cb - (size_t)dim);
    return scale;
}

cdx_result ann_ivf_encode(const ann_ivf *ix, const cdx_rows *src, uint64_t first, size_t n,
                          ann_segment *seg)
{
    if (!ix || !src || src->dim != ix->dim || first + n > src->count || first + n > ANN_IVF_MAX_ROWS)
        return cdx_error(CDX_ERR_INVALID_ARG, "ann index: rows to encode are out of range");
    cdx_result r = ann_segment_alloc(seg, n, ix->dim);
    if (r) return r;
    seg->first = first;
    /* blocks of ASSIGN_BLOCK rows in parallel, each thread with its own
     * scratch (the GEMMs inside run on the calling thread): one block's
     * grouped assignment is many small products, too small to thread */
    size_t nblocks = (n + ASSIGN_BLOCK - 1) / ASSIGN_BLOCK;
    int T = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((size_t)T > nblocks) T = nblocks ? (int)nblocks : 1;
    size_t xs = (size_t)ASSIGN_BLOCK * ix->dim, ss = assign_scratch(ix, ASSIGN_BLOCK);
    float *X = malloc((size_t)T * xs * sizeof(float));
    float *scr = malloc((size_t)T * ss * sizeof(float));
    if (!X || !scr) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) {
        #pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
        for (size_t b = 0; b < nblocks; b++) {
            int t = omp_get_thread_num();
            float *Xt = X + (size_t)t * xs;
            size_t i = b * ASSIGN_BLOCK, m = n - i < ASSIGN_BLOCK ? n - i : ASSIGN_BLOCK;
            gather_rows(src, first + i, m, Xt);
            assign_rows(ix, Xt, m, scr + (size_t)t * ss, seg->lists + i);
            for (size_t j = 0; j < m; j++)
                seg->scales[i + j] = quantize(Xt + j * ix->dim, ix->dim, ix->cb, seg->codes + (i + j) * ix->cb);
        }
    }
    free(X);
    free(scr);
    if (r) ann_segment_free(seg);
    return r;
}

/* Rows a list has room for when it holds n: whole sign-code blocks. */
static inline uint64_t fs_rows(uint64_t n) { return (n + FS_BLOCK - 1) / FS_BLOCK * FS_BLOCK; }

/* A list's sign-code blocks are 64-byte aligned for the block loads.
 * Large ones are mappings of their own, grown with mremap: aligned
 * allocations grown by copying (a list grows by half its size ~20 times
 * on its way to 2,500 rows) fragmented the heap to 1.6x the index's size
 * at 10M. */
static uint8_t *fs_resize(uint8_t *old, size_t ob, size_t nb, int from_arena)
{
    uint8_t *b;
    if (nb >= FS_MAP_MIN && ob >= FS_MAP_MIN && !from_arena) {
        b = mremap(old, ob, nb, MREMAP_MAYMOVE);
        return b == MAP_FAILED ? NULL : b;
    }
    if (nb >= FS_MAP_MIN) {
        b = mmap(NULL, nb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED) return NULL;
    } else {
        if (!(b = cdx_alloc_aligned(nb, 1))) return NULL;
    }
    if (ob) memcpy(b, old, ob);
    if (!from_arena) fs_release(old, ob);
    return b;
}

static cdx_result list_grow(ivf_list *L, size_t cb, size_t fsb, uint32_t cap)
{
    if (cap <= L->cap) return CDX_OK;
    cap = (uint32_t)fs_rows(cap);
    uint32_t *s = realloc(L->slots, (size_t)cap * sizeof *s);
    if (s) L->slots = s;
    float *f = realloc(L->scales, (size_t)cap * sizeof *f);
    if (f) L->scales = f;
    int8_t *c;
    if (L->in_arena) {   /* leaves the arena (its slot stays unused) */
        if ((c = malloc((size_t)cap * cb))) memcpy(c, L->codes, (size_t)L->n * cb);
    } else {
        c = realloc(L->codes, (size_t)cap * cb);
    }
    if (c && !L->in_arena) L->codes = c;
    /* new blocks zeroed (their unused nibbles are scanned, never
     * reported); a list leaves the arena with its codes and blocks both */
    size_t ob = (size_t)(L->cap / FS_BLOCK) * fsb, nb = (size_t)(cap / FS_BLOCK) * fsb;
    uint8_t *b = NULL;
    if (c) {
        if ((b = fs_resize(L->fs, ob, nb, L->in_arena))) {
            memset(b + ob, 0, nb - ob);
            L->fs = b;
            if (L->in_arena) L->codes = c;
            L->in_arena = 0;
        } else if (L->in_arena) {
            free(c);
            c = NULL;
        }
    }
    float *w = realloc(L->bw, (size_t)cap * sizeof *w);
    if (w) {
        memset(w + L->cap, 0, (size_t)(cap - L->cap) * sizeof *w);   /* read by the block scan */
        L->bw = w;
    }
    if (!s || !f || !c || !b || !w) return cdx_error(CDX_ERR_NOMEM, "out of memory (ann index list)");
    L->cap = cap;
    return CDX_OK;
}

/* The codes and sign codes of an empty index about to receive known list
 * sizes (a load) in one mapping with transparent huge pages: a query reads
 * ~1000 lists' sign codes and thousands of random int8 codes, and with 4 KB
 * pages the TLB misses cost as much as the reads. */
static void reserve_arena(ann_ivf *ix, const uint64_t *extra)
{
    size_t bytes = 0;
    for (int l = 0; l < ix->nlist; l++) {
        uint64_t c = fs_rows(extra[l]);
        bytes += (size_t)c * ix->cb + (size_t)(c / FS_BLOCK) * ix->fsb;
    }
    if (bytes < ((size_t)1 << 20)) return;   /* small: plain allocations */
    void *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return;   /* the lists allocate their own */
#ifdef MADV_HUGEPAGE
    madvise(a, bytes, MADV_HUGEPAGE);
#endif
    ix->arena = a;
    ix->arena_bytes = bytes;
    uint8_t *at = a;
    for (int l = 0; l < ix->nlist; l++) {
        ivf_list *L = &ix->lists[l];
        uint64_t c = fs_rows(extra[l]);
        if (!c) continue;
        L->fs = at;
        at += (size_t)(c / FS_BLOCK) * ix->fsb;
        L->codes = (int8_t *)at;
        at += (size_t)c * ix->cb;
        L->in_arena = 1;
        L->cap = (uint32_t)c;
        if (!(L->slots = malloc((size_t)c * sizeof *L->slots)) || !(L->scales = malloc((size_t)c * sizeof *L->scales)) ||
            !(L->bw = calloc((size_t)c, sizeof *L->bw))) {
            L->cap = 0;   /* list_grow allocates the rest */
        }
    }
}

cdx_result ann_ivf_reserve(ann_ivf *ix, const uint64_t *extra)
{
    if (!ix->count && !ix->arena) reserve_arena(ix, extra);
    for (int l = 0; l < ix->nlist; l++) {
        uint64_t want = (uint64_t)ix->lists[l].n + extra[l];
        if (want > ANN_IVF_MAX_ROWS) return cdx_error(CDX_ERR_TOO_LARGE, "ann index list too long");
        cdx_result r = list_grow(&ix->lists[l], ix->cb, ix->fsb, (uint32_t)want);
        if (r) return r;
    }
    return CDX_OK;
}

cdx_result ann_ivf_insert(ann_ivf *ix, const ann_segment *seg)
{
    if (seg->first != ix->count || ix->count + seg->n > ANN_IVF_MAX_ROWS)
        return cdx_error(CDX_ERR_INVALID_ARG, "ann index: segment at slot %llu, index has %llu rows",
                         (unsigned long long)seg->first, (unsigned long long)ix->count);
    for (size_t i = 0; i < seg->n; i++)
        if (seg->lists[i] >= (uint32_t)ix->nlist || !isfinite(seg->scales[i]))
            return cdx_error(CDX_ERR_FORMAT, "ann index: row %llu has list %u of %d or a bad scale",
                             (unsigned long long)(seg->first + i), seg->lists[i], ix->nlist);
    /* the sign codes, derived from the int8 codes (never persisted) */
    int T = omp_get_max_threads();
    uint64_t *bits = malloc((seg->n ? seg->n : 1) * (size_t)ix->bwords * 8);
    float *bw = malloc((seg->n ? seg->n : 1) * sizeof *bw);
    float *tmp = malloc((size_t)T * ix->dim * sizeof *tmp);
    cdx_result r = bits && bw && tmp ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) {
        #pragma omp parallel for schedule(static) num_threads(T)
        for (size_t i = 0; i < seg->n; i++)
            sign_code(ix, seg->codes + i * ix->cb, seg->scales[i], ix->cent + (size_t)seg->lists[i] * ix->dim,
                      tmp + (size_t)omp_get_thread_num() * ix->dim, bits + i * ix->bwords, &bw[i]);
    }
    for (size_t i = 0; !r && i < seg->n; i++) {
        ivf_list *L = &ix->lists[seg->lists[i]];
        if (L->n == L->cap) {
            uint64_t cap = (uint64_t)L->cap + L->cap / 2 + 16;
            if (cap > ANN_IVF_MAX_ROWS) cap = ANN_IVF_MAX_ROWS;
            r = list_grow(L, ix->cb, ix->fsb, (uint32_t)cap);
            if (r) break;   /* rows so far stay consistent: count is not advanced */
        }
        L->slots[L->n] = (uint32_t)(seg->first + i);
        L->scales[L->n] = seg->scales[i];
        memcpy(L->codes + (size_t)L->n * ix->cb, seg->codes + i * ix->cb, ix->cb);
        fs_put(ix, L->fs, L->n, bits + i * ix->bwords);
        L->bw[L->n] = bw[i];
        L->n++;
    }
    free(bits);
    free(bw);
    free(tmp);
    if (r) return r;
    ix->count += seg->n;
    return CDX_OK;
}

/* ---------------------------------------------------------------- search */

/* A bounded min-heap of (score, id): keeps the `cap` largest scores. */
typedef struct cand {
    float s;
    uint64_t id;
} cand;

typedef struct heap {
    cand *v;
    size_t n, cap;
} heap;

static void heap_push(heap *h, float s, uint64_t id)
{
    if (h->n == h->cap) {
        if (s <= h->v[0].s) return;
        size_t i = 0;   /* replace the root, sift down */
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= h->n) break;
            if (c + 1 < h->n && h->v[c + 1].s < h->v[c].s) c++;
            if (h->v[c].s >= s) break;
            h->v[i] = h->v[c];
            i = c;
        }
        h->v[i] = (cand){s, id};
        return;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent].s <= s) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = (cand){s, id};
}

/* Reorders v[0..n) so that v[0..k) hold k of the largest scores (ties
 * broken arbitrarily), in no particular order: quickselect with a
 * three-way partition (robust to runs of equal scores), pseudo-random
 * pivots. */
static void select_top(cand *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;   /* v[0..lo) are in the top k, v[hi..n) are not */
    uint64_t x = 0x9e3779b97f4a7c15ull ^ n;
    while (lo < k && k < hi) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        float piv = v[lo + (size_t)((x >> 33) % (hi - lo))].s;
        size_t lt = lo, i = lo, gt = hi;   /* [lo,lt) > piv, [lt,i) == piv, [gt,hi) < piv */
        while (i < gt) {
            cand c = v[i];
            if (c.s > piv) {
                v[i++] = v[lt];
                v[lt++] = c;
            } else if (c.s < piv) {
                v[i] = v[--gt];
                v[gt] = c;
            } else {
                i++;
            }
        }
        if (k < lt) hi = lt;
        else if (k <= gt) return;
        else lo = gt;
    }
}

/* The sign-code stage keeps thousands of candidates (1/50 of those it
 * scans): a heap of that size costs a sift of ~14 levels per kept score.
 * This reservoir appends scores above a threshold to a buffer of twice
 * `keep` and, when it is full, selects the best `keep` and raises the
 * threshold to the worst of them: O(1) amortised per score, the same set
 * as a heap up to ties. */
typedef struct resv {
    cand *v;
    size_t n, keep, cap;   /* cap = 2 keep */
    float thr;
} resv;

static void resv_trim(resv *r)
{
    if (r->n <= r->keep) return;
    select_top(r->v, r->n, r->keep);
    float m = r->v[0].s;
    for (size_t i = 1; i < r->keep; i++) m = r->v[i].s < m ? r->v[i].s : m;
    r->thr = m;
    r->n = r->keep;
}

static inline void resv_push(resv *r, float s, uint64_t id)
{
    if (!(s > r->thr)) return;
    r->v[r->n++] = (cand){s, id};
    if (r->n == r->cap) resv_trim(r);
}

static int allowed(const ann_search_params *p, uint32_t slot)
{
    if (!p->allow) return 1;
    return slot < p->allow_nbits && (p->allow[slot / 64] >> (slot % 64) & 1);
}

static void scan_list(const ann_ivf *ix, const ivf_list *L, const int8_t *qc, float qs,
                      const ann_search_params *p, heap *h)
{
    i8dot_fn dot = pick_i8dot();
    for (uint32_t i = 0; i < L->n; i++) {
        if (!allowed(p, L->slots[i])) continue;
        const int8_t *c = L->codes + (size_t)i * ix->cb;
        if (i + 2 < L->n) __builtin_prefetch(c + 2 * ix->cb);
        float s = qs * L->scales[i] * (float)dot(qc, c, ix->cb);
        heap_push(h, s, L->slots[i]);
    }
}

/* The query for the sign codes: rotated, and as one 16-entry table per
 * 4-dim group g: T_g[c] = sum of q'_d over the dims of g whose bit is set
 * in c, stored as u8 (T_g[c] - m_g) / delta with m_g = min_c T_g[c] and one
 * delta for all groups.  Over a code, sum_g T_g = M + delta * acc (M the sum
 * of the m_g, acc the sum of the table entries), and since the code's dims
 * are +-1, <q', b> = 2 * (sum over set bits) - sum_d q'_d; so the estimate
 * <q, c> + w * <q', b> is cs + w * (A + B * acc). */
typedef struct bquery {
    uint8_t *lut;   /* fsg x 16, 32-byte aligned */
    float A, B, cs;   /* 2 M - sum q', 2 delta, the list's <q, c> */
} bquery;

static void bquery_make(const ann_ivf *ix, const float *q, float *tmp, bquery *bq)
{
    int dim = ix->dim, G = ix->fsg;
    memset(tmp, 0, (size_t)G * 4 * sizeof(float));
    memcpy(tmp, q, (size_t)dim * sizeof(float));
    rotate(ix, tmp);
    double sumq = 0, M = 0;
    float range = 0;
    for (int d = 0; d < dim; d++) sumq += tmp[d];
    float T[16];
    for (int g = 0; g < G; g++) {
        float m = 0, hi = 0;
        for (int j = 0; j < 4; j++) {
            float v = tmp[4 * g + j];
            m += v < 0 ? v : 0;
            hi += v > 0 ? v : 0;
        }
        range = hi - m > range ? hi - m : range;
        M += m;
    }
    float delta = range > 0 ? range / 255.0f : 1.0f, inv = 1.0f / delta;
    for (int g = 0; g < G; g++) {
        const float *v = tmp + 4 * g;
        float m = 0;
        for (int c = 0; c < 16; c++) {
            T[c] = (c & 1 ? v[0] : 0) + (c & 2 ? v[1] : 0) + (c & 4 ? v[2] : 0) + (c & 8 ? v[3] : 0);
            m = T[c] < m ? T[c] : m;
        }
        for (int c = 0; c < 16; c++) {
            float u = nearbyintf((T[c] - m) * inv);
            bq->lut[g * 16 + c] = (uint8_t)(u < 0 ? 0 : u > 255 ? 255 : u);
        }
    }
    bq->A = (float)(2 * M - sumq);
    bq->B = 2 * delta;
}

/* The estimates of the 32 rows of one block, cs + w_j * (A + B * acc_j)
 * with acc_j row j's table sum (est), and the mask of those above thr
 * (reference: plain C; the SIMD kernel computes the same floats in the
 * same order). */
static uint32_t fs_block_ref(const uint8_t *blk, const bquery *bq, int G, const float *w, float thr, float *est)
{
    uint32_t mask = 0;
    for (int j = 0; j < FS_BLOCK; j++) {
        uint32_t s = 0;
        for (int g = 0; g < G; g++) {
            uint8_t byte = blk[(size_t)g * 16 + (j & 15)];
            s += bq->lut[g * 16 + (j < 16 ? byte & 15 : byte >> 4)];
        }
        float t = bq->B * (float)s;
        t = bq->A + t;
        t = w[j] * t;
        est[j] = bq->cs + t;
        mask |= (uint32_t)(est[j] > thr) << j;
    }
    return mask;
}

/* The same with AVX2: a 32-byte load holds groups g and g + 1 of the 32
 * rows, the two tables sit in the matching lanes of one register, and each
 * vpshufb looks up 16 rows of both groups.  The u8 results are summed as
 * u16 pairs (even rows: the u16 sums less 256 x the odd rows' sums), which
 * cannot overflow within a run of 256 groups (256 x 255 < 65536). */
__attribute__((target("avx2"))) static uint32_t fs_block_avx2(const uint8_t *blk, const bquery *bq, int G,
                                                              const float *w, float thr, float *est)
{
    const uint8_t *lut = bq->lut;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i t0 = _mm256_setzero_si256(), t1 = t0, t2 = t0, t3 = t0;   /* rows 0-7, 8-15, 16-23, 24-31 */
    for (int g0 = 0; g0 < G; g0 += 256) {
        int g1 = G - g0 < 256 ? G : g0 + 256;
        __m256i el = _mm256_setzero_si256(), ol = el, eh = el, oh = el;
        for (int g = g0; g < g1; g += 2) {
            /* two blocks ahead: the stream of a list outruns the hardware
             * prefetcher (the loads stalled 60% of the time without) */
            _mm_prefetch((const char *)(blk + (size_t)g * 16 + FS_PREFETCH), _MM_HINT_T0);
            __m256i x = _mm256_load_si256((const __m256i *)(blk + (size_t)g * 16));
            __m256i L = _mm256_load_si256((const __m256i *)(lut + (size_t)g * 16));
            __m256i rl = _mm256_shuffle_epi8(L, _mm256_and_si256(x, m4));
            __m256i rh = _mm256_shuffle_epi8(L, _mm256_and_si256(_mm256_srli_epi16(x, 4), m4));
            el = _mm256_add_epi16(el, rl);
            ol = _mm256_add_epi16(ol, _mm256_srli_epi16(rl, 8));
            eh = _mm256_add_epi16(eh, rh);
            oh = _mm256_add_epi16(oh, _mm256_srli_epi16(rh, 8));
        }
        el = _mm256_sub_epi16(el, _mm256_slli_epi16(ol, 8));
        eh = _mm256_sub_epi16(eh, _mm256_slli_epi16(oh, 8));
        /* the two lanes (even and odd groups) of rows 2i / 2i + 1 */
        __m128i e0 = _mm_add_epi16(_mm256_castsi256_si128(el), _mm256_extracti128_si256(el, 1));
        __m128i o0 = _mm_add_epi16(_mm256_castsi256_si128(ol), _mm256_extracti128_si256(ol, 1));
        __m128i e1 = _mm_add_epi16(_mm256_castsi256_si128(eh), _mm256_extracti128_si256(eh, 1));
        __m128i o1 = _mm_add_epi16(_mm256_castsi256_si128(oh), _mm256_extracti128_si256(oh, 1));
        t0 = _mm256_add_epi32(t0, _mm256_cvtepu16_epi32(_mm_unpacklo_epi16(e0, o0)));
        t1 = _mm256_add_epi32(t1, _mm256_cvtepu16_epi32(_mm_unpackhi_epi16(e0, o0)));
        t2 = _mm256_add_epi32(t2, _mm256_cvtepu16_epi32(_mm_unpacklo_epi16(e1, o1)));
        t3 = _mm256_add_epi32(t3, _mm256_cvtepu16_epi32(_mm_unpackhi_epi16(e1, o1)));
    }
    /* no FMA: the same roundings as the reference */
    const __m256 vA = _mm256_set1_ps(bq->A), vB = _mm256_set1_ps(bq->B), vc = _mm256_set1_ps(bq->cs);
    const __m256 vt = _mm256_set1_ps(thr);
    __m256i t[4] = {t0, t1, t2, t3};
    uint32_t mask = 0;
    for (int k = 0; k < 4; k++) {
        __m256 e = _mm256_mul_ps(vB, _mm256_cvtepi32_ps(t[k]));
        e = _mm256_add_ps(vA, e);
        e = _mm256_mul_ps(_mm256_loadu_ps(w + 8 * k), e);
        e = _mm256_add_ps(vc, e);
        _mm256_storeu_ps(est + 8 * k, e);
        mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(e, vt, _CMP_GT_OQ)) << (8 * k);
    }
    return mask;
}

typedef uint32_t (*fs_block_fn)(const uint8_t *, const bquery *, int, const float *, float, float *);

static fs_block_fn pick_fs_block(void)
{
    static int cached = -1;   /* $CLIPDEX_SIMD=scalar, read once (every search asks) */
    int scalar = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (scalar < 0) {
        const char *e = getenv("CLIPDEX_SIMD");
        scalar = e && !strcmp(e, "scalar");
        __atomic_store_n(&cached, scalar, __ATOMIC_RELAXED);
    }
    return !scalar && cdx_cpu_level() >= CDX_ISA_AVX2 ? fs_block_avx2 : fs_block_ref;
}

/* Estimated scores of one list from its sign codes; candidates are
 * (list << 32 | position). */
static void scan_bits(const ann_ivf *ix, const ivf_list *L, uint32_t list, const bquery *bq,
                      const ann_search_params *p, fs_block_fn fb, resv *h)
{
    float est[FS_BLOCK];
    for (uint32_t b0 = 0; b0 < L->n; b0 += FS_BLOCK) {
        const uint8_t *blk = L->fs + (size_t)(b0 / FS_BLOCK) * ix->fsb;
        uint32_t mask = fb(blk, bq, ix->fsg, L->bw + b0, h->thr, est);
        if (L->n - b0 < FS_BLOCK) mask &= (1u << (L->n - b0)) - 1;
        while (mask) {
            uint32_t j = (uint32_t)__builtin_ctz(mask);
            mask &= mask - 1;
            if (!(est[j] > h->thr) || !allowed(p, L->slots[b0 + j])) continue;   /* thr may have risen */
            resv_push(h, est[j], (uint64_t)list << 32 | (b0 + j));
        }
    }
}

int ann_ivf_sign_estimates(const ann_ivf *ix, const float *query, uint32_t list, float *out, uint64_t *slots)
{
    if (list >= (uint32_t)ix->nlist) return -1;
    const ivf_list *L = &ix->lists[list];
    bquery bq = {0};
    float *tmp = malloc((size_t)ix->fsg * 4 * sizeof(float));
    bq.lut = cdx_alloc_aligned(ix->fsb, 1);
    float cs = 0;
    for (int d = 0; d < ix->dim; d++) cs += query[d] * ix->cent[(size_t)list * ix->dim + d];
    if (!tmp || !bq.lut) {
        free(tmp);
        cdx_free_aligned(bq.lut);
        return -1;
    }
    bquery_make(ix, query, tmp, &bq);
    bq.cs = cs;
    fs_block_fn fb = pick_fs_block();
    float est[FS_BLOCK];
    for (uint32_t b0 = 0; b0 < L->n; b0 += FS_BLOCK) {
        fb(L->fs + (size_t)(b0 / FS_BLOCK) * ix->fsb, &bq, ix->fsg, L->bw + b0, -INFINITY, est);
        for (uint32_t j = 0; j < FS_BLOCK && b0 + j < L->n; j++) {
            out[b0 + j] = est[j];
            if (slots) slots[b0 + j] = L->slots[b0 + j];
        }
    }
    free(tmp);
    cdx_free_aligned(bq.lut);
    return (int)L->n;
}

static int hit_cmp(const void *a, const void *b)
{
    const topk_hit *x = a, *y = b;
    return topk_hit_better(x, y) ? -1 : topk_hit_better(y, x) ? 1 : 0;
}

static int cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->s > y->s ? -1 : x->s < y->s ? 1 : (x->id > y->id) - (x->id < y->id);
}

/* Ask the kernel to read the float32 rows about to be re-scored (they may
 * be pages of a mapped file that is larger than memory): the reads are
 * then issued together instead of one fault at a time. */
static void prefetch_rows(const cdx_rows *src, const cand *c, size_t n)
{
    static uintptr_t pg;
    if (!pg) pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = (uintptr_t)cdx_rows_at(src, c[i].id);
        uintptr_t e = a + (size_t)src->dim * sizeof(float);
        a &= ~(pg - 1);
        madvise((void *)a, e - a, MADV_WILLNEED);
    }
}

cdx_result ann_ivf_search(const ann_ivf *ix, const cdx_rows *src, const float *query,
                          const ann_search_params *p, topk_hit *hits, size_t *n_hits,
                          uint64_t *scanned)
{
    *n_hits = 0;
    if (scanned) *scanned = 0;
    if (!p->k || !ix->count) return CDX_OK;
    /* rows past src->count may be coded (another process extended the
     * index) as long as the allowed slots, the only ones re-scored, are
     * within src */
    if (src->dim != ix->dim ||
        (src->count < ix->count && (!p->allow || p->allow_nbits > src->count)))
        return cdx_error(CDX_ERR_INVALID_ARG, "ann index covers %llu rows, the vectors only %llu",
                         (unsigned long long)ix->count, (unsigned long long)src->count);
    int P = p->probes < 1 ? 1 : p->probes > ix->nlist ? ix->nlist : p->probes;
    size_t R = p->rerank >= p->k ? p->rerank : (p->k * 4 > 100 ? p->k * 4 : 100);
    if (R < p->k) R = p->k;
    const dot_kernel *kern = dot_kernel_best();
    float *cs = malloc((size_t)ix->nlist * sizeof *cs);
    cand *probe = malloc((size_t)P * sizeof *probe);
    int8_t *qc = cdx_alloc_aligned(ix->cb, 1);
    int T = p->n_threads > 0 ? p->n_threads : omp_get_max_threads();
    if (T > 64) T = 64;
    cdx_result r = cs && probe && qc ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    cand *cv = NULL, *cv2 = NULL;
    topk_hit *res = NULL;
    float *qrot = NULL;
    bquery bq = {0};
    if (r) goto done;
    /* 1. the P lists whose centroids are most similar to the query */
    if (T > 1 && (size_t)ix->nlist * ix->dim >= ((size_t)1 << 20)) {   /* >= 4 MB of centroids: memory bound */
        #pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t lo = (size_t)ix->nlist * t / nt, hi = (size_t)ix->nlist * (t + 1) / nt;
            kern->tile(&query, 1, ix->cent + lo * ix->dim, hi - lo, (size_t)ix->dim, (size_t)ix->dim, cs + lo,
                       hi - lo);
        }
    } else {
        kern->tile(&query, 1, ix->cent, (size_t)ix->nlist, (size_t)ix->dim, (size_t)ix->dim, cs, (size_t)ix->nlist);
    }
    heap ph = {probe, 0, (size_t)P};
    for (int l = 0; l < ix->nlist; l++) heap_push(&ph, cs[l], (uint32_t)l);
    /* most similar first: the candidate threshold of the sign-code stage
     * then rises early */
    qsort(probe, ph.n, sizeof *probe, cand_desc);
    uint64_t total = 0;
    for (size_t i = 0; i < ph.n; i++) total += ix->lists[probe[i].id].n;
    if (scanned) *scanned = total;
    /* 2. the query as int8 (and as tables for the sign codes) */
    float qs = quantize(query, ix->dim, ix->cb, qc);
    int use_bits = p->bits > 0 || (p->bits == 0 && total >= ANN_BITS_MIN_SCAN);
    size_t C = R;
    if (use_bits) {
        C = p->bits_keep ? p->bits_keep : (size_t)(total / ANN_BITS_KEEP_DIV);
        if (!p->bits_keep && C > ANN_BITS_KEEP_MAX) C = ANN_BITS_KEEP_MAX;
        if (!p->bits_keep && C < R * 8) C = R * 8;
        if (C < R) C = R;
        bq.lut = cdx_alloc_aligned(ix->fsb, 1);
        qrot = malloc((size_t)ix->fsg * 4 * sizeof *qrot);
        if (!bq.lut || !qrot) {
            r = cdx_error(CDX_ERR_NOMEM, "out of memory");
            goto done;
        }
        bquery_make(ix, query, qrot, &bq);
    }
    cv = malloc((size_t)T * (use_bits ? 2 * C : C) * sizeof *cv);
    cv2 = malloc(R * sizeof *cv2);
    res = malloc(R * sizeof *res);
    if (!cv || !cv2 || !res) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* 3. approximate scores over the probed lists, per-thread heaps: int8
     * codes, or sign codes whose best C are then scored with int8 */
    if (T > (int)ph.n) T = (int)ph.n;
    if (total < PAR_MIN_CODES || T < 1) T = 1;
    heap hs[64];   /* int8 codes: the best C = R */
    resv rs[64];   /* sign codes: the best C of thousands */
    for (int t = 0; t < T; t++) {
        if (use_bits) rs[t] = (resv){cv + (size_t)t * 2 * C, 0, C, 2 * C, -INFINITY};
        else hs[t] = (heap){cv + (size_t)t * C, 0, C};
    }
    fs_block_fn fb = pick_fs_block();
    #pragma omp parallel for num_threads(T) schedule(dynamic, 1) if (T > 1)
    for (size_t i = 0; i < ph.n; i++) {
        uint32_t l = (uint32_t)probe[i].id;
        int t = T > 1 ? omp_get_thread_num() : 0;
        if (use_bits) {
            bquery b = bq;
            b.cs = cs[l];
            scan_bits(ix, &ix->lists[l], l, &b, p, fb, &rs[t]);
        } else {
            scan_list(ix, &ix->lists[l], qc, qs, p, &hs[t]);
        }
    }
    heap all;
    if (use_bits) {   /* the best C of every thread's best C */
        resv m = rs[0];
        for (int t = 1; t < T; t++) {
            resv_trim(&rs[t]);
            for (size_t i = 0; i < rs[t].n; i++) resv_push(&m, rs[t].v[i].s, rs[t].v[i].id);
        }
        resv_trim(&m);
        all = (heap){m.v, m.n, m.n};
    } else {
        all = hs[0];
        for (int t = 1; t < T; t++)
            for (size_t i = 0; i < hs[t].n; i++) heap_push(&all, hs[t].v[i].s, hs[t].v[i].id);
    }
    if (use_bits) {
        /* int8 scores of the C candidates, split over the threads (each
         * code is a random read: the rows of the next few are fetched
         * ahead), then the best R of every thread's best R */
        int T8 = all.n >= 4096 ? T : 1;
        heap h8[64];
        for (int t = 0; t < T8; t++) h8[t] = (heap){t ? cv + (size_t)(t - 1) * R : cv2, 0, R};
        const cand *av = all.v;
        size_t an = all.n;
        if (T8 > 1) {   /* cv holds the candidates: move them out of the heaps' way */
            memmove(cv + (size_t)(T8 - 1) * R, all.v, an * sizeof *cv);
            av = cv + (size_t)(T8 - 1) * R;
        }
        i8dot_fn dot = pick_i8dot();
        size_t cb = ix->cb;
        #pragma omp parallel num_threads(T8) if (T8 > 1)
        {
            int t = T8 > 1 ? omp_get_thread_num() : 0;
            size_t lo = an * (size_t)t / (size_t)T8, hi = an * (size_t)(t + 1) / (size_t)T8;
            for (size_t i = lo; i < hi; i++) {
                const ivf_list *L = &ix->lists[av[i].id >> 32];
                uint32_t pos = (uint32_t)av[i].id;
                if (i + 6 < hi) {
                    const cand *nx = &av[i + 6];
                    const int8_t *c2 = ix->lists[nx->id >> 32].codes + (size_t)(uint32_t)nx->id * cb;
                    for (size_t o = 0; o < cb; o += 64) __builtin_prefetch(c2 + o);
                }
                float sc = qs * L->scales[pos] * (float)dot(qc, L->codes + (size_t)pos * cb, cb);
                heap_push(&h8[t], sc, L->slots[pos]);
            }
        }
        for (int t = 1; t < T8; t++)
            for (size_t i = 0; i < h8[t].n; i++) heap_push(&h8[0], h8[t].v[i].s, h8[t].v[i].id);
        all = h8[0];
    } else {
        memcpy(cv2, all.v, all.n * sizeof *cv2);
        all.v = cv2;
    }
    /* 4. exact re-scoring of the best candidates (all of them, or the
     * `rescore` best by approximate score) */
    size_t F = all.n;
    if (p->rescore && p->rescore < F) {
        qsort(all.v, all.n, sizeof *all.v, cand_desc);
        F = p->rescore < p->k ? p->k : p->rescore;
        if (F > all.n) F = all.n;
    }
    if (p->prefetch) prefetch_rows(src, all.v, F);
    size_t n = 0;
    for (size_t i = 0; i < F; i++) {
        const float *row = cdx_rows_at(src, all.v[i].id);
        float s;
        kern->tile(&query, 1, row, 1, src->row_stride / 4, (size_t)ix->dim, &s, 1);
        if (s >= p->min_score) res[n++] = (topk_hit){all.v[i].id, s};
    }
    qsort(res, n, sizeof *res, hit_cmp);
    if (n > p->k) n = p->k;
    memcpy(hits, res, n * sizeof *hits);
    *n_hits = n;
done:
    free(cs);
    free(probe);
    cdx_free_aligned(qc);
    free(cv);
    free(cv2);
    free(res);
    free(qrot);
    cdx_free_aligned(bq.lut);
    return r;
}
