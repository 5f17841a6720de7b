/*
 * test_train.c - the cdx_trainer API on the clip-tiny fixture: loss and
 * logits at the initial weights against expected/train/loss.json, losses
 * after one and two AdamW steps (all parameters and last block), the model
 * left untouched, and hostile inputs (bad token ids, non-finite pixels,
 * oversized batches, bad parameters) rejected with nothing changed; the
 * frozen-prefix cache (last:1, last:2, proj; in RAM, spilled to a file,
 * refused over its bounds) gives the losses and parameters of an uncached
 * trainer over three epochs of re-shuffled batches, and is cleared by a
 * checkpoint load.  The
 * full per-tensor gradient / parameter comparison runs in e2e_tune.sh
 * (tests/train_check.py).
 */
#include "testutil.h"
#include "train/trainer.h"

#include <jansson.h>
#include <unistd.h>

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

/* three epochs over the 8 pairs in batches of changing composition and size */
static const int SCHED[][6] = {{0, 1, 2, 3, -1}, {4, 5, 6, 7, -1}, {5, 2, 7, 0, -1}, {1, 6, 3, 4, -1},
                               {2, 3, 4, 5, 6, -1}, {7, 0, 1, -1}};
enum { N_SCHED = 6, PX1 = 3 * 224 * 224 };

static void run_sched(cdx_trainer *t, const float *px, const int32_t *tok, double *losses)
{
    float *bp = malloc((size_t)6 * PX1 * sizeof *bp);
    int32_t *bt = malloc((size_t)6 * 77 * sizeof *bt);
    for (int s = 0; s < N_SCHED; s++) {
        int n = 0;
        for (; SCHED[s][n] >= 0; n++) {
            memcpy(bp + (size_t)n * PX1, px + (size_t)SCHED[s][n] * PX1, PX1 * sizeof *bp);
            memcpy(bt + (size_t)n * 77, tok + (size_t)SCHED[s][n] * 77, 77 * sizeof *bt);
        }
        cdx_train_stats st;
        CHECK(cdx_trainer_step(t, bp, bt, n, &st) == CDX_OK);
        losses[s] = st.loss;
    }
    CHECK(cdx_trainer_eval(t, px, tok, 8, &losses[N_SCHED], NULL) == CDX_OK);
    free(bp);
    free(bt);
}

static double max_param_diff(cdx_trainer *a, cdx_trainer *b)
{
    double md = 0;
    for (int i = 0; i < cdx_trainer_n_tensors(a); i++) {
        cdx_trainer_tensor x, y;
        cdx_trainer_tensor_at(a, i, &x);
        cdx_trainer_tensor_at(b, i, &y);
        if (!x.trainable) continue;   /* (tensor_at of a frozen tensor clears the cache) */
        for (size_t k = 0; k < x.numel; k++) md = fmax(md, fabs((double)x.w[k] - y.w[k]));
    }
    return md;
}

/* exact: with the reference GEMM (one double dot product per output) every
 * row's frozen output is independent of the batch it was computed in, so
 * cached and uncached runs agree bit for bit; else to float tolerance. */
static void test_cache(const cdx_model *m, const float *px, const int32_t *tok, int exact)
{
    char dir[] = "/tmp/clipdex-fcache-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    if (exact) setenv("CLIPDEX_GEMM", "reference", 1);   /* read by cdx_trainer_new */
    for (int sc = 0; sc < 2; sc++) {   /* clip-tiny has 2 blocks: last:1 and proj have a frozen part */
        cdx_trainer_params p = cdx_trainer_default_params();
        p.lr = 1e-3f;
        p.n_threads = 2;
        p.scope = sc == 0 ? CDX_TRAIN_LAST : CDX_TRAIN_PROJ;
        p.last_k = 1;
        cdx_trainer *t[4] = {NULL, NULL, NULL, NULL};
        double loss[4][N_SCHED + 1];
        const int nv = exact ? 3 : 4;   /* refused recomputes like off: not again */
        for (int v = 0; v < nv; v++) {   /* off, RAM, spilled, refused */
            p.cache_bytes = v == 0 ? 0 : v == 1 ? (size_t)1 << 30 : 1;
            p.cache_dir = v == 2 ? dir : NULL;
            p.cache_disk_bytes = v == 2 ? (size_t)64 << 20 : 0;
            CHECK(cdx_trainer_new(m, &p, &t[v]) == CDX_OK);
            if (!t[v]) return;
            run_sched(t[v], px, tok, loss[v]);
        }
        cdx_train_cache_stats cs[4];
        for (int v = 0; v < nv; v++) cdx_trainer_cache_stats(t[v], &cs[v]);
        CHECK(cs[0].hits == 0 && cs[0].misses == 0 && cs[0].entries == 0);
        /* 8 images + 8 captions missed once (epoch 1, and the final eval hits) */
        CHECKF(cs[1].misses == 16 && cs[1].hits == 48 && cs[1].ram_bytes > 0 && cs[1].disk_bytes == 0,
               "scope %d RAM: %llu misses %llu hits", sc, (unsigned long long)cs[1].misses,
               (unsigned long long)cs[1].hits);
        CHECKF(cs[2].misses == 16 && cs[2].hits == 48 && cs[2].ram_bytes == 0 && cs[2].disk_bytes > 0,
               "scope %d spilled: %llu misses %llu hits %llu disk", sc, (unsigned long long)cs[2].misses,
               (unsigned long long)cs[2].hits, (unsigned long long)cs[2].disk_bytes);
        CHECK(exact || (cs[3].hits == 0 && cs[3].misses == 64 && cs[3].refused == 64 && cs[3].entries == 0));
        for (int v = 1; v < nv; v++) {
            double md = 0;
            for (int s = 0; s <= N_SCHED; s++) md = fmax(md, fabs(loss[v][s] - loss[0][s]) / fabs(loss[0][s]));
            double pd = max_param_diff(t[0], t[v]);
            /* (each of the 6 steps moves a weight by up to lr = 1e-3) */
            if (exact) CHECKF(md == 0 && pd == 0, "scope %d cache %d: loss rel diff %g, param diff %g", sc, v, md, pd);
            else CHECKF(md <= 1e-5 && pd <= 1e-4, "scope %d cache %d: loss rel diff %g, param diff %g", sc, v, md, pd);
        }
        /* a checkpoint load forgets the cache */
        char ck[64];
        snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
        CHECK(cdx_trainer_save_state(t[1], ck) == CDX_OK);
        CHECK(cdx_trainer_load_state(t[1], ck) == CDX_OK);
        cdx_trainer_cache_stats(t[1], &cs[1]);
        CHECK(cs[1].entries == 0 && cs[1].ram_bytes == 0);
        remove(ck);
        for (int v = 0; v < nv; v++) cdx_trainer_free(t[v]);
    }
    CHECKF(rmdir(dir) == 0, "the spill file was left in %s", dir);   /* unlinked from the start */
    unsetenv("CLIPDEX_GEMM");
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
    test_cache(m, px, tok, 0);
    test_cache(m, px, tok, 1);
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
