/*
 * dot_dispatch.c - picks the inner-product kernel for the running CPU
 * (see dot.h).  Detection uses __builtin_cpu_supports(), so a binary built
 * anywhere runs correctly everywhere.  dot_kernel_best() follows the
 * engine-wide level (common/cpu.h: the CPU capped by $CLIPDEX_MAX_ISA),
 * asked at each call (an atomic load), so a cap set by a test or benchmark
 * takes effect at once; $CLIPDEX_SIMD may pick a lower kernel, never one above
 * that level.  dot_kernel_by_name() is bounded by the CPU only (tests call
 * every kernel the CPU has).
 */
#include "search/dot.h"
#include "common/cpu.h"

#include <stdlib.h>
#include <string.h>

static const dot_kernel k_ref = {"scalar", dot_tile_ref};
static const dot_kernel k_avx2 = {"avx2", dot_tile_avx2};
static const dot_kernel k_avx512 = {"avx512", dot_tile_avx512};

const dot_kernel *dot_kernel_ref(void) { return &k_ref; }

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

const dot_kernel *dot_kernel_by_name(const char *name)
{
    if (!name) return NULL;
    if (strcmp(name, "scalar") == 0) return &k_ref;
    if (strcmp(name, "avx2") == 0) return cpu_has_avx2() ? &k_avx2 : NULL;
    if (strcmp(name, "avx512") == 0) return cpu_has_avx512() ? &k_avx512 : NULL;
    return NULL;
}

static const dot_kernel *kernel_of(cdx_isa isa)
{
    return isa >= CDX_ISA_AVX512 ? &k_avx512 : isa == CDX_ISA_AVX2 ? &k_avx2 : &k_ref;
}

const dot_kernel *dot_kernel_best(void)
{
    const cdx_isa level = cdx_cpu_level();
    cdx_isa want;
    if (cdx_isa_parse(getenv("CLIPDEX_SIMD"), &want) && want < level) return kernel_of(want);
    return kernel_of(level);
}
