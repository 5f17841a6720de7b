/*
 * test_reindex_live.c - model switches under a query load (issue #12
 * section 2), with clip-tiny and a perturbed copy of it (reindex_testutil.h):
 *  - a writable handle (a writable server's) reindexes itself
 *    (cdx_library_reindex_handle; an image added during the embedding ends
 *    up in the new set with the new model's vector) and rolls back and
 *    forth while two query threads pin their model, embed and search its
 *    set: no query fails, every answer is exactly one model's own answer,
 *    the answer's model changes at the switch;
 *  - a read-only handle follows 50 switches under two query threads: at
 *    most 3 model generations / vector files alive at any time, exactly one
 *    of each when idle (reference counts, not a list of retired models).
 */
#include "reindex_testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define LIVE_K 5
#define LIVE_TEXT "a photo of a cat"

/* The answer of one model: the first one seen for its fingerprint; every
 * later answer for that fingerprint must be identical. */
typedef struct live_answer {
    char fp[65];
    int64_t ids[LIVE_K];
    float scores[LIVE_K];
    size_t n;
} live_answer;

typedef struct live_query {
    cdx_library *lib;
    atomic_int *stop;
    int follow;              /* a read-only handle: sync before each query */
    live_answer seen[2];
    int n_seen;
    int queries, errors, inconsistent, retried, max_models, max_files;
} live_query;

/* One query the way the server runs it: pin, embed, search the pinned
 * model's set (again on CDX_ERR_MISMATCH).  0 ok. */
static int live_one(cdx_library *lib, int follow, live_answer *a, int *retried)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        if (follow && cdx_library_sync_model(lib, NULL) != CDX_OK) return -1;
        cdx_library_pin *pin = NULL;
        const char *text = LIVE_TEXT;
        float v[DIM];
        if (cdx_library_pin_take(lib, &pin) != CDX_OK) return -1;
        cdx_search_params sp = cdx_search_default_params();
        sp.k = LIVE_K;
        sp.model_fingerprint = cdx_library_pin_fingerprint(pin);
        cdx_hit h[LIVE_K];
        cdx_result r = cdx_library_pin_embed_texts(pin, &text, 1, v);
        if (!r) r = cdx_library_search_vector(lib, v, &sp, h, &a->n, NULL);
        snprintf(a->fp, sizeof a->fp, "%s", cdx_library_pin_fingerprint(pin));
        cdx_library_pin_release(pin);
        if (r == CDX_ERR_MISMATCH) {
            (*retried)++;
            continue;
        }
        if (r) return -1;
        for (size_t i = 0; i < a->n; i++) {
            a->ids[i] = h[i].id;
            a->scores[i] = h[i].score;
        }
        return 0;
    }
    return -1;
}

static int same_answer(const live_answer *a, const live_answer *b)
{
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->ids[i] != b->ids[i] || a->scores[i] != b->scores[i]) return 0;
    return 1;
}

static void *live_loop(void *arg)
{
    live_query *q = arg;
    while (!atomic_load(q->stop)) {
        live_answer a;
        if (live_one(q->lib, q->follow, &a, &q->retried)) {
            if (!q->errors++) fprintf(stderr, "query failed: %s\n", cdx_last_error());
            continue;
        }
        q->queries++;
        int known = -1;
        for (int i = 0; i < q->n_seen; i++)
            if (!strcmp(q->seen[i].fp, a.fp)) known = i;
        if (known < 0 && q->n_seen < 2) q->seen[q->n_seen++] = a;
        else if (known < 0 || !same_answer(&q->seen[known], &a)) q->inconsistent++;
        int models = 0, files = 0;
        cdx_library_live_sets(q->lib, &models, &files);
        if (models > q->max_models) q->max_models = models;
        if (files > q->max_files) q->max_files = files;
        usleep(2000);   /* a steady load, not a spin: the switches get the cores too */
    }
    return NULL;
}

/* The progress callback adds an image while the new set is embedded (the
 * writable handle's own ingestion, against the old set). */
typedef struct add_during {
    cdx_library *lib;
    const char *path;
    int done;
} add_during;

static void add_on_progress(void *user, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    add_during *ad = user;
    if (ad->done) return;
    ad->done = 1;
    const char *one[] = {ad->path};
    cdx_index_stats st;
    CHECK(cdx_library_index(ad->lib, one, 1, NULL, &st) == CDX_OK && st.added == 1);
}

static void check_answer_is(live_answer *got, const live_answer *want, const char *what)
{
    CHECKF(!strcmp(got->fp, want->fp) && same_answer(got, want), "%s: answer of %.12s, expected %.12s", what,
           got->fp, want->fp);
}

static double test_now(void)
{
    static struct timespec t0;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (!t0.tv_sec) t0 = t;
    return (double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec);
}

static void test_live_switches(const char *tiny, const char *mb, const char *src)
{
    char extra[256];
    path_in(extra, sizeof extra, "during.png");
    CHECK(unique_copy(src, extra, "during the reindex") == 0);
    cdx_library *w = open_lib(1, NULL, 1);
    CHECK(w != NULL);
    if (!w) return;
    int rt = 0;
    live_answer ref_a, ref_b, now;
    CHECK(live_one(w, 0, &ref_a, &rt) == 0 && ref_a.n == LIVE_K);
    cdx_library_info i0;
    CHECK(cdx_library_get_info(w, &i0) == CDX_OK);

    /* 1. two query threads on the writable handle while it reindexes
     * itself (an image is added during the embedding) and rolls back and
     * forth: no query fails, every answer is one model's own */
    atomic_int stop = 0;
    live_query qt[2];
    memset(qt, 0, sizeof qt);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        qt[i].lib = w;
        qt[i].stop = &stop;
        CHECK(pthread_create(&th[i], NULL, live_loop, &qt[i]) == 0);
    }
    cdx_reindex_params p = cdx_reindex_default_params();
    p.model_dir = mb;
    p.model_name = "tiny-b";
    p.batch_size = 2;
    add_during ad = {w, extra, 0};
    p.progress = add_on_progress;
    p.user = &ad;
    cdx_reindex_report rep;
    fprintf(stderr, "[%.1f s] live: reindex\n", test_now());
    CHECKF(cdx_library_reindex_handle(w, &p, &rep) == CDX_OK && rep.switched && ad.done, "reindex_handle: %s",
           cdx_last_error());
    usleep(100000);
    CHECK(live_one(w, 0, &now, &rt) == 0);   /* the answer's model changed at the switch */
    CHECK(strcmp(now.fp, ref_a.fp) != 0);
    fprintf(stderr, "[%.1f s] live: rollbacks\n", test_now());
    for (int i = 0; i < 4; i++) {
        CHECK(cdx_library_rollback_handle(w, 0, NULL) == CDX_OK);
        usleep(50000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECKF(qt[i].errors == 0 && qt[i].inconsistent == 0 && qt[i].queries > 0 && qt[i].n_seen == 2,
               "writable, thread %d: %d queries, %d errors, %d inconsistent, %d models seen", i, qt[i].queries,
               qt[i].errors, qt[i].inconsistent, qt[i].n_seen);
    }
    fprintf(stderr, "writable handle under load: %d + %d queries, %d + %d embedded again after a switch\n",
            qt[0].queries, qt[1].queries, qt[0].retried, qt[1].retried);
    /* on the new set again: the image added during the embedding is in it */
    CHECK(live_one(w, 0, &ref_b, &rt) == 0 && !strcmp(ref_b.fp, now.fp) && same_answer(&ref_b, &now));
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < qt[t].n_seen; i++)
            check_answer_is(&qt[t].seen[i], strcmp(qt[t].seen[i].fp, ref_a.fp) ? &ref_b : &ref_a, "live answer");
    cdx_library_info info;
    CHECK(cdx_library_get_info(w, &info) == CDX_OK && info.images == i0.images + 1 &&
          info.vectors == i0.vectors + 1 && !strcmp(info.model_fingerprint, ref_b.fp));
    int64_t id = 0;
    float stored[DIM], fresh[DIM];
    CHECK(cdx_library_find(w, extra, &id) == CDX_OK && cdx_library_get_vector(w, id, stored) == CDX_OK &&
          cdx_library_embed_image_file(w, extra, fresh) == CDX_OK);
    float dot = 0;
    for (int d = 0; d < DIM; d++) dot += stored[d] * fresh[d];
    CHECKF(dot > 0.9999f, "the image added during the reindex has the new model's vector (cos %f)", dot);
    cdx_check_report cr;
    CHECK(cdx_library_check(w, NULL, NULL, &cr) == CDX_OK && cr.problems == 0);
    /* the dimension cannot change under a running handle; a read-only
     * handle cannot reindex */
    p.progress = NULL;
    p.model_dir = tiny;
    cdx_library *ro = open_lib(0, NULL, 1);
    CHECK(ro && cdx_library_reindex_handle(ro, &p, &rep) == CDX_ERR_INVALID_ARG);

    /* 2. a read-only handle follows 50 switches (and the writer makes
     * them) with 2 query threads on it: the live models and vector files
     * stay bounded (the current ones plus those queries pin) */
    CHECK(cdx_library_rollback_handle(w, 1, NULL) == CDX_OK);   /* the added image has no A vector */
    cdx_library_close(w);   /* the writer below switches without loading models (faster) */
    w = open_lib(1, NULL, 0);
    CHECK(w != NULL);
    if (!w) {
        cdx_library_close(ro);
        return;
    }
    atomic_store(&stop, 0);
    memset(qt, 0, sizeof qt);
    for (int i = 0; ro && i < 2; i++) {
        qt[i].lib = ro;
        qt[i].stop = &stop;
        qt[i].follow = 1;
        CHECK(pthread_create(&th[i], NULL, live_loop, &qt[i]) == 0);
    }
    int max_models = 0, max_files = 0;
    fprintf(stderr, "[%.1f s] live: 50 switches\n", test_now());
    for (int i = 0; ro && i < 50; i++) {
        CHECK(cdx_library_rollback_handle(w, 0, NULL) == CDX_OK);
        int changed = 0, models = 0, files = 0;
        CHECK(cdx_library_sync_model(ro, &changed) == CDX_OK);
        cdx_library_live_sets(ro, &models, &files);
        if (models > max_models) max_models = models;
        if (files > max_files) max_files = files;
        cdx_library_live_sets(w, &models, &files);
        CHECKF(models == 0 && files == 1, "writer after switch %d: %d models, %d vector files", i, models, files);
    }
    atomic_store(&stop, 1);
    fprintf(stderr, "[%.1f s] live: done\n", test_now());
    for (int i = 0; ro && i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECKF(qt[i].errors == 0 && qt[i].inconsistent == 0 && qt[i].queries > 0,
               "read-only, thread %d: %d queries, %d errors, %d inconsistent", i, qt[i].queries, qt[i].errors,
               qt[i].inconsistent);
        if (qt[i].max_models > max_models) max_models = qt[i].max_models;
        if (qt[i].max_files > max_files) max_files = qt[i].max_files;
    }
    if (ro) {   /* idle: exactly the current model and file */
        CHECK(live_one(ro, 1, &now, &rt) == 0);
        int models = 0, files = 0;
        cdx_library_live_sets(ro, &models, &files);
        CHECKF(models == 1 && files == 1, "read-only handle after 50 switches: %d models, %d vector files", models,
               files);
        CHECKF(max_models <= 3 && max_files <= 3, "at most %d models and %d files were alive", max_models,
               max_files);
        fprintf(stderr, "read-only handle, 50 switches: %d + %d queries, at most %d models and %d vector files "
                "alive\n", qt[0].queries, qt[1].queries, max_models, max_files);
    }
    cdx_library_close(ro);
    cdx_library_close(w);
}

int main(void)
{
    test_now();
    const char *shared = test_shared_dir();
    const char *tiny = test_fixture_dir();
    (void)shared;
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx-test-reindex-live-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    char mb[256], formats[512], src[4096];
    path_in(mb, sizeof mb, "model-b");
    make_model_b(tiny, mb);
    snprintf(formats, sizeof formats, "%s/data/formats", shared);
    snprintf(src, sizeof src, "%s/images/coco_cats.png", tiny);
    cdx_library *w = open_lib(1, tiny, 1);
    CHECK(w != NULL);
    if (!w) return test_finish();
    const char *paths[] = {formats};
    cdx_index_stats st;
    CHECK(cdx_library_index(w, paths, 1, NULL, &st) == CDX_OK && st.added == 10);
    cdx_library_close(w);
    test_live_switches(tiny, mb, src);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_finish();
}
