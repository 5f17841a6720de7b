/*
 * cpu.c - instruction-set detection and the $CLIPDEX_MAX_ISA cap (cpu.h).
 *
 * State: two ints, the detected level and the cap, each computed on first
 * use and then read with relaxed atomic loads (racing first calls compute
 * the same values).  Nothing allocates.
 */
#include "common/cpu.h"

#include <stdlib.h>
#include <string.h>

static const char *const isa_names[CDX_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *cdx_isa_name(cdx_isa isa)
{
    return (unsigned)isa < CDX_ISA_COUNT ? isa_names[isa] : "?";
}

int cdx_isa_parse(const char *s, cdx_isa *out)
{
    if (!s) return 0;
    for (int i = 0; i < CDX_ISA_COUNT; i++)
        if (!strcmp(s, isa_names[i])) {
            *out = (cdx_isa)i;
            return 1;
        }
    return 0;
}

static int detected = -1, cap = -1;

cdx_isa cdx_cpu_detected(void)
{
    int d = __atomic_load_n(&detected, __ATOMIC_RELAXED);
    if (d < 0) {
        __builtin_cpu_init();
        d = __builtin_cpu_supports("avx512f") ? CDX_ISA_AVX512
            : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? CDX_ISA_AVX2
                                                                              : CDX_ISA_SCALAR;
        __atomic_store_n(&detected, d, __ATOMIC_RELAXED);
    }
    return (cdx_isa)d;
}

int cdx_cpu_cap_from_env(void)
{
    cdx_isa v;
    return cdx_isa_parse(getenv("CLIPDEX_MAX_ISA"), &v);
}

cdx_isa cdx_cpu_cap(void)
{
    int c = __atomic_load_n(&cap, __ATOMIC_RELAXED);
    if (c < 0) {
        cdx_isa v = CDX_ISA_AVX512;
        cdx_isa_parse(getenv("CLIPDEX_MAX_ISA"), &v);
        c = (int)v;
        __atomic_store_n(&cap, c, __ATOMIC_RELAXED);
    }
    return (cdx_isa)c;
}

void cdx_cpu_set_cap(cdx_isa c)
{
    if ((unsigned)c >= CDX_ISA_COUNT) c = CDX_ISA_AVX512;
    __atomic_store_n(&cap, (int)c, __ATOMIC_RELAXED);
}

cdx_isa cdx_cpu_level(void)
{
    cdx_isa d = cdx_cpu_detected(), c = cdx_cpu_cap();
    return c < d ? c : d;
}
