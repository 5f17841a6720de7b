/*
 * topk.c - exact top-k search (see topk.h).
 *
 * The rows are cut into 64-row chunks (one bitmap word each), grouped in
 * work units of 64 chunks that the threads take dynamically.  For each chunk
 * a thread resolves the allow filter to a 64-bit mask, skips the chunk when
 * the mask is empty, scores the rows against up to DOT_MAX_QUERIES queries
 * at a time into a small stack buffer (L1), then offers the allowed,
 * above-threshold scores to that thread's bounded heaps.  The heaps (one per thread and query, capacity
 * offset+k, root = worst kept hit) are merged and sorted at the end.  No
 * allocation happens inside the scan.
 */
#include "search/topk.h"
#include "common/error.h"
#include "common/util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64
#define UNIT_CHUNKS 64

topk_params topk_default_params(void)
{
    topk_params p;
    memset(&p, 0, sizeof p);
    p.k = 10;
    p.min_score = -INFINITY;
    return p;
}

/* ---------------------------------------------------------------- heap */

typedef struct heap {
    topk_hit *h;
    size_t n, cap;
} heap;

static void heap_offer(heap *hp, topk_hit x)
{
    topk_hit *h = hp->h;
    size_t i;
    if (hp->n < hp->cap) {           /* sift up: parents rank after children */
        i = hp->n++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!topk_hit_better(&h[p], &x)) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = x;
        return;
    }
    if (!topk_hit_better(&x, &h[0])) return;
    i = 0;                            /* replace the root, sift down */
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= hp->n) break;
        if (c + 1 < hp->n && topk_hit_better(&h[c], &h[c + 1])) c++;
        if (!topk_hit_better(&x, &h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

void topk_heap_offer(topk_hit *h, size_t *n, size_t cap, topk_hit x)
{
    heap hp = {h, *n, cap};
    heap_offer(&hp, x);
    *n = hp.n;
}

static int hit_cmp(const void *a, const void *b)
{
    const topk_hit *x = a, *y = b;
    return topk_hit_better(x, y) ? -1 : topk_hit_better(y, x) ? 1 : 0;
}

/* ---------------------------------------------------------------- scan */

typedef struct scan_job {
    const cdx_rows *src;
    const float *const *qp;
    size_t nq;
    const topk_params *p;
    const dot_kernel *kern;
    size_t K;
} scan_job;

/* Allowed rows of chunk c as a bit mask (bit r = row c*64+r). */
static uint64_t chunk_mask(const scan_job *j, uint64_t c, size_t nrows)
{
    return topk_allowed_mask(j->p, c, nrows);
}

uint64_t topk_allowed_mask(const topk_params *p, uint64_t c, size_t nrows)
{
    uint64_t w = nrows == CHUNK ? ~(uint64_t)0 : (((uint64_t)1 << nrows) - 1);
    if (p->allow) {
        uint64_t first = c * CHUNK;
        if (first >= p->allow_nbits) return 0;
        uint64_t a = p->allow[c];
        if (p->allow_nbits - first < CHUNK) a &= ((uint64_t)1 << (p->allow_nbits - first)) - 1;
        w &= a;
    }
    if (p->allow_fn) {
        for (uint64_t m = w; m; m &= m - 1) {
            int r = __builtin_ctzll(m);
            if (!p->allow_fn(p->allow_ctx, c * CHUNK + (uint64_t)r)) w &= ~((uint64_t)1 << r);
        }
    }
    return w;
}

static void scan_range(const scan_job *j, uint64_t c0, uint64_t c1, heap *heaps, uint64_t *counts)
{
    const cdx_rows *s = j->src;
    const size_t rs = s->row_stride / sizeof(float);
    const uint32_t chunks_per_block = s->block_rows / CHUNK;
    const float min_score = j->p->min_score;
    const uint32_t *weight = j->p->weight;
    float scores[DOT_MAX_QUERIES * CHUNK];

    for (uint64_t c = c0; c < c1; c++) {
        uint64_t first = c * CHUNK;
        size_t nrows = s->count - first < CHUNK ? (size_t)(s->count - first) : CHUNK;
        uint64_t mask = chunk_mask(j, c, nrows);
        if (!mask) continue;
        const float *rows = (const float *)((const char *)s->base +
            (size_t)(c / chunks_per_block) * s->block_stride +
            (size_t)(c % chunks_per_block) * CHUNK * s->row_stride);
        /* Only rows up to the last allowed one are read. */
        size_t used = 64 - (size_t)__builtin_clzll(mask);
        for (size_t g = 0; g < j->nq; g += DOT_MAX_QUERIES) {
            size_t ng = j->nq - g < DOT_MAX_QUERIES ? j->nq - g : DOT_MAX_QUERIES;
            j->kern->tile(j->qp + g, ng, rows, used, rs, (size_t)s->dim, scores, CHUNK);
            for (size_t i = 0; i < ng; i++) {
                heap *hp = &heaps[g + i];
                const float *sc = scores + i * CHUNK;
                uint64_t cnt = 0;
                for (uint64_t m = mask; m; m &= m - 1) {
                    int r = __builtin_ctzll(m);
                    float v = sc[r];
                    if (!(v >= min_score)) continue;
                    cnt += weight ? weight[first + (uint64_t)r] : 1;
                    if (hp->n == hp->cap && (hp->cap == 0 || v < hp->h[0].score)) continue;  /* fast reject */
                    topk_hit x = {first + (uint64_t)r, v};
                    heap_offer(hp, x);
                }
                if (counts) counts[g + i] += cnt;
            }
        }
    }
}

/* ---------------------------------------------------------------- search */

static cdx_result check_args(const cdx_rows *src, const float *queries, size_t nq,
                             const topk_params *p, topk_hit *hits, size_t *n_hits)
{
    if (!src || !p || !n_hits || (nq > 0 && !queries))
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: NULL argument");
    if (nq > TOPK_MAX_QUERIES)
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: %zu queries exceed the limit of %d",
                         nq, TOPK_MAX_QUERIES);
    if (src->dim < 1 || src->row_stride % 4 || src->row_stride < (size_t)src->dim * 4 ||
        src->block_rows == 0 || src->block_rows % CHUNK ||
        src->block_stride < (size_t)src->block_rows * src->row_stride ||
        (src->count > 0 && !src->base))
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: malformed source geometry");
    if (p->k > 0 && nq > 0 && !hits)
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: NULL hits with k > 0");
    if (p->allow && p->allow_nbits == 0)
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: bitmap with allow_nbits = 0");
    if (isnan(p->min_score))
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: min_score is NaN");
    for (size_t i = 0; i < nq * (size_t)src->dim; i++)
        if (!isfinite(queries[i]))
            return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: query %zu has a non-finite value at %zu",
                             i / (size_t)src->dim, i % (size_t)src->dim);
    return CDX_OK;
}

cdx_result topk_search(const cdx_rows *src, const float *queries, size_t nq,
                       const topk_params *p, topk_hit *hits, size_t *n_hits)
{
    cdx_result rc = check_args(src, queries, nq, p, hits, n_hits);
    if (rc != CDX_OK) return rc;
    for (size_t i = 0; i < nq; i++) n_hits[i] = 0;
    if (p->counts)
        for (size_t i = 0; i < nq; i++) p->counts[i] = 0;

    size_t K;
    if (!cdx_add_ok(p->offset, p->k, &K))
        return cdx_error(CDX_ERR_INVALID_ARG, "topk_search: offset + k overflows");
    if (K > src->count) K = (size_t)src->count;
    if (p->k == 0 || K <= p->offset) K = 0;   /* no page to return */
    if (nq == 0 || (K == 0 && !p->counts) || src->count == 0) return CDX_OK;

    uint64_t nchunks = (src->count + CHUNK - 1) / CHUNK;
    int T = p->n_threads > 0 ? p->n_threads : omp_get_max_threads();
    if (T < 1) T = 1;
    if ((uint64_t)T > nchunks / 8) T = nchunks / 8 > 0 ? (int)(nchunks / 8) : 1;

    size_t per_thread, total, bytes;
    if (!cdx_mul_ok(nq, K, &per_thread) || !cdx_mul_ok(per_thread, (size_t)T, &total) ||
        !cdx_mul_ok(total, sizeof(topk_hit), &bytes) || bytes > TOPK_MAX_HEAP_BYTES)
        return cdx_error(CDX_ERR_TOO_LARGE,
                         "topk_search: %zu queries x top %zu x %d threads exceed the heap limit of %zu bytes",
                         nq, K, T, TOPK_MAX_HEAP_BYTES);
    topk_hit *store = malloc(bytes ? bytes : 1);
    heap *heaps = calloc((size_t)T * nq, sizeof *heaps);
    const float **qp = malloc(nq * sizeof *qp);
    uint64_t *tcounts = p->counts ? calloc((size_t)T * nq, sizeof *tcounts) : NULL;
    if (!store || !heaps || !qp || (p->counts && !tcounts)) {
        free(store); free(heaps); free(qp); free(tcounts);
        return cdx_error(CDX_ERR_NOMEM, "topk_search: out of memory for %zu bytes of heaps", bytes);
    }
    for (size_t i = 0; i < nq; i++) qp[i] = queries + i * (size_t)src->dim;
    for (size_t i = 0; i < (size_t)T * nq; i++) {
        heaps[i].h = store + i * K;
        heaps[i].cap = K;
    }
    scan_job job = {src, qp, nq, p, p->kernel ? p->kernel : dot_kernel_best(), K};

    /* Work units of UNIT_CHUNKS chunks (8 MB of 512-d rows) handed out
     * dynamically: a thread that loses its core to another process does not
     * hold the whole query back.  The result does not depend on which thread
     * scanned what (total order at the merge). */
    uint64_t units = (nchunks + UNIT_CHUNKS - 1) / UNIT_CHUNKS;
    #pragma omp parallel num_threads(T)
    {
        heap *mine = heaps + (size_t)omp_get_thread_num() * nq;
        uint64_t *my_counts = tcounts ? tcounts + (size_t)omp_get_thread_num() * nq : NULL;
        #pragma omp for schedule(dynamic, 1)
        for (uint64_t u = 0; u < units; u++) {
            uint64_t c1 = (u + 1) * UNIT_CHUNKS;
            scan_range(&job, u * UNIT_CHUNKS, c1 < nchunks ? c1 : nchunks, mine, my_counts);
        }
    }
    if (tcounts) {
        for (size_t i = 0; i < (size_t)T * nq; i++) p->counts[i % nq] += tcounts[i];
        free(tcounts);
    }

    /* Merge: the thread heaps of query i are gathered, sorted with the total
     * order (so the thread split cannot change the result) and the page
     * [offset, K) is copied out. */
    topk_hit *merged = malloc((size_t)T * K * sizeof *merged + 1);
    if (!merged) {
        free(store); free(heaps); free(qp);
        return cdx_error(CDX_ERR_NOMEM, "topk_search: out of memory merging results");
    }
    for (size_t i = 0; i < nq; i++) {
        size_t m = 0;
        for (int t = 0; t < T; t++) {
            const heap *hp = &heaps[(size_t)t * nq + i];
            memcpy(merged + m, hp->h, hp->n * sizeof *merged);
            m += hp->n;
        }
        qsort(merged, m, sizeof *merged, hit_cmp);
        size_t end = m < K ? m : K;
        size_t got = end > p->offset ? end - p->offset : 0;
        if (got) memcpy(hits + i * p->k, merged + p->offset, got * sizeof *hits);
        n_hits[i] = got;
    }
    free(merged);
    free(store);
    free(heaps);
    free(qp);
    return CDX_OK;
}
