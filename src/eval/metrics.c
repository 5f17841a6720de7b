/*
 * metrics.c - retrieval and classification metrics on explicit rankings.
 * Definitions in metrics.h and docs/evaluation.md.  Pure functions: no I/O,
 * no library calls; sums in double.  Workload: one call per query (rankings
 * of up to the library size) or one pass over a score matrix.
 */
#include "metrics.h"
#include "evutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int cmp_hit(const void *a, const void *b)
{
    const cdx_hit *x = a, *y = b;
    int xn = isnan(x->score), yn = isnan(y->score);
    if (xn != yn) return xn - yn;
    if (!xn && x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void ev_rank_hits(cdx_hit *hits, size_t n)
{
    if (n > 1) qsort(hits, n, sizeof *hits, cmp_hit);
}

static int cmp_judgment_id(const void *a, const void *b)
{
    int64_t x = ((const ev_judgment *)a)->id, y = ((const ev_judgment *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_double_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* DCG discount of 1-based rank i. */
static double discount(size_t i)
{
    return 1.0 / log2((double)i + 1.0);
}

cdx_result ev_query_metrics_compute(const int64_t *ranking, size_t n_ranked,
                                    const ev_judgment *rel, size_t n_rel,
                                    const size_t *ks, int n_k, ev_query_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (n_k < 0 || n_k > EV_MAX_KS) return cdx_set_error(CDX_ERR_INVALID_ARG, "too many K values");
    out->n_k = n_k;
    for (int j = 0; j < n_k; j++)
        if (ks[j] == 0) return cdx_set_error(CDX_ERR_INVALID_ARG, "K must be >= 1");
    /* Relevant judgments sorted by id, for lookup; seen[] drops repeats. */
    size_t R = 0;
    for (size_t i = 0; i < n_rel; i++) R += rel[i].grade > 0;
    out->n_relevant = R;
    out->has_relevant = R > 0;
    if (R == 0) return CDX_OK;
    ev_judgment *js = malloc(R * sizeof *js);
    double *ideal = malloc(R * sizeof *ideal);
    unsigned char *seen = calloc(R, 1);
    if (!js || !ideal || !seen) {
        free(js);
        free(ideal);
        free(seen);
        return cdx_set_error(CDX_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0, r = 0; i < n_rel; i++)
        if (rel[i].grade > 0) js[r++] = rel[i];
    qsort(js, R, sizeof *js, cmp_judgment_id);
    for (size_t i = 0; i < R; i++) ideal[i] = js[i].grade;
    qsort(ideal, R, sizeof *ideal, cmp_double_desc);

    size_t max_k = 0;
    for (int j = 0; j < n_k; j++) if (ks[j] > max_k) max_k = ks[j];
    size_t hits = 0;
    double dcg = 0, ap_sum = 0;
    /* Walk the ranking once; at each rank i (1-based) record the cumulative
     * counts for every K == i, and for K beyond the ranking at the end. */
    for (size_t i = 1; i <= n_ranked; i++) {
        ev_judgment key = {ranking[i - 1], 0};
        ev_judgment *j = bsearch(&key, js, R, sizeof *js, cmp_judgment_id);
        if (j && !seen[j - js]) {
            seen[j - js] = 1;
            hits++;
            dcg += j->grade * discount(i);
            ap_sum += (double)hits / (double)i;
            if (!out->first_rank) out->first_rank = i;
        }
        for (int k = 0; k < n_k; k++)
            if (ks[k] == i) {
                out->precision[k] = (double)hits / (double)ks[k];
                out->recall[k] = (double)hits / (double)R;
                out->ndcg[k] = dcg;
            }
        if (i >= max_k && hits == R) break; /* nothing more can change */
    }
    for (int k = 0; k < n_k; k++)
        if (ks[k] > n_ranked) { /* K beyond the ranking: everything ranked */
            out->precision[k] = (double)hits / (double)ks[k];
            out->recall[k] = (double)hits / (double)R;
            out->ndcg[k] = dcg;
        }
    for (int k = 0; k < n_k; k++) {
        double idcg = 0;
        for (size_t i = 1; i <= R && i <= ks[k]; i++) idcg += ideal[i - 1] * discount(i);
        out->ndcg[k] = idcg > 0 ? out->ndcg[k] / idcg : 0;
    }
    out->rr = out->first_rank ? 1.0 / (double)out->first_rank : 0;
    out->ap = ap_sum / (double)R;
    free(js);
    free(ideal);
    free(seen);
    return CDX_OK;
}

void ev_query_metrics_mean(const ev_query_metrics *q, size_t n, ev_query_metrics *mean,
                           size_t *n_used)
{
    memset(mean, 0, sizeof *mean);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (!q[i].has_relevant) continue;
        used++;
        mean->n_k = q[i].n_k;
        for (int k = 0; k < q[i].n_k; k++) {
            mean->precision[k] += q[i].precision[k];
            mean->recall[k] += q[i].recall[k];
            mean->ndcg[k] += q[i].ndcg[k];
        }
        mean->rr += q[i].rr;
        mean->ap += q[i].ap;
        mean->n_relevant += q[i].n_relevant;
    }
    if (used) {
        for (int k = 0; k < mean->n_k; k++) {
            mean->precision[k] /= (double)used;
            mean->recall[k] /= (double)used;
            mean->ndcg[k] /= (double)used;
        }
        mean->rr /= (double)used;
        mean->ap /= (double)used;
        mean->has_relevant = 1;
    }
    if (n_used) *n_used = used;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ev_percentile(double *v, size_t n, double p)
{
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    if (p <= 0) return v[0];
    if (p >= 100) return v[n - 1];
    double h = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n) return v[n - 1];
    return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

size_t ev_rank_of(const float *scores, size_t n, size_t target)
{
    float s = scores[target];
    size_t rank = 0;
    for (size_t i = 0; i < n; i++)
        if (scores[i] > s || (scores[i] == s && i < target)) rank++;
    return rank;
}

double ev_recall_at(const size_t *ranks, size_t n, size_t k)
{
    if (n == 0) return 0;
    size_t hit = 0;
    for (size_t i = 0; i < n; i++) hit += ranks[i] < k;
    return (double)hit / (double)n;
}

void ev_zeroshot_rank(const float *img, size_t n_img, const int *truth, const float *cls,
                      int n_cls, int dim, size_t *rank, int *pred, float *scratch)
{
    for (size_t i = 0; i < n_img; i++) {
        const float *v = img + i * (size_t)dim;
        int best = 0;
        for (int c = 0; c < n_cls; c++) {
            scratch[c] = ev_dot(v, cls + (size_t)c * dim, dim);
            if (scratch[c] > scratch[best]) best = c; /* first index wins ties */
        }
        pred[i] = best;
        rank[i] = ev_rank_of(scratch, (size_t)n_cls, (size_t)truth[i]);
    }
}

void ev_caption_ranks(const float *img, size_t n_img, const float *txt, size_t n_txt,
                      const size_t *txt_img, int dim, size_t *t2i, size_t *i2t,
                      float *scratch)
{
    for (size_t t = 0; t < n_txt; t++) {
        for (size_t i = 0; i < n_img; i++)
            scratch[i] = ev_dot(txt + t * (size_t)dim, img + i * (size_t)dim, dim);
        t2i[t] = ev_rank_of(scratch, n_img, txt_img[t]);
    }
    for (size_t i = 0; i < n_img; i++) {
        for (size_t t = 0; t < n_txt; t++)
            scratch[t] = ev_dot(img + i * (size_t)dim, txt + t * (size_t)dim, dim);
        size_t best = SIZE_MAX;
        for (size_t t = 0; t < n_txt; t++)
            if (txt_img[t] == i) {
                size_t r = ev_rank_of(scratch, n_txt, t);
                if (r < best) best = r;
            }
        i2t[i] = best;
    }
}
