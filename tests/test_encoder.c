/*
 * test_encoder.c - the CLIP towers against the clip-tiny reference outputs
 * (OpenAI CLIP code) for model.safetensors (expected/fp32) and
 * model.fp16.safetensors (expected/fp16): embeddings, normalised embeddings,
 * logits, intermediate activations via taps; the reference path against the
 * fast one; batch-size and chunking independence; taps on (everything
 * computed) vs off (work after the pooled row skipped); several threads
 * sharing one model; and, on random models, odd shapes (tails of the SIMD
 * kernels), exact GELU and hostile token ids.
 */
#include "testutil.h"

#include "clip/encoder.h"
#include "clip/gemm.h"
#include "common/cpu.h"
#include "clip/model.h"
#include "testsupport/model_random.h"

#include <jansson.h>
#include <pthread.h>

#define NI 17
#define NT 36
#define CTXLEN 77

typedef struct fixture {
    const cdx_model *m;
    int E, Wv, Wt, T, S;
    float *pixels;      /* [NI, 3, S, S] */
    int32_t *tokens;    /* [NT, 77] */
    int img_tap[2], txt_tap[2];   /* indices of the intermediates' inputs */
    char *texts[NT];    /* the texts of the token rows (cases.json) */
} fixture;

/* max|got-exp| <= tol_rel * max|exp| (+ tol_abs) */
static void check_close(const char *what, const float *got, const float *exp, size_t n,
                        double tol_rel, double tol_abs)
{
    double d = test_max_abs_diff(got, exp, n), mx = test_max_abs(exp, n);
    CHECKF(d <= tol_rel * mx + tol_abs, "%s: max abs diff %.3g (max|exp| %.3g, allowed %.3g)", what, d,
           mx, tol_rel * mx + tol_abs);
    printf("  %-44s max abs diff %.3g (rel %.3g)\n", what, d, d / (mx > 0 ? mx : 1));
}

static void check_rows_cos(const char *what, const float *got, const float *exp, int rows, int dim)
{
    double worst = 1;
    for (int r = 0; r < rows; r++) {
        double c = test_cosine(got + (size_t)r * dim, exp + (size_t)r * dim, dim);
        if (!(c >= worst)) worst = c;
    }
    CHECKF(worst >= 0.99999, "%s: min row cosine %.9f", what, worst);
}

static float *load_f32(const char *dir, const char *name, size_t count)
{
    char rel[256];
    snprintf(rel, sizeof rel, "expected/%s/%s", dir, name);
    return test_load_array(rel, count);
}

static void load_inputs(fixture *f, json_t *cases)
{
    json_t *imgs = json_object_get(json_object_get(cases, "preprocess"), "images");
    json_t *texts = json_object_get(json_object_get(cases, "texts"), "texts");
    json_t *inter = json_object_get(cases, "intermediates_inputs");
    CHECK(json_array_size(imgs) == NI && json_array_size(texts) == NT);
    size_t per = (size_t)3 * f->S * f->S;
    f->pixels = malloc(NI * per * sizeof(float));
    for (int i = 0; i < NI; i++) {
        char rel[256];
        const char *id = json_string_value(json_object_get(json_array_get(imgs, (size_t)i), "id"));
        snprintf(rel, sizeof rel, "expected/preprocess/%s.f32", id);
        float *p = test_load_array(rel, per);
        memcpy(f->pixels + i * per, p, per * sizeof(float));
        free(p);
        for (int k = 0; k < 2; k++)
            if (!strcmp(id, json_string_value(json_array_get(json_object_get(inter, "images"), (size_t)k))))
                f->img_tap[k] = i;
    }
    for (int i = 0; i < NT; i++) {
        const char *t = json_string_value(json_object_get(json_array_get(texts, (size_t)i), "text"));
        f->texts[i] = strdup(t);
        for (int k = 0; k < 2; k++)
            if (!strcmp(t, json_string_value(json_array_get(json_object_get(inter, "texts"), (size_t)k))))
                f->txt_tap[k] = i;
    }
    f->tokens = test_load_array("expected/text_tokens.i32", (size_t)NT * CTXLEN);
}

static cdx_ctx *new_ctx(const cdx_model *m, int threads, int max_batch)
{
    cdx_ctx_params p = cdx_ctx_default_params();
    p.n_threads = threads;
    p.max_batch = max_batch;
    cdx_ctx *c = NULL;
    cdx_result r = cdx_ctx_new(m, &p, &c);
    CHECKF(r == CDX_OK, "cdx_ctx_new: %s", cdx_last_error());
    if (!c) exit(1);
    return c;
}

/* embeddings of all fixture images and texts with one ctx */
static void encode_all(cdx_ctx *c, const fixture *f, float *img, float *txt, int normalize)
{
    CHECK(cdx_encode_images(c, f->pixels, NI, img, normalize) == CDX_OK);
    CHECK(cdx_encode_tokens(c, f->tokens, NT, txt, normalize) == CDX_OK);
}

static void check_against_expected(const char *label, const fixture *f, const char *dir,
                                   cdx_ctx *c)
{
    printf(" %s:\n", label);
    size_t ni = (size_t)NI * f->E, nt = (size_t)NT * f->E;
    float *img = malloc(ni * 4), *txt = malloc(nt * 4), *imgn = malloc(ni * 4), *txtn = malloc(nt * 4);
    float *e_img = load_f32(dir, "image_embeds.f32", ni), *e_txt = load_f32(dir, "text_embeds.f32", nt);
    float *e_imgn = load_f32(dir, "image_embeds_norm.f32", ni);
    float *e_txtn = load_f32(dir, "text_embeds_norm.f32", nt);
    float *e_log = load_f32(dir, "logits_per_image.f32", (size_t)NI * NT);

    encode_all(c, f, img, txt, 0);
    encode_all(c, f, imgn, txtn, 1);
    check_close("image_embeds", img, e_img, ni, 1e-4, 0);
    check_rows_cos("image_embeds", img, e_img, NI, f->E);
    check_close("text_embeds", txt, e_txt, nt, 1e-4, 0);
    check_rows_cos("text_embeds", txt, e_txt, NT, f->E);
    check_close("image_embeds_norm", imgn, e_imgn, ni, 0, 1e-4);
    check_close("text_embeds_norm", txtn, e_txtn, nt, 0, 1e-4);
    /* the same through the tokenizer (cdx_encode_texts) */
    CHECK(cdx_encode_texts(c, (const char *const *)f->texts, NT, txt, 0) == CDX_OK);
    check_close("text_embeds via cdx_encode_texts", txt, e_txt, nt, 1e-4, 0);

    cdx_model_info info;
    cdx_model_get_info(f->m, &info);
    float *logits = malloc((size_t)NI * NT * 4);
    double scale = exp((double)info.logit_scale);
    for (int i = 0; i < NI; i++)
        for (int j = 0; j < NT; j++) {
            double s = 0;
            for (int k = 0; k < f->E; k++) s += (double)imgn[i * f->E + k] * txtn[j * f->E + k];
            logits[i * NT + j] = (float)(scale * s);
        }
    check_close("logits_per_image", logits, e_log, (size_t)NI * NT, 1e-4, 1e-3);

    /* intermediates through taps */
    const int Tv = f->m->vision.n_tokens, Wv = f->Wv, Wt = f->Wt;
    size_t per = (size_t)3 * f->S * f->S;
    float *px2 = malloc(2 * per * 4);
    int32_t ids2[2 * CTXLEN];
    for (int k = 0; k < 2; k++) {
        memcpy(px2 + k * per, f->pixels + (size_t)f->img_tap[k] * per, per * 4);
        memcpy(ids2 + k * CTXLEN, f->tokens + (size_t)f->txt_tap[k] * CTXLEN, CTXLEN * 4);
    }
    cdx_taps taps = {
        malloc((size_t)2 * Tv * Wv * 4), malloc((size_t)2 * Tv * Wv * 4), malloc((size_t)2 * Wv * 4),
        malloc((size_t)2 * CTXLEN * Wt * 4), malloc((size_t)2 * CTXLEN * Wt * 4), malloc((size_t)2 * Wt * 4)};
    float out2[2 * 1024], out2_notap[2 * 1024];
    cdx_ctx_set_taps(c, &taps);
    CHECK(cdx_encode_images(c, px2, 2, out2, 0) == CDX_OK);
    CHECK(cdx_encode_tokens(c, ids2, 2, out2 + f->E * 2, 0) == CDX_OK);
    cdx_ctx_set_taps(c, NULL);
    struct { const char *name; float *got; size_t n; } tv[] = {
        {"vision_embeddings_ln_pre.f32", taps.vision_ln_pre, (size_t)2 * Tv * Wv},
        {"vision_layer0_out.f32", taps.vision_layer0_out, (size_t)2 * Tv * Wv},
        {"vision_pooled_ln_post.f32", taps.vision_pooled_ln_post, (size_t)2 * Wv},
        {"text_embeddings.f32", taps.text_embeddings, (size_t)2 * CTXLEN * Wt},
        {"text_layer0_out.f32", taps.text_layer0_out, (size_t)2 * CTXLEN * Wt},
        {"text_pooled_ln_final.f32", taps.text_pooled_ln_final, (size_t)2 * Wt}};
    for (size_t i = 0; i < sizeof tv / sizeof tv[0]; i++) {
        float *e = load_f32(dir, tv[i].name, tv[i].n);
        check_close(tv[i].name, tv[i].got, e, tv[i].n, 1e-4, 0);
        free(e);
        free(tv[i].got);
    }
    /* taps force the full computation; without them work after the pooled
     * row is skipped: both must give the same embeddings */
    CHECK(cdx_encode_images(c, px2, 2, out2_notap, 0) == CDX_OK);
    CHECK(cdx_encode_tokens(c, ids2, 2, out2_notap + f->E * 2, 0) == CDX_OK);
    check_close("taps (full compute) vs skipping", out2_notap, out2, (size_t)4 * f->E, 1e-5, 0);

    free(px2); free(logits);
    free(img); free(txt); free(imgn); free(txtn);
    free(e_img); free(e_txt); free(e_imgn); free(e_txtn); free(e_log);
}

typedef struct thread_job {
    const fixture *f;
    float *img, *txt;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    cdx_ctx *c = new_ctx(j->f->m, 1, 5);
    for (int rep = 0; rep < 2; rep++) encode_all(c, j->f, j->img, j->txt, 0);
    cdx_ctx_free(c);
    return NULL;
}

static void test_fixture_model(const char *weights, const char *dir)
{
    printf("%s:\n", weights);
    cdx_model_params mp = cdx_model_default_params();
    mp.weights_file = weights;
    cdx_model *m = NULL;
    cdx_result r = cdx_model_load(test_fixture_dir(), &mp, &m);
    if (r == CDX_OK) r = cdx_model_prepare(m, CDX_TOWER_ALL);   /* towers are lazy */
    CHECKF(r == CDX_OK, "load %s: %s", weights, cdx_last_error());
    if (r != CDX_OK) {
        cdx_model_free(m);
        return;
    }
    /* the fast path must be the packed-weight one (so the comparisons
     * below test it): weights are packed on every CPU */
    if (!getenv("CLIPDEX_PACK"))
        CHECK(m->text.blocks[0].qkv.wp && m->text.proj.wp && m->vision.blocks[0].fc1.wp &&
              m->vision.patch_wp);
    fixture f = {m, m->cfg.projection_dim, m->vision.cfg.width, m->text.cfg.width,
                 m->vision.n_tokens, m->vision.image_size, NULL, NULL, {0, 0}, {0, 0}, {NULL}};
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/cases.json", test_fixture_dir());
    json_t *cases = json_load_file(path, 0, NULL);
    CHECK(cases != NULL);
    if (!cases) exit(1);
    load_inputs(&f, cases);
    json_decref(cases);

    cdx_ctx *c = new_ctx(m, 0, 32);
    check_against_expected("fast path", &f, dir, c);
    /* the fast path at every instruction-set level this CPU has (what
     * $CLIPDEX_MAX_ISA selects): same tolerance against the reference outputs */
    for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
        char what[64];
        snprintf(what, sizeof what, "fast path, level %s", cdx_isa_name((cdx_isa)isa));
        cdx_cpu_set_cap((cdx_isa)isa);
        check_against_expected(what, &f, dir, c);
    }
    cdx_cpu_set_cap(CDX_ISA_AVX512);
    cdx_ctx_set_reference(c, 1);
    check_against_expected("reference path", &f, dir, c);

    /* reference vs fast, batch independence, chunking, threads */
    size_t ni = (size_t)NI * f.E, nt = (size_t)NT * f.E;
    float *ri = malloc(ni * 4), *rt = malloc(nt * 4), *fi = malloc(ni * 4), *ft = malloc(nt * 4);
    encode_all(c, &f, ri, rt, 0);
    cdx_ctx_set_reference(c, 0);
    encode_all(c, &f, fi, ft, 0);
    printf(" consistency:\n");
    check_close("reference vs fast: images", fi, ri, ni, 1e-5, 0);
    check_close("reference vs fast: texts", ft, rt, nt, 1e-5, 0);
    float *bi = malloc(ni * 4), *bt = malloc(nt * 4);
    size_t per = (size_t)3 * f.S * f.S;
    for (int i = 0; i < NI; i++)
        CHECK(cdx_encode_images(c, f.pixels + i * per, 1, bi + (size_t)i * f.E, 0) == CDX_OK);
    for (int i = 0; i < NT; i++)
        CHECK(cdx_encode_tokens(c, f.tokens + (size_t)i * CTXLEN, 1, bt + (size_t)i * f.E, 0) == CDX_OK);
    check_close("batch 1 vs batch 17/36: images", bi, fi, ni, 1e-5, 0);
    check_close("batch 1 vs batch 17/36: texts", bt, ft, nt, 1e-5, 0);
    cdx_ctx *c3 = new_ctx(m, 1, 3);   /* chunks of 3, one thread */
    encode_all(c3, &f, bi, bt, 0);
    check_close("max_batch 3 (chunked), 1 thread: images", bi, fi, ni, 1e-5, 0);
    check_close("max_batch 3 (chunked), 1 thread: texts", bt, ft, nt, 1e-5, 0);
    cdx_ctx_free(c3);

    enum { NTHR = 3 };
    pthread_t th[NTHR];
    thread_job jobs[NTHR];
    for (int t = 0; t < NTHR; t++) {
        jobs[t] = (thread_job){&f, malloc(ni * 4), malloc(nt * 4)};
        CHECK(pthread_create(&th[t], NULL, thread_main, &jobs[t]) == 0);
    }
    for (int t = 0; t < NTHR; t++) {
        pthread_join(th[t], NULL);
        check_close("3 threads sharing the model: images", jobs[t].img, fi, ni, 1e-5, 0);
        check_close("3 threads sharing the model: texts", jobs[t].txt, ft, nt, 1e-5, 0);
        free(jobs[t].img);
        free(jobs[t].txt);
    }
    free(ri); free(rt); free(fi); free(ft); free(bi); free(bt);
    cdx_ctx_free(c);
    free(f.pixels);
    free(f.tokens);
    for (int i = 0; i < NT; i++) free(f.texts[i]);
    cdx_model_free(m);
}

/* Random models: shapes whose widths are not multiples of 16, exact GELU,
 * reference vs fast; ids after the end token do not matter; bad ids fail. */
static void test_random_models(void)
{
    printf("random models:\n");
    for (int variant = 0; variant < 2; variant++) {
        cdx_clip_config cfg;
        CHECK(cdx_model_random_config("tiny", &cfg) == CDX_OK);
        cfg.image_size = 60;
        cfg.patch_size = 12;           /* 5x5 grid, 26 tokens, 432-long patches */
        cfg.vision.width = 72;         /* 3 heads of 24 */
        cfg.vision.heads = 3;
        cfg.vision.mlp = 200;
        cfg.text.width = 40;           /* 5 heads of 8 */
        cfg.text.heads = 5;
        cfg.text.mlp = 88;
        cfg.text.layers = 3;
        cfg.vocab_size = 49408;
        cfg.context_length = 20;
        cfg.projection_dim = 24;
        if (variant) cfg.vision.act = cfg.text.act = CDX_ACT_GELU;
        cdx_model *m = NULL;
        CHECK(cdx_model_random(&cfg, 7 + variant, &m) == CDX_OK);
        if (!m) return;
        if (!getenv("CLIPDEX_PACK"))   /* odd widths: packed tails */
            CHECK(m->text.blocks[0].fc2.wp && m->vision.blocks[0].qkv.wp);
        cdx_ctx *c = new_ctx(m, 2, 4);
        int n = 6;
        size_t per = (size_t)3 * 60 * 60;
        float *px = malloc(n * per * 4);
        for (size_t i = 0; i < n * per; i++) px[i] = (float)sin(0.37 * i) * 1.5f;
        int32_t ids[6 * 20] = {0};
        for (int s = 0; s < n; s++) {
            int len = 2 + 3 * s;   /* 2 .. 17 tokens */
            ids[s * 20] = 49406;
            for (int i = 1; i < len - 1; i++) ids[s * 20 + i] = (s * 977 + i * 131) % 49000;
            ids[s * 20 + len - 1] = 49407;
        }
        ids[5 * 20 + 19] = 49407;   /* a second end token: pool at the first */
        float fi[6 * 24], ft[6 * 24], ri[6 * 24], rt[6 * 24], gt[6 * 24];
        cdx_ctx_set_reference(c, 1);
        CHECK(cdx_encode_images(c, px, n, ri, 0) == CDX_OK);
        CHECK(cdx_encode_tokens(c, ids, n, rt, 0) == CDX_OK);
        cdx_ctx_set_reference(c, 0);
        /* every instruction-set level the CPU has, the default (best) last */
        for (int isa = CDX_ISA_SCALAR; isa <= (int)cdx_cpu_detected(); isa++) {
            char what[96];
            cdx_cpu_set_cap((cdx_isa)isa);
            CHECK(cdx_encode_images(c, px, n, fi, 0) == CDX_OK);
            CHECK(cdx_encode_tokens(c, ids, n, ft, 0) == CDX_OK);
            snprintf(what, sizeof what, "%sreference vs fast images (%s)", variant ? "gelu: " : "",
                     cdx_isa_name((cdx_isa)isa));
            check_close(what, fi, ri, 6 * 24, 1e-5, 0);
            snprintf(what, sizeof what, "%sreference vs fast texts (%s)", variant ? "gelu: " : "",
                     cdx_isa_name((cdx_isa)isa));
            check_close(what, ft, rt, 6 * 24, 1e-5, 0);
        }
        cdx_cpu_set_cap(CDX_ISA_AVX512);
        /* changing ids after the end token (keeping them < 49407) changes nothing */
        for (int s = 0; s < n - 1; s++)
            for (int i = 3 * s + 2; i < 20; i++) ids[s * 20 + i] = (i * 7919) % 49406;
        CHECK(cdx_encode_tokens(c, ids, n, gt, 0) == CDX_OK);
        check_close("ids after the end token ignored", gt, ft, 6 * 24, 1e-6, 0);
        /* a row without an end token pools at its largest id, like argmax */
        int32_t noend[20] = {5, 40000, 7, 40000, 9};
        CHECK(cdx_encode_tokens(c, noend, 1, gt, 0) == CDX_OK);
        cdx_taps tp = {0};
        float pooled[40], full[40];
        tp.text_pooled_ln_final = pooled;
        cdx_ctx_set_taps(c, &tp);
        CHECK(cdx_encode_tokens(c, noend, 1, gt + 24, 0) == CDX_OK);
        cdx_ctx_set_taps(c, NULL);
        check_close("no end token: taps vs skipping", gt + 24, gt, 24, 1e-5, 0);
        (void)full;
        /* hostile input */
        ids[3] = 49408;
        CHECK(cdx_encode_tokens(c, ids, n, gt, 0) == CDX_ERR_INVALID_ARG);
        ids[3] = -1;
        CHECK(cdx_encode_tokens(c, ids, n, gt, 0) == CDX_ERR_INVALID_ARG);
        CHECK(cdx_encode_images(c, px, -1, fi, 0) == CDX_ERR_INVALID_ARG);
        CHECK(cdx_encode_images(NULL, px, 1, fi, 0) == CDX_ERR_INVALID_ARG);
        CHECK(cdx_encode_images(c, px, 0, NULL, 0) == CDX_OK);
        const char *txt[1] = {"a cat"};
        CHECK(cdx_encode_texts(c, txt, 1, gt, 0) != CDX_OK);   /* random model: no tokenizer */
        cdx_ctx_params bad = cdx_ctx_default_params();
        bad.max_batch = 0;
        cdx_ctx *cb = NULL;
        CHECK(cdx_ctx_new(m, &bad, &cb) == CDX_ERR_INVALID_ARG && cb == NULL);
        free(px);
        cdx_ctx_free(c);
        cdx_model_free(m);
    }
    cdx_ctx_free(NULL);
}

int main(void)
{
    test_random_models();
    test_fixture_model("model.safetensors", "fp32");
    test_fixture_model("model.fp16.safetensors", "fp16");
    return test_finish();
}
