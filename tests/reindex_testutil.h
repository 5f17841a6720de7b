/*
 * reindex_testutil.h - the library and models of test_reindex and
 * test_reindex_live: a temporary directory, clip-tiny plus a perturbed copy
 * of it (other weights: another version of the same dimension), unique
 * copies of an image (own contents), opening the library.
 */
#ifndef CDX_REINDEX_TESTUTIL_H
#define CDX_REINDEX_TESTUTIL_H

#include "clipdex.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DIM 64

static char g_dir[64];

static void path_in(char *out, size_t cap, const char *sub)
{
    snprintf(out, cap, "%s/%s", g_dir, sub);
}

static int copy_file(const char *from, const char *to)
{
    size_t n = 0;
    void *d = test_read_file(from, &n);
    FILE *f = d ? fopen(to, "wb") : NULL;
    int ok = f && fwrite(d, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    free(d);
    return ok ? 0 : -1;
}

/* A copy of clip-tiny with some weights changed (another fingerprint). */
/* A copy of src with trailing bytes (a content of its own; PNG decoders
 * stop at IEND). */
static int unique_copy(const char *src, const char *dst, const char *tag)
{
    if (copy_file(src, dst)) return -1;
    FILE *f = fopen(dst, "ab");
    int ok = f && fputs(tag, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}

static void make_model_b(const char *tiny, const char *dir)
{
    static const char *files[] = {"config.json", "vocab.json", "merges.txt", "preprocessor_config.json"};
    mkdir(dir, 0777);
    char a[4096], b[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", tiny, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        CHECK(copy_file(a, b) == 0);
    }
    snprintf(a, sizeof a, "%s/model.safetensors", tiny);
    size_t n = 0;
    unsigned char *w = test_read_file(a, &n);
    CHECK(w && n > 100000);
    if (!w) return;
    uint64_t hdr;
    memcpy(&hdr, w, 8);
    static const size_t pct[2] = {79, 95};   /* clip-tiny: text blocks, vision blocks */
    for (int part = 0; part < 2; part++) {
        size_t at = 8 + hdr + 4 * ((n - 8 - hdr) * pct[part] / 400);
        for (size_t i = at; i + 4 <= n && i < at + 65536; i += 4) w[i + 2] ^= 0x20;   /* mantissa bits */
    }
    snprintf(b, sizeof b, "%s/model.safetensors", dir);
    FILE *f = fopen(b, "wb");
    CHECK(f && fwrite(w, 1, n, f) == n);
    if (f) fclose(f);
    free(w);
}

static cdx_library *open_lib(int writable, const char *model, int load)
{
    char d[256];
    path_in(d, sizeof d, "lib");
    cdx_library_params p = cdx_library_default_params();
    p.writable = writable;
    p.create = model != NULL;
    p.model_dir = model;
    p.load_model = load;
    cdx_library *lib = NULL;
    if (cdx_library_open(d, &p, &lib) != CDX_OK) fprintf(stderr, "open: %s\n", cdx_last_error());
    return lib;
}

#endif
