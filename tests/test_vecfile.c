/*
 * test_vecfile.c - the on-disk vector file (store/vecfile.c).
 *
 *  - CRC32C against the standard check value and a bitwise reference;
 *  - create, append batches (crossing blocks), reopen, get (normalised
 *    content and keys), search through the mapping, bad vectors, locking;
 *  - hostile headers: bad magic, header checksum, newer version, short file,
 *    wrong dim, other model tag;
 *  - torn last batch: every byte-prefix of the last append having reached
 *    the disk (file order), random subsets of its 512-byte sectors, and a
 *    corrupted last record: reopen keeps every earlier record, a writable
 *    open repairs the tail and appending resumes;
 *  - damage in the middle: check() names the slot and kind, get() fails,
 *    open refuses damage adjacent to a torn tail;
 *  - compaction keeps order and content, maps old to new slots, changes the
 *    file id and leaves earlier views readable; 100 compactions of one
 *    handle (more than the 64 retired mappings that used to leave it on a
 *    stale map) read right rows through get() and both old and new views;
 *    compact_into writes a second file and leaves the first untouched;
 *  - a reader handle refreshing while a writer thread appends;
 *  - kill -9 of a child process that appends in a loop: everything it
 *    reported committed survives, and the next run resumes.
 */
#include "store/vecfile.h"
#include "search/topk.h"
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[] = "/tmp/cdx_vecfile_XXXXXX";

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

/* Deterministic content for slot s: a non-normalised vector and a key. */
static void gen_vec(uint64_t s, int dim, float *v)
{
    uint64_t x = s * 0x9E3779B97F4A7C15ull + 12345;
    for (int d = 0; d < dim; d++) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        v[d] = (float)(((x * 0x2545F4914F6CDD1Dull) >> 40) / 8388608.0 - 1.0) * 3.0f;
    }
}
static void gen_key(uint64_t s, uint8_t key[32])
{
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(s >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
}

static cdx_result append_range(vecfile *vf, uint64_t first, size_t n)
{
    int dim = vecfile_dim(vf);
    float *v = malloc(n * (size_t)dim * 4);
    uint8_t (*k)[32] = malloc(n * 32);
    for (size_t i = 0; i < n; i++) { gen_vec(first + i, dim, v + i * (size_t)dim); gen_key(first + i, k[i]); }
    uint64_t got = UINT64_MAX;
    cdx_result rc = vecfile_append(vf, v, (const uint8_t (*)[32])k, n, &got);
    if (rc == CDX_OK && got != first) rc = CDX_ERR_INTERNAL;
    free(v);
    free(k);
    return rc;
}

/* 1 when slot s holds exactly gen_vec(s)/|gen_vec(s)| and gen_key(s). */
static int slot_ok(vecfile *vf, uint64_t s, uint64_t content_of)
{
    int dim = vecfile_dim(vf);
    float v[1024], want[1024];
    uint8_t key[32], wkey[32];
    if (vecfile_get(vf, s, v, key) != CDX_OK) return 0;
    gen_vec(content_of, dim, want);
    gen_key(content_of, wkey);
    double n = 0;
    for (int d = 0; d < dim; d++) n += (double)want[d] * want[d];
    n = sqrt(n);
    for (int d = 0; d < dim; d++) if (fabs(v[d] - want[d] / n) > 1e-6) return 0;
    return memcmp(key, wkey, 32) == 0;
}

static vecfile *open_rw(const char *path, int dim, cdx_result *rc, vecfile_open_report *rep)
{
    vecfile_params p = vecfile_default_params();
    p.writable = 1;
    p.create = dim > 0;
    p.dim = dim;
    vecfile *vf = NULL;
    *rc = vecfile_open(path, &p, &vf, rep);
    return vf;
}
static vecfile *open_ro(const char *path, cdx_result *rc, vecfile_open_report *rep)
{
    vecfile *vf = NULL;
    *rc = vecfile_open(path, NULL, &vf, rep);
    return vf;
}

/* Replace a file's content.  No O_TRUNC: ext4 flushes files truncated to
 * zero on close (auto_da_alloc), which would make the torn-write loops slow. */
static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0 || (n && pwrite(fd, b, n, 0) != (ssize_t)n) || ftruncate(fd, (off_t)n) != 0) {
        perror(path);
        exit(1);
    }
    close(fd);
}
static void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    if (fd < 0 || pread(fd, &b, 1, off) != 1) { perror(path); exit(1); }
    b ^= 0x5A;
    if (pwrite(fd, &b, 1, off) != 1) { perror(path); exit(1); }
    close(fd);
}

/* Geometry mirrored from docs/storage-format.md (the test checks the doc). */
static long stride_of(int dim) { return ((long)dim * 4 + 63) / 64 * 64; }
static long block_of(int dim) { return 64 * stride_of(dim) + 64 * 64; }
static long row_at(int dim, uint64_t s) { return 4096 + (long)(s / 64) * block_of(dim) + (long)(s % 64) * stride_of(dim); }
static long meta_at_off(int dim, uint64_t s) { return 4096 + (long)(s / 64) * block_of(dim) + 64 * stride_of(dim) + (long)(s % 64) * 64; }

/* ------------------------------------------------------------ crc */

static void test_crc(void)
{
    CHECK(vecfile_crc32c("123456789", 9) == 0xE3069283u);
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n <= 1000; n += 37) {
        uint32_t c = 0xFFFFFFFFu;
        for (size_t i = 0; i < n; i++) {
            c ^= buf[i];
            for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        CHECKF(vecfile_crc32c(buf, n) == ~c, "crc32c length %zu", n);
    }
}

/* ------------------------------------------------------------ basics */

static void test_basics(void)
{
    char path[256];
    path_in(path, sizeof path, "basic.vec");
    cdx_result rc;
    vecfile_open_report rep;
    vecfile *vf = open_rw(path, 100, &rc, &rep);
    CHECKF(rc == CDX_OK, "create: %s", cdx_last_error());
    if (!vf) return;
    CHECK(vecfile_count(vf) == 0 && vecfile_dim(vf) == 100);
    static const size_t batches[] = {1, 63, 64, 130, 5};
    uint64_t n = 0;
    for (size_t i = 0; i < 5; i++) {
        CHECKF(append_range(vf, n, batches[i]) == CDX_OK, "append: %s", cdx_last_error());
        n += batches[i];
    }
    CHECK(vecfile_count(vf) == n);
    CHECK(append_range(vf, n, 0) == CDX_OK && vecfile_count(vf) == n);

    /* Bad vectors are refused before anything is written. */
    float bad[200];
    uint8_t keys[2][32] = {{0}};
    gen_vec(1, 100, bad);
    gen_vec(2, 100, bad + 100);
    bad[150] = NAN;
    CHECK(vecfile_append(vf, bad, (const uint8_t (*)[32])keys, 2, NULL) == CDX_ERR_INVALID_ARG);
    memset(bad + 100, 0, 400);
    CHECK(vecfile_append(vf, bad, (const uint8_t (*)[32])keys, 2, NULL) == CDX_ERR_INVALID_ARG);
    CHECK(vecfile_count(vf) == n);

    int all = 1;
    for (uint64_t s = 0; s < n; s++) all &= slot_ok(vf, s, s);
    CHECK(all);
    CHECK(vecfile_get(vf, n, NULL, NULL) == CDX_ERR_NOT_FOUND);

    /* Search through the mapping finds a stored vector first. */
    cdx_rows src = vecfile_rows(vf);
    CHECK(src.count == n && ((uintptr_t)src.base % 64) == 0 && src.row_stride % 64 == 0);
    float q[100];
    gen_vec(200, 100, q);
    topk_params tp = topk_default_params();
    tp.k = 3;
    topk_hit hits[3];
    size_t nh = 0;
    CHECK(topk_search(&src, q, 1, &tp, hits, &nh) == CDX_OK && nh == 3);
    CHECK(hits[0].slot == 200);
    double qn = 0;
    for (int d = 0; d < 100; d++) qn += (double)q[d] * q[d];
    CHECKF(fabs(hits[0].score - sqrt(qn)) < 1e-3 * sqrt(qn), "self score %g vs |q| %g", hits[0].score, sqrt(qn));

    /* A second writer is refused; readers are not. */
    vecfile *w2 = open_rw(path, 0, &rc, NULL);
    CHECKF(rc == CDX_ERR_IO && !w2 && strstr(cdx_last_error(), "locked"), "second writer: %s", cdx_last_error());
    vecfile *ro = open_ro(path, &rc, &rep);
    CHECK(rc == CDX_OK && rep.count == n && rep.torn_records == 0);
    if (ro) {
        CHECK(append_range(ro, n, 1) == CDX_ERR_INVALID_ARG);
        CHECK(vecfile_check(ro, NULL, 0, NULL) == CDX_OK);
        CHECK(slot_ok(ro, n - 1, n - 1));
        uint8_t a[16], b[16];
        vecfile_file_id(vf, a);
        vecfile_file_id(ro, b);
        CHECK(memcmp(a, b, 16) == 0);
    }
    vecfile_close(ro);
    vecfile_close(vf);

    /* Reopen writable: clean, nothing repaired, appends continue. */
    vf = open_rw(path, 0, &rc, &rep);
    CHECK(rc == CDX_OK && rep.count == n && !rep.tail_repaired);
    if (vf) { CHECK(append_range(vf, n, 3) == CDX_OK && vecfile_count(vf) == n + 3); }
    vecfile_close(vf);
    vecfile_close(NULL);
}

static void test_bad_headers(void)
{
    char path[256], other[256];
    path_in(path, sizeof path, "hdr.vec");
    path_in(other, sizeof other, "hdr2.vec");
    cdx_result rc;
    uint8_t tag[32], tag2[32];
    memset(tag, 7, 32);
    memset(tag2, 8, 32);
    vecfile_params p = vecfile_default_params();
    p.writable = p.create = 1;
    p.dim = 64;
    p.model_tag = tag;
    vecfile *vf = NULL;
    CHECK(vecfile_open(path, &p, &vf, NULL) == CDX_OK);
    if (vf) CHECK(append_range(vf, 0, 10) == CDX_OK);
    vecfile_close(vf);

    size_t len = 0;
    uint8_t *orig = test_read_file(path, &len);

    vecfile *x = open_ro("/nonexistent/dir/x.vec", &rc, NULL);
    CHECK(rc == CDX_ERR_NOT_FOUND && !x);

    p = vecfile_default_params();
    p.dim = 512;
    CHECK(vecfile_open(path, &p, &x, NULL) == CDX_ERR_MISMATCH && strstr(cdx_last_error(), "64"));
    p.dim = 0;
    p.model_tag = tag2;
    CHECK(vecfile_open(path, &p, &x, NULL) == CDX_ERR_MISMATCH);
    p.model_tag = tag;
    CHECK(vecfile_open(path, &p, &x, NULL) == CDX_OK);
    vecfile_close(x);

    write_bytes(other, orig, len);
    flip_byte(other, 17);   /* dim field: header checksum catches it */
    x = open_ro(other, &rc, NULL);
    CHECKF(rc == CDX_ERR_FORMAT && strstr(cdx_last_error(), "header checksum"), "%s", cdx_last_error());

    write_bytes(other, orig, len);
    flip_byte(other, 0);
    x = open_ro(other, &rc, NULL);
    CHECKF(rc == CDX_ERR_FORMAT && strstr(cdx_last_error(), "magic"), "%s", cdx_last_error());

    /* A newer version with a valid checksum: unsupported, not "corrupt". */
    uint8_t *h = malloc(len);
    memcpy(h, orig, len);
    h[8] = 2;
    uint32_t c = vecfile_crc32c(h, 124);
    for (int i = 0; i < 4; i++) h[124 + i] = (uint8_t)(c >> (8 * i));
    write_bytes(other, h, len);
    x = open_ro(other, &rc, NULL);
    CHECKF(rc == CDX_ERR_UNSUPPORTED && strstr(cdx_last_error(), "version 2"), "%s", cdx_last_error());

    write_bytes(other, orig, 100);
    x = open_ro(other, &rc, NULL);
    CHECKF(rc == CDX_ERR_FORMAT && strstr(cdx_last_error(), "too short"), "%s", cdx_last_error());
    write_bytes(other, orig, 0);
    x = open_ro(other, &rc, NULL);
    CHECK(rc == CDX_ERR_FORMAT);

    /* Creating needs a dim. */
    vecfile_params cp = vecfile_default_params();
    cp.writable = cp.create = 1;
    CHECK(vecfile_open(other, &cp, &x, NULL) == CDX_ERR_INVALID_ARG);
    free(h);
    free(orig);
}

/* ------------------------------------------------------------ torn tail */

/* File states between A (before the last append) and B (after). */
static void torn_scenario(const char *name, int dim, const size_t *batches, size_t nb, size_t last)
{
    char path[256], work[300];
    path_in(path, sizeof path, name);
    snprintf(work, sizeof work, "%s.work", path);
    cdx_result rc;
    vecfile *vf = open_rw(path, dim, &rc, NULL);
    if (!vf) { CHECK(0); return; }
    uint64_t n = 0;
    for (size_t i = 0; i < nb; i++) { CHECK(append_range(vf, n, batches[i]) == CDX_OK); n += batches[i]; }
    size_t la = 0, lb = 0;
    uint8_t *A = test_read_file(path, &la);
    CHECK(append_range(vf, n, last) == CDX_OK);
    uint8_t *B = test_read_file(path, &lb);
    vecfile_close(vf);
    CHECK(lb >= la);
    size_t first_diff = 0;
    while (first_diff < la && A[first_diff] == B[first_diff]) first_diff++;
    uint8_t *S = malloc(lb);
    long opens = 0, bad = 0, repaired = 0;
    for (size_t x = first_diff; x <= lb; x++) {
        size_t len = x < la ? la : x;
        memcpy(S, B, x);
        if (x < la) memcpy(S + x, A + x, la - x);
        write_bytes(work, S, len);
        uint64_t want = (len == lb && memcmp(S, B, lb) == 0) ? n + last : n;
        vecfile_open_report rep;
        vecfile *r = open_ro(work, &rc, &rep);
        opens++;
        if (rc != CDX_OK || rep.count != want || (n && (!slot_ok(r, 0, 0) || !slot_ok(r, n - 1, n - 1)))) {
            if (bad++ < 5) fprintf(stderr, "%s: prefix %zu: rc %d count %llu want %llu: %s\n", name, x, rc,
                                   (unsigned long long)rep.count, (unsigned long long)want, cdx_last_error());
        }
        vecfile_close(r);
        if (x % 797 == 0 || x == lb) {   /* writable: repair, resume, recheck */
            vecfile *w = open_rw(work, 0, &rc, &rep);
            int ok = rc == CDX_OK && rep.count == want && append_range(w, want, 2) == CDX_OK;
            vecfile_close(w);
            r = open_ro(work, &rc, &rep);
            ok = ok && rc == CDX_OK && rep.count == want + 2 && vecfile_check(r, NULL, 0, NULL) == CDX_OK &&
                 slot_ok(r, want + 1, want + 1);
            vecfile_close(r);
            if (!ok && bad++ < 5) fprintf(stderr, "%s: prefix %zu: repair/resume failed: %s\n", name, x, cdx_last_error());
            repaired++;
        }
    }
    CHECKF(bad == 0, "%s: %ld of %ld torn states mishandled", name, bad, opens);

    /* Random subsets of the 512-byte sectors of the last append. */
    uint64_t seed = 42;
    for (int t = 0; t < 300; t++) {
        size_t len = (t & 1) ? lb : la;
        memcpy(S, A, la);
        if (lb > la) memset(S + la, 0, lb - la);
        for (size_t sec = 0; sec < lb; sec += 512) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            if ((seed >> 33) & 1) memcpy(S + sec, B + sec, sec + 512 <= lb ? 512 : lb - sec);
        }
        write_bytes(work, S, len);
        uint64_t want = (len == lb && memcmp(S, B, lb) == 0) ? n + last : n;
        vecfile_open_report rep;
        vecfile *r = open_ro(work, &rc, &rep);
        CHECKF(rc == CDX_OK && rep.count == want, "%s: sector subset %d: %s", name, t, cdx_last_error());
        vecfile_close(r);
    }

    /* A corrupted last record (vector, then metadata): the batch is dropped. */
    for (int which = 0; which < 2; which++) {
        write_bytes(work, B, lb);
        uint64_t s = n + last - 1;
        flip_byte(work, which ? meta_at_off(dim, s) + 9 : row_at(dim, s) + 3);
        vecfile_open_report rep;
        vecfile *w = open_rw(work, 0, &rc, &rep);
        CHECKF(rc == CDX_OK && rep.count == n && rep.tail_repaired &&
               rep.torn_records == (uint64_t)(which ? last - 1 : last),
               "%s corrupt last %s: rc %d count %llu torn %llu", name, which ? "meta" : "vector", rc,
               (unsigned long long)rep.count, (unsigned long long)rep.torn_records);
        CHECK(w && append_range(w, n, 1) == CDX_OK && slot_ok(w, n, n));
        vecfile_close(w);
    }
    printf("%s: %ld torn prefixes (%ld repaired+resumed), 300 sector subsets\n", name, opens, repaired);
    free(S); free(A); free(B);
}

static void test_torn_tail(void)
{
    static const size_t b1[] = {10, 3};
    torn_scenario("torn1.vec", 20, b1, 2, 1);           /* one record, same block */
    static const size_t b2[] = {60};
    torn_scenario("torn2.vec", 20, b2, 1, 10);          /* crosses into a new block */
    torn_scenario("torn3.vec", 20, NULL, 0, 5);         /* first batch of the file */
}

/* ------------------------------------------------------------ damage */

static void test_damage(void)
{
    char path[256];
    path_in(path, sizeof path, "damage.vec");
    cdx_result rc;
    int dim = 24;
    vecfile *vf = open_rw(path, dim, &rc, NULL);
    if (!vf) { CHECK(0); return; }
    CHECK(append_range(vf, 0, 40) == CDX_OK && append_range(vf, 40, 40) == CDX_OK &&
          append_range(vf, 80, 20) == CDX_OK);
    vecfile_close(vf);
    flip_byte(path, row_at(dim, 5) + 2);
    flip_byte(path, meta_at_off(dim, 70) + 20);
    vecfile_open_report rep;
    vecfile *r = open_ro(path, &rc, &rep);
    CHECKF(rc == CDX_OK && rep.count == 100, "middle damage is not a torn tail: %s", cdx_last_error());
    if (r) {
        vecfile_damage list[10];
        vecfile_check_report cr;
        CHECK(vecfile_check(r, list, 10, &cr) == CDX_ERR_FORMAT && strstr(cdx_last_error(), "slot 5"));
        CHECK(cr.checked == 100 && cr.damaged == 2 && cr.listed == 2);
        CHECK(list[0].slot == 5 && list[0].kind == VECFILE_DAMAGE_VECTOR);
        CHECK(list[1].slot == 70 && list[1].kind == VECFILE_DAMAGE_META);
        CHECK(vecfile_get(r, 5, NULL, NULL) == CDX_ERR_FORMAT && strstr(cdx_last_error(), "slot 5"));
        CHECK(vecfile_get(r, 70, NULL, NULL) == CDX_ERR_FORMAT);
        CHECK(slot_ok(r, 6, 6));
    }
    vecfile_close(r);
    /* Compaction refuses to carry damage forward. */
    vecfile *w = open_rw(path, 0, &rc, NULL);
    CHECK(w && vecfile_compact(w, NULL, NULL) == CDX_ERR_FORMAT);
    CHECK(w && vecfile_count(w) == 100);
    vecfile_close(w);

    /* Damage next to a torn tail is reported, not silently truncated. */
    size_t len;
    uint8_t *b = test_read_file(path, &len);
    flip_byte(path, row_at(dim, 5) + 2);                 /* undo */
    flip_byte(path, meta_at_off(dim, 70) + 20);
    flip_byte(path, meta_at_off(dim, 99) + 1);           /* tear the last batch */
    flip_byte(path, meta_at_off(dim, 79) + 1);           /* and damage the one before */
    r = open_ro(path, &rc, NULL);
    CHECKF(rc == CDX_ERR_FORMAT && strstr(cdx_last_error(), "slot 79"), "%s", cdx_last_error());
    w = open_rw(path, 0, &rc, NULL);
    CHECK(rc == CDX_ERR_FORMAT && !w);
    free(b);

    /* Garbage after a clean file: far more than one batch is damage. */
    char big[256];
    path_in(big, sizeof big, "garbage.vec");
    vf = open_rw(big, 8, &rc, NULL);
    CHECK(vf && append_range(vf, 0, 5) == CDX_OK);
    vecfile_close(vf);
    int fd = open(big, O_RDWR);
    CHECK(fd >= 0 && ftruncate(fd, 4096 + (off_t)block_of(8) * 1100) == 0);
    uint8_t junk[4096];
    memset(junk, 0xAB, sizeof junk);
    for (long off = 4096 + block_of(8); off + 4096 <= 4096 + block_of(8) * 1100; off += 4096)
        CHECK(pwrite(fd, junk, 4096, off) == 4096);
    close(fd);
    r = open_ro(big, &rc, NULL);
    CHECKF(rc == CDX_ERR_FORMAT && strstr(cdx_last_error(), "not a torn tail"), "%s", cdx_last_error());
}

/* ------------------------------------------------------------ compaction */

static void test_compact(void)
{
    char path[256], tmp[300];
    path_in(path, sizeof path, "compact.vec");
    snprintf(tmp, sizeof tmp, "%s.compact.tmp", path);
    cdx_result rc;
    int dim = 48;
    vecfile *vf = open_rw(path, dim, &rc, NULL);
    if (!vf) { CHECK(0); return; }
    CHECK(append_range(vf, 0, 100) == CDX_OK && append_range(vf, 100, 200) == CDX_OK);
    uint64_t keep[5] = {0};
    for (uint64_t s = 0; s < 300; s++) if (s % 3 == 0 || s == 299) keep[s / 64] |= 1ull << (s % 64);
    uint8_t id0[16], id1[16];
    vecfile_file_id(vf, id0);
    cdx_rows before = vecfile_rows(vf);
    float row0[48];
    memcpy(row0, before.base, sizeof row0);
    uint64_t map[300];
    CHECKF(vecfile_compact(vf, keep, map) == CDX_OK, "compact: %s", cdx_last_error());
    vecfile_file_id(vf, id1);
    CHECK(memcmp(id0, id1, 16) != 0);
    uint64_t want = 0;
    int ok = 1;
    for (uint64_t s = 0; s < 300; s++) {
        int kept = s % 3 == 0 || s == 299;
        if (kept) { ok &= map[s] == want && slot_ok(vf, want, s); want++; }
        else ok &= map[s] == UINT64_MAX;
    }
    CHECK(ok && vecfile_count(vf) == want && want == 101);
    CHECK(memcmp(before.base, row0, sizeof row0) == 0);   /* old view still mapped */
    CHECK(vecfile_check(vf, NULL, 0, NULL) == CDX_OK);
    CHECK(append_range(vf, 101, 3) == CDX_OK && slot_ok(vf, 103, 103));  /* numbering continues */
    vecfile_close(vf);
    CHECK(access(tmp, F_OK) != 0);
    vecfile_open_report rep;
    vecfile *r = open_ro(path, &rc, &rep);
    CHECK(rc == CDX_OK && rep.count == 101 + 3);
    if (r) CHECK(slot_ok(r, 100, 299));
    vecfile_close(r);

    /* Keep nothing, and keep all. */
    vf = open_rw(path, 0, &rc, NULL);
    uint64_t none[2] = {0, 0};
    CHECK(vf && vecfile_compact(vf, NULL, NULL) == CDX_OK && vecfile_count(vf) == 104);
    CHECK(vf && vecfile_compact(vf, none, NULL) == CDX_OK && vecfile_count(vf) == 0);
    CHECK(vf && append_range(vf, 0, 2) == CDX_OK && slot_ok(vf, 1, 1));
    vecfile_close(vf);
}

/* 1 when row i of view v equals content c normalised (through the mapping,
 * no checksum: what a search reads). */
static int view_row_ok(const cdx_rows *v, uint64_t i, uint64_t c)
{
    float want[1024];
    gen_vec(c, v->dim, want);
    double n = 0;
    for (int d = 0; d < v->dim; d++) n += (double)want[d] * want[d];
    n = sqrt(n);
    const float *row = cdx_rows_at(v, i);
    for (int d = 0; d < v->dim; d++) if (fabs(row[d] - want[d] / n) > 1e-6) return 0;
    return 1;
}

/* The retired-map bug: once a handle had retired 64 mappings, compaction
 * left it on the old file's mapping with the new file's count, so reads
 * returned wrong rows whose checksums passed.  100 compactions on one
 * handle (each dropping the oldest record and appending one), with a view
 * from the start held throughout: every row read through get(), through a
 * fresh view, and through the first view must be right after every one. */
static void test_many_compactions(void)
{
    char path[256];
    path_in(path, sizeof path, "many.vec");
    cdx_result rc;
    vecfile *vf = open_rw(path, 16, &rc, NULL);
    if (!vf) { CHECK(0); return; }
    const uint64_t n = 70;
    CHECK(append_range(vf, 0, n) == CDX_OK);
    cdx_rows first = vecfile_rows(vf);
    uint64_t keep[2], map[128];
    int ok = 1, rounds = 100;
    for (int r = 1; r <= rounds && ok; r++) {
        /* slots 0..n-1 hold contents r-1..r-1+n-1: drop slot 0 */
        memset(keep, 0xff, sizeof keep);
        keep[0] &= ~1ull;
        rc = vecfile_compact(vf, keep, map);
        CHECKF(rc == CDX_OK, "compaction %d: %s", r, cdx_last_error());
        ok &= vecfile_count(vf) == n - 1 && map[0] == UINT64_MAX && map[1] == 0;
        /* the next content keeps the count at n (gen content r-1+n at slot n-1) */
        uint64_t c_new = (uint64_t)r - 1 + n;
        float v[16];
        uint8_t k[1][32];
        gen_vec(c_new, 16, v);
        gen_key(c_new, k[0]);
        uint64_t got = 0;
        ok &= vecfile_append(vf, v, (const uint8_t (*)[32])k, 1, &got) == CDX_OK && got == n - 1;
        cdx_rows now = vecfile_rows(vf);
        ok &= now.count == n;
        for (uint64_t s = 0; s < n && ok; s++)
            ok &= slot_ok(vf, s, (uint64_t)r + s) && view_row_ok(&now, s, (uint64_t)r + s);
        for (uint64_t s = 0; s < n && ok; s++) ok &= view_row_ok(&first, s, s);
        if (!ok) fprintf(stderr, "wrong rows after compaction %d\n", r);
    }
    CHECK(ok);
    CHECK(vecfile_check(vf, NULL, 0, NULL) == CDX_OK);
    vecfile_close(vf);
    vecfile_open_report rep;
    vecfile *ro = open_ro(path, &rc, &rep);
    CHECK(ro && rep.count == n && slot_ok(ro, 0, (uint64_t)rounds) && slot_ok(ro, n - 1, (uint64_t)rounds + n - 1));
    vecfile_close(ro);
}

/* compact_into writes a second file and leaves the first untouched. */
static void test_compact_into(void)
{
    char path[256], dst[256];
    path_in(path, sizeof path, "into.vec");
    path_in(dst, sizeof dst, "into.new.vec");
    cdx_result rc;
    vecfile *vf = open_rw(path, 24, &rc, NULL);
    if (!vf) { CHECK(0); return; }
    CHECK(append_range(vf, 0, 150) == CDX_OK);
    uint64_t keep[3] = {0}, map[150];
    for (uint64_t s = 0; s < 150; s++) if (s % 2) keep[s / 64] |= 1ull << (s % 64);
    uint8_t id[16], id_old[16], got_id[16];
    vecfile_new_id(id);
    vecfile_file_id(vf, id_old);
    vecfile *nv = NULL;
    CHECKF(vecfile_compact_into(vf, keep, map, dst, id, &nv) == CDX_OK, "%s", cdx_last_error());
    if (!nv) { vecfile_close(vf); return; }
    vecfile_file_id(nv, got_id);
    CHECK(memcmp(got_id, id, 16) == 0);
    CHECK(vecfile_count(nv) == 75 && vecfile_count(vf) == 150 && map[0] == UINT64_MAX && map[149] == 74);
    int ok = 1;
    for (uint64_t s = 0; s < 75; s++) ok &= slot_ok(nv, s, 2 * s + 1);
    for (uint64_t s = 0; s < 150; s++) ok &= slot_ok(vf, s, s);
    CHECK(ok);
    vecfile_file_id(vf, got_id);
    CHECK(memcmp(got_id, id_old, 16) == 0);
    CHECK(vecfile_bytes_for(nv, 75) < vecfile_bytes_for(vf, 150));
    struct stat st;
    CHECK(stat(dst, &st) == 0 && (uint64_t)st.st_size == vecfile_bytes_for(nv, 75));
    CHECK(append_range(nv, 75, 2) == CDX_OK && slot_ok(nv, 76, 76));
    /* an existing target is refused and left alone */
    vecfile *again = NULL;
    CHECK(vecfile_compact_into(vf, keep, NULL, dst, NULL, &again) == CDX_ERR_IO && again == NULL);
    CHECK(stat(dst, &st) == 0 && (uint64_t)st.st_size == vecfile_bytes_for(nv, 77));
    vecfile_close(nv);
    vecfile_close(vf);
}

/* ------------------------------------------------------------ concurrency */

typedef struct writer_arg {
    vecfile *vf;
    int batches;
    volatile int done;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    for (int i = 0; i < a->batches; i++) {
        uint64_t n = vecfile_count(a->vf);
        if (append_range(a->vf, n, 1 + (size_t)(i * 7) % 23) != CDX_OK) break;
    }
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_concurrent_reader(void)
{
    char path[256];
    path_in(path, sizeof path, "conc.vec");
    cdx_result rc;
    vecfile *w = open_rw(path, 32, &rc, NULL);
    vecfile *r = open_ro(path, &rc, NULL);
    if (!w || !r) { CHECK(0); vecfile_close(w); vecfile_close(r); return; }
    writer_arg a = {w, 150, 0};
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &a);
    uint64_t seen = 0, refreshes = 0;
    int ok = 1;
    float q[32];
    gen_vec(0, 32, q);
    for (;;) {
        int finished = __atomic_load_n(&a.done, __ATOMIC_ACQUIRE);
        ok &= vecfile_refresh(r) == CDX_OK;
        uint64_t c = vecfile_count(r);
        ok &= c >= seen;
        for (uint64_t s = seen; s < c; s++) ok &= slot_ok(r, s, s);
        seen = c;
        refreshes++;
        /* The writer's own handle, searched from this thread while it appends. */
        cdx_rows src = vecfile_rows(w);
        topk_params tp = topk_default_params();
        tp.k = 1;
        topk_hit h;
        size_t nh;
        ok &= topk_search(&src, q, 1, &tp, &h, &nh) == CDX_OK && (src.count == 0 || (nh == 1 && h.slot == 0));
        if (finished) break;
    }
    pthread_join(th, NULL);
    CHECK(ok);
    CHECKF(seen == vecfile_count(w) && seen > 0, "reader saw %llu of %llu", (unsigned long long)seen,
           (unsigned long long)vecfile_count(w));
    printf("concurrent: %llu records seen over %llu refreshes\n", (unsigned long long)seen,
           (unsigned long long)refreshes);
    /* After compaction the reader is told to reopen. */
    CHECK(vecfile_compact(w, NULL, NULL) == CDX_OK);
    CHECK(vecfile_refresh(r) == CDX_ERR_MISMATCH);
    vecfile_close(r);
    vecfile_close(w);
}

/* ------------------------------------------------------------ kill -9 */

static void child_appender(const char *path, int fd_out, uint64_t seed)
{
    cdx_result rc;
    vecfile *vf = open_rw(path, 40, &rc, NULL);
    if (!vf) _exit(3);
    for (uint64_t i = 0;; i++) {
        uint64_t n = vecfile_count(vf);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        if (append_range(vf, n, 1 + (size_t)(seed >> 33) % 100) != CDX_OK) _exit(4);
        uint64_t c = vecfile_count(vf);
        if (write(fd_out, &c, sizeof c) != sizeof c) _exit(5);
    }
}

static void test_kill9(void)
{
    char path[256];
    path_in(path, sizeof path, "kill.vec");
    uint64_t last_committed = 0;
    for (int round = 0; round < 6; round++) {
        int pfd[2];
        if (pipe(pfd) != 0) { CHECK(0); return; }
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            child_appender(path, pfd[1], (uint64_t)round + 1);
        }
        close(pfd[1]);
        uint64_t c, reports = 0, want_reports = 3 + (uint64_t)round * 7;
        while (reports < want_reports && read(pfd[0], &c, sizeof c) == sizeof c) {
            last_committed = c;
            reports++;
        }
        usleep((useconds_t)(round * 1700));       /* land the kill at varying moments */
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        while (read(pfd[0], &c, sizeof c) == sizeof c) last_committed = c;
        close(pfd[0]);
        CHECKF(WIFSIGNALED(st), "child exited by itself (status %d)", st);
        vecfile_open_report rep;
        cdx_result rc;
        vecfile *vf = open_rw(path, 0, &rc, &rep);
        CHECKF(rc == CDX_OK && rep.count >= last_committed, "round %d: count %llu < committed %llu: %s",
               round, (unsigned long long)rep.count, (unsigned long long)last_committed, cdx_last_error());
        if (vf) {
            CHECK(vecfile_check(vf, NULL, 0, NULL) == CDX_OK);
            int ok = 1;
            for (uint64_t s = 0; s < rep.count; s++) ok &= slot_ok(vf, s, s);
            CHECK(ok);
        }
        vecfile_close(vf);
    }
    printf("kill -9: %llu records committed over 6 killed runs\n", (unsigned long long)last_committed);
}

/* A file truncated underneath its mapping (faults branch): a scan that
 * reads past the new end raises SIGBUS, which vecfile's handler absorbs
 * (zero page) and turns into an error of vecfile_verify(); a reader
 * opened before the truncation is told before it reads (fstat), and a
 * SIGBUS of memory that is not a vector map still kills. */
static void test_truncated_underneath(void)
{
    char path[256];
    path_in(path, sizeof path, "trunc.vec");
    cdx_result rc;
    vecfile_open_report rep;
    vecfile *vf = open_rw(path, 64, &rc, &rep);
    CHECKF(rc == CDX_OK, "create: %s", cdx_last_error());
    if (!vf) return;
    CHECK(append_range(vf, 0, 300) == CDX_OK);
    vecfile *ro = open_ro(path, &rc, &rep);
    CHECK(rc == CDX_OK && ro);
    if (!ro) { vecfile_close(vf); return; }
    CHECK(vecfile_verify(ro) == CDX_OK && vecfile_verify(vf) == CDX_OK);
    cdx_rows src = vecfile_rows(ro);
    float q[64];
    gen_vec(7, 64, q);
    topk_params tp = topk_default_params();
    tp.k = 3;
    topk_hit hits[3];
    size_t nh = 0;
    CHECK(topk_search(&src, q, 1, &tp, hits, &nh) == CDX_OK && nh == 3 && hits[0].slot == 7);

    /* cut the file to the header plus one page: the pages behind are gone */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0 && ftruncate(fd, 8192) == 0);
    if (fd >= 0) close(fd);
    rc = vecfile_verify(ro);
    CHECKF(rc == CDX_ERR_IO && strstr(cdx_last_error(), "truncated underneath"), "verify before: %s",
           cdx_last_error());
    /* the scan itself (a caller that did not check first) survives ... */
    CHECK(topk_search(&src, q, 1, &tp, hits, &nh) == CDX_OK);
    /* ... and its zeros are refused afterwards, for good */
    rc = vecfile_verify(ro);
    CHECKF(rc == CDX_ERR_IO && strstr(cdx_last_error(), "truncated while in use"), "verify after: %s",
           cdx_last_error());
    vecfile_close(ro);
    vecfile_close(vf);

    /* a SIGBUS elsewhere is not swallowed: the default action still kills */
    pid_t pid = fork();
    if (pid == 0) {
        char other[256];
        path_in(other, sizeof other, "other.bin");
        int f = open(other, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (f < 0 || ftruncate(f, 4096) != 0) _exit(3);
        volatile char *m = mmap(NULL, 16384, PROT_READ, MAP_SHARED, f, 0);
        if (m == MAP_FAILED) _exit(3);
        char c = m[8192];   /* beyond the end: SIGBUS */
        _exit(c == 0 ? 4 : 5);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    /* killed by SIGBUS, or (under ASan, whose handler came first) a report
     * and exit 1, or abort() with ASAN_OPTIONS=abort_on_error=1 (CI) */
    int died = (WIFSIGNALED(st) && (WTERMSIG(st) == SIGBUS || WTERMSIG(st) == SIGABRT)) ||
               (WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECKF(died, "foreign SIGBUS: status %d", st);
}

int main(void)
{
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_crc();
    test_basics();
    test_bad_headers();
    test_torn_tail();
    test_damage();
    test_compact();
    test_many_compactions();
    test_compact_into();
    test_concurrent_reader();
    test_kill9();
    test_truncated_underneath();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (test_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish();
}
