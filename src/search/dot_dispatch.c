/*
 * dot_dispatch.c - picks the inner-product kernel for the running CPU
 * (see dot.h).  Detection uses __builtin_cpu_supports(), so a binary built
 * anywhere runs correctly everywhere; the choice is made once.
 */
#include "search/dot.h"

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

const dot_kernel *dot_kernel_best(void)
{
    static const dot_kernel *best;   /* benign race: every thread computes the same */
    const dot_kernel *b = __atomic_load_n(&best, __ATOMIC_ACQUIRE);
    if (b) return b;
    b = dot_kernel_by_name(getenv("CLIPDEX_SIMD"));
    if (!b) b = cpu_has_avx512() ? &k_avx512 : cpu_has_avx2() ? &k_avx2 : &k_ref;
    __atomic_store_n(&best, b, __ATOMIC_RELEASE);
    return b;
}
