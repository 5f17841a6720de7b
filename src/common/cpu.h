/*
 * cpu.h - the instruction-set level every SIMD dispatcher uses.
 *
 * One level for the whole engine, from least to most capable:
 *   scalar  plain C only (the compiler's baseline x86-64 code);
 *   avx2    AVX2 + FMA (Haswell and later, Zen 1 and later);
 *   avx512  AVX-512F (Skylake-SP and later, Zen 4 and later).
 * The level is min(what the CPU and OS support, the cap in
 * $CLIPDEX_MAX_ISA=scalar|avx2|avx512).  The cap only ever lowers the level:
 * a level the CPU lacks is never used, whatever the variable says; an
 * unknown value is ignored (no cap).  When the variable is set, the GEMM
 * backend forwards the same cap to oneDNN (gemm.c), so the whole engine is
 * capped.  Detection uses __builtin_cpu_supports (CPUID + XGETBV), never the
 * build machine's flags.
 *
 * Every kernel family (packed and small-M GEMM, element-wise ops, search
 * dot products) asks cdx_cpu_level() when it runs; the answer is an atomic
 * load after the first call.  cdx_cpu_set_cap() lets tests and benchmarks
 * run every level in one process; it is meant to be called while no kernel
 * runs (a kernel that already started finishes on the level it began with).
 */
#ifndef CDX_COMMON_CPU_H
#define CDX_COMMON_CPU_H

typedef enum cdx_isa {
    CDX_ISA_SCALAR = 0,
    CDX_ISA_AVX2 = 1,
    CDX_ISA_AVX512 = 2
} cdx_isa;

#define CDX_ISA_COUNT 3

/* The best level the running CPU supports. */
cdx_isa cdx_cpu_detected(void);
/* The level kernels use: min(detected, cap). */
cdx_isa cdx_cpu_level(void);
/* The cap in force (from $CLIPDEX_MAX_ISA or cdx_cpu_set_cap; CDX_ISA_AVX512
 * when none). */
cdx_isa cdx_cpu_cap(void);
/* 1 when $CLIPDEX_MAX_ISA holds a valid level (then oneDNN is capped too). */
int cdx_cpu_cap_from_env(void);
/* Replace the cap (tests, benchmarks).  Levels above cdx_cpu_detected()
 * still resolve to the detected one. */
void cdx_cpu_set_cap(cdx_isa cap);

/* "scalar", "avx2", "avx512" */
const char *cdx_isa_name(cdx_isa isa);
/* Parses a level name; returns 0 and leaves *out alone when unknown. */
int cdx_isa_parse(const char *s, cdx_isa *out);

#endif
