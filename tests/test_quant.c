/*
 * test_quant.c - compressed vectors: kernels, encoders, the compressed scan.
 *
 *  - every int8 / popcount kernel this CPU supports (each ISA level) against
 *    the scalar reference, exactly (integer results): lengths 64..576,
 *    1..64 rows (the 4-row groups and the remainder), extreme codes and
 *    queries (no 16-bit saturation);
 *  - encoders: int8 codes reconstruct the centred vector within half a
 *    step; estimates track the exact inner products (int8 within 2% of
 *    their spread, bit coarsely, and better with the rotation, which must
 *    preserve inner products); padding is zero;
 *  - qscan_search with every candidate re-scored equals topk_search exactly
 *    (slots and scores) with bitmap filters, offsets and min_score, and at
 *    every ISA level; recall@10 floors on CLIP-like clustered data with
 *    fixed seeds (bench/clipgen.h): int8 >= 0.99, bit (rotated) and PCA
 *    int8 above their own floors;
 *  - bad arguments fail cleanly.
 */
#include "../bench/clipgen.h"
#include "search/qdot.h"
#include "search/qscan.h"
#include "search/quant.h"
#include "search/topk.h"
#include "common/util.h"
#include "testutil.h"

#include <math.h>

static uint64_t rs = 0x1234567887654321ull;
static uint64_t rnd(void)
{
    rs ^= rs >> 12; rs ^= rs << 25; rs ^= rs >> 27;
    return rs * 0x2545F4914F6CDD1Dull;
}

/* ------------------------------------------------------------ kernels */

static void test_kernels(void)
{
    static const size_t lens[] = {64, 128, 512, 576};
    static const size_t nrows[] = {1, 3, 4, 5, 7, 63, 64};
    int8_t *x = cdx_alloc_aligned(64 * 576, 1);
    uint8_t *q = cdx_alloc_aligned(576, 1);
    int32_t ref[64], got[64];
    uint32_t bref[64], bgot[64];
    for (int lv = QDOT_SCALAR; lv <= QDOT_AVX512; lv++) {
        const qdot_kernels *k = qdot_at((qdot_level)lv);
        if (!k) {
            printf("kernel level %d not supported by this CPU: skipped\n", lv);
            continue;
        }
        printf("kernels %s\n", k->name);
        for (int mode = 0; mode < 3; mode++)
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
                for (size_t ni = 0; ni < sizeof nrows / sizeof *nrows; ni++) {
                    size_t len = lens[li], n = nrows[ni];
                    for (size_t i = 0; i < n * len; i++)
                        x[i] = mode == 0 ? (int8_t)((int)(rnd() % 255) - 127) : mode == 1 ? 127 : -127;
                    for (size_t i = 0; i < len; i++) q[i] = mode == 0 ? (uint8_t)(rnd() % 128) : 127;
                    qdot_i8_ref(q, x, n, len, ref);
                    k->i8(q, x, n, len, got);
                    int same = 1;
                    for (size_t r = 0; r < n; r++) same &= ref[r] == got[r];
                    CHECKF(same, "%s i8 len %zu rows %zu mode %d", k->name, len, n, mode);
                    if (mode == 1) CHECK(ref[0] == 127 * 127 * (int32_t)len);
                    size_t words = len == 576 ? 16 : 8;   /* bit rows of 512 or 1024 bits */
                    uint64_t pl[4 * 16];
                    for (size_t i = 0; i < 4 * words; i++) pl[i] = mode == 1 ? ~0ull : rnd();
                    qdot_bit_ref(pl, (const uint64_t *)x, n, words, bref);
                    k->bit(pl, (const uint64_t *)x, n, words, bgot);
                    same = 1;
                    for (size_t r = 0; r < n; r++) same &= bref[r] == bgot[r];
                    CHECKF(same, "%s bit words %zu rows %zu mode %d", k->name, words, n, mode);
                }
    }
    cdx_free_aligned(x);
    cdx_free_aligned(q);
}

/* ------------------------------------------------------------ data */

typedef struct dataset {
    int dim;
    uint64_t n;
    float *rows, *queries;
    int nq;
    cdx_rows src;
} dataset;

static void make_data(dataset *d, uint64_t n, int dim, int nq, uint64_t seed)
{
    clipgen *g = clipgen_new(dim, 64, seed);
    d->dim = dim;
    d->n = n;
    d->nq = nq;
    d->rows = cdx_alloc_aligned(n * (size_t)dim, sizeof(float));
    d->queries = malloc((size_t)nq * (size_t)dim * sizeof(float));
    for (uint64_t i = 0; i < n; i++) clipgen_row(g, i, d->rows + i * (size_t)dim);
    for (int i = 0; i < nq; i++) clipgen_query(g, (uint64_t)i, d->queries + (size_t)i * dim);
    d->src = cdx_rows_array(d->rows, n, dim, (size_t)dim * sizeof(float));
    clipgen_free(g);
}

static void free_data(dataset *d)
{
    cdx_free_aligned(d->rows);
    free(d->queries);
}

typedef struct codes {
    uint8_t *buf;
    qcodes_view v;
} codes;

static void make_codes(codes *c, const quant_model *m, quant_kind kind, const cdx_rows *src)
{
    size_t cb = quant_code_bytes(kind, m->cdim), bb = QSCAN_BLOCK * (cb + sizeof(quant_aux));
    uint64_t nb = (src->count + QSCAN_BLOCK - 1) / QSCAN_BLOCK;
    c->buf = cdx_alloc_aligned(nb * bb + 1, 1);
    CHECK(qcodes_encode_rows(m, kind, src, 0, src->count, c->buf) == CDX_OK);
    qcodes_view v = {kind, c->buf, src->count, cb, bb};
    c->v = v;
}

/* ------------------------------------------------------------ encoders */

static double dotd(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void test_encoders(void)
{
    dataset d;
    make_data(&d, 2000, 200, 8, 3);   /* 200: not a multiple of 64, nor a power of two */
    double bit_err_plain = 0;
    for (int rot = 0; rot < 2; rot++) {
        quant_model *m = NULL;
        CHECK(quant_model_fit(&d.src, 1000, 0, rot, &m) == CDX_OK);
        if (!m) continue;
        CHECK(m->cdim == (rot ? 256 : 200));
        for (int kind = QUANT_I8; kind <= QUANT_BIT; kind++) {
            codes c;
            make_codes(&c, m, (quant_kind)kind, &d.src);
            quant_query *qq = NULL;
            CHECK(quant_query_new(m, (quant_kind)kind, &qq) == CDX_OK);
            double err = 0, spread = 0;
            int npairs = 0, pad_ok = 1;
            for (int qi = 0; qi < d.nq; qi++) {
                const float *q = d.queries + (size_t)qi * d.dim;
                quant_query_set(qq, m, q);
                double qm = dotd(q, m->mean, d.dim);
                for (uint64_t r = 0; r < d.n; r += 7) {
                    const uint8_t *code = qcodes_code(&c.v, r);
                    const quant_aux *a = qcodes_aux(&c.v, r);
                    float est;
                    if (kind == QUANT_I8) {
                        int32_t dv;
                        qdot_i8_ref(qq->u8, (const int8_t *)code, 1, qq->len, &dv);
                        est = quant_estimate_i8(qq, dv, a);
                        for (size_t i = (size_t)m->cdim; i < c.v.code_bytes; i++) pad_ok &= code[i] == 0;
                    } else {
                        uint32_t w;
                        qdot_bit_ref(qq->planes, (const uint64_t *)code, 1, qq->len, &w);
                        est = quant_estimate_bit(qq, w, a);
                    }
                    double exact = dotd(q, d.rows + r * (size_t)d.dim, d.dim) - qm;
                    err += fabs(est - exact);
                    spread += fabs(exact);
                    npairs++;
                }
            }
            err /= npairs;
            spread /= npairs;
            printf("%s rot=%d: mean |estimate - exact| = %.5f (mean |exact| %.4f)\n",
                   quant_kind_name((quant_kind)kind), rot, err, spread);
            CHECK(pad_ok);
            if (kind == QUANT_I8) CHECKF(err < 0.02 * spread, "int8 error %.5f", err);
            else CHECKF(err < spread, "bit error %.5f", err);   /* ~|r|/sqrt(dim): coarse */
            if (kind == QUANT_BIT && !rot) bit_err_plain = err;
            if (kind == QUANT_BIT && rot) CHECKF(err < bit_err_plain, "rotation does not help bits");
            quant_query_free(qq);
            cdx_free_aligned(c.buf);
        }
        /* int8 reconstruction: |s*c_i - r_i| <= s/2 on the unrotated model. */
        if (!rot) {
            const float *x = d.rows + 5 * (size_t)d.dim;
            uint8_t code[256];
            quant_aux a;
            float *scratch = malloc(quant_encode_scratch(m, 1) * sizeof(float));
            quant_encode_batch(m, QUANT_I8, &x, 1, code, sizeof code, &a, scratch);
            int ok = 1, sum = 0;
            for (int i = 0; i < d.dim; i++) {
                float r = x[i] - m->mean[i];
                ok &= fabsf(a.f * (float)(int8_t)code[i] - r) <= a.f * 0.5001f;
                sum += (int8_t)code[i];
            }
            CHECK(ok);
            CHECK(sum == a.n);
            free(scratch);
        }
        quant_model_free(m);
    }
    free_data(&d);
}

/* ------------------------------------------------------------ scan */

static int same_hits(const topk_hit *a, size_t na, const topk_hit *b, size_t nb)
{
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].slot != b[i].slot || a[i].score != b[i].score) return 0;
    return 1;
}

static void test_scan_exact(void)
{
    dataset d;
    make_data(&d, 3001, 96, 3, 5);
    quant_model *m = NULL;
    CHECK(quant_model_fit(&d.src, 5000, 0, 0, &m) == CDX_OK);
    uint64_t *bits = calloc(3001 / 64 + 1, sizeof *bits);
    for (uint64_t s = 0; s < 3001; s++)
        if (rnd() % 3 == 0) bits[s / 64] |= 1ull << (s % 64);
    for (int kind = QUANT_I8; kind <= QUANT_BIT; kind++) {
        codes c;
        make_codes(&c, m, (quant_kind)kind, &d.src);
        for (int lv = QDOT_SCALAR; lv <= QDOT_AVX512; lv++) {
            if (!qdot_at((qdot_level)lv)) continue;
            for (int cfg = 0; cfg < 4; cfg++) {
                qscan_params qp = qscan_default_params();
                qp.kernels = qdot_at((qdot_level)lv);
                qp.topk.k = cfg == 3 ? 5000 : 10;
                qp.topk.offset = cfg == 1 ? 7 : 0;
                qp.topk.n_threads = cfg == 2 ? 1 : 2;
                if (cfg == 2) { qp.topk.allow = bits; qp.topk.allow_nbits = 3001; }
                if (cfg == 1) qp.topk.min_score = 0.1f;
                qp.rescore = QSCAN_MAX_RESCORE;   /* every candidate: must equal exact */
                topk_hit h1[3 * 5000], h2[3 * 5000];
                size_t n1[3], n2[3];
                CHECK(qscan_search(&c.v, m, &d.src, d.queries, 3, &qp, h1, n1) == CDX_OK);
                CHECK(topk_search(&d.src, d.queries, 3, &qp.topk, h2, n2) == CDX_OK);
                for (int i = 0; i < 3; i++)
                    CHECKF(same_hits(h1 + (size_t)i * qp.topk.k, n1[i], h2 + (size_t)i * qp.topk.k, n2[i]),
                           "%s level %d cfg %d query %d: %zu vs %zu hits", quant_kind_name((quant_kind)kind),
                           lv, cfg, i, n1[i], n2[i]);
                if (cfg == 2)
                    for (size_t i = 0; i < n1[0]; i++) CHECK(bits[h1[i].slot / 64] >> (h1[i].slot % 64) & 1);
            }
        }
        /* bad arguments */
        qscan_params qp = qscan_default_params();
        topk_hit h[10];
        size_t nh;
        qp.rescore = 0;
        CHECK(qscan_search(&c.v, m, &d.src, d.queries, 1, &qp, h, &nh) == CDX_ERR_INVALID_ARG);
        qp.rescore = 4;
        qcodes_view bad = c.v;
        bad.code_bytes += 64;
        CHECK(qscan_search(&bad, m, &d.src, d.queries, 1, &qp, h, &nh) == CDX_ERR_INVALID_ARG);
        bad = c.v;
        bad.count = d.n + 1;
        CHECK(qscan_search(&bad, m, &d.src, d.queries, 1, &qp, h, &nh) == CDX_ERR_INVALID_ARG);
        float qn[96];
        memcpy(qn, d.queries, sizeof qn);
        qn[3] = NAN;
        CHECK(qscan_search(&c.v, m, &d.src, qn, 1, &qp, h, &nh) == CDX_ERR_INVALID_ARG);
        cdx_free_aligned(c.buf);
    }
    free(bits);
    quant_model_free(m);
    free_data(&d);
}

static double recall_at10(const codes *c, const quant_model *m, const dataset *d, size_t rescore)
{
    qscan_params qp = qscan_default_params();
    qp.rescore = rescore;
    topk_params tp = topk_default_params();
    topk_hit *h1 = malloc((size_t)d->nq * 10 * sizeof *h1), *h2 = malloc((size_t)d->nq * 10 * sizeof *h2);
    size_t *n1 = malloc((size_t)d->nq * sizeof *n1), *n2 = malloc((size_t)d->nq * sizeof *n2);
    CHECK(qscan_search(&c->v, m, &d->src, d->queries, (size_t)d->nq, &qp, h1, n1) == CDX_OK);
    CHECK(topk_search(&d->src, d->queries, (size_t)d->nq, &tp, h2, n2) == CDX_OK);
    double hit = 0;
    for (int q = 0; q < d->nq; q++)
        for (size_t i = 0; i < n1[q]; i++)
            for (size_t j = 0; j < n2[q]; j++)
                if (h1[(size_t)q * 10 + i].slot == h2[(size_t)q * 10 + j].slot) { hit++; break; }
    free(h1); free(h2); free(n1); free(n2);
    return hit / (10.0 * d->nq);
}

static void test_recall(void)
{
    dataset d;
    make_data(&d, 40000, 256, 60, 11);
    struct { const char *name; quant_kind kind; int pca, rot; size_t rescore; double floor; } cases[] = {
        {"int8 x2", QUANT_I8, 0, 0, 2, 0.99},
        {"int8 x4", QUANT_I8, 0, 0, 4, 0.99},
        {"bit-rot x30", QUANT_BIT, 0, 1, 30, 0.90},
        {"pca64-int8 x10", QUANT_I8, 64, 0, 10, 0.85},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        quant_model *m = NULL;
        cdx_result r = quant_model_fit(&d.src, 20000, cases[i].pca, cases[i].rot, &m);
        if (r == CDX_ERR_UNSUPPORTED) {
            printf("%s: skipped (%s)\n", cases[i].name, cdx_last_error());
            continue;
        }
        CHECK(r == CDX_OK);
        if (!m) continue;
        codes c;
        make_codes(&c, m, cases[i].kind, &d.src);
        double rc = recall_at10(&c, m, &d, cases[i].rescore);
        printf("recall@10 %-16s %.4f (floor %.2f)\n", cases[i].name, rc, cases[i].floor);
        CHECKF(rc >= cases[i].floor, "%s recall %.4f", cases[i].name, rc);
        cdx_free_aligned(c.buf);
        quant_model_free(m);
    }
    free_data(&d);
}

int main(void)
{
    test_kernels();
    test_encoders();
    test_scan_exact();
    test_recall();
    return test_finish();
}
