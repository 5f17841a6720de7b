/*
 * fuzz_config.c - libFuzzer target for the config.json and
 * preprocessor_config.json parsers.
 *
 * The same input is fed to both parsers.  On success the invariants promised
 * by config.h (positive sizes within bounds, width divisible by heads,
 * image_size divisible by patch_size, square crop equal to image_size) are
 * re-checked, aborting when violated.
 *
 * The parser source is included directly so libFuzzer gets coverage of it
 * (clipdex_lib itself is not instrumented).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DCLIPDEX_FUZZ=ON
 *        cmake --build build-fuzz --target fuzz_config
 * Run:   build-fuzz/fuzz_config -max_total_time=60 fuzz/seeds/config
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* as for the library (not set for fuzz targets) */
#endif
#include "clip/config.c"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tower_inv(const cdx_tower_config *t)
{
    if (t->width < 1 || t->heads < 1 || t->layers < 1 || t->mlp < 1 || t->width % t->heads) abort();
    if (!(t->eps > 0.0f) || !isfinite(t->eps)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cdx_clip_config c;
    const char *js = (const char *)data;
    if (cdx_config_parse(js, size, "config.json", &c) == CDX_OK) {
        check_tower_inv(&c.text);
        check_tower_inv(&c.vision);
        if (c.patch_size < 1 || c.image_size < c.patch_size || c.image_size % c.patch_size) abort();
        if (c.vocab_size < 1 || c.context_length < 2 || c.projection_dim < 1) abort();
        if (cdx_preproc_config_parse(NULL, 0, "preprocessor_config.json", &c) != CDX_OK) abort();
    }
    if (cdx_config_parse("{}", 2, "config.json", &c) != CDX_OK) abort();
    if (cdx_preproc_config_parse(js, size, "preprocessor_config.json", &c) == CDX_OK) {
        const cdx_preproc_config *p = &c.pre;
        if (p->crop != c.image_size || p->resize_shortest < p->crop) abort();
        for (int i = 0; i < 3; i++)
            if (!isfinite(p->mean[i]) || !(p->std[i] > 0.0f) || !isfinite(p->std[i])) abort();
    }
    return 0;
}
