/*
 * test_codes.c - companion code files (store/codes.c) and their upkeep by
 * the library (library/lib_codes.c).
 *
 *  - create / open / verify round trip; append in several steps (partial
 *    blocks) gives the same file contents as one create; the data CRC is
 *    extended correctly;
 *  - hostile files: truncations at every interesting size, a flipped byte
 *    in the header, the model and the data, a future version, a header
 *    claiming more rows than the file holds - open fails with
 *    CDX_ERR_FORMAT / CDX_ERR_UNSUPPORTED, verify catches data damage;
 *  - lib_codes: built on first use; extended when the vectors grow; rebuilt
 *    when the vector file id changes (compaction) or the file is damaged;
 *    a companion ahead of a reader's view is used, truncated to the view;
 *    searches over it equal the exact scan when every candidate is
 *    re-scored.
 */
#include "../bench/clipgen.h"
#include "common/util.h"
#include "library/lib_codes.h"
#include "search/qscan.h"
#include "search/quant.h"
#include "store/codes.h"
#include "testutil.h"

#include <fcntl.h>
#include <unistd.h>

static char dir[256];

static void flip(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static void *slurp(const char *path, size_t *n)
{
    return test_read_file(path, n);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, n, f) == n);
    if (f) fclose(f);
}

typedef struct data {
    float *rows;
    cdx_rows src;
    quant_model *m;
    uint8_t *blocks;     /* codes of all rows */
    size_t cb, bb;
} data;

static void make(data *d, uint64_t n, int dim, quant_kind kind)
{
    clipgen *g = clipgen_new(dim, 16, 9);
    d->rows = cdx_alloc_aligned(n * (size_t)dim, 4);
    for (uint64_t i = 0; i < n; i++) clipgen_row(g, i, d->rows + i * (size_t)dim);
    clipgen_free(g);
    d->src = cdx_rows_array(d->rows, n, dim, (size_t)dim * 4);
    CHECK(quant_model_fit(&d->src, 1000, 0, kind == QUANT_BIT, &d->m) == CDX_OK);
    d->cb = quant_code_bytes(kind, d->m->cdim);
    d->bb = QSCAN_BLOCK * (d->cb + sizeof(quant_aux));
    d->blocks = calloc((n + 63) / 64 * d->bb, 1);
    CHECK(qcodes_encode_rows(d->m, kind, &d->src, 0, n, d->blocks) == CDX_OK);
}

static void unmake(data *d)
{
    cdx_free_aligned(d->rows);
    quant_model_free(d->m);
    free(d->blocks);
}

static codes_meta meta_for(const data *d, quant_kind kind, uint64_t rows)
{
    codes_meta mt;
    memset(&mt, 0, sizeof mt);
    mt.kind = kind;
    mt.dim = mt.pdim = (uint32_t)d->m->dim;
    mt.cdim = (uint32_t)d->m->cdim;
    mt.rotate = (uint32_t)d->m->rotate;
    mt.code_bytes = (uint32_t)d->cb;
    memset(mt.source_id, 0xab, sizeof mt.source_id);
    mt.rows = rows;
    return mt;
}

static void test_format(void)
{
    data d;
    make(&d, 300, 80, QUANT_I8);
    char p1[320], p2[320], bad[320];
    snprintf(p1, sizeof p1, "%s/one.cdxc", dir);
    snprintf(p2, sizeof p2, "%s/steps.cdxc", dir);
    snprintf(bad, sizeof bad, "%s/bad.cdxc", dir);
    codes_meta mt = meta_for(&d, QUANT_I8, 300);
    CHECK(codes_create(p1, &mt, d.m->mean, d.blocks) == CDX_OK);
    codes_file *cf = NULL;
    CHECK(codes_open(p1, &cf) == CDX_OK);
    if (cf) {
        CHECK(codes_meta_get(cf)->rows == 300);
        CHECK(codes_verify(cf) == CDX_OK);
        CHECK(!memcmp(codes_data(cf), d.blocks, 4 * d.bb));   /* full blocks identical */
        CHECK(!memcmp(codes_model(cf), d.m->mean, 80 * sizeof(float)));
        codes_close(cf);
    }
    /* The same rows appended in steps: 0 -> 1 -> 64 -> 100 -> 300. */
    codes_meta m0 = meta_for(&d, QUANT_I8, 1);
    CHECK(codes_create(p2, &m0, d.m->mean, d.blocks) == CDX_OK);
    static const uint64_t steps[] = {64, 100, 300};
    for (size_t i = 0; i < 3; i++) {
        codes_file *c = NULL;
        CHECK(codes_open(p2, &c) == CDX_OK);
        if (!c) break;
        uint64_t from = codes_meta_get(c)->rows;
        CHECK(codes_append(p2, c, steps[i], d.blocks + from / 64 * d.bb) == CDX_OK);
        /* a second append from the same (now outdated) handle is refused */
        CHECK(codes_append(p2, c, steps[i], d.blocks + from / 64 * d.bb) == CDX_ERR_MISMATCH);
        codes_close(c);
    }
    size_t n1, n2;
    uint8_t *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1));
    /* hostile variants of the good file */
    size_t doff = n1 - 5 * d.bb;
    long cuts[] = {0, 10, 4095, 4096, (long)doff, (long)n1 - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_bytes(bad, b1, (size_t)cuts[i]);
        codes_file *c = NULL;
        CHECKF(codes_open(bad, &c) == CDX_ERR_FORMAT, "truncated at %ld", cuts[i]);
        codes_close(c);
    }
    long flips[] = {0, 12, 20, 64, 4092, 4096 + 7};
    for (size_t i = 0; i < sizeof flips / sizeof *flips; i++) {
        write_bytes(bad, b1, n1);
        flip(bad, flips[i]);
        codes_file *c = NULL;
        CHECKF(codes_open(bad, &c) == CDX_ERR_FORMAT, "flipped byte %ld", flips[i]);
        codes_close(c);
    }
    write_bytes(bad, b1, n1);
    flip(bad, (long)doff + 5);   /* a code byte: open is fine, verify is not */
    codes_file *c = NULL;
    CHECK(codes_open(bad, &c) == CDX_OK);
    if (c) CHECK(codes_verify(c) == CDX_ERR_FORMAT);
    codes_close(c);
    write_bytes(bad, b1, n1);
    flip(bad, (long)doff + 64 * (long)d.cb + 3);   /* an aux byte */
    c = NULL;
    CHECK(codes_open(bad, &c) == CDX_OK);
    if (c) CHECK(codes_verify(c) == CDX_ERR_FORMAT);
    codes_close(c);
    /* geometry the header cannot claim */
    codes_meta wrong = mt;
    wrong.code_bytes = 64 * 3;
    CHECK(codes_create(bad, &wrong, d.m->mean, d.blocks) == CDX_ERR_INVALID_ARG);
    wrong = mt;
    wrong.kind = 7;
    CHECK(codes_create(bad, &wrong, d.m->mean, d.blocks) == CDX_ERR_INVALID_ARG);
    CHECK(codes_open("/nonexistent/x.cdxc", &c) == CDX_ERR_NOT_FOUND);
    free(b1);
    free(b2);
    unmake(&d);
}

static int exact_equal(lib_codes *lc, int scan, const cdx_rows *src, const uint8_t *fid, const float *q)
{
    topk_params tp = topk_default_params();
    tp.k = 10;
    topk_hit a[10], b[10];
    size_t na = 0, nb = 0;
    if (lib_codes_search(lc, scan, 1000, src, fid, q, &tp, a, &na) != CDX_OK) return 0;
    if (topk_search(src, q, 1, &tp, b, &nb) != CDX_OK || na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i].slot != b[i].slot || a[i].score != b[i].score) return 0;
    return 1;
}

static void test_library_upkeep(void)
{
    data d;
    make(&d, 2000, 64, QUANT_I8);
    uint8_t fa[16], fb[16];
    memset(fa, 1, 16);
    memset(fb, 2, 16);
    char sub[320];
    snprintf(sub, sizeof sub, "%s/lib", dir);
    mkdir(sub, 0755);
    for (int scan = CDX_SCAN_INT8; scan <= CDX_SCAN_LAST; scan++) {
        lib_codes *lc = NULL;
        CHECK(lib_codes_new(sub, &lc) == CDX_OK);
        lib_codes_set_chunk_rows(lc, scan == CDX_SCAN_BIT ? 100 : 0);   /* chunked builds too */
        cdx_codes_info ci;
        cdx_rows v = d.src;
        v.count = 1000;
        CHECK(lib_codes_info(lc, scan, 1000, fa, 0, &ci) == CDX_OK && !ci.present);
        CHECK(exact_equal(lc, scan, &v, fa, d.rows + 5 * 64));   /* built on first use */
        CHECK(lib_codes_info(lc, scan, 1000, fa, 1, &ci) == CDX_OK && ci.present && ci.fresh && ci.rows == 1000 &&
              !ci.damaged);
        v.count = 1500;                                          /* grown: extended */
        CHECK(lib_codes_info(lc, scan, 1500, fa, 0, &ci) == CDX_OK && !ci.fresh);
        CHECK(exact_equal(lc, scan, &v, fa, d.rows + 1400 * 64));
        CHECK(lib_codes_info(lc, scan, 1500, fa, 1, &ci) == CDX_OK && ci.fresh && ci.rows == 1500 && !ci.damaged);
        /* another handle with an older view uses the companion that is ahead */
        lib_codes *lc2 = NULL;
        CHECK(lib_codes_new(sub, &lc2) == CDX_OK);
        v.count = 1200;
        CHECK(exact_equal(lc2, scan, &v, fa, d.rows + 3 * 64));
        CHECK(lib_codes_info(lc2, scan, 1200, fa, 0, &ci) == CDX_OK && ci.rows == 1500);
        lib_codes_free(lc2);
        /* compaction: another file id -> rebuilt for it */
        v.count = 1100;
        CHECK(exact_equal(lc, scan, &v, fb, d.rows + 7 * 64));
        CHECK(lib_codes_info(lc, scan, 1100, fb, 1, &ci) == CDX_OK && ci.fresh && ci.rows == 1100);
        CHECK(lib_codes_info(lc, scan, 1100, fa, 0, &ci) == CDX_OK && !ci.fresh);
        lib_codes_free(lc);
        /* damage: header -> rebuilt; data -> reported by a verifying info */
        CHECK(lib_codes_new(sub, &lc) == CDX_OK);
        flip(ci.path, 4096 + 4096 + 9);
        CHECK(lib_codes_info(lc, scan, 1100, fb, 1, &ci) == CDX_OK && ci.damaged);
        flip(ci.path, 30);
        CHECK(lib_codes_info(lc, scan, 1100, fb, 0, &ci) == CDX_OK && !ci.present && ci.damaged);
        CHECK(exact_equal(lc, scan, &v, fb, d.rows + 9 * 64));
        CHECK(lib_codes_info(lc, scan, 1100, fb, 1, &ci) == CDX_OK && ci.present && ci.fresh && !ci.damaged);
        /* bad scans */
        CHECK(lib_codes_update(lc, CDX_SCAN_F32, &v, fb, 0) == CDX_ERR_INVALID_ARG);
        CHECK(lib_codes_update(lc, 9, &v, fb, 0) == CDX_ERR_INVALID_ARG);
        /* data damage: searches keep using the file, a verifying update rebuilds it */
        flip(ci.path, 4096 + 4096 + 9);
        CHECK(exact_equal(lc, scan, &v, fb, d.rows + 11 * 64));
        CHECK(lib_codes_info(lc, scan, 1100, fb, 1, &ci) == CDX_OK && ci.damaged);
        CHECK(lib_codes_update(lc, scan, &v, fb, 1) == CDX_OK);
        CHECK(lib_codes_info(lc, scan, 1100, fb, 1, &ci) == CDX_OK && ci.present && ci.fresh && !ci.damaged);
        lib_codes_free(lc);
    }
    CHECK(cdx_scan_parse("int8") == CDX_SCAN_INT8 && cdx_scan_parse("bit") == CDX_SCAN_BIT &&
          cdx_scan_parse("pca8") == CDX_SCAN_PCA8 &&
          cdx_scan_parse("f32") == CDX_SCAN_F32 && cdx_scan_parse("x") == -1 && !cdx_scan_name(5));
    unmake(&d);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_codes.%d", (int)getpid());
    mkdir(dir, 0755);
    test_format();
    test_library_upkeep();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
