/*
 * fuzz_npy.c - libFuzzer target for the .npy header parser (store/npy.c).
 *
 * The input is taken as a whole .npy file.  When the parser accepts it, the
 * promises of npy.h are re-checked (dim in range, data offset + N*D*itemsize
 * equal to the file size) and every row is widened to float32, so ASan sees
 * any read outside the input.
 *
 * The parser source is included directly so libFuzzer gets coverage of it.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DCLIPDEX_FUZZ=ON
 *        cmake --build build-fuzz --target fuzz_npy
 * Run:   build-fuzz/fuzz_npy -max_total_time=60 fuzz/seeds/npy
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* as for the library (not set for fuzz targets) */
#endif
#include "store/npy.c"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_file f;
    size_t off = 0;
    if (npy_parse_header("fuzz.npy", data, size, size, &f, &off) != CDX_OK) return 0;
    if (f.dim < 1 || f.dim > NPY_MAX_DIM || (f.itemsize != 2 && f.itemsize != 4) || off > size) abort();
    if ((uint64_t)off + f.rows * (uint64_t)f.dim * (uint64_t)f.itemsize != size) abort();
    f.data = data + off;
    float *row = malloc((size_t)f.dim * sizeof *row);
    if (!row) return 0;
    for (uint64_t r = 0; r < f.rows; r++) npy_row(&f, r, row);
    free(row);
    return 0;
}
