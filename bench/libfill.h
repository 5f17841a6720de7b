/*
 * libfill.h - build a real library (catalog + vector file) of N images
 * with generated vectors, fast, for the benchmarks that measure the library
 * path (file-backed map, catalog, filters) rather than a kernel over
 * anonymous memory.
 *
 * It follows the library's protocol (vectors appended and fsynced first,
 * then the catalog rows naming them, in transactions of LIBFILL_BATCH) but
 * skips embedding: row i gets gen(i) and the path "/bench/%08ld.jpg" with
 * i, so a path prefix such as "/bench/000" selects a known range of rows.
 * Image ids are i + 1.  The library must exist (created with a model of the
 * right dimension); no handle may be open on it meanwhile.
 */
#ifndef CDX_BENCH_LIBFILL_H
#define CDX_BENCH_LIBFILL_H

#include "clipdex.h"
#include "common/util.h"
#include "store/catalog.h"
#include "store/vecfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIBFILL_BATCH 8192

typedef void (*libfill_row_fn)(uint64_t i, float *row, int dim, void *ctx);

static uint64_t libfill_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int libfill(const char *dir, long rows, int dim, libfill_row_fn gen, void *ctx)
{
    char vp[600], db[600];
    snprintf(vp, sizeof vp, "%s/vectors.cdxv", dir);
    snprintf(db, sizeof db, "%s/catalog.db", dir);
    vecfile_params p = vecfile_default_params();
    p.writable = 1;
    vecfile *vf = NULL;
    catalog *c = NULL;
    if (vecfile_open(vp, &p, &vf, NULL) || catalog_open(db, 1, 0, &c)) {
        fprintf(stderr, "fill: %s\n", cdx_last_error());
        vecfile_close(vf);
        return -1;
    }
    float *v = malloc((size_t)LIBFILL_BATCH * dim * sizeof(float));
    uint8_t (*keys)[32] = malloc((size_t)LIBFILL_BATCH * 32);
    char (*hex)[65] = malloc((size_t)LIBFILL_BATCH * 65);
    int rc = v && keys && hex ? 0 : -1;
    for (long i0 = 0; !rc && i0 < rows; i0 += LIBFILL_BATCH) {
        size_t n = (size_t)(rows - i0 < LIBFILL_BATCH ? rows - i0 : LIBFILL_BATCH);
        for (size_t i = 0; i < n; i++) {
            uint64_t row = (uint64_t)i0 + i;
            gen(row, v + i * dim, dim, ctx);
            for (int b = 0; b < 32; b += 8) {
                uint64_t x = libfill_mix(row * 4 + (uint64_t)b / 8 + 0x5eed);
                memcpy(keys[i] + b, &x, 8);
            }
            cdx_hex(keys[i], 32, hex[i]);
        }
        uint64_t slot;
        if (vecfile_append(vf, v, (const uint8_t (*)[32])keys, n, &slot) || catalog_begin(c)) {
            rc = -1;
            break;
        }
        for (size_t i = 0; !rc && i < n; i++) {
            cdx_image_record rec;
            memset(&rec, 0, sizeof rec);
            snprintf(rec.sha256, sizeof rec.sha256, "%s", hex[i]);
            snprintf(rec.format, sizeof rec.format, "jpeg");
            char path[64];
            snprintf(path, sizeof path, "/bench/%08ld.jpg", i0 + (long)i);
            int64_t id;
            if (catalog_content_insert(c, &rec, (int64_t)(slot + i)) ||
                catalog_image_insert(c, path, hex[i], 1, 1, &id))
                rc = -1;
        }
        if (rc || catalog_commit(c)) rc = -1;
    }
    if (rc) fprintf(stderr, "fill: %s\n", cdx_last_error());
    free(v);
    free(keys);
    free(hex);
    catalog_close(c);
    vecfile_close(vf);
    return rc;
}

#endif
