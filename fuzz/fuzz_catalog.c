/*
 * fuzz_catalog.c - libFuzzer target for opening a damaged or hostile
 * catalog (src/store/catalog.c over SQLite): schema checks, meta reads,
 * the snapshot query searches use, counts and `check`.
 *
 * Each input is written as catalog.db and opened read-only, then (on a
 * fresh copy) writable.  Whatever the bytes, every call must return a
 * result code (never crash, never hang past SQLite's own limits), and a
 * successful query must return slots and ids that the check can walk.
 * The source is included so libFuzzer instruments it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "store/catalog.c"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_path[96];

static void write_input(const uint8_t *data, size_t size)
{
    char side[128];
    snprintf(side, sizeof side, "%s-wal", g_path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", g_path);
    unlink(side);
    FILE *f = fopen(g_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
}

static int count_problem(void *user, const char *sha, int64_t slot)
{
    (void)sha;
    (void)slot;
    (*(uint64_t *)user)++;
    return 0;
}

static void exercise(catalog *c)
{
    char buf[256];
    (void)catalog_meta_get(c, "dim", buf, sizeof buf);
    (void)catalog_meta_get(c, "model_fingerprint", buf, sizeof buf);
    uint64_t version;
    (void)catalog_version(c, &version);
    uint64_t images = 0, contents = 0, seen = 0, problems = 0;
    (void)catalog_counts(c, &images, &contents);
    catalog_pair *pairs = NULL;
    size_t n = 0;
    catalog_filter f = {0};
    if (catalog_query(c, &f, &pairs, &n) == CDX_OK && n && !pairs) abort();
    free(pairs);
    catalog_filter g = {.path_prefix = "/a", .format = "jpeg", .after = 1, .before = 2000000000};
    pairs = NULL;
    if (catalog_query(c, &g, &pairs, &n) == CDX_OK && n && !pairs) abort();
    free(pairs);
    (void)catalog_each_content(c, count_problem, &seen);
    (void)catalog_check(c, NULL, NULL, &problems);
    cdx_image_record rec;
    (void)catalog_image_by_id(c, 1, &rec);
    (void)catalog_image_by_path(c, "/a/b.jpg", &rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/fuzz-catalog-XXXXXX");
        if (!mkdtemp(g_dir)) abort();
        snprintf(g_path, sizeof g_path, "%s/catalog.db", g_dir);
    }
    for (int writable = 0; writable < 2; writable++) {
        write_input(data, size);
        catalog *c = NULL;
        if (catalog_open(g_path, writable, 0, &c) == CDX_OK) {
            exercise(c);
            catalog_close(c);
        } else if (c) {
            abort();
        }
    }
    return 0;
}
