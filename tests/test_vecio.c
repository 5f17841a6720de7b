/*
 * test_vecio.c - vectors in and out: the .npy parser against hostile
 * headers, float16 widening, topk's in-scan counts (weighted, filtered,
 * several queries) against brute force, and on a clip-tiny library (dim 64):
 * import of float32/float16 .npy with JSONL/CSV metadata, rejection of a
 * dimension mismatch and of malformed npy/CSV/JSON/vectors with nothing
 * imported, resume after an interruption, `total` against a brute-force
 * count with filters and min_score, several queries in one call against
 * single calls, raw-vector search, paged listing, add_buffer_ex's created
 * flag, and export -> import into a new library giving identical vectors
 * and search results.  The .npy files are written here.
 */
#include "clipdex.h"
#include "search/topk.h"
#include "ingest/source.h"
#include "store/npy.h"
#include "store/vecfile.h"
#include "testutil.h"

#include <unistd.h>

static char g_dir[64];

/* ---------------------------------------------------------------- helpers */

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

/* A version-1.0 .npy with the given header dict and payload. */
static void write_npy_raw(const char *path, const char *dict, const void *data, size_t len)
{
    char hdr[512];
    size_t dl = strlen(dict);
    size_t total = 10 + dl + 1;
    size_t pad = (64 - total % 64) % 64;
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    size_t hl = dl + pad + 1;
    hdr[8] = (char)(hl & 255);
    hdr[9] = (char)(hl >> 8);
    memcpy(hdr + 10, dict, dl);
    memset(hdr + 10 + dl, ' ', pad);
    hdr[10 + dl + pad] = '\n';
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(hdr, 1, 10 + hl, f);
    if (len) fwrite(data, 1, len, f);
    fclose(f);
}

static void write_npy_f32(const char *path, const float *v, size_t n, int dim)
{
    char dict[160];
    snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", n, dim);
    write_npy_raw(path, dict, v, n * (size_t)dim * 4);
}

static void write_npy_f16(const char *path, const float *v, size_t n, int dim)
{
    char dict[160];
    snprintf(dict, sizeof dict, "{'descr': '<f2', 'fortran_order': False, 'shape': (%zu, %d), }", n, dim);
    uint16_t *h = malloc(n * (size_t)dim * 2);
    for (size_t i = 0; i < n * (size_t)dim; i++) {
        _Float16 x = (_Float16)v[i];
        memcpy(&h[i], &x, 2);
    }
    write_npy_raw(path, dict, h, n * (size_t)dim * 2);
    free(h);
}

static uint64_t g_rng = 88172645463325252ull;
static float frand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *random_vectors(size_t n, int dim)
{
    float *v = malloc(n * (size_t)dim * sizeof *v);
    for (size_t i = 0; i < n * (size_t)dim; i++) v[i] = frand();
    return v;
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* ---------------------------------------------------------------- npy parser */

static cdx_result parse_file(const char *name, const char *dict, size_t payload)
{
    char path[256];
    path_of(path, sizeof path, name);
    char *zeros = calloc(payload ? payload : 1, 1);
    write_npy_raw(path, dict, zeros, payload);
    free(zeros);
    npy_file f;
    cdx_result r = npy_open(path, &f);
    if (!r) npy_close(&f);
    return r;
}

static void test_npy_parser(void)
{
    const char *ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    CHECK(parse_file("ok.npy", ok, 48) == CDX_OK);
    CHECK(parse_file("ok2.npy", "{\"shape\": (3, 4), \"fortran_order\": False, \"descr\": \"<f2\"}", 24) == CDX_OK);
    CHECK(parse_file("oned.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 16) == CDX_OK);
    CHECK(parse_file("short.npy", ok, 47) == CDX_ERR_FORMAT);           /* truncated data */
    CHECK(parse_file("long.npy", ok, 52) == CDX_ERR_FORMAT);            /* trailing bytes */
    CHECK(parse_file("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 96) == CDX_ERR_UNSUPPORTED);
    CHECK(parse_file("be.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }", 48) == CDX_ERR_UNSUPPORTED);
    CHECK(parse_file("fo.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", 48) == CDX_ERR_UNSUPPORTED);
    CHECK(parse_file("3d.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 4), }", 48) == CDX_ERR_FORMAT);
    CHECK(parse_file("dup.npy", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)}", 48) == CDX_ERR_FORMAT);
    CHECK(parse_file("extra.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1}", 48) == CDX_ERR_FORMAT);
    CHECK(parse_file("noshape.npy", "{'descr': '<f4', 'fortran_order': False}", 48) == CDX_ERR_FORMAT);
    CHECK(parse_file("huge.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 4)}", 48) == CDX_ERR_FORMAT);
    CHECK(parse_file("ovf.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", 48) == CDX_ERR_TOO_LARGE);
    CHECK(parse_file("dim0.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0)}", 0) == CDX_ERR_FORMAT);
    CHECK(parse_file("garbage.npy", "{'descr': '<f4' 'fortran_order': False, 'shape': (3, 4)}", 48) == CDX_ERR_FORMAT);
    CHECK(parse_file("unterminated.npy", "{'descr': '<f4, 'fortran_order': False, 'shape': (3, 4)}", 48) == CDX_ERR_FORMAT);

    /* raw header bytes: magic, version, header length beyond the file */
    npy_file f;
    size_t off;
    uint8_t b[64] = "\x93NUMPX\x01\x00\x10\x00";
    CHECK(npy_parse_header("t", b, sizeof b, sizeof b, &f, &off) == CDX_ERR_FORMAT);
    memcpy(b, "\x93NUMPY\x04\x00\x10\x00", 10);
    CHECK(npy_parse_header("t", b, sizeof b, sizeof b, &f, &off) == CDX_ERR_UNSUPPORTED);
    memcpy(b, "\x93NUMPY\x01\x00\xff\xff", 10);
    CHECK(npy_parse_header("t", b, sizeof b, sizeof b, &f, &off) == CDX_ERR_FORMAT);
    memcpy(b, "\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12);
    CHECK(npy_parse_header("t", b, sizeof b, sizeof b, &f, &off) == CDX_ERR_FORMAT);
    /* versions 2.0 and 3.0 use a 4-byte header length */
    const char *d = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }    \n";
    for (int v = 2; v <= 3; v++) {
        uint8_t buf[128];
        size_t dl = strlen(d);
        memcpy(buf, "\x93NUMPY", 6);
        buf[6] = (uint8_t)v;
        buf[7] = 0;
        buf[8] = (uint8_t)dl;
        buf[9] = buf[10] = buf[11] = 0;
        memcpy(buf + 12, d, dl);
        CHECK(npy_parse_header("t", buf, 12 + dl, 12 + dl + 8, &f, &off) == CDX_OK && f.rows == 1 &&
              f.dim == 2 && off == 12 + dl);
    }
    /* an empty file and a directory */
    char path[256];
    path_of(path, sizeof path, "empty.npy");
    write_bytes(path, "", 0);
    CHECK(npy_open(path, &f) == CDX_ERR_FORMAT);
    CHECK(npy_open(g_dir, &f) != CDX_OK);

    /* float16 widening */
    CHECK(npy_half_to_float(0x3c00) == 1.0f);
    CHECK(npy_half_to_float(0xc000) == -2.0f);
    CHECK(npy_half_to_float(0x0001) == ldexpf(1.0f, -24));   /* smallest subnormal */
    CHECK(npy_half_to_float(0x7bff) == 65504.0f);
    CHECK(isinf(npy_half_to_float(0x7c00)) && isnan(npy_half_to_float(0x7e00)));
    for (int i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        _Float16 x;
        memcpy(&x, &h, 2);
        float want = (float)x, got = npy_half_to_float(h);
        if (!(want == got || (isnan(want) && isnan(got)))) {
            CHECKF(0, "half 0x%04x: %g != %g", i, (double)got, (double)want);
            break;
        }
    }
}

/* ---------------------------------------------------------------- topk counts */

static void test_topk_counts(void)
{
    const int dim = 24, nq = 5;
    const uint64_t n = 3000;
    float *rows = random_vectors(n, dim);
    float *q = random_vectors((size_t)nq, dim);
    uint64_t bits[3000 / 64 + 1] = {0};
    uint32_t *w = calloc(n, sizeof *w);
    for (uint64_t s = 0; s < n; s++) {
        if (s % 3) bits[s / 64] |= 1ull << (s % 64);
        w[s] = (uint32_t)(1 + s % 4);
    }
    cdx_rows src = cdx_rows_array(rows, n, dim, (size_t)dim * 4);
    for (int variant = 0; variant < 4; variant++) {
        topk_params p = topk_default_params();
        uint64_t counts[5];
        p.k = variant == 3 ? 0 : 7;     /* counts alone, no page */
        p.min_score = variant == 0 ? -INFINITY : 0.5f;
        p.allow = variant >= 1 ? bits : NULL;
        p.allow_nbits = n;
        p.weight = variant >= 2 ? w : NULL;
        p.counts = counts;
        p.n_threads = 2;
        topk_hit hits[5 * 7];
        size_t nh[5];
        CHECK(topk_search(&src, q, (size_t)nq, &p, hits, nh) == CDX_OK);
        for (int i = 0; i < nq; i++) {
            uint64_t want = 0;
            for (uint64_t s = 0; s < n; s++) {
                if (p.allow && !(bits[s / 64] >> (s % 64) & 1)) continue;
                float sc;
                /* the kernel's own score of the row (a double reference can
                 * differ in the last bit at the threshold) */
                const float *qp = q + (size_t)i * dim;
                dot_kernel_best()->tile(&qp, 1, rows + s * (size_t)dim, 1, (size_t)dim, (size_t)dim, &sc, 1);
                if (sc >= p.min_score) want += p.weight ? w[s] : 1;
            }
            CHECKF(counts[i] == want, "variant %d query %d: count %llu, brute force %llu", variant, i,
                   (unsigned long long)counts[i], (unsigned long long)want);
            /* the count is the same for a single-query scan */
            uint64_t one;
            topk_params p1 = p;
            p1.counts = &one;
            topk_hit h1[7];
            size_t n1;
            CHECK(topk_search(&src, q + (size_t)i * dim, 1, &p1, h1, &n1) == CDX_OK && one == counts[i]);
            if (p.k) {
                CHECK(n1 == nh[i]);
                for (size_t j = 0; j < n1 && j < nh[i]; j++)
                    CHECK(h1[j].slot == hits[i * 7 + j].slot && h1[j].score == hits[i * 7 + j].score);
            }
        }
    }
    free(rows);
    free(q);
    free(w);
}

/* ---------------------------------------------------------------- library */

#define DIM 64
#define N1 300     /* float32 import, JSONL */
#define N2 120     /* float16 import, CSV */

static cdx_library *open_lib(const char *sub, int create, const char *model)
{
    char d[256];
    path_of(d, sizeof d, sub);
    cdx_library_params p = cdx_library_default_params();
    p.writable = 1;
    p.create = create;
    p.model_dir = model;
    p.load_model = model != NULL;
    cdx_library *lib = NULL;
    if (cdx_library_open(d, &p, &lib)) fprintf(stderr, "open %s: %s\n", d, cdx_last_error());
    return lib;
}

/* JSONL: rows 0..n-1 under /imp/a/ (even) and /imp/b/ (odd); every 10th row
 * repeats the vector of the row before (a duplicate content). */
static void write_jsonl(const char *path, size_t n, const char *bad_line)
{
    FILE *f = fopen(path, "w");
    for (size_t i = 0; i < n; i++) {
        if (bad_line && i == 3) fprintf(f, "%s\n", bad_line);
        else
            fprintf(f, "{\"path\": \"/imp/%c/img%04zu.jpg\", \"width\": %zu, \"height\": 10, "
                       "\"format\": \"%s\", \"mtime\": %zu, \"caption\": \"x\"}\n",
                    i % 2 ? 'b' : 'a', i, i, i % 3 ? "jpeg" : "png", 1000 + i);
    }
    fclose(f);
}

static void write_csv(const char *path, size_t n, int bad_row)
{
    FILE *f = fopen(path, "w");
    fprintf(f, "caption,url,format\n");
    for (size_t i = 0; i < n; i++) {
        if ((int)i == bad_row) fprintf(f, "\"unterminated,https://x.example/%zu.jpg,png\n", i);
        else fprintf(f, "\"a \"\"cat\"\", sitting\",https://x.example/%zu.jpg,PNG\n", i);
    }
    fclose(f);
}

static void info_counts(cdx_library *lib, uint64_t *images, uint64_t *vectors)
{
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK);
    *images = info.images;
    *vectors = info.vectors;
}

static uint64_t vecfile_bytes(const char *sub)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s/vectors.cdxv", g_dir, sub);
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* A bad input must leave the library exactly as it was. */
static void expect_rejected(cdx_library *lib, const char *vec, const char *meta, cdx_result want,
                            const char *what)
{
    uint64_t i0, v0, i1, v1;
    info_counts(lib, &i0, &v0);
    uint64_t b0 = vecfile_bytes("lib");
    cdx_import_params ip = cdx_import_default_params();
    ip.batch_size = 16;
    cdx_import_stats st;
    cdx_result r = cdx_library_import(lib, vec, meta, &ip, &st);
    CHECKF(r == want, "%s: got %s (%s), want %s", what, cdx_result_str(r), cdx_last_error(), cdx_result_str(want));
    fprintf(stderr, "  (expected) %s: %s\n", what, cdx_last_error());
    info_counts(lib, &i1, &v1);
    CHECKF(i1 == i0 && v1 == v0 && vecfile_bytes("lib") == b0, "%s: something was imported", what);
}

static cdx_cancel_flag g_cancel;
static void cancel_after_first(void *user, const cdx_import_stats *st)
{
    (void)user;
    if (st->rows > 0) atomic_store(&g_cancel, 1);
}

typedef struct scored {
    int64_t id;
    float score;
} scored;

/* Brute force over the listing: images passing prefix/format and min_score. */
static uint64_t brute_total(cdx_library *lib, const float *q, const char *prefix, const char *format,
                            float min_score)
{
    cdx_image_record *recs = malloc(CDX_LIST_MAX * sizeof *recs);
    size_t n;
    uint64_t total = 0, count = 0;
    float v[DIM];
    CHECK(cdx_library_list_images(lib, 0, CDX_LIST_MAX, recs, &n, &total) == CDX_OK && n == total);
    for (size_t i = 0; i < n; i++) {
        if (prefix && strncmp(recs[i].path, prefix, strlen(prefix))) continue;
        if (format && strcmp(recs[i].format, format)) continue;
        CHECK(cdx_library_get_vector(lib, recs[i].id, v) == CDX_OK);
        /* the engine's own kernel (a double reference can differ in the
         * last bit exactly at the threshold) */
        float s;
        dot_kernel_best()->tile(&q, 1, v, 1, DIM, DIM, &s, 1);
        if (s >= min_score) count++;
    }
    free(recs);
    return count;
}

static void test_search_api(cdx_library *lib)
{
    float *q = random_vectors(4, DIM);
    for (int i = 0; i < 4; i++) CHECK(cdx_vector_normalize(q + i * DIM, DIM) == CDX_OK);
    const char *prefixes[] = {NULL, "/imp/a/", "https://"};
    const char *formats[] = {NULL, "jpeg", "png"};
    const float mins[] = {-2.0f, 0.05f, 0.2f};
    int cases = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int m = 0; m < 3; m++) {
                cdx_search_params sp = cdx_search_default_params();
                sp.k = 5;
                sp.offset = 2;
                sp.path_prefix = prefixes[a];
                sp.format = formats[b];
                sp.min_score = mins[m];
                cdx_hit hits[4 * 5];
                size_t nh[4];
                uint64_t totals[4];
                CHECK(cdx_library_search_vectors(lib, q, 4, &sp, hits, nh, totals) == CDX_OK);
                for (int i = 0; i < 4; i++) {
                    uint64_t want = brute_total(lib, q + i * DIM, prefixes[a], formats[b], mins[m]);
                    CHECKF(totals[i] == want, "prefix %s format %s min %g query %d: total %llu, brute %llu",
                           prefixes[a] ? prefixes[a] : "-", formats[b] ? formats[b] : "-", (double)mins[m],
                           i, (unsigned long long)totals[i], (unsigned long long)want);
                    cdx_hit one[5];
                    size_t n1;
                    uint64_t t1;
                    CHECK(cdx_library_search_vector(lib, q + i * DIM, &sp, one, &n1, &t1) == CDX_OK);
                    CHECK(n1 == nh[i] && t1 == totals[i]);
                    for (size_t j = 0; j < n1 && j < nh[i]; j++)
                        CHECK(one[j].id == hits[i * 5 + j].id && one[j].score == hits[i * 5 + j].score);
                    cases++;
                }
            }
    CHECK(cases == 108);
    /* raw search: any scale, same results; wrong dim refused */
    float raw[DIM];
    for (int j = 0; j < DIM; j++) raw[j] = q[j] * 7.5f;
    cdx_search_params sp = cdx_search_default_params();
    cdx_hit h1[10], h2[10];
    size_t n1, n2;
    uint64_t t1, t2;
    CHECK(cdx_library_search_raw(lib, raw, DIM, &sp, h1, &n1, &t1) == CDX_OK);
    CHECK(cdx_library_search_vector(lib, q, &sp, h2, &n2, &t2) == CDX_OK);
    CHECK(n1 == 10 && n2 == 10 && t1 == t2);
    for (size_t j = 0; j < 10; j++) CHECK(h1[j].id == h2[j].id && fabsf(h1[j].score - h2[j].score) < 1e-6f);
    CHECK(cdx_library_search_raw(lib, raw, DIM - 1, &sp, h1, &n1, &t1) == CDX_ERR_MISMATCH);
    float zero[DIM] = {0};
    CHECK(cdx_library_search_raw(lib, zero, DIM, &sp, h1, &n1, &t1) == CDX_ERR_INVALID_ARG);
    free(q);
}

static void test_listing(cdx_library *lib, uint64_t images)
{
    cdx_image_record *all = malloc(CDX_LIST_MAX * sizeof *all), page[7];
    size_t n = 0, got;
    uint64_t total = 0;
    CHECK(cdx_library_list_images(lib, 0, CDX_LIST_MAX, all, &n, &total) == CDX_OK && n == images && total == images);
    for (size_t i = 1; i < n; i++) CHECK(all[i].id > all[i - 1].id);
    size_t seen = 0;
    for (uint64_t off = 0;; off += 7) {
        CHECK(cdx_library_list_images(lib, off, 7, page, &got, NULL) == CDX_OK);
        for (size_t i = 0; i < got; i++, seen++)
            CHECK(seen < n && page[i].id == all[seen].id && !strcmp(page[i].path, all[seen].path));
        if (got < 7) break;
    }
    CHECK(seen == n);
    CHECK(cdx_library_list_images(lib, images + 5, 7, page, &got, &total) == CDX_OK && got == 0);
    CHECK(cdx_library_list_images(lib, 0, CDX_LIST_MAX + 1, all, &got, NULL) == CDX_ERR_INVALID_ARG);
    free(all);
}

/* Every image of a has a twin (same path) in b with a bit-identical vector. */
static void compare_libraries(cdx_library *a, cdx_library *b, uint64_t images)
{
    cdx_image_record *ra = malloc(CDX_LIST_MAX * sizeof *ra);
    size_t n;
    CHECK(cdx_library_list_images(a, 0, CDX_LIST_MAX, ra, &n, NULL) == CDX_OK && n == images);
    float va[DIM], vb[DIM];
    int same = 1;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (cdx_library_find(b, ra[i].path, &id) != CDX_OK) { same = 0; continue; }
        CHECK(cdx_library_get_vector(a, ra[i].id, va) == CDX_OK && cdx_library_get_vector(b, id, vb) == CDX_OK);
        if (memcmp(va, vb, sizeof va)) same = 0;
        cdx_image_record rb;
        CHECK(cdx_library_get_image(b, id, &rb) == CDX_OK && rb.width == ra[i].width &&
              rb.mtime == ra[i].mtime && !strcmp(rb.format, ra[i].format) && !strcmp(rb.sha256, ra[i].sha256));
    }
    CHECK(same);
    /* same search results (paths and scores) */
    float *q = random_vectors(3, DIM);
    for (int k = 0; k < 3; k++) {
        cdx_search_params sp = cdx_search_default_params();
        sp.k = 20;
        cdx_hit ha[20], hb[20];
        size_t na, nb;
        uint64_t ta, tb;
        CHECK(cdx_library_search_raw(a, q + k * DIM, DIM, &sp, ha, &na, &ta) == CDX_OK);
        CHECK(cdx_library_search_raw(b, q + k * DIM, DIM, &sp, hb, &nb, &tb) == CDX_OK);
        CHECK(na == nb && ta == tb);
        for (size_t j = 0; j < na && j < nb; j++) {
            cdx_image_record x, y;
            CHECK(cdx_library_get_image(a, ha[j].id, &x) == CDX_OK && cdx_library_get_image(b, hb[j].id, &y) == CDX_OK);
            CHECK(ha[j].score == hb[j].score);
            /* equal scores may list duplicates in another id order */
            if (strcmp(x.path, y.path)) CHECK(j + 1 < na && ha[j].score == ha[j + 1].score);
        }
    }
    free(q);
    free(ra);
}

static void test_library(const char *shared)
{
    char model[512], vec1[256], meta1[256], vec2[256], meta2[256], p[256], p2[256];
    snprintf(model, sizeof model, "%s/fixtures/clip-tiny", shared);
    cdx_library *lib = open_lib("lib", 1, model);
    CHECK(lib != NULL);
    if (!lib) return;
    float *v1 = random_vectors(N1, DIM);
    for (size_t i = 10; i < N1; i += 10) memcpy(v1 + i * DIM, v1 + (i - 1) * DIM, DIM * 4);
    float *v2 = random_vectors(N2, DIM);
    path_of(vec1, sizeof vec1, "v1.npy");
    path_of(meta1, sizeof meta1, "m1.jsonl");
    path_of(vec2, sizeof vec2, "v2.npy");
    path_of(meta2, sizeof meta2, "m2.csv");
    write_npy_f32(vec1, v1, N1, DIM);
    write_jsonl(meta1, N1, NULL);
    write_npy_f16(vec2, v2, N2, DIM);
    write_csv(meta2, N2, -1);

    /* rejected inputs: nothing imported */
    path_of(p, sizeof p, "dim.npy");
    write_npy_f32(p, v1, N1 / 2, DIM * 2);
    expect_rejected(lib, p, meta1, CDX_ERR_MISMATCH, "dimension mismatch");
    path_of(p, sizeof p, "hdr.npy");
    write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (300, 64, }", v1, N1 * DIM * 4);
    expect_rejected(lib, p, meta1, CDX_ERR_FORMAT, "malformed npy header");
    path_of(p, sizeof p, "few.npy");
    write_npy_f32(p, v1, N1 - 1, DIM);
    expect_rejected(lib, p, meta1, CDX_ERR_FORMAT, "row count mismatch");
    path_of(p, sizeof p, "nan.npy");
    float keep = v1[200 * DIM + 5];
    v1[200 * DIM + 5] = NAN;
    write_npy_f32(p, v1, N1, DIM);
    v1[200 * DIM + 5] = keep;
    expect_rejected(lib, p, meta1, CDX_ERR_FORMAT, "non-finite vector in a later batch");
    path_of(p, sizeof p, "bad.jsonl");
    write_jsonl(p, N1, "{\"path\": \"/imp/x.jpg\", ");
    expect_rejected(lib, vec1, p, CDX_ERR_FORMAT, "malformed JSON line");
    write_jsonl(p, N1, "{\"path\": \"/imp/x.jpg\", \"width\": \"wide\"}");
    expect_rejected(lib, vec1, p, CDX_ERR_FORMAT, "wrongly typed JSON field");
    write_jsonl(p, N1, "{\"caption\": \"no path\"}");
    expect_rejected(lib, vec1, p, CDX_ERR_FORMAT, "row without path or url");
    path_of(p2, sizeof p2, "bad.csv");
    write_csv(p2, N2, N2 - 5);
    expect_rejected(lib, vec2, p2, CDX_ERR_FORMAT, "unterminated CSV quote near the end");
    FILE *f = fopen(p2, "w");
    fprintf(f, "caption,format\nx,png\n");
    fclose(f);
    path_of(p, sizeof p, "one.npy");
    write_npy_f32(p, v1, 1, DIM);
    expect_rejected(lib, p, p2, CDX_ERR_FORMAT, "CSV without a path or url column");
    cdx_import_params ip = cdx_import_default_params();
    ip.model_fingerprint = "0000000000000000000000000000000000000000000000000000000000000000";
    cdx_import_stats st;
    CHECK(cdx_library_import(lib, vec1, meta1, &ip, &st) == CDX_ERR_MISMATCH);
    uint64_t imgs, vecs;
    info_counts(lib, &imgs, &vecs);
    CHECK(imgs == 0 && vecs == 0);

    /* interrupted import, then resume */
    ip = cdx_import_default_params();
    ip.batch_size = 64;
    ip.progress = cancel_after_first;
    ip.cancel = &g_cancel;
    CHECK(cdx_library_import(lib, vec1, meta1, &ip, &st) == CDX_OK);
    CHECKF(st.rows == 64 && st.added == 64 && st.duplicates == 6 && st.total_rows == N1,
           "rows %llu added %llu dups %llu", (unsigned long long)st.rows, (unsigned long long)st.added,
           (unsigned long long)st.duplicates);
    ip.progress = NULL;
    ip.cancel = NULL;
    CHECK(cdx_library_import(lib, vec1, meta1, &ip, &st) == CDX_OK);
    CHECKF(st.rows == N1 && st.unchanged == 64 && st.added == N1 - 64 && st.duplicates == (N1 / 10 - 1) - 6,
           "rows %llu unchanged %llu added %llu dups %llu", (unsigned long long)st.rows,
           (unsigned long long)st.unchanged, (unsigned long long)st.added, (unsigned long long)st.duplicates);
    info_counts(lib, &imgs, &vecs);
    CHECK(imgs == N1 && vecs == N1 - (N1 / 10 - 1));
    /* float16 + CSV */
    CHECK(cdx_library_import(lib, vec2, meta2, NULL, &st) == CDX_OK && st.added == N2);
    info_counts(lib, &imgs, &vecs);
    CHECK(imgs == N1 + N2);
    int64_t id;
    cdx_image_record rec;
    CHECK(cdx_library_find(lib, "https://x.example/7.jpg", &id) == CDX_OK &&
          cdx_library_get_image(lib, id, &rec) == CDX_OK && !strcmp(rec.format, "png"));
    float got[DIM], want[DIM];
    CHECK(cdx_library_get_vector(lib, id, got) == CDX_OK);
    for (int j = 0; j < DIM; j++) want[j] = (float)(_Float16)v2[7 * DIM + j];
    CHECK(cdx_vector_normalize(want, DIM) == CDX_OK);
    float err = 0;
    for (int j = 0; j < DIM; j++) err = fmaxf(err, fabsf(got[j] - want[j]));
    CHECKF(err < 1e-6f, "float16 row differs by %g", (double)err);
    CHECK(cdx_library_find(lib, "/imp/a/img0012.jpg", &id) == CDX_OK &&
          cdx_library_get_image(lib, id, &rec) == CDX_OK && rec.width == 12 && rec.height == 10 &&
          rec.mtime == 1012 && !strcmp(rec.format, "png"));
    /* the same path with another vector is updated, not added */
    path_of(p, sizeof p, "upd.npy");
    path_of(p2, sizeof p2, "upd.jsonl");
    write_npy_f32(p, v2, 1, DIM);
    f = fopen(p2, "w");
    fprintf(f, "{\"path\": \"/imp/a/img0000.jpg\"}\n");
    fclose(f);
    CHECK(cdx_library_import(lib, p, p2, NULL, &st) == CDX_OK && st.updated == 1 && st.added == 0);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);

    test_search_api(lib);
    test_listing(lib, N1 + N2);

    /* add_buffer_ex: created, then known */
    char img[512];
    snprintf(img, sizeof img, "%s/data/formats", shared);
    size_t len = 0;
    void *bytes = NULL;
    const char *cands[] = {"rocket.jpg", "horse.png", "coffee.png", "camera.png"};
    for (size_t i = 0; i < 4 && !bytes; i++) {
        char pp[700];
        snprintf(pp, sizeof pp, "%s/%s", img, cands[i]);
        bytes = test_read_file(pp, &len);
    }
    CHECK(bytes != NULL);
    if (bytes) {
        int64_t id1, id2;
        int c1 = -1, c2 = -1;
        CHECK(cdx_library_add_buffer_ex(lib, bytes, len, NULL, &id1, &c1) == CDX_OK && c1 == 1);
        CHECK(cdx_library_add_buffer_ex(lib, bytes, len, NULL, &id2, &c2) == CDX_OK && c2 == 0 && id2 == id1);
        CHECK(cdx_library_remove(lib, id1) == CDX_OK);
        free(bytes);
    }

    /* export -> import into a fresh library: identical vectors and results */
    char ev[256], em[256];
    path_of(ev, sizeof ev, "export.npy");
    path_of(em, sizeof em, "export.jsonl");
    uint64_t n_exp = 0;
    CHECK(cdx_library_export(lib, ev, em, &n_exp) == CDX_OK && n_exp == N1 + N2);
    npy_file nf;
    CHECK(npy_open(ev, &nf) == CDX_OK && nf.rows == N1 + N2 && nf.dim == DIM && nf.itemsize == 4);
    npy_close(&nf);
    cdx_library *lib2 = open_lib("lib2", 1, model);
    CHECK(lib2 != NULL);
    if (lib2) {
        cdx_library_info info;
        CHECK(cdx_library_get_info(lib, &info) == CDX_OK);
        ip = cdx_import_default_params();
        ip.model_fingerprint = info.model_fingerprint;
        CHECK(cdx_library_import(lib2, ev, em, &ip, &st) == CDX_OK && st.rows == N1 + N2);
        compare_libraries(lib, lib2, N1 + N2);
        CHECK(cdx_library_check(lib2, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
        cdx_library_close(lib2);
    }
    cdx_library_close(lib);
    free(v1);
    free(v2);
}

/* A crash between the vector append and the catalog commit leaves the
 * batch's vectors unreferenced at the end of the file; the next import
 * adopts them (same key = same vector) instead of appending them again. */
static void test_orphan_adoption(const char *model)
{
    cdx_library *lib = open_lib("orph", 1, model);
    CHECK(lib != NULL);
    if (!lib) return;
    float *v = random_vectors(20, DIM);
    char vec[256], meta[256], vec10[256], meta10[256], vf_path[256];
    path_of(vec, sizeof vec, "orph20.npy");
    path_of(meta, sizeof meta, "orph20.jsonl");
    path_of(vec10, sizeof vec10, "orph10.npy");
    path_of(meta10, sizeof meta10, "orph10.jsonl");
    path_of(vf_path, sizeof vf_path, "orph/vectors.cdxv");
    write_npy_f32(vec, v, 20, DIM);
    write_jsonl(meta, 20, NULL);
    write_npy_f32(vec10, v, 10, DIM);
    write_jsonl(meta10, 10, NULL);
    cdx_import_stats st;
    CHECK(cdx_library_import(lib, vec10, meta10, NULL, &st) == CDX_OK && st.added == 10);
    cdx_library_close(lib);
    /* the "crashed" batch: rows 10..19 appended with their keys, never
     * committed */
    vecfile_params vp = vecfile_default_params();
    vp.writable = 1;
    vp.dim = DIM;
    vecfile *vf = NULL;
    CHECK(vecfile_open(vf_path, &vp, &vf, NULL) == CDX_OK);
    if (!vf) return;
    float rows[10 * DIM];
    uint8_t keys[10][32];
    uint8_t buf[sizeof "clipdex-vector-v1" + DIM * 4];
    for (int i = 0; i < 10; i++) {
        float *r = rows + i * DIM;
        memcpy(r, v + (size_t)(10 + i) * DIM, DIM * 4);
        double n2 = 0;
        for (int d = 0; d < DIM; d++) n2 += (double)r[d] * r[d];
        double inv = 1.0 / sqrt(n2);
        for (int d = 0; d < DIM; d++) r[d] = (float)(r[d] * inv);
        memcpy(buf, "clipdex-vector-v1", sizeof "clipdex-vector-v1");
        memcpy(buf + sizeof "clipdex-vector-v1", r, DIM * 4);
        char hex[65];
        source_sha256(buf, sizeof buf, keys[i], hex);
    }
    CHECK(vecfile_append(vf, rows, (const uint8_t(*)[32])keys, 10, NULL) == CDX_OK);
    CHECK(vecfile_count(vf) == 20);   /* 10 committed + 10 orphans */
    vecfile_close(vf);
    lib = open_lib("orph", 1, NULL);
    CHECK(lib != NULL);
    if (!lib) return;
    CHECK(cdx_library_import(lib, vec, meta, NULL, &st) == CDX_OK && st.unchanged == 10 && st.added == 10);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0 && rep.images == 20 &&
          rep.vectors == 20);
    cdx_library_close(lib);
    vp.writable = 0;
    CHECK(vecfile_open(vf_path, &vp, &vf, NULL) == CDX_OK);
    if (vf) {
        CHECKF(vecfile_count(vf) == 20, "vector file has %llu records: the orphans were not adopted",
               (unsigned long long)vecfile_count(vf));
        vecfile_close(vf);
    }
    free(v);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx_test_vecio_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    test_npy_parser();
    test_topk_counts();
    const char *shared = getenv("CLIPDEX_SHARED");
    struct stat sst;
    if (shared && stat(shared, &sst) == 0) {
        test_library(shared);
        char model[512];
        snprintf(model, sizeof model, "%s/fixtures/clip-tiny", shared);
        test_orphan_adoption(model);
    }
    else printf("SKIP (library part): ../shared is absent\n");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
