/*
 * test_train.c - the cdx_trainer API on the clip-tiny fixture: loss and
 * logits at the initial weights against expected/train/loss.json, losses
 * after one and two AdamW steps (all parameters and last block), the model
 * left untouched, and hostile inputs (bad token ids, non-finite pixels,
 * oversized batches, bad parameters) rejected with nothing changed.  The
 * full per-tensor gradient / parameter comparison runs in e2e_tune.sh
 * (tests/train_check.py).
 */
#include "testutil.h"
#include "train/trainer.h"

#include <jansson.h>

static double jnum(json_t *o, const char *path0, const char *path1, int idx)
{
    json_t *v = json_object_get(o, path0);
    if (path1) v = json_object_get(v, path1);
    if (idx >= 0) v = json_array_get(v, (size_t)idx);
    return json_number_value(v);
}

static void run_scope(const cdx_model *m, const float *px, const int32_t *tok, json_t *ref, int last)
{
    cdx_trainer_params p = cdx_trainer_default_params();
    p.lr = 1e-4f;
    p.n_threads = 2;
    if (last) {
        p.scope = CDX_TRAIN_LAST;
        p.last_k = 1;
    }
    cdx_trainer *t = NULL;
    CHECK(cdx_trainer_new(m, &p, &t) == CDX_OK);
    if (!t) return;
    const char *key = last ? "lastblock" : "full";
    double L0 = 0;
    float logits[64];
    CHECK(cdx_trainer_eval(t, px, tok, 8, &L0, logits) == CDX_OK);
    double r0 = jnum(ref, key, "loss_per_step", 0);
    CHECKF(fabs(L0 - r0) <= 1e-5 * fabs(r0), "%s: initial loss %.9g, reference %.9g", key, L0, r0);
    json_t *lg = json_object_get(ref, "logits_per_image");
    double md = 0, mx = 0;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            double e = json_number_value(json_array_get(json_array_get(lg, (size_t)i), (size_t)j));
            md = fmax(md, fabs(logits[i * 8 + j] - e));
            mx = fmax(mx, fabs(e));
        }
    CHECKF(md <= 1e-4 * mx + 1e-3, "logits max abs diff %g", md);
    cdx_train_stats st;
    for (int s = 0; s < 2; s++) {
        CHECK(cdx_trainer_step(t, px, tok, 8, &st) == CDX_OK);
        CHECK(st.step == s + 1);
        double r = jnum(ref, key, "loss_per_step", s);
        CHECKF(fabs(st.loss - r) <= (s ? 1e-4 : 1e-5) * fabs(r), "%s: loss before step %d: %.9g vs %.9g", key,
               s + 1, st.loss, r);
        double ls = jnum(ref, key, "logit_scale_per_step", s);
        CHECK(fabs(st.logit_scale - ls) <= 1e-6);
    }
    double L2 = 0, r2 = jnum(ref, key, "loss_per_step", 2);
    CHECK(cdx_trainer_eval(t, px, tok, 8, &L2, NULL) == CDX_OK);
    CHECKF(fabs(L2 - r2) <= 1e-4 * fabs(r2), "%s: loss after 2 steps %.9g vs %.9g", key, L2, r2);
    /* frozen tensors untouched, trainable ones moved */
    int nt = cdx_trainer_n_tensors(t), moved = 0, frozen_ok = 1;
    for (int i = 0; i < nt; i++) {
        cdx_trainer_tensor a;
        cdx_trainer_tensor_at(t, i, &a);
        if (!strcmp(a.name, "vision_model.embeddings.class_embedding")) {
            if (last) frozen_ok = !a.trainable;
            else moved += a.trainable;
        }
    }
    CHECK(frozen_ok);
    CHECK(last || moved == 1);
    /* hostile batches: rejected, nothing changes */
    int32_t *bad = malloc(8 * 77 * sizeof *bad);
    memcpy(bad, tok, 8 * 77 * sizeof *bad);
    bad[3 * 77 + 2] = 49408;
    CHECK(cdx_trainer_step(t, px, bad, 8, &st) == CDX_ERR_INVALID_ARG);
    CHECK(strstr(cdx_last_error(), "token id 49408") != NULL);
    bad[3 * 77 + 2] = -1;
    CHECK(cdx_trainer_step(t, px, bad, 8, &st) == CDX_ERR_INVALID_ARG);
    float *pb = malloc((size_t)8 * 3 * 224 * 224 * sizeof *pb);
    memcpy(pb, px, (size_t)8 * 3 * 224 * 224 * sizeof *pb);
    pb[5 * 3 * 224 * 224 + 17] = NAN;
    CHECK(cdx_trainer_step(t, pb, tok, 8, &st) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_trainer_step(t, px, tok, 0, &st) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_trainer_step(t, px, tok, 257, &st) == CDX_ERR_TOO_LARGE);
    double L2b = 0;
    CHECK(cdx_trainer_eval(t, px, tok, 8, &L2b, NULL) == CDX_OK);
    CHECK(L2b == L2);
    /* a smaller batch after a larger one reuses the buffers */
    CHECK(cdx_trainer_eval(t, px, tok, 3, &L2b, NULL) == CDX_OK && isfinite(L2b));
    free(bad);
    free(pb);
    cdx_trainer_free(t);
}

int main(void)
{
    const char *fx = test_fixture_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/expected/train/loss.json", fx);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    CHECK(ref != NULL);
    float *px = test_load_array("expected/train/batch_pixels.f32", (size_t)8 * 3 * 224 * 224);
    int32_t *tok = test_load_array("expected/train/batch_tokens.i32", 8 * 77);
    cdx_model *m = NULL;
    CHECK(cdx_model_load(fx, NULL, &m) == CDX_OK);
    if (!m || !ref) return test_finish();

    cdx_ctx *ctx = NULL;
    float before[64], after[64];
    CHECK(cdx_ctx_new(m, NULL, &ctx) == CDX_OK);
    CHECK(cdx_encode_images(ctx, px, 1, before, 0) == CDX_OK);
    run_scope(m, px, tok, ref, 0);
    run_scope(m, px, tok, ref, 1);
    CHECK(cdx_encode_images(ctx, px, 1, after, 0) == CDX_OK);
    CHECK(memcmp(before, after, sizeof before) == 0);   /* the model is never modified */

    /* bad parameters */
    cdx_trainer *t = NULL;
    cdx_trainer_params p = cdx_trainer_default_params();
    p.scope = CDX_TRAIN_LAST;
    p.last_k = 3;
    CHECK(cdx_trainer_new(m, &p, &t) == CDX_ERR_INVALID_ARG && !t);
    p = cdx_trainer_default_params();
    p.lr = NAN;
    CHECK(cdx_trainer_new(m, &p, &t) == CDX_ERR_INVALID_ARG && !t);
    p = cdx_trainer_default_params();
    p.beta2 = 1.0f;
    CHECK(cdx_trainer_new(m, &p, &t) == CDX_ERR_INVALID_ARG && !t);
    CHECK(cdx_trainer_new(NULL, NULL, &t) == CDX_ERR_INVALID_ARG);
    p = cdx_trainer_default_params();
    p.scope = CDX_TRAIN_PROJ;
    p.n_threads = 2;
    CHECK(cdx_trainer_new(m, &p, &t) == CDX_OK);
    CHECK(cdx_trainer_save(t, "/tmp/never-written", CDX_TRAINER_SAVE_GRADS) == CDX_ERR_INVALID_ARG);
    cdx_train_stats st;
    CHECK(cdx_trainer_step(t, px, tok, 8, &st) == CDX_OK && fabs(st.loss - 10.458255767822266) < 1e-4);
    int n_train = 0;
    for (int i = 0; i < cdx_trainer_n_tensors(t); i++) {
        cdx_trainer_tensor a;
        cdx_trainer_tensor_at(t, i, &a);
        n_train += a.trainable;
    }
    CHECK(n_train == 3);   /* two projections and logit_scale */
    CHECK(cdx_trainer_set_lr(t, -1.0f) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_trainer_set_lr(t, 1e-3f) == CDX_OK);
    cdx_trainer_free(t);
    cdx_trainer_free(NULL);
    cdx_ctx_free(ctx);
    cdx_model_free(m);
    json_decref(ref);
    free(px);
    free(tok);
    return test_finish();
}
