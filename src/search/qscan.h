/*
 * qscan.h - exact-answer search over compressed codes: scan every row's
 * int8 or 1-bit code (search/quant.h, kernels search/qdot.h), keep the
 * best (offset+k) * rescore candidates by estimated score, then re-score
 * those candidates in float32 from the source rows and return the top k.
 *
 * Semantics follow topk.h (filters inside the scan, ties by slot, min_score
 * and offset applied to the float32 scores), except that the result is
 * exact only when every true top-(offset+k) row is among the candidates:
 * recall is measured (bench/quant_bench.c, tests/test_quant.c), not
 * guaranteed.  Scores returned are always the exact float32 ones.
 *
 * Codes come as a qcodes_view: 64-row blocks, each 64 codes of code_bytes
 * followed by 64 quant_aux entries (8 bytes) - the layout of the companion
 * file (store/codes.h), which owns the memory.
 *
 * Workload: one scan per query over up to ~10^7 codes (512 or 64 bytes per
 * row for 512 dims); the re-scoring reads (offset+k)*rescore float32 rows
 * at random.  Memory per search: threads * candidates * 16 bytes.
 */
#ifndef CDX_SEARCH_QSCAN_H
#define CDX_SEARCH_QSCAN_H

#include "search/qdot.h"
#include "search/quant.h"
#include "search/topk.h"

#define QSCAN_BLOCK 64
#define QSCAN_DEFAULT_RESCORE 4
#define QSCAN_MAX_RESCORE 1000

typedef struct qcodes_view {
    quant_kind kind;
    const uint8_t *base;      /* block 0 */
    uint64_t count;           /* rows */
    size_t code_bytes;        /* per row, quant_code_bytes(kind, cdim) */
    size_t block_bytes;       /* 64 * (code_bytes + 8) */
} qcodes_view;

static inline const uint8_t *qcodes_code(const qcodes_view *v, uint64_t row)
{
    return v->base + (row / QSCAN_BLOCK) * v->block_bytes + (row % QSCAN_BLOCK) * v->code_bytes;
}
static inline const quant_aux *qcodes_aux(const qcodes_view *v, uint64_t row)
{
    return (const quant_aux *)(v->base + (row / QSCAN_BLOCK) * v->block_bytes +
                               QSCAN_BLOCK * v->code_bytes + (row % QSCAN_BLOCK) * sizeof(quant_aux));
}

/* Encode rows [r0, r1) of src into the block layout; out points at the
 * block holding row r0 (block r0/64), later blocks follow block_bytes
 * apart.  Parallel (OpenMP) over blocks.  Padding bytes are zeroed. */
cdx_result qcodes_encode_rows(const quant_model *m, quant_kind kind, const cdx_rows *src,
                              uint64_t r0, uint64_t r1, uint8_t *out);

typedef struct qscan_params {
    topk_params topk;              /* k, offset, min_score, filters, threads */
    size_t rescore;                /* candidates = (offset+k) * rescore, >= 1 */
    const qdot_kernels *kernels;   /* NULL = qdot_best() */
} qscan_params;

qscan_params qscan_default_params(void);

/* Search nq queries (dim floats each, finite) over the codes cv (made with
 * model m from the rows of src; cv->count <= src->count, rows beyond
 * cv->count are not searched).  hits/n_hits as topk_search.  Errors:
 * CDX_ERR_INVALID_ARG (bad argument, geometry mismatch), CDX_ERR_TOO_LARGE,
 * CDX_ERR_NOMEM. */
cdx_result qscan_search(const qcodes_view *cv, const quant_model *m, const cdx_rows *src,
                        const float *queries, size_t nq, const qscan_params *p,
                        topk_hit *hits, size_t *n_hits);

#endif
