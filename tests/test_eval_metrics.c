/*
 * test_eval_metrics.c - every evaluation metric against values computed by
 * hand (the computation is written next to each check): P@K, R@K, nDCG@K
 * (binary and graded), RR, AP, means, percentiles, tie ordering, queries
 * without relevant items, K larger than the library, zero-shot ranks and
 * summaries, caption recalls and their chance levels.
 */
#include "eval/captions.h"
#include "eval/evutil.h"
#include "eval/metrics.h"
#include "eval/zeroshot.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-5)
#define CHECKN(a, b) CHECKF(NEAR(a, b), "%s = %.6f, want %.6f", #a, (double)(a), (double)(b))

static void test_binary(void)
{
    /* Ranking 5 3 8 1 9 2; relevant {3, 9, 7} (R = 3, 7 never ranked).
     * Relevant at ranks 2 (id 3) and 5 (id 9). */
    const int64_t rank[] = {5, 3, 8, 1, 9, 2};
    const ev_judgment rel[] = {{3, 1}, {9, 1}, {7, 1}};
    const size_t ks[] = {1, 3, 5, 10};
    ev_query_metrics m;
    CHECK(ev_query_metrics_compute(rank, 6, rel, 3, ks, 4, &m) == CDX_OK);
    CHECK(m.has_relevant && m.n_relevant == 3 && m.first_rank == 2);
    /* P@1 = 0/1, P@3 = 1/3, P@5 = 2/5, P@10 = 2/10 (K beyond the ranking: still /K) */
    CHECKN(m.precision[0], 0.0);
    CHECKN(m.precision[1], 1.0 / 3);
    CHECKN(m.precision[2], 0.4);
    CHECKN(m.precision[3], 0.2);
    /* R@K = hits / 3: 0, 1/3, 2/3, 2/3 */
    CHECKN(m.recall[0], 0.0);
    CHECKN(m.recall[1], 1.0 / 3);
    CHECKN(m.recall[2], 2.0 / 3);
    CHECKN(m.recall[3], 2.0 / 3);
    /* nDCG@3 = (1/log2 3) / (1 + 1/log2 3 + 1/log2 4) = 0.63093 / 2.13093 = 0.296082
     * nDCG@5 = (1/log2 3 + 1/log2 6) / 2.13093 = 1.01778 / 2.13093 = 0.477624
     * nDCG@10 = nDCG@5 (no further relevant item; IDCG has only 3 terms) */
    CHECKN(m.ndcg[0], 0.0);
    CHECKN(m.ndcg[1], 0.296082);
    CHECKN(m.ndcg[2], 0.477624);
    CHECKN(m.ndcg[3], 0.477624);
    /* RR = 1/2; AP = (P@2 + P@5) / R = (1/2 + 2/5) / 3 = 0.3 */
    CHECKN(m.rr, 0.5);
    CHECKN(m.ap, 0.3);
}

static void test_graded(void)
{
    /* Ranking 10 20 30 40; grades 10:1, 20:0 (not relevant), 30:3, 40:2, 50:2
     * (50 never ranked); R = 4.
     * DCG@4 = 1/log2 2 + 0 + 3/log2 4 + 2/log2 5 = 1 + 1.5 + 0.861353 = 3.361353
     * IDCG@4 (grades 3,2,2,1) = 3 + 2/log2 3 + 2/log2 4 + 1/log2 5
     *        = 3 + 1.261860 + 1 + 0.430677 = 5.692536  -> nDCG@4 = 0.590484
     * DCG@2 = 1; IDCG@2 = 3 + 2/log2 3 = 4.261860 -> nDCG@2 = 0.234639
     * AP = (1/1 + 2/3 + 3/4) / 4 = 0.604167; P@4 = 3/4; R@4 = 3/4; RR = 1 */
    const int64_t rank[] = {10, 20, 30, 40};
    const ev_judgment rel[] = {{10, 1}, {20, 0}, {30, 3}, {40, 2}, {50, 2}};
    const size_t ks[] = {2, 4};
    ev_query_metrics m;
    CHECK(ev_query_metrics_compute(rank, 4, rel, 5, ks, 2, &m) == CDX_OK);
    CHECK(m.n_relevant == 4);
    CHECKN(m.ndcg[0], 0.234639);
    CHECKN(m.ndcg[1], 0.590484);
    CHECKN(m.precision[1], 0.75);
    CHECKN(m.recall[1], 0.75);
    CHECKN(m.ap, 0.604167);
    CHECKN(m.rr, 1.0);
    /* A perfect graded ranking 30 40 50 10 gives nDCG 1 at every K. */
    const int64_t ideal[] = {30, 40, 50, 10};
    CHECK(ev_query_metrics_compute(ideal, 4, rel, 5, ks, 2, &m) == CDX_OK);
    CHECKN(m.ndcg[0], 1.0);
    CHECKN(m.ndcg[1], 1.0);
    /* Swapping equal grades (40 and 50, both 2) keeps nDCG 1. */
    const int64_t swapped[] = {30, 50, 40, 10};
    CHECK(ev_query_metrics_compute(swapped, 4, rel, 5, ks, 2, &m) == CDX_OK);
    CHECKN(m.ndcg[1], 1.0);
}

static void test_no_relevant_and_mean(void)
{
    const int64_t rank[] = {1, 2, 3};
    const ev_judgment zero[] = {{2, 0}};
    const size_t ks[] = {1, 3};
    ev_query_metrics q[3];
    /* no judgments at all, and judgments that are all grade 0 */
    CHECK(ev_query_metrics_compute(rank, 3, NULL, 0, ks, 2, &q[0]) == CDX_OK);
    CHECK(ev_query_metrics_compute(rank, 3, zero, 1, ks, 2, &q[1]) == CDX_OK);
    for (int i = 0; i < 2; i++) {
        CHECK(!q[i].has_relevant && q[i].n_relevant == 0 && q[i].first_rank == 0);
        CHECKN(q[i].precision[0] + q[i].precision[1] + q[i].recall[1] + q[i].ndcg[1], 0.0);
        CHECKN(q[i].rr + q[i].ap, 0.0);
    }
    /* One judged query: relevant {1} at rank 1 -> P@1 1, P@3 1/3, AP 1.
     * The mean leaves out the two unjudged queries (trec_eval). */
    const ev_judgment one[] = {{1, 1}};
    CHECK(ev_query_metrics_compute(rank, 3, one, 1, ks, 2, &q[2]) == CDX_OK);
    ev_query_metrics mean;
    size_t used = 99;
    ev_query_metrics_mean(q, 3, &mean, &used);
    CHECK(used == 1);
    CHECKN(mean.precision[0], 1.0);
    CHECKN(mean.precision[1], 1.0 / 3);
    CHECKN(mean.ap, 1.0);
    /* Mean of two judged queries: test_binary's (AP 0.3, RR 0.5, P@1 0) and
     * this one (AP 1, RR 1, P@1 1): AP 0.65, RR 0.75, P@1 0.5. */
    const int64_t r2[] = {5, 3, 8, 1, 9, 2};
    const ev_judgment rel2[] = {{3, 1}, {9, 1}, {7, 1}};
    CHECK(ev_query_metrics_compute(r2, 6, rel2, 3, ks, 2, &q[0]) == CDX_OK);
    ev_query_metrics_mean(q, 3, &mean, &used);
    CHECK(used == 2);
    CHECKN(mean.ap, 0.65);
    CHECKN(mean.rr, 0.75);
    CHECKN(mean.precision[0], 0.5);
    /* No judged query at all: zeros, used 0. */
    ev_query_metrics_mean(q, 0, &mean, &used);
    CHECK(used == 0 && mean.ap == 0);
}

static void test_k_beyond_library(void)
{
    /* A library of 3 images: ranking 1 2 3, relevant {2}, K = 10 and 100.
     * P@10 = 1/10, P@100 = 1/100 (the standard fixed-K denominator), R@K = 1,
     * nDCG@K = (1/log2 3) / 1 = 0.630930, AP = 1/2, RR = 1/2. */
    const int64_t rank[] = {1, 2, 3};
    const ev_judgment rel[] = {{2, 1}};
    const size_t ks[] = {10, 100};
    ev_query_metrics m;
    CHECK(ev_query_metrics_compute(rank, 3, rel, 1, ks, 2, &m) == CDX_OK);
    CHECKN(m.precision[0], 0.1);
    CHECKN(m.precision[1], 0.01);
    CHECKN(m.recall[0], 1.0);
    CHECKN(m.ndcg[0], 0.630930);
    CHECKN(m.ndcg[1], 0.630930);
    CHECKN(m.ap, 0.5);
    CHECKN(m.rr, 0.5);
    /* An empty ranking (empty library) with a relevant item: all zero. */
    CHECK(ev_query_metrics_compute(rank, 0, rel, 1, ks, 2, &m) == CDX_OK);
    CHECK(m.has_relevant && m.precision[0] == 0 && m.recall[0] == 0 && m.ap == 0 && m.rr == 0);
}

static void test_ties_and_duplicates(void)
{
    /* Scores: id 7 0.5, id 3 0.9, id 5 0.5, id 1 0.5, id 4 NaN.
     * Ranked: 3 (0.9), then the 0.5 ties by ascending id 1 5 7, NaN last. */
    cdx_hit h[] = {{7, 0.5f}, {3, 0.9f}, {5, 0.5f}, {1, 0.5f}, {4, NAN}};
    ev_rank_hits(h, 5);
    CHECK(h[0].id == 3 && h[1].id == 1 && h[2].id == 5 && h[3].id == 7 && h[4].id == 4);
    /* Relevant {7}: rank 4 -> RR 1/4, AP 1/4, P@3 0, R@4... via K = 3, 5 */
    int64_t rank[5];
    for (int i = 0; i < 5; i++) rank[i] = h[i].id;
    const ev_judgment rel[] = {{7, 1}};
    const size_t ks[] = {3, 5};
    ev_query_metrics m;
    CHECK(ev_query_metrics_compute(rank, 5, rel, 1, ks, 2, &m) == CDX_OK);
    CHECKN(m.rr, 0.25);
    CHECKN(m.ap, 0.25);
    CHECKN(m.precision[0], 0.0);
    CHECKN(m.precision[1], 0.2);
    /* ev_rank_of: scores 0.2 0.5 0.5 0.1.  Target 2: one equal score at a
     * lower index -> rank 1; target 1 -> 0; target 0: two greater -> 2. */
    const float s[] = {0.2f, 0.5f, 0.5f, 0.1f};
    CHECK(ev_rank_of(s, 4, 2) == 1);
    CHECK(ev_rank_of(s, 4, 1) == 0);
    CHECK(ev_rank_of(s, 4, 0) == 2);
    CHECK(ev_rank_of(s, 4, 3) == 3);
    /* A ranking that repeats an id counts it once: 4 4 6, relevant {4}:
     * P@3 = 1/3, AP = 1 (not 1 + 2/2). */
    const int64_t dup[] = {4, 4, 6};
    const ev_judgment rel4[] = {{4, 1}};
    const size_t k3[] = {3};
    CHECK(ev_query_metrics_compute(dup, 3, rel4, 1, k3, 1, &m) == CDX_OK);
    CHECKN(m.precision[0], 1.0 / 3);
    CHECKN(m.ap, 1.0);
    /* Bad K values are refused. */
    const size_t k0[] = {0};
    CHECK(ev_query_metrics_compute(dup, 3, rel4, 1, k0, 1, &m) == CDX_ERR_INVALID_ARG);
    CHECK(ev_query_metrics_compute(dup, 3, rel4, 1, k3, EV_MAX_KS + 1, &m) == CDX_ERR_INVALID_ARG);
}

static void test_percentiles(void)
{
    /* 10 1 4 7 sorted 1 4 7 10.  p50: h = 3 * 0.5 = 1.5 -> 4 + 0.5 * 3 = 5.5;
     * p95: h = 2.85 -> 7 + 0.85 * 3 = 9.55; p0 = 1; p100 = 10. */
    double v[] = {10, 1, 4, 7};
    CHECKN(ev_percentile(v, 4, 50), 5.5);
    CHECKN(ev_percentile(v, 4, 95), 9.55);
    CHECKN(ev_percentile(v, 4, 0), 1.0);
    CHECKN(ev_percentile(v, 4, 100), 10.0);
    double one[] = {3.25};
    CHECKN(ev_percentile(one, 1, 95), 3.25);
    CHECKN(ev_percentile(NULL, 0, 50), 0.0);
}

static void test_zeroshot(void)
{
    /* Classes c0 (1,0), c1 (0,1), c2 (0.6,0.8).  Images:
     *  i0 (1,0) true 0: scores 1, 0, 0.6 -> rank 0, predicted 0
     *  i1 (0,1) true 2: scores 0, 1, 0.8 -> rank 1, predicted 1
     *  i2 (0.8,0.6) true 1: scores 0.8, 0.6, 0.96 -> rank 2, predicted 2
     *  i3 (s,s), s = 1/sqrt 2, true 1: scores s, s, 0.98995: class 1 ties class
     *     0 and loses (lower index first) -> rank 2; predicted 2 */
    const float s = 0.70710678f;
    const float cls[] = {1, 0, 0, 1, 0.6f, 0.8f};
    const float img[] = {1, 0, 0, 1, 0.8f, 0.6f, s, s};
    const int truth[] = {0, 2, 1, 1};
    size_t rank[4];
    int pred[4];
    float scratch[3];
    ev_zeroshot_rank(img, 4, truth, cls, 3, 2, rank, pred, scratch);
    CHECK(rank[0] == 0 && rank[1] == 1 && rank[2] == 2 && rank[3] == 2);
    CHECK(pred[0] == 0 && pred[1] == 1 && pred[2] == 2 && pred[3] == 2);
    /* Summary with top5_k = 2 (a "top-2" here so it is not trivially 1):
     * top1 = 1/4; top-2 = ranks < 2: i0, i1 -> 2/4.
     * Class 1: 2 images, top1 0, both predicted as 2 -> confused with 2 (2).
     * Class 2: 1 image predicted 1 -> confused with 1 (1).
     * Predicted counts: c0 1, c1 1, c2 2 -> 3 distinct.
     * Confusions by count: (1 -> 2) x2, (2 -> 1) x1. */
    ev_zs_class c[3] = {{0}};
    ev_zeroshot_report r = {0};
    r.cls = c;
    r.n_classes = 3;
    r.top5_k = 2;
    ev_zeroshot_summarise(truth, pred, rank, 4, &r);
    CHECKN(r.top1, 0.25);
    CHECKN(r.top5, 0.5);
    CHECK(c[0].n == 1 && c[0].top1 == 1 && c[0].confused_with == -1);
    CHECK(c[1].n == 2 && c[1].top1 == 0 && c[1].confused_with == 2 && c[1].confused_n == 2);
    CHECK(c[2].n == 1 && c[2].top1 == 0 && c[2].top5 == 1 && c[2].confused_with == 1);
    CHECK(c[0].predicted == 1 && c[1].predicted == 1 && c[2].predicted == 2);
    CHECK(r.distinct_predicted == 3);
    CHECK(r.n_conf == 2 && r.conf[0].truth == 1 && r.conf[0].pred == 2 && r.conf[0].count == 2);
    CHECK(r.conf[1].truth == 2 && r.conf[1].pred == 1 && r.conf[1].count == 1);
}

static void test_captions(void)
{
    /* Images I0 (1,0), I1 (0,1), I2 (0.6,0.8).  Captions: t0 (0.8,0.6) and
     * t1 (0,1) of I0, t2 (0.6,0.8) of I1, t3 (1,0) of I2.
     * text->image: t0 scores I 0.8 0.6 0.96 -> its image I0 at rank 1;
     *   t1: 0 1 0.8 -> I0 rank 2; t2: 0.6 0.8 1.0 -> I1 rank 1;
     *   t3: 1 0 0.6 -> I2 rank 1.  R@1 = 0, R@2 = 3/4, R@3 = 1.
     * image->text: I0 vs captions 0.8 0 0.6 1.0: t0 rank 1, t1 rank 3 -> 1;
     *   I1: 0.6 1 0.8 0: t2 rank 1; I2: 0.96 0.8 1.0 0.6: t3 rank 3.
     *   R@1 = 0, R@2 = 2/3, R@4 = 1. */
    const float img[] = {1, 0, 0, 1, 0.6f, 0.8f};
    const float txt[] = {0.8f, 0.6f, 0, 1, 0.6f, 0.8f, 1, 0};
    const size_t ti[] = {0, 0, 1, 2};
    size_t t2i[4], i2t[3];
    float scratch[4];
    ev_caption_ranks(img, 3, txt, 4, ti, 2, t2i, i2t, scratch);
    CHECK(t2i[0] == 1 && t2i[1] == 2 && t2i[2] == 1 && t2i[3] == 1);
    CHECK(i2t[0] == 1 && i2t[1] == 1 && i2t[2] == 3);
    CHECKN(ev_recall_at(t2i, 4, 1), 0.0);
    CHECKN(ev_recall_at(t2i, 4, 2), 0.75);
    CHECKN(ev_recall_at(t2i, 4, 3), 1.0);
    CHECKN(ev_recall_at(i2t, 3, 1), 0.0);
    CHECKN(ev_recall_at(i2t, 3, 2), 2.0 / 3);
    CHECKN(ev_recall_at(i2t, 3, 4), 1.0);
    CHECKN(ev_recall_at(i2t, 0, 4), 0.0);
    /* Chance with 2, 1, 1 captions (M = 4, N = 3):
     * K=1: t2i 1/3; i2t per image 1 - (4-c)/4 = 1/2, 1/4, 1/4 -> mean 1/3.
     * K=2: t2i 2/3; image of 2: 1 - (2/4)(1/3) = 5/6, of 1: 1 - (3/4)(2/3) = 1/2
     *      -> mean (5/6 + 1/2 + 1/2) / 3 = 11/18.
     * K=5 (> M): every image hits: 1; t2i min(5,3)/3 = 1. */
    const size_t cpi[] = {2, 1, 1};
    double a, b;
    ev_captions_chance(cpi, 3, 1, &a, &b);
    CHECKN(a, 1.0 / 3);
    CHECKN(b, 1.0 / 3);
    ev_captions_chance(cpi, 3, 2, &a, &b);
    CHECKN(a, 2.0 / 3);
    CHECKN(b, 11.0 / 18);
    ev_captions_chance(cpi, 3, 5, &a, &b);
    CHECKN(a, 1.0);
    CHECKN(b, 1.0);
}

static void test_vectors(void)
{
    float v[] = {3, 4};
    CHECK(ev_normalize(v, 2) == 0);
    CHECKN(v[0], 0.6);
    CHECKN(v[1], 0.8);
    float z[] = {0, 0};
    CHECK(ev_normalize(z, 2) == -1);
    CHECKN(ev_dot(v, v, 2), 1.0);
}

int main(void)
{
    test_binary();
    test_graded();
    test_no_relevant_and_mean();
    test_k_beyond_library();
    test_ties_and_duplicates();
    test_percentiles();
    test_zeroshot();
    test_captions();
    test_vectors();
    return test_finish();
}
