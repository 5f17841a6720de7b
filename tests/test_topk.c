/*
 * test_topk.c - the inner-product kernels and the exact top-k search.
 *
 *  - every SIMD kernel this CPU supports against the reference kernel (max
 *    error relative to sum |q_i r_i|), over dims that are and are not
 *    multiples of the vector width, 1..4 queries, odd row counts, and rows
 *    ending exactly at a PROT_NONE guard page (no read past dim);
 *  - topk_search against a brute-force sort of the same kernel's scores
 *    (exact equality of slots and scores), for n = 0..5000, k = 0, k > n,
 *    offsets, bitmap / callback / both filters, min-score, 1..3 threads,
 *    batched queries, padded strides and block gaps that must not be read;
 *  - ties (duplicate vectors) come back by slot ascending for any thread
 *    count; selective filters still return k results; bad arguments fail.
 */
#include "common/cpu.h"
#include "search/dot.h"
#include "search/topk.h"
#include "testutil.h"

#include <sys/mman.h>
#include <unistd.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static float frand(void) { return (float)((rnd() >> 40) * (2.0 / 16777216.0) - 1.0); }

static void rand_unit(float *v, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++) { v[d] = frand(); s += (double)v[d] * v[d]; }
    s = sqrt(s);
    for (int d = 0; d < dim; d++) v[d] = (float)(v[d] / s);
}

static const char *kernel_names[] = {"scalar", "avx2", "avx512"};

/* ------------------------------------------------------------ kernels */

static void test_kernels(void)
{
    static const int dims[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 512, 768, 1000};
    const dot_kernel *ref = dot_kernel_ref();
    for (size_t ki = 1; ki < 3; ki++) {
        const dot_kernel *k = dot_kernel_by_name(kernel_names[ki]);
        if (!k) { printf("kernel %s: not supported by this CPU, skipped\n", kernel_names[ki]); continue; }
        double worst = 0;
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
            int dim = dims[di];
            size_t nrows = 13, stride = (size_t)dim + 5;
            float *rows = malloc(nrows * stride * 4), *qs = malloc(4 * (size_t)dim * 4);
            float got[4 * 16], want[4 * 16];
            for (size_t i = 0; i < nrows * stride; i++) rows[i] = frand();
            for (size_t i = 0; i < 4 * (size_t)dim; i++) qs[i] = frand();
            const float *qp[4] = {qs, qs + dim, qs + 2 * dim, qs + 3 * dim};
            for (size_t nq = 1; nq <= 4; nq++) {
                for (size_t nr = 1; nr <= nrows; nr += 3) {
                    k->tile(qp, nq, rows, nr, stride, (size_t)dim, got, 16);
                    ref->tile(qp, nq, rows, nr, stride, (size_t)dim, want, 16);
                    for (size_t q = 0; q < nq; q++)
                        for (size_t r = 0; r < nr; r++) {
                            double mag = 0;
                            for (int d = 0; d < dim; d++) mag += fabs((double)qp[q][d] * rows[r * stride + d]);
                            double err = fabs((double)got[q * 16 + r] - want[q * 16 + r]) / (mag + 1e-30);
                            if (err > worst) worst = err;
                            CHECKF(err < 1e-6, "%s dim %d nq %zu row %zu: %g vs %g",
                                   k->name, dim, nq, r, got[q * 16 + r], want[q * 16 + r]);
                        }
                }
            }
            free(rows);
            free(qs);
        }
        printf("kernel %s: max relative error vs reference %.3g\n", k->name, worst);

        /* Rows and queries ending exactly at a guard page: no read past dim. */
        long pg = sysconf(_SC_PAGESIZE);
        uint8_t *mem = mmap(NULL, (size_t)pg * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(mem != MAP_FAILED);
        if (mem == MAP_FAILED) continue;
        CHECK(mprotect(mem + 2 * pg, (size_t)pg, PROT_NONE) == 0);
        for (int dim = 1; dim <= 40; dim++) {
            float *row = (float *)(mem + 2 * pg) - dim, *q = (float *)(mem + pg) - dim;
            for (int d = 0; d < dim; d++) { row[d] = frand(); q[d] = frand(); }
            const float *qp[1] = {q};
            float a, b;
            k->tile(qp, 1, row, 1, (size_t)dim, (size_t)dim, &a, 1);
            ref->tile(qp, 1, row, 1, (size_t)dim, (size_t)dim, &b, 1);
            CHECKF(fabsf(a - b) < 1e-5f, "%s guard dim %d", k->name, dim);
        }
        munmap(mem, (size_t)pg * 3);
    }
    CHECK(dot_kernel_by_name("nonsense") == NULL);
    CHECK(dot_kernel_best() != NULL);
    printf("best kernel: %s\n", dot_kernel_best()->name);
    /* the engine-wide cap ($CLIPDEX_MAX_ISA, common/cpu.h) bounds the choice;
     * a level the CPU lacks is never used ($CLIPDEX_SIMD would pick lower) */
    for (int isa = CDX_ISA_SCALAR; isa < CDX_ISA_COUNT && !getenv("CLIPDEX_SIMD"); isa++) {
        cdx_cpu_set_cap((cdx_isa)isa);
        cdx_isa want = (cdx_isa)isa < cdx_cpu_detected() ? (cdx_isa)isa : cdx_cpu_detected();
        CHECKF(!strcmp(dot_kernel_best()->name, cdx_isa_name(want)), "cap %s: best %s",
               cdx_isa_name((cdx_isa)isa), dot_kernel_best()->name);
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
}

/* ------------------------------------------------------------ brute force */

typedef struct dataset {
    float *mem;        /* whole allocation */
    cdx_rows src;
} dataset;

/* n unit vectors of dim; row_pad extra floats per row; gap floats between
 * blocks of block_rows filled with a huge value that must never be scored. */
static dataset make_data(uint64_t n, int dim, int row_pad, uint32_t block_rows, size_t gap)
{
    dataset ds;
    size_t stride = (size_t)dim + (size_t)row_pad;
    size_t block = block_rows * stride + gap;
    size_t nblocks = (size_t)((n + block_rows - 1) / block_rows);
    size_t total = nblocks * block + 1;
    ds.mem = malloc(total * 4);
    for (size_t i = 0; i < total; i++) ds.mem[i] = 1000.0f;
    for (uint64_t s = 0; s < n; s++) {
        float *row = ds.mem + (s / block_rows) * block + (s % block_rows) * stride;
        rand_unit(row, dim);
    }
    ds.src.base = ds.mem;
    ds.src.count = n;
    ds.src.dim = dim;
    ds.src.row_stride = stride * 4;
    ds.src.block_rows = block_rows;
    ds.src.block_stride = block * 4;
    return ds;
}

static int odd_only(void *ctx, uint64_t slot) { (void)ctx; return (int)(slot & 1); }

static int cmp_hit(const void *a, const void *b)
{
    return topk_hit_better(a, b) ? -1 : topk_hit_better(b, a) ? 1 : 0;
}

/* Expected page for query q with the same kernel. */
static size_t brute(const cdx_rows *s, const float *q, const topk_params *p,
                    const dot_kernel *k, topk_hit *out)
{
    topk_hit *all = malloc((s->count + 1) * sizeof *all);
    size_t m = 0;
    for (uint64_t i = 0; i < s->count; i++) {
        if (p->allow && (i >= p->allow_nbits || !((p->allow[i / 64] >> (i % 64)) & 1))) continue;
        if (p->allow_fn && !p->allow_fn(p->allow_ctx, i)) continue;
        float v;
        const float *qp[1] = {q};
        k->tile(qp, 1, cdx_rows_at(s, i), 1, s->row_stride / 4, (size_t)s->dim, &v, 1);
        if (!(v >= p->min_score)) continue;
        all[m].slot = i;
        all[m].score = v;
        m++;
    }
    qsort(all, m, sizeof *all, cmp_hit);
    size_t got = 0;
    for (size_t i = p->offset; i < m && got < p->k; i++) out[got++] = all[i];
    free(all);
    return got;
}

static int compare_search(const cdx_rows *s, const float *qs, size_t nq, const topk_params *p,
                          const char *what)
{
    const dot_kernel *k = p->kernel ? p->kernel : dot_kernel_best();
    size_t kk = p->k ? p->k : 1;
    topk_hit *got = malloc(nq * kk * sizeof *got), *want = malloc(kk * sizeof *want);
    size_t *ng = malloc((nq + 1) * sizeof *ng);
    int bad = 0;
    cdx_result rc = topk_search(s, qs, nq, p, got, ng);
    CHECKF(rc == CDX_OK, "%s: %s", what, cdx_last_error());
    for (size_t q = 0; q < nq && rc == CDX_OK; q++) {
        size_t nw = brute(s, qs + q * (size_t)s->dim, p, k, want);
        if (ng[q] != nw) bad = 1;
        for (size_t i = 0; i < nw && i < ng[q] && !bad; i++)
            if (got[q * p->k + i].slot != want[i].slot || got[q * p->k + i].score != want[i].score) bad = 1;
        CHECKF(!bad, "%s: query %zu: got %zu hits, want %zu (n=%llu k=%zu off=%zu thr=%d)", what, q,
               ng[q], nw, (unsigned long long)s->count, p->k, p->offset, p->n_threads);
        if (bad) break;
    }
    free(got); free(want); free(ng);
    return !bad;
}

static void test_against_brute_force(void)
{
    static const uint64_t ns[] = {0, 1, 5, 63, 64, 65, 1000, 5000};
    static const int dims[] = {17, 64, 100};
    int cases = 0;
    for (size_t ki = 0; ki < 3; ki++) {
        const dot_kernel *kern = dot_kernel_by_name(kernel_names[ki]);
        if (!kern) continue;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
                uint64_t n = ns[ni];
                int dim = dims[di];
                /* Alternate: plain array, padded rows, vecfile-like block gaps. */
                int layout = (int)((ni + di + ki) % 3);
                dataset ds = layout == 0 ? make_data(n, dim, 0, 64, 0)
                           : layout == 1 ? make_data(n, dim, 16 - dim % 16, 64, 0)
                                         : make_data(n, dim, 3, 128, 37);
                size_t nq = 5;
                float *qs = malloc(nq * (size_t)dim * 4);
                for (size_t q = 0; q < nq; q++) rand_unit(qs + q * (size_t)dim, dim);
                uint64_t words = (n + 64) / 64 + 1;
                uint64_t *bm = calloc(words, 8);
                for (uint64_t i = 0; i < n; i++) if (rnd() % 10 == 0) bm[i / 64] |= 1ull << (i % 64);

                static const size_t ks[] = {0, 1, 10, 70};
                for (size_t kx = 0; kx < 4; kx++)
                    for (int variant = 0; variant < 6; variant++) {
                        topk_params p = topk_default_params();
                        p.kernel = kern;
                        p.k = ks[kx];
                        p.n_threads = 1 + (variant % 3);
                        if (variant == 1) p.offset = 3;
                        if (variant == 2) { p.allow = bm; p.allow_nbits = n ? n : 1; }
                        if (variant == 3) { p.allow_fn = odd_only; p.min_score = 0.05f; }
                        if (variant == 4) { p.allow = bm; p.allow_nbits = n / 2 + 1; p.allow_fn = odd_only; p.offset = 1; }
                        if (variant == 5) { p.offset = (size_t)n; p.k = ks[kx] + 2; }
                        char what[128];
                        snprintf(what, sizeof what, "%s n=%llu dim=%d layout=%d k=%zu variant=%d",
                                 kern->name, (unsigned long long)n, dim, layout, p.k, variant);
                        compare_search(&ds.src, qs, variant == 0 ? nq : 1 + (size_t)variant % 2, &p, what);
                        cases++;
                    }
                free(bm);
                free(qs);
                free(ds.mem);
            }
    }
    printf("brute-force comparisons: %d cases\n", cases);

    /* Many queries in one scan (several kernel tiles) on 2 threads. */
    dataset ds = make_data(3000, 64, 0, 64, 0);
    size_t nq = 11;
    float *qs = malloc(nq * 64 * 4);
    for (size_t q = 0; q < nq; q++) rand_unit(qs + q * 64, 64);
    topk_params p = topk_default_params();
    p.k = 25;
    p.n_threads = 2;
    compare_search(&ds.src, qs, nq, &p, "batched 11 queries");
    free(qs);
    free(ds.mem);
}

/* ------------------------------------------------------------ semantics */

static void test_ties_and_filters(void)
{
    /* 2000 rows, each a copy of one of 3 vectors: massive exact ties. */
    int dim = 33;
    uint64_t n = 2000;
    float base[3][33], *rows = malloc(n * (size_t)dim * 4), q[33];
    for (int i = 0; i < 3; i++) rand_unit(base[i], dim);
    for (uint64_t s = 0; s < n; s++) memcpy(rows + s * (size_t)dim, base[(s * 7) % 3], (size_t)dim * 4);
    memcpy(q, base[1], sizeof q);
    cdx_rows src = cdx_rows_array(rows, n, dim, (size_t)dim * 4);
    topk_hit ref[50], got[50];
    size_t nref = 0, ngot = 0;
    topk_params p = topk_default_params();
    p.k = 50;
    p.n_threads = 1;
    CHECK(topk_search(&src, q, 1, &p, ref, &nref) == CDX_OK && nref == 50);
    for (size_t i = 1; i < nref; i++)
        CHECKF(ref[i].score == ref[0].score && ref[i].slot > ref[i - 1].slot, "tie order at %zu", i);
    CHECK(ref[0].slot == 1);   /* (s*7)%3 == 1 first at s = 1 */
    for (int t = 2; t <= 4; t++) {
        p.n_threads = t;
        CHECK(topk_search(&src, q, 1, &p, got, &ngot) == CDX_OK && ngot == nref);
        int same = 1;
        for (size_t i = 0; i < ngot; i++) same &= got[i].slot == ref[i].slot && got[i].score == ref[i].score;
        CHECKF(same, "ties differ with %d threads", t);
    }

    /* A selective filter still fills k: 7 allowed slots out of 2000. */
    uint64_t bm[32] = {0};
    static const uint64_t allowed[7] = {0, 5, 130, 640, 641, 1500, 1999};
    for (int i = 0; i < 7; i++) bm[allowed[i] / 64] |= 1ull << (allowed[i] % 64);
    p.allow = bm;
    p.allow_nbits = n;
    p.k = 10;
    p.n_threads = 2;
    CHECK(topk_search(&src, q, 1, &p, got, &ngot) == CDX_OK && ngot == 7);
    int all_allowed = 1;
    for (size_t i = 0; i < ngot; i++) {
        int ok = 0;
        for (int j = 0; j < 7; j++) ok |= got[i].slot == allowed[j];
        all_allowed &= ok;
    }
    CHECK(all_allowed);
    p.k = 5;
    CHECK(topk_search(&src, q, 1, &p, got, &ngot) == CDX_OK && ngot == 5);

    /* min_score: only the copies of q (score ~1) pass 0.99. */
    p = topk_default_params();
    p.k = 50;
    p.min_score = 0.99f;
    CHECK(topk_search(&src, q, 1, &p, got, &ngot) == CDX_OK && ngot == 50);
    p.k = 1000;
    topk_hit *many = malloc(1000 * sizeof *many);
    CHECK(topk_search(&src, q, 1, &p, many, &ngot) == CDX_OK);
    uint64_t copies = 0;
    for (uint64_t s = 0; s < n; s++) copies += (s * 7) % 3 == 1;
    CHECKF(ngot == copies, "min_score: %zu hits, %llu copies", ngot, (unsigned long long)copies);
    free(many);

    /* Bad arguments. */
    float nanq[33];
    memcpy(nanq, q, sizeof nanq);
    nanq[5] = NAN;
    p = topk_default_params();
    CHECK(topk_search(&src, nanq, 1, &p, got, &ngot) == CDX_ERR_INVALID_ARG);
    p.min_score = NAN;
    CHECK(topk_search(&src, q, 1, &p, got, &ngot) == CDX_ERR_INVALID_ARG);
    p = topk_default_params();
    cdx_rows bad = src;
    bad.block_rows = 10;
    CHECK(topk_search(&bad, q, 1, &p, got, &ngot) == CDX_ERR_INVALID_ARG);
    bad = src;
    bad.row_stride = 8;
    CHECK(topk_search(&bad, q, 1, &p, got, &ngot) == CDX_ERR_INVALID_ARG);
    p.offset = SIZE_MAX;
    CHECK(topk_search(&src, q, 1, &p, got, &ngot) == CDX_ERR_INVALID_ARG);
    /* k far beyond n: the heaps are capped at n, every row comes back. */
    p = topk_default_params();
    p.k = (size_t)1 << 40;
    p.n_threads = 2;
    topk_hit *all = malloc(n * sizeof *all);
    CHECK(topk_search(&src, q, 1, &p, all, &ngot) == CDX_OK && ngot == n);
    free(all);
    free(rows);
}

int main(void)
{
    test_kernels();
    test_against_brute_force();
    test_ties_and_filters();
    return test_finish();
}
