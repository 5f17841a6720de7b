/*
 * precision.c - the numeric precision of the towers (cdx_precision,
 * clipdex.h): names, and which precision a request runs at on this CPU.
 *
 * Native means a kernel that is faster than float32 on this CPU: int8 with
 * AVX512_VNNI (vpdpbusd) or AVX2 (vpmaddubsw: measured 1.8-6.6x the float32
 * packed GEMM per Linear on a Zen 3, docs/engine.md), bf16 with AVX512_BF16
 * (vdpbf16ps).  The levels follow cdx_cpu_level() ($CLIPDEX_MAX_ISA caps
 * them).  `auto`: int8 where it is native (its fidelity bound, cosine >=
 * 0.99, holds on the fixture and on a full-size random ViT-B/32), else bf16
 * where native, else fp32.  $CLIPDEX_PRECISION_EMULATE=1 (tests) lets an
 * explicit request the CPU cannot run natively run on the reference paths
 * (plain C) instead of failing.
 */
#include "clipdex.h"
#include "clip/gemm.h"
#include "common/cpu.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"fp32", "auto", "bf16", "int8"};

const char *cdx_precision_name(cdx_precision p)
{
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "?";
}

int cdx_precision_parse(const char *s, cdx_precision *out)
{
    if (!s) return 0;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i])) {
            *out = (cdx_precision)i;
            return 1;
        }
    return 0;
}

static int emulate(void)
{
    const char *e = getenv("CLIPDEX_PRECISION_EMULATE");
    return e && !strcmp(e, "1");
}

int cdx_bf16_native(void)
{
    return cdx_cpu_level() >= CDX_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
}

static int int8_native(void) { return cdx_cpu_level() >= CDX_ISA_AVX2; }

cdx_result cdx_precision_resolve(cdx_precision req, cdx_precision *out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_precision_resolve: out is NULL");
    switch (req) {
    case CDX_PRECISION_FP32:
        *out = req;
        return CDX_OK;
    case CDX_PRECISION_AUTO:
        *out = int8_native() ? CDX_PRECISION_INT8 : cdx_bf16_native() ? CDX_PRECISION_BF16
                                                                    : CDX_PRECISION_FP32;
        return CDX_OK;
    case CDX_PRECISION_INT8:
        if (!int8_native() && !emulate())
            return cdx_error(CDX_ERR_UNSUPPORTED,
                             "precision int8 needs AVX2 or AVX512_VNNI, and this CPU (level %s) has "
                             "neither; use --precision fp32 or auto",
                             cdx_isa_name(cdx_cpu_level()));
        *out = req;
        return CDX_OK;
    case CDX_PRECISION_BF16:
        if (!cdx_bf16_native() && !emulate())
            return cdx_error(CDX_ERR_UNSUPPORTED,
                             "precision bf16 needs a CPU with AVX512_BF16 (vdpbf16ps), and this one "
                             "(level %s) has none; use --precision fp32, int8 or auto",
                             cdx_isa_name(cdx_cpu_level()));
        *out = req;
        return CDX_OK;
    }
    return cdx_error(CDX_ERR_INVALID_ARG, "unknown precision %d (fp32, bf16, int8 or auto)", (int)req);
}
