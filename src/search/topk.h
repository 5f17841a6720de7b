/*
 * topk.h - exact top-k inner-product search over stored vectors.
 *
 * The search scans every row of a cdx_rows view (common/rows.h), scores it
 * against one or more query vectors with the best SIMD kernel for this CPU
 * (search/dot.h), and keeps a per-thread,
 * per-query bounded heap; heaps are merged at the end.  Vectors are
 * L2-normalised, so the inner product is the cosine similarity.
 *
 * Semantics (identical for every kernel and thread count):
 *  - Order: score descending, ties broken by slot ascending.
 *  - Filters are applied inside the scan (a slot not allowed is never a
 *    candidate), so k results come back whenever k slots are allowed: there
 *    is no post-filtering of a fixed-size top-k.  The bitmap is checked per
 *    64-row chunk first: a chunk with no allowed slot is not even read.
 *  - min_score keeps only scores >= min_score.
 *  - offset/k paginate: the result is ranks [offset, offset+k) of the full
 *    ordering of allowed slots.
 *  - counts (optional): per query, the number of allowed rows scoring
 *    >= min_score, each row weighted by weight[slot] (1 when weight is
 *    NULL), counted during the same scan (no second pass).
 *
 * The rows come as a cdx_rows view (common/rows.h), whatever owns them.
 *
 * Workload: 10^4..10^7 rows of 64..1024 floats, one query (interactive) or a
 * batch of queries (evaluation: the scan is shared, amortising memory
 * traffic).  Memory per search: n_threads * nq * (offset+k) * 16 bytes for
 * the heaps (capped, see TOPK_MAX_HEAP_BYTES).
 */
#ifndef CDX_SEARCH_TOPK_H
#define CDX_SEARCH_TOPK_H

#include "clipdex.h"
#include "common/rows.h"
#include "search/dot.h"

#include <stddef.h>
#include <stdint.h>

#define TOPK_MAX_HEAP_BYTES ((size_t)1 << 30)
#define TOPK_MAX_QUERIES 4096

/* Allow-filter callback: nonzero = slot may be returned.  Called from
 * several threads at once; must be thread-safe and cheap. */
typedef int (*topk_allow_fn)(void *ctx, uint64_t slot);

typedef struct topk_params {
    size_t k;                    /* results per query (default 10) */
    size_t offset;               /* skip this many best results (default 0) */
    float min_score;             /* drop scores below (default -INFINITY) */
    const uint64_t *allow;       /* bitmap, bit (s & 63) of word s/64 = slot s
                                    allowed; slots >= allow_nbits are not.
                                    NULL = all slots allowed */
    uint64_t allow_nbits;
    topk_allow_fn allow_fn;      /* optional, ANDed with the bitmap */
    void *allow_ctx;
    int n_threads;               /* 0 = all cores */
    const dot_kernel *kernel;    /* NULL = dot_kernel_best() */
    uint64_t *counts;            /* NULL, or nq entries: weighted count of the
                                    allowed rows scoring >= min_score */
    const uint32_t *weight;      /* per-slot weight for counts (entries for
                                    slots < allow_nbits, or for every row when
                                    allow is NULL); NULL = 1 each */
} topk_params;

topk_params topk_default_params(void);

typedef struct topk_hit {
    uint64_t slot;
    float score;
} topk_hit;

/* Search nq queries (each dim floats, finite; rows of `queries` are dim
 * floats apart).  hits has room for nq*k entries: query i's results are
 * hits[i*k .. i*k + n_hits[i]).  Fails (CDX_ERR_INVALID_ARG) on a bad
 * argument or a non-finite query value, CDX_ERR_TOO_LARGE when the heaps
 * would exceed TOPK_MAX_HEAP_BYTES, CDX_ERR_NOMEM on allocation failure. */
cdx_result topk_search(const cdx_rows *src, const float *queries, size_t nq,
                       const topk_params *params, topk_hit *hits, size_t *n_hits);

/* Pieces of the scan shared with other scanners (search/qscan.c): the
 * allowed rows of 64-row chunk c (nrows <= 64 rows) under p's bitmap and
 * callback as a bit mask, and the bounded heap (root = worst kept hit). */
uint64_t topk_allowed_mask(const topk_params *p, uint64_t c, size_t nrows);
void topk_heap_offer(topk_hit *h, size_t *n, size_t cap, topk_hit x);

/* Total order used for results: nonzero when a ranks before b. */
static inline int topk_hit_better(const topk_hit *a, const topk_hit *b)
{
    return a->score > b->score || (a->score == b->score && a->slot < b->slot);
}

#endif
