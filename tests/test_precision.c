/*
 * test_precision.c - fidelity of the reduced precisions (issue #10 section
 * 1, docs/engine.md "Precision") on the clip-tiny fixture, F32 and F16
 * weights: image and text embeddings against the reference outputs, minimum
 * row cosine >= 0.99 for int8 and >= 0.999 for bf16, at every instruction-set
 * level this CPU has; the reference path of each precision too; then the
 * precision rules: names, auto, and an explicit bf16 request failing with a
 * clear message on a CPU without AVX512_BF16 (and running when
 * $CLIPDEX_PRECISION_EMULATE=1).
 */
#include "testutil.h"

#include "clip/encoder.h"
#include "clip/gemm.h"
#include "clip/model.h"
#include "common/cpu.h"
#include "common/error.h"

#include <jansson.h>

#define NI 17
#define NT 36
#define CTXLEN 77

static float *pixels, *e_img, *e_txt;
static int32_t *tokens;

static void load_inputs(const char *dir, int E, int S)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/cases.json", test_fixture_dir());
    json_t *cases = json_load_file(path, 0, NULL);
    CHECK(cases != NULL);
    if (!cases) exit(1);
    json_t *imgs = json_object_get(json_object_get(cases, "preprocess"), "images");
    size_t per = (size_t)3 * S * S;
    free(pixels);
    pixels = malloc(NI * per * sizeof(float));
    for (int i = 0; i < NI; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "expected/preprocess/%s.f32",
                 json_string_value(json_object_get(json_array_get(imgs, (size_t)i), "id")));
        float *p = test_load_array(rel, per);
        memcpy(pixels + i * per, p, per * sizeof(float));
        free(p);
    }
    json_decref(cases);
    free(tokens);
    free(e_img);
    free(e_txt);
    tokens = test_load_array("expected/text_tokens.i32", (size_t)NT * CTXLEN);
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/image_embeds.f32", dir);
    e_img = test_load_array(rel, (size_t)NI * E);
    snprintf(rel, sizeof rel, "expected/%s/text_embeds.f32", dir);
    e_txt = test_load_array(rel, (size_t)NT * E);
}

static double min_cos(const float *got, const float *exp, int rows, int dim)
{
    double worst = 1;
    for (int r = 0; r < rows; r++) {
        double c = test_cosine(got + (size_t)r * dim, exp + (size_t)r * dim, dim);
        if (!(c >= worst)) worst = c;
    }
    return worst;
}

static void check_fidelity(const cdx_model *m, cdx_precision prec, double bound, const char *what,
                           int reference)
{
    const int E = m->cfg.projection_dim;
    cdx_ctx_params p = cdx_ctx_default_params();
    p.precision = prec;
    cdx_ctx *c = NULL;
    cdx_result r = cdx_ctx_new(m, &p, &c);
    CHECKF(r == CDX_OK, "%s: cdx_ctx_new: %s", what, cdx_last_error());
    if (!c) return;
    cdx_ctx_set_reference(c, reference);
    float *img = malloc((size_t)NI * E * 4), *txt = malloc((size_t)NT * E * 4);
    CHECK(cdx_encode_images(c, pixels, NI, img, 0) == CDX_OK);
    CHECK(cdx_encode_tokens(c, tokens, NT, txt, 0) == CDX_OK);
    double ci = min_cos(img, e_img, NI, E), ct = min_cos(txt, e_txt, NT, E);
    printf("  %-40s min cosine: image %.6f text %.6f\n", what, ci, ct);
    CHECKF(ci >= bound && ct >= bound, "%s: min cosine image %.6f text %.6f < %g", what, ci, ct, bound);
    free(img);
    free(txt);
    cdx_ctx_free(c);
}

static void test_model(const char *weights, const char *dir)
{
    printf("%s:\n", weights);
    cdx_model_params mp = cdx_model_default_params();
    mp.weights_file = weights;
    cdx_model *m = NULL;
    cdx_result r = cdx_model_load(test_fixture_dir(), &mp, &m);
    CHECKF(r == CDX_OK, "load %s: %s", weights, cdx_last_error());
    if (r) return;
    load_inputs(dir, m->cfg.projection_dim, m->vision.image_size);
    setenv("CLIPDEX_PRECISION_EMULATE", "1", 1);   /* the scalar level needs it for int8 */
    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        char what[96];
        cdx_cpu_set_cap((cdx_isa)isa);
        snprintf(what, sizeof what, "int8, level %s (%s)", cdx_isa_name((cdx_isa)isa), cdx_q8_kernel_name(cdx_q8_weight_max()));
        check_fidelity(m, CDX_PRECISION_INT8, 0.99, what, 0);
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    check_fidelity(m, CDX_PRECISION_INT8, 0.99, "int8, reference path", 1);
    check_fidelity(m, CDX_PRECISION_FP32, 0.99999, "fp32 (after int8: unchanged)", 0);
    /* bf16: vdpbf16ps where the CPU has it, else (emulated) the reference */
    char what[96];
    snprintf(what, sizeof what, "bf16 (%s)", cdx_bf16_kernel_name());
    check_fidelity(m, CDX_PRECISION_BF16, 0.999, what, 0);
    check_fidelity(m, CDX_PRECISION_BF16, 0.999, "bf16, reference path", 1);
    check_fidelity(m, CDX_PRECISION_INT8, 0.99, "int8 (after bf16: unchanged)", 0);
    unsetenv("CLIPDEX_PRECISION_EMULATE");
    cdx_model_free(m);
}

static void test_rules(void)
{
    cdx_precision p = CDX_PRECISION_AUTO;
    CHECK(cdx_precision_parse("int8", &p) && p == CDX_PRECISION_INT8);
    CHECK(cdx_precision_parse("bf16", &p) && p == CDX_PRECISION_BF16);
    CHECK(cdx_precision_parse("auto", &p) && p == CDX_PRECISION_AUTO);
    CHECK(cdx_precision_parse("fp32", &p) && p == CDX_PRECISION_FP32);
    CHECK(!cdx_precision_parse("fp16", &p) && p == CDX_PRECISION_FP32);
    CHECK(!strcmp(cdx_precision_name(CDX_PRECISION_INT8), "int8"));

    unsetenv("CLIPDEX_PRECISION_EMULATE");
    cdx_precision got = CDX_PRECISION_AUTO;
    CHECK(cdx_precision_resolve(CDX_PRECISION_AUTO, &got) == CDX_OK && got != CDX_PRECISION_AUTO);
    /* auto: int8 wherever AVX2 (or VNNI) runs it */
    if (cdx_cpu_level() >= CDX_ISA_AVX2) CHECK(got == CDX_PRECISION_INT8);
    if (!cdx_bf16_native()) {
        CHECK(got != CDX_PRECISION_BF16);
        cdx_result r = cdx_precision_resolve(CDX_PRECISION_BF16, &got);
        CHECK(r == CDX_ERR_UNSUPPORTED);
        CHECKF(strstr(cdx_last_error(), "AVX512_BF16") != NULL, "message: %s", cdx_last_error());
        printf("  explicit bf16 here: %s\n", cdx_last_error());
        setenv("CLIPDEX_PRECISION_EMULATE", "1", 1);
        CHECK(cdx_precision_resolve(CDX_PRECISION_BF16, &got) == CDX_OK && got == CDX_PRECISION_BF16);
        unsetenv("CLIPDEX_PRECISION_EMULATE");
    }
    /* int8 at the scalar level is not native: refused unless emulated */
    cdx_cpu_set_cap(CDX_ISA_SCALAR);
    CHECK(cdx_precision_resolve(CDX_PRECISION_INT8, &got) == CDX_ERR_UNSUPPORTED);
    CHECK(cdx_precision_resolve(CDX_PRECISION_AUTO, &got) == CDX_OK && got == CDX_PRECISION_FP32);
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    CHECK(cdx_precision_resolve((cdx_precision)42, &got) == CDX_ERR_INVALID_ARG);
}

int main(void)
{
    test_rules();
    test_model("model.safetensors", "fp32");
    test_model("model.fp16.safetensors", "fp16");
    free(pixels);
    free(tokens);
    free(e_img);
    free(e_txt);
    return test_finish();
}
