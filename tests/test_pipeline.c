/*
 * test_pipeline.c - end-to-end faithfulness through the public API only:
 * image file -> cdx_preprocess_file -> cdx_encode_images, and UTF-8 text ->
 * cdx_tokenize -> cdx_encode_tokens, compared with the reference CLIP outputs
 * of ../shared/fixtures/clip-tiny for the F32 and the F16 weights; logits;
 * and EXIF orientation (an oriented JPEG, autorotated, embeds exactly like
 * an upright copy of its pixels).
 */
#include "clipdex.h"
#include "testutil.h"

#include <jansson.h>
#include <unistd.h>
#include <vips/vips.h>

#define MAX_IMAGES 32
#define MAX_TEXTS 64

typedef struct fixture {
    int n_img, n_txt;
    char *img_id[MAX_IMAGES], *img_file[MAX_IMAGES];
    char *txt[MAX_TEXTS];
} fixture;

static void load_cases(fixture *fx)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/cases.json", test_fixture_dir());
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        fprintf(stderr, "%s: %s\n", path, err.text);
        exit(1);
    }
    json_t *imgs = json_object_get(json_object_get(root, "preprocess"), "images");
    json_t *txts = json_object_get(json_object_get(root, "texts"), "texts");
    fx->n_img = (int)json_array_size(imgs);
    fx->n_txt = (int)json_array_size(txts);
    if (fx->n_img > MAX_IMAGES || fx->n_txt > MAX_TEXTS) exit(1);
    for (int i = 0; i < fx->n_img; i++) {
        json_t *o = json_array_get(imgs, (size_t)i);
        fx->img_id[i] = strdup(json_string_value(json_object_get(o, "id")));
        fx->img_file[i] = strdup(json_string_value(json_object_get(o, "file")));
    }
    for (int i = 0; i < fx->n_txt; i++)
        fx->txt[i] = strdup(json_string_value(
            json_object_get(json_array_get(txts, (size_t)i), "text")));
    json_decref(root);
}

static void free_cases(fixture *fx)
{
    for (int i = 0; i < fx->n_img; i++) free(fx->img_id[i]), free(fx->img_file[i]);
    for (int i = 0; i < fx->n_txt; i++) free(fx->txt[i]);
}

/* cosine >= 0.99999 per row and max|got-exp| <= 1e-4 * max|exp| */
static void check_embeddings(const char *what, const float *got, const float *exp,
                             int rows, int dim)
{
    double tol = 1e-4 * test_max_abs(exp, (size_t)rows * dim);
    double d = test_max_abs_diff(got, exp, (size_t)rows * dim);
    CHECKF(d <= tol, "%s: max abs diff %.3g > %.3g", what, d, tol);
    for (int r = 0; r < rows; r++) {
        double c = test_cosine(got + (size_t)r * dim, exp + (size_t)r * dim, dim);
        CHECKF(c >= 0.99999, "%s row %d: cosine %.8f", what, r, c);
    }
    printf("%s: max abs diff %.3g (tolerance %.3g)\n", what, d, tol);
}

static void run_weights(const fixture *fx, const char *weights, const char *expdir)
{
    cdx_model_params mp = cdx_model_default_params();
    mp.weights_file = weights;
    cdx_model *m = NULL;
    cdx_result r = cdx_model_load(test_fixture_dir(), &mp, &m);
    CHECKF(r == CDX_OK, "load %s: %s", weights, cdx_last_error());
    if (r != CDX_OK) return;
    cdx_model_info info;
    cdx_model_get_info(m, &info);
    const int S = info.image_size, D = info.embed_dim, T = info.context_length;
    const size_t px = (size_t)3 * S * S;

    cdx_ctx *ctx = NULL;
    cdx_ctx_params cp = cdx_ctx_default_params();
    CHECK(cdx_ctx_new(m, &cp, &ctx) == CDX_OK);

    /* Images: file -> pixels (bit-exact) -> embedding. */
    float *pixels = malloc(px * (size_t)fx->n_img * sizeof(float));
    cdx_image_params ip = cdx_image_default_params();
    ip.autorotate = 0; /* the reference ignores EXIF orientation */
    for (int i = 0; i < fx->n_img; i++) {
        char path[4096], rel[512];
        snprintf(path, sizeof path, "%s/%s", test_fixture_dir(), fx->img_file[i]);
        r = cdx_preprocess_file(m, path, &ip, pixels + px * (size_t)i, NULL);
        CHECKF(r == CDX_OK, "%s: %s", path, cdx_last_error());
        snprintf(rel, sizeof rel, "expected/preprocess/%s.f32", fx->img_id[i]);
        float *ref = test_load_array(rel, px);
        double d = test_max_abs_diff(pixels + px * (size_t)i, ref, px);
        CHECKF(d == 0.0, "%s: preprocess max abs diff %g (must be bit-exact)", fx->img_id[i], d);
        free(ref);
    }
    float *img = malloc(sizeof(float) * (size_t)fx->n_img * D);
    CHECK(cdx_encode_images(ctx, pixels, fx->n_img, img, 0) == CDX_OK);
    char rel[512], what[256];
    snprintf(rel, sizeof rel, "%s/image_embeds.f32", expdir);
    float *exp_img = test_load_array(rel, (size_t)fx->n_img * D);
    snprintf(what, sizeof what, "%s image embeddings from files", weights);
    check_embeddings(what, img, exp_img, fx->n_img, D);

    /* Texts: UTF-8 -> ids (exact) -> embedding. */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)fx->n_txt * T);
    int32_t *exp_ids = test_load_array("expected/text_tokens.i32", (size_t)fx->n_txt * T);
    for (int i = 0; i < fx->n_txt; i++) {
        r = cdx_tokenize(m, fx->txt[i], strlen(fx->txt[i]), ids + (size_t)i * T, NULL);
        CHECKF(r == CDX_OK, "tokenize %d: %s", i, cdx_last_error());
        CHECKF(!memcmp(ids + (size_t)i * T, exp_ids + (size_t)i * T, sizeof(int32_t) * T),
               "text %d ids differ from the reference", i);
    }
    float *txt = malloc(sizeof(float) * (size_t)fx->n_txt * D);
    CHECK(cdx_encode_tokens(ctx, ids, fx->n_txt, txt, 0) == CDX_OK);
    snprintf(rel, sizeof rel, "%s/text_embeds.f32", expdir);
    float *exp_txt = test_load_array(rel, (size_t)fx->n_txt * D);
    snprintf(what, sizeof what, "%s text embeddings from strings", weights);
    check_embeddings(what, txt, exp_txt, fx->n_txt, D);

    /* The convenience path gives the same vectors. */
    float *txt2 = malloc(sizeof(float) * (size_t)fx->n_txt * D);
    CHECK(cdx_encode_texts(ctx, (const char *const *)fx->txt, fx->n_txt, txt2, 0) == CDX_OK);
    CHECK(test_max_abs_diff(txt, txt2, (size_t)fx->n_txt * D) <= 1e-6);

    /* Logits: exp(logit_scale) * normalised image . normalised text. */
    float *imgn = malloc(sizeof(float) * (size_t)fx->n_img * D);
    float *txtn = malloc(sizeof(float) * (size_t)fx->n_txt * D);
    CHECK(cdx_encode_images(ctx, pixels, fx->n_img, imgn, 1) == CDX_OK);
    CHECK(cdx_encode_tokens(ctx, ids, fx->n_txt, txtn, 1) == CDX_OK);
    snprintf(rel, sizeof rel, "%s/logits_per_image.f32", expdir);
    float *exp_logits = test_load_array(rel, (size_t)fx->n_img * fx->n_txt);
    double scale = exp((double)info.logit_scale), worst = 0;
    for (int i = 0; i < fx->n_img; i++)
        for (int j = 0; j < fx->n_txt; j++) {
            double s = 0;
            for (int k = 0; k < D; k++) s += (double)imgn[i * D + k] * txtn[j * D + k];
            double d = fabs(scale * s - exp_logits[i * fx->n_txt + j]);
            if (d > worst) worst = d;
        }
    double ltol = 1e-4 * test_max_abs(exp_logits, (size_t)fx->n_img * fx->n_txt) + 1e-3;
    CHECKF(worst <= ltol, "%s logits max abs diff %.3g > %.3g", weights, worst, ltol);
    printf("%s logits: max abs diff %.3g (tolerance %.3g)\n", weights, worst, ltol);

    free(pixels), free(img), free(exp_img), free(ids), free(exp_ids), free(txt);
    free(txt2), free(exp_txt), free(imgn), free(txtn), free(exp_logits);
    cdx_ctx_free(ctx);
    cdx_model_free(m);
}

/* An EXIF-oriented JPEG with autorotate on must embed exactly like a PNG of
 * the same pixels stored upright; with autorotate off it must not. */
static void check_exif(void)
{
    cdx_model *m = NULL;
    if (cdx_model_load(test_fixture_dir(), NULL, &m) != CDX_OK) {
        CHECKF(0, "load: %s", cdx_last_error());
        return;
    }
    cdx_model_info info;
    cdx_model_get_info(m, &info);
    const size_t px = (size_t)3 * info.image_size * info.image_size;
    const int D = info.embed_dim;
    char src[4096], upright[] = "/tmp/clipdex-exif-XXXXXX.png";
    snprintf(src, sizeof src, "%s/images/imagenet_can_opener_exif6.jpeg", test_fixture_dir());
    int fd = mkstemps(upright, 4);
    CHECK(fd >= 0);
    close(fd);

    /* The upright copy: decode, apply the orientation with libvips, save
     * losslessly. */
    VipsImage *in = vips_image_new_from_file(src, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    VipsImage *rot = NULL;
    CHECK(in && vips_autorot(in, &rot, NULL) == 0);
    if (rot) vips_image_remove(rot, VIPS_META_ORIENTATION);
    CHECK(rot && vips_pngsave(rot, upright, "compression", 1, NULL) == 0);
    if (rot) g_object_unref(rot);
    if (in) g_object_unref(in);

    float *a = malloc(px * sizeof(float)), *b = malloc(px * sizeof(float));
    float *c = malloc(px * sizeof(float));
    cdx_image_params on = cdx_image_default_params(), off = on;
    off.autorotate = 0;
    CHECK(on.autorotate == 1); /* users expect upright photos by default */
    cdx_image_meta meta;
    CHECK(cdx_preprocess_file(m, src, &on, a, &meta) == CDX_OK);
    CHECK(meta.orientation == 6);
    CHECK(cdx_preprocess_file(m, upright, &on, b, NULL) == CDX_OK);
    CHECK(cdx_preprocess_file(m, src, &off, c, NULL) == CDX_OK);
    CHECKF(test_max_abs_diff(a, b, px) == 0.0, "autorotated pixels differ from the upright copy");
    CHECKF(test_max_abs_diff(a, c, px) > 0.1, "autorotate had no effect");

    cdx_ctx *ctx = NULL;
    CHECK(cdx_ctx_new(m, NULL, &ctx) == CDX_OK);
    float *ea = malloc(sizeof(float) * D), *eb = malloc(sizeof(float) * D);
    CHECK(cdx_encode_images(ctx, a, 1, ea, 1) == CDX_OK);
    CHECK(cdx_encode_images(ctx, b, 1, eb, 1) == CDX_OK);
    CHECKF(test_max_abs_diff(ea, eb, (size_t)D) <= 1e-6, "upright embeddings differ");
    unlink(upright);
    free(a), free(b), free(c), free(ea), free(eb);
    cdx_ctx_free(ctx);
    cdx_model_free(m);
}

int main(void)
{
    fixture fx = {0};
    load_cases(&fx);
    run_weights(&fx, "model.safetensors", "expected/fp32");
    run_weights(&fx, "model.fp16.safetensors", "expected/fp16");
    check_exif();
    free_cases(&fx);
    return test_finish();
}
