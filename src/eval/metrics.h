/*
 * metrics.h - retrieval and classification metrics, as pure functions on
 * explicit rankings (no library, no I/O), so each is unit-tested against
 * hand-computed values (tests/test_eval_metrics.c).  docs/evaluation.md
 * gives the formulas; in short, for one query with relevant set Rel
 * (R = |Rel|, grade g(d) > 0 for d in Rel) and ranking d_1, d_2, ...:
 *
 *   P@K    = |Rel ∩ {d_1..d_K}| / K        (K even when fewer were ranked)
 *   R@K    = |Rel ∩ {d_1..d_K}| / R
 *   nDCG@K = DCG@K / IDCG@K, DCG@K = sum_{i<=K} g(d_i) / log2(i + 1) (linear
 *            gain, as trec_eval and scikit-learn), IDCG@K the DCG@K of the
 *            grades of Rel sorted descending
 *   RR     = 1 / rank of the first relevant item (0 when none is ranked)
 *   AP     = (1/R) sum over relevant d_i of P@i: non-interpolated average
 *            precision over the whole ranking given (TREC's definition;
 *            relevant items never ranked contribute 0)
 * A query with R = 0 gets 0 everywhere and has_relevant = 0; means skip such
 * queries (trec_eval's convention).
 *
 * Ties: ev_rank_hits orders equal scores by ascending id, the order the
 * library's exact search uses; ev_rank_of does the same with indices.
 */
#ifndef CDX_EVAL_METRICS_H
#define CDX_EVAL_METRICS_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

#define EV_MAX_KS 16          /* distinct K values per run */

typedef struct ev_judgment {
    int64_t id;
    double grade;             /* > 0: relevant (1 for binary judgments) */
} ev_judgment;

typedef struct ev_query_metrics {
    int n_k;
    double precision[EV_MAX_KS], recall[EV_MAX_KS], ndcg[EV_MAX_KS];
    double rr, ap;
    size_t first_rank;        /* 1-based rank of the first relevant; 0 = none */
    size_t n_relevant;        /* R */
    int has_relevant;         /* R > 0 */
} ev_query_metrics;

/* Sort hits by score descending, ties by id ascending (NaN scores last). */
void ev_rank_hits(cdx_hit *hits, size_t n);

/* Metrics of one query.  ranking: ids, best first (duplicates after their
 * first occurrence count as non-relevant); rel: judgments with distinct ids
 * (grades <= 0 are ignored); ks: n_k (<= EV_MAX_KS) values >= 1. */
cdx_result ev_query_metrics_compute(const int64_t *ranking, size_t n_ranked,
                                    const ev_judgment *rel, size_t n_rel,
                                    const size_t *ks, int n_k, ev_query_metrics *out);

/* Mean over the queries with has_relevant (all zeros and *n_used = 0 when
 * there are none). */
void ev_query_metrics_mean(const ev_query_metrics *q, size_t n, ev_query_metrics *mean,
                           size_t *n_used);

/* p-th percentile (0 <= p <= 100) of v, linear interpolation between closest
 * ranks (numpy's default): h = (n-1) p/100, x[floor h] + frac(h) (x[floor h + 1]
 * - x[floor h]) over the sorted values.  Sorts v in place; 0 when n = 0. */
double ev_percentile(double *v, size_t n, double p);

/* 0-based rank of scores[target] among n scores: the number of scores that
 * are greater, plus the number of equal scores at a lower index. */
size_t ev_rank_of(const float *scores, size_t n, size_t target);

/* Fraction of ranks < k. */
double ev_recall_at(const size_t *ranks, size_t n, size_t k);

/* Zero-shot: scores of n_img images (rows of img) against n_cls class
 * embeddings; for each image the 0-based rank of its true class truth[i]
 * (ties by class index) and the top-1 prediction.  scratch: n_cls floats. */
void ev_zeroshot_rank(const float *img, size_t n_img, const int *truth, const float *cls,
                      int n_cls, int dim, size_t *rank, int *pred, float *scratch);

/* Caption retrieval (as OpenCLIP's benchmark): t2i[t] = 0-based rank of the
 * image of caption t (txt_img[t]) among the n_img images for that caption;
 * i2t[i] = the best 0-based rank of any caption of image i among all n_txt
 * captions (SIZE_MAX when image i has none).  scratch: max(n_img, n_txt)
 * floats. */
void ev_caption_ranks(const float *img, size_t n_img, const float *txt, size_t n_txt,
                      const size_t *txt_img, int dim, size_t *t2i, size_t *i2t,
                      float *scratch);

#endif
