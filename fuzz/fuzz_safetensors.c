/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * The input is a whole safetensors image parsed from memory with
 * cdx_st_parse() (the same code path cdx_st_open() uses on the mmap).  On
 * success every invariant promised by safetensors.h is re-checked and every
 * tensor byte is read, so ASan catches any out-of-bounds pointer.
 *
 * The parser source is included directly: clipdex_lib is not built with
 * coverage instrumentation, and libFuzzer needs it to make progress.  The
 * archive's copy of safetensors.o is then never pulled in by the linker.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DCLIPDEX_FUZZ=ON
 *        cmake --build build-fuzz --target fuzz_safetensors
 * Run:   build-fuzz/fuzz_safetensors -max_total_time=60 fuzz/seeds/safetensors
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* as for the library (not set for fuzz targets) */
#endif
#include "clip/safetensors.c"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cdx_st_file f;
    if (cdx_st_parse(data, size, "fuzz.safetensors", &f) != CDX_OK) {
        if (f.tensors || f.n_tensors || f.name) abort();   /* failure leaves it empty */
        return 0;
    }
    unsigned sum = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const cdx_st_tensor *t = &f.tensors[i];
        if (i && strcmp(f.tensors[i - 1].name, t->name) >= 0) abort();   /* sorted, unique */
        if (cdx_st_find(&f, t->name) != t) abort();
        if (t->data < f.base + f.data_start || t->nbytes > f.len ||
            t->data + t->nbytes > f.base + f.len)
            abort();
        size_t es = cdx_st_dtype_size(t->dtype);
        if (es && t->numel * es != t->nbytes) abort();
        for (size_t k = 0; k < t->nbytes; k++) sum += t->data[k];   /* ASan: in bounds */
        if ((t->dtype == CDX_ST_F32 || t->dtype == CDX_ST_F16 || t->dtype == CDX_ST_BF16) &&
            t->numel <= (1u << 20)) {
            float *buf = malloc(t->numel * sizeof(float) + 1);
            if (buf && cdx_st_to_f32(&f, t, buf) != CDX_OK) abort();
            free(buf);
        }
    }
    (void)sum;
    cdx_st_close(&f);
    return 0;
}
