/*
 * test_ann.c - the approximate index (search/ann_ivf.c, search/ann_file.c)
 * on small generated CLIP-like sets with fixed seeds:
 *  - the int8 kernel equals its reference bit for bit;
 *  - recall@10 against the exact scan stays above a floor, and reaches ~1
 *    when every list is probed; scores are exact; filters and min_score;
 *  - the sign-code first stage and the two-level assignment keep recall;
 *    its fast-scan kernel gives the same estimates at every instruction-set
 *    level, close to the true scores (dims from 100 to 1100);
 *  - the file round-trips; a damaged or torn segment keeps the intact
 *    prefix; a damaged header is an error; kill -9 while a file is being
 *    written or appended leaves a file that loads (old or new prefix).
 */
#include "common/cpu.h"
#include "search/ann_file.h"
#include "search/ann_ivf.h"
#include "search/topk.h"
#include "testutil.h"

#include "../bench/ann_synth.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 20000
#define D 128
#define NQ 100
#define K 10

static float *base, *queries;
static cdx_rows src;
static topk_hit truth[NQ * K];

static void gen(void)
{
    ann_synth g;
    if (synth_init(&g, D, N, 42)) exit(1);
    base = malloc((size_t)N * D * sizeof(float));
    queries = malloc((size_t)NQ * D * sizeof(float));
    for (size_t i = 0; i < N; i++) synth_image(&g, i, base + i * D);
    for (size_t i = 0; i < NQ; i++) synth_query(&g, i, queries + i * D);
    synth_free(&g);
    src = cdx_rows_array(base, N, D, D * sizeof(float));
    topk_params tp = topk_default_params();
    tp.k = K;
    size_t nh[NQ];
    if (topk_search(&src, queries, NQ, &tp, truth, nh) != CDX_OK) exit(1);
}

static void test_kernel(void)
{
    int8_t a[512], b[512];
    uint64_t s = 7;
    for (int t = 0; t < 50; t++) {
        for (int i = 0; i < 512; i++) {
            a[i] = (int8_t)((int)(synth_unif(&s) * 255) - 127);
            b[i] = (int8_t)((int)(synth_unif(&s) * 255) - 127);
        }
        if (t == 0) memset(a, 127, sizeof a), memset(b, -127, sizeof b);   /* extremes */
        size_t n = 32 * (size_t)(1 + t % 16);
        CHECK(ann_i8dot(a, b, n) == ann_i8dot_ref(a, b, n));
    }
    memset(a, 127, 64);
    memset(b, 127, 64);
    CHECK(ann_i8dot(a, b, 64) == 64 * 127 * 127);
}

static ann_ivf *build(int nlist)
{
    ann_ivf_train_params tp = ann_ivf_default_train_params();
    tp.nlist = nlist;
    ann_ivf *ix = NULL;
    CHECK(ann_ivf_train(&src, N, &tp, &ix) == CDX_OK);
    for (uint64_t first = 0; first < N; first += 7000) {   /* several segments */
        ann_segment seg;
        size_t n = N - first < 7000 ? N - first : 7000;
        CHECK(ann_ivf_encode(ix, &src, first, n, &seg) == CDX_OK);
        CHECK(ann_ivf_insert(ix, &seg) == CDX_OK);
        ann_segment_free(&seg);
    }
    CHECK(ann_ivf_count(ix) == N);
    return ix;
}

/* The allow bitmap (odd slots only), probes 16, bits as given: every hit is
 * an allowed slot. */
static void check_allow_odd(const ann_ivf *ix, int bits)
{
    uint64_t *allow = calloc(N / 64 + 1, 8);
    for (uint64_t s = 1; s < N; s += 2) allow[s / 64] |= 1ull << (s % 64);
    ann_search_params p = ann_default_search_params();
    p.k = K;
    p.probes = 16;
    p.bits = bits;
    p.allow = allow;
    p.allow_nbits = N;
    topk_hit h[K];
    size_t n = 0;
    CHECK(ann_ivf_search(ix, &src, queries, &p, h, &n, NULL) == CDX_OK && n == K);
    for (size_t i = 0; i < n; i++) CHECK(h[i].slot % 2 == 1);
    free(allow);
}

/* Search modes beyond the default (sign-code first stage, partial float32
 * re-scoring), set by the tests of those modes. */
static ann_search_params mode = {.k = K};

static double recall(const ann_ivf *ix, int probes, int check_scores)
{
    int found = 0;
    for (int q = 0; q < NQ; q++) {
        ann_search_params p = ann_default_search_params();
        p.k = K;
        p.probes = probes;
        p.bits = mode.bits;
        p.bits_keep = mode.bits_keep;
        p.rescore = mode.rescore;
        p.prefetch = mode.prefetch;
        p.n_threads = q % 2 ? 2 : 1;
        topk_hit h[K];
        size_t n = 0;
        CHECK(ann_ivf_search(ix, &src, queries + (size_t)q * D, &p, h, &n, NULL) == CDX_OK);
        CHECK(n == K);
        for (size_t i = 0; i < n; i++) {
            for (int j = 0; j < K; j++)
                if (truth[q * K + j].slot == h[i].slot) found++;
            if (i && check_scores) CHECK(!topk_hit_better(&h[i], &h[i - 1]));
        }
        if (check_scores) {   /* scores are the exact float32 scores */
            for (size_t i = 0; i < n; i++) {
                topk_hit one;
                size_t n1;
                topk_params tp = topk_default_params();
                tp.k = 1;
                uint64_t bits[N / 64 + 1] = {0};
                bits[h[i].slot / 64] |= 1ull << (h[i].slot % 64);
                tp.allow = bits;
                tp.allow_nbits = N;
                CHECK(topk_search(&src, queries + (size_t)q * D, 1, &tp, &one, &n1) == CDX_OK);
                CHECK(n1 == 1 && one.score == h[i].score);
            }
        }
    }
    return (double)found / (NQ * K);
}

static void test_recall(void)
{
    ann_ivf *ix = build(64);
    double r8 = recall(ix, 8, 1), r16 = recall(ix, 16, 0), rall = recall(ix, 64, 0);
    printf("recall@10: probes 8 %.3f, 16 %.3f, all %.3f\n", r8, r16, rall);
    CHECKF(r8 >= 0.80, "%.3f", r8);
    CHECKF(r16 >= 0.92, "%.3f", r16);
    CHECKF(r16 >= r8, "%.3f < %.3f", r16, r8);
    CHECKF(rall >= 0.99, "%.3f", rall);   /* int8 candidates + exact re-scoring */
    check_allow_odd(ix, ann_default_search_params().bits);
    ann_search_params p = ann_default_search_params();
    p.k = K;
    p.probes = 16;
    p.min_score = truth[4].score;   /* the exact 5th score of query 0 */
    topk_hit h[K];
    size_t n = 0;
    CHECK(ann_ivf_search(ix, &src, queries, &p, h, &n, NULL) == CDX_OK);
    CHECK(n <= 5 && n >= 1);
    for (size_t i = 0; i < n; i++) CHECK(h[i].score >= truth[4].score);
    ann_ivf_free(ix);
}

/* The sign-code first stage (1 bit per dim of the rotated residual, the
 * best bits_keep re-scored with int8, then float32) keeps the recall of
 * the int8 scan within a small margin, returns exact scores, honours the
 * allow bitmap; re-scoring only the best `rescore` in float32 too. */
static void test_sign_codes(void)
{
    ann_ivf *ix = build(64);
    mode = (ann_search_params){.k = K, .bits = -1};
    double i16 = recall(ix, 16, 0);
    mode.bits = 1;
    mode.bits_keep = 400;   /* of ~5000 codes scanned */
    double b16 = recall(ix, 16, 0), b8 = recall(ix, 8, 0), ball = recall(ix, 64, 0);
    printf("sign codes, keep 400: recall@10 probes 8 %.3f, 16 %.3f (int8 alone %.3f), all %.3f\n", b8, b16, i16, ball);
    CHECKF(b16 >= i16 - 0.03, "%.3f against %.3f", b16, i16);
    CHECKF(b16 >= 0.90 && b16 >= b8, "%.3f, %.3f", b16, b8);
    CHECKF(ball >= 0.97, "%.3f", ball);
    mode.bits_keep = 100;   /* a first stage keeping too few must cost recall (it is used) */
    double few = recall(ix, 64, 0);
    CHECKF(few < ball, "%.3f against %.3f", few, ball);
    mode.bits_keep = 400;
    mode.rescore = K;      /* only the int8 top-10 re-scored in float32 */
    mode.prefetch = 1;
    double r10 = recall(ix, 16, 1);
    printf("sign codes, float32 re-scoring of the int8 top 10 only: %.3f\n", r10);
    CHECKF(r10 >= b16 - 0.03, "%.3f against %.3f", r10, b16);
    check_allow_odd(ix, 1);
    mode = (ann_search_params){.k = K};
    ann_ivf_free(ix);
}

/* The sign-code estimates of every row of every list of an index over
 * dim-d synthetic rows: identical at each instruction-set level (the table
 * sums are integers), and near the true scores: returns the mean absolute
 * error over nq queries. */
static double sign_estimates(int d, size_t n, int nlist, int nq)
{
    ann_synth g;
    CHECK(synth_init(&g, d, n, 7 + (uint64_t)d) == 0);
    float *x = malloc(n * (size_t)d * sizeof(float)), *q = malloc((size_t)nq * d * sizeof(float));
    for (size_t i = 0; i < n; i++) synth_image(&g, i, x + i * d);
    for (int i = 0; i < nq; i++) synth_query(&g, (size_t)i, q + (size_t)i * d);
    synth_free(&g);
    cdx_rows r = cdx_rows_array(x, n, d, (size_t)d * sizeof(float));
    ann_ivf_train_params tp = ann_ivf_default_train_params();
    tp.nlist = nlist;
    ann_ivf *ix = NULL;
    ann_segment seg;
    CHECK(ann_ivf_train(&r, n, &tp, &ix) == CDX_OK);
    CHECK(ann_ivf_encode(ix, &r, 0, n, &seg) == CDX_OK);
    CHECK(ann_ivf_insert(ix, &seg) == CDX_OK);
    ann_segment_free(&seg);
    float *e0 = malloc(n * sizeof(float)), *e1 = malloc(n * sizeof(float));
    uint64_t *sl = malloc(n * sizeof(uint64_t));
    double err = 0;
    size_t cnt = 0, differ = 0;
    cdx_isa saved = cdx_cpu_cap();
    for (int qi = 0; qi < nq; qi++) {
        const float *qq = q + (size_t)qi * d;
        for (int l = 0; l < nlist; l++) {
            cdx_cpu_set_cap(CDX_ISA_SCALAR);
            int m0 = ann_ivf_sign_estimates(ix, qq, (uint32_t)l, e0, sl);
            cdx_cpu_set_cap(saved);
            int m1 = ann_ivf_sign_estimates(ix, qq, (uint32_t)l, e1, NULL);
            CHECK(m0 >= 0 && m0 == m1);
            for (int i = 0; i < m0; i++) {
                differ += e0[i] != e1[i];
                double t = 0;
                for (int k = 0; k < d; k++) t += (double)qq[k] * x[sl[i] * d + k];
                err += fabs(e0[i] - t);
                cnt++;
            }
        }
    }
    CHECK(cnt == (size_t)nq * n);
    CHECKF(differ == 0, "%zu estimates differ between the scalar and the %s kernel", differ,
           cdx_isa_name(cdx_cpu_level()));
    CHECK(ann_ivf_sign_estimates(ix, q, (uint32_t)nlist, e0, NULL) == -1);
    free(e0);
    free(e1);
    free(sl);
    free(x);
    free(q);
    ann_ivf_free(ix);
    return err / (double)cnt;
}

static void test_sign_kernel(void)
{
    /* 1100: 276 groups, two runs of the u16 sums; 512 in 2 lists of ~5000
     * rows: blocks past 256 KB, grown as mappings of their own */
    static const int dims[] = {100, 128, 512, 1100}, rows[] = {3000, 3000, 10000, 3000}, lists[] = {8, 8, 2, 8};
    for (int i = 0; i < 4; i++) {
        double e = sign_estimates(dims[i], (size_t)rows[i], lists[i], 5);
        printf("sign-code estimates, dim %d: mean |estimate - score| %.4f (%s kernel)\n", dims[i], e,
               cdx_isa_name(cdx_cpu_level()));
        CHECKF(e < 0.05, "dim %d: %.4f", dims[i], e);
    }
}

/* Indexes of >= 1024 lists assign rows through groups of centroids: the
 * list differs from the exact assignment for few rows, the groups are the
 * same for an index made from the same centroids (as after a load), and
 * recall holds. */
static void test_groups(void)
{
    ann_ivf *ix = build(1024);
    ann_ivf *copy = NULL;
    CHECK(ann_ivf_from_centroids(D, 1024, ann_ivf_centroids(ix), &copy) == CDX_OK);
    ann_segment a, b, c;
    CHECK(ann_ivf_encode(ix, &src, 0, 5000, &a) == CDX_OK);
    CHECK(ann_ivf_encode(copy, &src, 0, 5000, &c) == CDX_OK);
    ann_ivf_set_group_probes(ix, 0);
    CHECK(ann_ivf_encode(ix, &src, 0, 5000, &b) == CDX_OK);
    size_t differ = 0, same_copy = 0;
    for (size_t i = 0; i < 5000; i++) {
        differ += a.lists[i] != b.lists[i];
        same_copy += a.lists[i] == c.lists[i];
    }
    printf("grouped assignment differs from the exact one for %zu of 5000 rows\n", differ);
    CHECKF(differ < 5000 / 20, "%zu", differ);
    CHECK(same_copy == 5000);
    double r = recall(ix, 256, 0);
    printf("1024 lists, grouped assignment, probes 256: recall@10 %.3f\n", r);
    CHECKF(r >= 0.90, "%.3f", r);
    ann_segment_free(&a);
    ann_segment_free(&b);
    ann_segment_free(&c);
    ann_ivf_free(copy);
    ann_ivf_free(ix);
}

static void same_results(const ann_ivf *a, const ann_ivf *b)
{
    for (int q = 0; q < 10; q++) {
        ann_search_params p = ann_default_search_params();
        p.probes = 8;
        topk_hit ha[K], hb[K];
        size_t na = 0, nb = 0;
        CHECK(ann_ivf_search(a, &src, queries + (size_t)q * D, &p, ha, &na, NULL) == CDX_OK);
        CHECK(ann_ivf_search(b, &src, queries + (size_t)q * D, &p, hb, &nb, NULL) == CDX_OK);
        CHECK(na == nb);
        for (size_t i = 0; i < na && i < nb; i++) CHECK(ha[i].slot == hb[i].slot && ha[i].score == hb[i].score);
    }
}

static void write_file(const char *path, ann_ivf *ix, uint64_t rows, int seg_rows)
{
    ann_file_header h = {D, ann_ivf_nlist(ix), rows, {1, 2, 3}};
    ann_file_writer *w = NULL;
    CHECK(ann_file_create(path, &h, ix, &w) == CDX_OK);
    for (uint64_t first = 0; first < rows; first += seg_rows) {
        ann_segment seg;
        size_t n = rows - first < (uint64_t)seg_rows ? rows - first : (size_t)seg_rows;
        CHECK(ann_ivf_encode(ix, &src, first, n, &seg) == CDX_OK);
        CHECK(ann_file_write_segment(w, &seg) == CDX_OK);
        ann_segment_free(&seg);
    }
    CHECK(ann_file_commit(w) == CDX_OK);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c = 0;
    CHECK(pread(fd, &c, 1, off) == 1);
    c ^= 0x5a;
    CHECK(pwrite(fd, &c, 1, off) == 1);
    close(fd);
}

static void test_file(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ann.cdxi", dir);
    ann_ivf *ix = build(32);
    write_file(path, ix, N, 5000);
    ann_file_header h;
    ann_file_report rep;
    ann_ivf *back = NULL;
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_OK);
    CHECK(rep.rows == N && !rep.tail_dropped && rep.valid_bytes == rep.file_bytes);
    CHECK(h.nlist == 32 && h.trained_rows == N && h.vec_id[2] == 3);
    same_results(ix, back);
    ann_ivf_free(back);
    CHECK(ann_file_load(path, D + 32, &h, &back, &rep) == CDX_ERR_FORMAT);   /* other dim */

    /* a damaged byte in the third segment keeps the first two */
    struct stat st;
    stat(path, &st);
    uint64_t seg_bytes = 32 + 5000 * (8 + ann_ivf_code_bytes(D));
    uint64_t start = 128 + 32 * D * 4;
    flip_byte(path, (off_t)(start + 2 * seg_bytes + 100));
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_OK);
    CHECK(rep.rows == 10000 && rep.tail_dropped && rep.valid_bytes == start + 2 * seg_bytes);
    /* extending from the prefix repairs it */
    uint64_t vb = rep.valid_bytes;
    for (uint64_t first = 10000; first < N; first += 5000) {
        ann_segment seg;
        CHECK(ann_ivf_encode(back, &src, first, 5000, &seg) == CDX_OK);
        CHECK(ann_file_append(path, vb, &seg, D, &vb) == CDX_OK);
        CHECK(ann_ivf_insert(back, &seg) == CDX_OK);
        ann_segment_free(&seg);
    }
    ann_ivf_free(back);
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_OK);
    CHECK(rep.rows == N && !rep.tail_dropped);
    same_results(ix, back);
    ann_ivf_free(back);

    /* a torn tail (truncated mid-segment) */
    CHECK(truncate(path, (off_t)(st.st_size - 1000)) == 0);
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_OK);
    CHECK(rep.rows == 15000 && rep.tail_dropped);
    ann_ivf_free(back);

    /* header and centroid damage are errors (the caller rebuilds) */
    flip_byte(path, 20);
    back = NULL;
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_ERR_FORMAT && back == NULL);
    flip_byte(path, 20);
    flip_byte(path, 128 + 64);
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_ERR_FORMAT);
    unlink(path);
    CHECK(ann_file_load(path, D, &h, &back, &rep) == CDX_ERR_NOT_FOUND);

    /* kill -9 while writing a new file (rename makes it all or nothing) and
     * while appending (the valid prefix survives) */
    write_file(path, ix, 3000, 3000);
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (round % 2 == 0) {
                for (;;) write_file(path, ix, N, 500);
            }
            ann_ivf *lx = NULL;
            ann_file_header hh;
            ann_file_report rr;
            if (ann_file_load(path, D, &hh, &lx, &rr) != CDX_OK) _exit(3);
            uint64_t v = rr.valid_bytes;
            for (;;) {
                if (ann_ivf_count(lx) + 500 > N) _exit(0);
                ann_segment seg;
                if (ann_ivf_encode(lx, &src, ann_ivf_count(lx), 500, &seg) != CDX_OK) _exit(4);
                if (ann_file_append(path, v, &seg, D, &v) != CDX_OK) _exit(5);
                if (ann_ivf_insert(lx, &seg) != CDX_OK) _exit(6);
                ann_segment_free(&seg);
            }
        }
        struct timespec ts = {0, 20000000L + round * 7000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
        ann_ivf *lx = NULL;
        cdx_result r = ann_file_load(path, D, &h, &lx, &rep);
        CHECKF(r == CDX_OK, "round %d: %s", round, cdx_last_error());
        if (r == CDX_OK) {
            CHECK(rep.rows >= 3000 && rep.rows <= N);
            ann_ivf_free(lx);
        }
    }
    ann_ivf_free(ix);
}

int main(void)
{
    gen();
    test_kernel();
    test_recall();
    test_sign_codes();
    test_sign_kernel();
    test_groups();
    char dir[] = "/tmp/test_ann_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_file(dir);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(base);
    free(queries);
    return test_finish();
}
