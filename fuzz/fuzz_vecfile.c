/*
 * fuzz_vecfile.c - libFuzzer target for opening and recovering a vector
 * file (src/store/vecfile.c): the header, the block geometry, the torn-tail
 * detection and the repair a writable open performs.
 *
 * Each input is written as a vector file and:
 *  1. opened read-only: on success every committed row of the view is read
 *     (ASan catches a view past the mapping), vecfile_get() of each slot
 *     must succeed or report damage, and vecfile_check() must not crash;
 *  2. opened writable (which removes a torn tail): on success a second
 *     read-only open must succeed with the same count and nothing torn.
 * The source is included so libFuzzer instruments it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "store/vecfile.c"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_path[64];

static void write_input(const uint8_t *data, size_t size)
{
    FILE *f = fopen(g_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
}

static void read_all(vecfile *vf)
{
    cdx_rows v = vecfile_rows(vf);
    float sink = 0, *row = malloc(sizeof(float) * (size_t)(v.dim > 0 ? v.dim : 1));
    if (!row) abort();
    uint64_t n = v.count < 4096 ? v.count : 4096;
    for (uint64_t i = 0; i < n; i++) {
        const float *r = cdx_rows_at(&v, i);
        for (int d = 0; d < v.dim; d++) sink += r[d];
        uint8_t key[VECFILE_KEY_BYTES];
        cdx_result e = vecfile_get(vf, i, row, key);
        if (e != CDX_OK && e != CDX_ERR_FORMAT) abort();
    }
    if (vecfile_get(vf, v.count, row, NULL) != CDX_ERR_NOT_FOUND) abort();
    vecfile_damage list[8];
    vecfile_check_report rep;
    cdx_result e = vecfile_check(vf, list, 8, &rep);
    if (e == CDX_OK && rep.damaged) abort();
    if (rep.listed > 8) abort();
    free(row);
    if (sink == 12345.678f) fputc(' ', stderr);   /* keep the reads */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_path[0]) {
        char dir[] = "/tmp/fuzz-vecfile-XXXXXX";
        if (!mkdtemp(dir)) abort();
        snprintf(g_path, sizeof g_path, "%s/v.cdxv", dir);
    }
    write_input(data, size);
    vecfile_params p = vecfile_default_params();
    vecfile *vf = NULL;
    vecfile_open_report rep;
    if (vecfile_open(g_path, &p, &vf, &rep) == CDX_OK) {
        if (rep.count != vecfile_count(vf)) abort();
        read_all(vf);
        vecfile_close(vf);
    } else if (vf) {
        abort();
    }
    p.writable = 1;
    vf = NULL;
    if (vecfile_open(g_path, &p, &vf, &rep) == CDX_OK) {
        uint64_t count = vecfile_count(vf);
        vecfile_close(vf);
        p.writable = 0;
        vf = NULL;
        if (vecfile_open(g_path, &p, &vf, &rep) != CDX_OK) abort();   /* repaired: opens */
        if (vecfile_count(vf) != count || rep.torn_records) abort();
        read_all(vf);
        vecfile_close(vf);
    }
    return 0;
}
