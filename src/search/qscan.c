/*
 * qscan.c - compressed scan + float32 re-scoring (see qscan.h).
 *
 * Per query: the query is prepared once (quant_query_set), the 64-row
 * blocks are handed to the threads in units of 64 blocks (dynamic, as in
 * topk.c), each block is scored by one kernel call into a stack buffer, the
 * allowed estimates go to the thread's bounded heap of C candidates; the
 * heaps are merged, the best C re-scored with the float32 dot kernel, and
 * the page [offset, offset+k) of the exact order copied out.  No
 * allocation inside the scan.
 */
#include "search/qscan.h"
#include "common/error.h"
#include "common/util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define UNIT_BLOCKS 64

qscan_params qscan_default_params(void)
{
    qscan_params p;
    memset(&p, 0, sizeof p);
    p.topk = topk_default_params();
    p.rescore = QSCAN_DEFAULT_RESCORE;
    return p;
}

cdx_result qcodes_encode_rows(const quant_model *m, quant_kind kind, const cdx_rows *src,
                              uint64_t r0, uint64_t r1, uint8_t *out)
{
    if (r1 < r0 || r1 > src->count || src->dim != m->dim)
        return cdx_error(CDX_ERR_INVALID_ARG, "qcodes_encode_rows: bad row range or dimension");
    size_t cb = quant_code_bytes(kind, m->cdim), bb = QSCAN_BLOCK * (cb + sizeof(quant_aux));
    uint64_t b0 = r0 / QSCAN_BLOCK, b1 = (r1 + QSCAN_BLOCK - 1) / QSCAN_BLOCK;
    int failed = 0;
    #pragma omp parallel
    {
        float *scratch = malloc(quant_encode_scratch(m, QSCAN_BLOCK) * sizeof(float));
        if (!scratch) __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
        #pragma omp for schedule(dynamic, 16)
        for (uint64_t b = b0; b < b1; b++) {
            if (!scratch) continue;
            uint8_t *blk = out + (b - b0) * bb;
            uint64_t lo = b * QSCAN_BLOCK > r0 ? b * QSCAN_BLOCK : r0;
            uint64_t hi = (b + 1) * QSCAN_BLOCK < r1 ? (b + 1) * QSCAN_BLOCK : r1;
            const float *x[QSCAN_BLOCK];
            for (uint64_t r = lo; r < hi; r++) x[r - lo] = cdx_rows_at(src, r);
            size_t i = (size_t)(lo % QSCAN_BLOCK);
            quant_encode_batch(m, kind, x, (size_t)(hi - lo), blk + i * cb, cb,
                               (quant_aux *)(blk + QSCAN_BLOCK * cb) + i, scratch);
        }
        free(scratch);
    }
    if (failed) return cdx_error(CDX_ERR_NOMEM, "out of memory encoding codes");
    return CDX_OK;
}

static int hit_cmp(const void *a, const void *b)
{
    const topk_hit *x = a, *y = b;
    return topk_hit_better(x, y) ? -1 : topk_hit_better(y, x) ? 1 : 0;
}

typedef struct qjob {
    const qcodes_view *cv;
    const quant_query *qq;
    const qscan_params *p;
    const qdot_kernels *kern;
    size_t C;
} qjob;

static void scan_blocks(const qjob *j, uint64_t b0, uint64_t b1, topk_hit *h, size_t *n)
{
    const qcodes_view *cv = j->cv;
    const quant_query *qq = j->qq;
    union {
        int32_t i[QSCAN_BLOCK];
        uint32_t u[QSCAN_BLOCK];
    } sc;
    for (uint64_t b = b0; b < b1; b++) {
        uint64_t first = b * QSCAN_BLOCK;
        size_t nrows = cv->count - first < QSCAN_BLOCK ? (size_t)(cv->count - first) : QSCAN_BLOCK;
        uint64_t mask = topk_allowed_mask(&j->p->topk, b, nrows);
        if (!mask) continue;
        size_t used = 64 - (size_t)__builtin_clzll(mask);
        const uint8_t *codes = cv->base + b * cv->block_bytes;
        const quant_aux *aux = (const quant_aux *)(codes + QSCAN_BLOCK * cv->code_bytes);
        if (cv->kind == QUANT_I8) j->kern->i8(qq->u8, (const int8_t *)codes, used, qq->len, sc.i);
        else j->kern->bit(qq->planes, (const uint64_t *)codes, used, qq->len, sc.u);
        for (uint64_t m = mask; m; m &= m - 1) {
            int r = __builtin_ctzll(m);
            float v = cv->kind == QUANT_I8 ? quant_estimate_i8(qq, sc.i[r], &aux[r])
                                           : quant_estimate_bit(qq, sc.u[r], &aux[r]);
            if (*n == j->C && v < h[0].score) continue;   /* fast reject */
            topk_hit x = {first + (uint64_t)r, v};
            topk_heap_offer(h, n, j->C, x);
        }
    }
}

static cdx_result check_args(const qcodes_view *cv, const quant_model *m, const cdx_rows *src,
                             const float *queries, size_t nq, const qscan_params *p,
                             topk_hit *hits, size_t *n_hits)
{
    if (!cv || !m || !src || !p || !n_hits || (nq && !queries) || (nq && p->topk.k && !hits))
        return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: NULL argument");
    if (nq > TOPK_MAX_QUERIES)
        return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: too many queries (%zu)", nq);
    if (src->dim != m->dim || cv->count > src->count || (cv->count && !cv->base) ||
        cv->code_bytes != quant_code_bytes(cv->kind, m->cdim) ||
        cv->block_bytes != QSCAN_BLOCK * (cv->code_bytes + sizeof(quant_aux)))
        return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: codes do not match the model or rows");
    if (p->rescore < 1 || p->rescore > QSCAN_MAX_RESCORE)
        return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: rescore %zu is outside 1..%d", p->rescore,
                         QSCAN_MAX_RESCORE);
    if (isnan(p->topk.min_score)) return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: min_score is NaN");
    if (p->topk.allow && p->topk.allow_nbits == 0)
        return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: bitmap with allow_nbits = 0");
    for (size_t i = 0; i < nq * (size_t)m->dim; i++)
        if (!isfinite(queries[i]))
            return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: query %zu has a non-finite value",
                             i / (size_t)m->dim);
    return CDX_OK;
}

/* Re-score the c candidates of one query in float32 and copy its page out. */
static size_t rescore_page(const cdx_rows *src, const float *q, topk_hit *cand, size_t c,
                           const topk_params *tp, topk_hit *out)
{
    const dot_kernel *dk = tp->kernel ? tp->kernel : dot_kernel_best();
    size_t kept = 0;
    for (size_t i = 0; i < c; i++) {
        float s;
        dk->tile(&q, 1, cdx_rows_at(src, cand[i].slot), 1, src->row_stride / 4, (size_t)src->dim, &s, 1);
        if (!(s >= tp->min_score)) continue;
        cand[kept].slot = cand[i].slot;
        cand[kept].score = s;
        kept++;
    }
    qsort(cand, kept, sizeof *cand, hit_cmp);
    size_t K = tp->offset + tp->k < kept ? tp->offset + tp->k : kept;
    size_t got = K > tp->offset ? K - tp->offset : 0;
    if (got) memcpy(out, cand + tp->offset, got * sizeof *out);
    return got;
}

cdx_result qscan_search(const qcodes_view *cv, const quant_model *m, const cdx_rows *src,
                        const float *queries, size_t nq, const qscan_params *p,
                        topk_hit *hits, size_t *n_hits)
{
    cdx_result rc = check_args(cv, m, src, queries, nq, p, hits, n_hits);
    if (rc) return rc;
    for (size_t i = 0; i < nq; i++) n_hits[i] = 0;
    const topk_params *tp = &p->topk;
    size_t K, C;
    if (!cdx_add_ok(tp->offset, tp->k, &K) || !cdx_mul_ok(K, p->rescore, &C))
        return cdx_error(CDX_ERR_INVALID_ARG, "qscan_search: offset + k overflows");
    if (C > cv->count) C = (size_t)cv->count;
    if (tp->k == 0 || nq == 0 || C <= tp->offset) return CDX_OK;

    uint64_t nblocks = (cv->count + QSCAN_BLOCK - 1) / QSCAN_BLOCK;
    int T = tp->n_threads > 0 ? tp->n_threads : omp_get_max_threads();
    if (T < 1) T = 1;
    if ((uint64_t)T > nblocks / 8) T = nblocks / 8 > 0 ? (int)(nblocks / 8) : 1;
    size_t cells, bytes;
    if (!cdx_mul_ok(C, (size_t)T, &cells) || !cdx_mul_ok(cells, sizeof(topk_hit), &bytes) ||
        bytes > TOPK_MAX_HEAP_BYTES)
        return cdx_error(CDX_ERR_TOO_LARGE, "qscan_search: %zu candidates x %d threads exceed the heap limit",
                         C, T);
    topk_hit *store = malloc(bytes);
    size_t *fill = calloc((size_t)T, sizeof *fill);
    quant_query *qq = NULL;
    if (!store || !fill || (rc = quant_query_new(m, cv->kind, &qq)) != CDX_OK) {
        free(store);
        free(fill);
        return rc ? rc : cdx_error(CDX_ERR_NOMEM, "qscan_search: out of memory for %zu bytes", bytes);
    }
    qjob job = {cv, qq, p, p->kernels ? p->kernels : qdot_best(), C};
    uint64_t units = (nblocks + UNIT_BLOCKS - 1) / UNIT_BLOCKS;
    for (size_t qi = 0; qi < nq; qi++) {
        const float *q = queries + qi * (size_t)m->dim;
        quant_query_set(qq, m, q);
        memset(fill, 0, (size_t)T * sizeof *fill);
        #pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            #pragma omp for schedule(dynamic, 1)
            for (uint64_t u = 0; u < units; u++) {
                uint64_t b1 = (u + 1) * UNIT_BLOCKS;
                scan_blocks(&job, u * UNIT_BLOCKS, b1 < nblocks ? b1 : nblocks, store + (size_t)t * C,
                            &fill[t]);
            }
        }
        /* Gather the thread heaps, keep the best C estimates (total order). */
        size_t n = 0;
        for (int t = 0; t < T; t++) {
            memmove(store + n, store + (size_t)t * C, fill[t] * sizeof *store);
            n += fill[t];
        }
        qsort(store, n, sizeof *store, hit_cmp);
        if (n > C) n = C;
        n_hits[qi] = rescore_page(src, q, store, n, tp, hits + qi * tp->k);
    }
    quant_query_free(qq);
    free(store);
    free(fill);
    return CDX_OK;
}
