/*
 * testutil.h - a tiny header-only test harness shared by tests/test_*.c.
 *
 * CHECK(cond) records a failure (with file:line) and continues; the test's
 * main returns test_finish().  Tests needing ../shared call
 * test_shared_dir() which exits 77 (CTest "skipped") with a message when it
 * is absent.  Helpers load the raw little-endian fixture arrays.
 */
#ifndef CDX_TESTUTIL_H
#define CDX_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipdex.h"

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond) do { test_checks++; if (!(cond)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { test_checks++; if (!(cond)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static inline int test_finish(void)
{
    printf("%d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* ../shared (from $CLIPDEX_SHARED); exits 77 when absent. */
static inline const char *test_shared_dir(void)
{
    const char *d = getenv("CLIPDEX_SHARED");
    struct stat st;
    if (!d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("SKIP: ../shared is absent (CLIPDEX_SHARED=%s)\n", d ? d : "(unset)");
        exit(77);
    }
    return d;
}

/* "<shared>/fixtures/clip-tiny" */
static inline const char *test_fixture_dir(void)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/fixtures/clip-tiny", test_shared_dir());
    return buf;
}

/* Create a writable library at dir with the clip-tiny fixture model and
 * n_threads embedding threads; exits with the library's error on failure. */
static inline cdx_library *test_create_library(const char *dir, int n_threads)
{
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = test_fixture_dir();
    lp.create = 1;
    lp.writable = 1;
    lp.n_threads = n_threads;
    cdx_library *lib = NULL;
    if (cdx_library_open(dir, &lp, &lib) != CDX_OK) {
        fprintf(stderr, "library create %s: %s\n", dir, cdx_last_error());
        exit(1);
    }
    return lib;
}

/* Read a whole binary file; returns malloc'd data and its size, or NULL. */
static inline void *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (len) *len = (size_t)(n > 0 ? n : 0);
    return buf;
}

/* Load "<fixture>/<rel>" as float32/int32 with exactly `count` elements. */
static inline void *test_load_array(const char *rel, size_t count)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_fixture_dir(), rel);
    size_t len = 0;
    void *p = test_read_file(path, &len);
    if (!p || len != count * 4) {
        fprintf(stderr, "cannot load %s (%zu bytes, want %zu)\n", path, len, count * 4);
        exit(1);
    }
    return p;
}

/* max |a-b| and max |b| over n values. */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]); if (d > m || d != d) m = d != d ? INFINITY : d; }
    return m;
}
static inline double test_max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}
static inline double test_cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return ab / sqrt(aa * bb);
}

#endif
