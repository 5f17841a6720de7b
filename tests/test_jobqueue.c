/*
 * test_jobqueue.c - the server's job queue (src/server/jobqueue.c) on a
 * small library (../shared/data/formats indexed with the clip-tiny
 * fixture): concurrent text jobs share one encoder call and give the same
 * vectors as one-by-one embedding, image jobs likewise (a bad image gets
 * its own error); equal searches share one scan, different
 * ones do not; a full queue refuses at once; a job that waits too long is
 * withdrawn; stopping with queued jobs fails them without deadlock; a bad
 * image gets its own error.
 */
#include "testutil.h"

#include "server/jobqueue.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double srv_now_test(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static cdx_library *lib;
static int dim;
static char lib_dir[256];

static void build_library(void)
{
    snprintf(lib_dir, sizeof lib_dir, "/tmp/cdx-jobq-test-XXXXXX");
    if (!mkdtemp(lib_dir)) exit(1);
    strncat(lib_dir, "/lib", sizeof lib_dir - strlen(lib_dir) - 1);
    lib = test_create_library(lib_dir, 1);
    char formats[1024];
    snprintf(formats, sizeof formats, "%s/data/formats", test_shared_dir());
    const char *paths[] = {formats};
    cdx_index_stats st;
    cdx_index_params ip = cdx_index_default_params();
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK && st.added == 10);
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK);
    dim = info.dim;
}

typedef struct sub {
    sched *q;
    sched_job job;
    int rc;
    pthread_t t;
} sub;

static void *submit(void *p)
{
    sub *s = p;
    s->rc = sched_run(s->q, &s->job);
    return NULL;
}

static void wait_queued(sched *q, int n)
{
    sched_stats st;
    for (int i = 0; i < 2000; i++) {
        sched_get_stats(q, &st);
        if (st.queued >= n) return;
        usleep(5000);
    }
    CHECKF(0, "only %d of %d jobs queued", st.queued, n);
}

static const char *const TEXTS[] = {"a photo of a cat", "a rocket", "coffee", "a horse in a field",
                                    "astronaut", "text", "chelsea", "a red car", "a", "x",
                                    "a long description of a very particular picture", "camera"};
enum { NT = 12 };

static void test_text_batching(void)
{
    sched_params p = sched_default_params();
    p.workers = 2;
    sched *q;
    CHECK(sched_new(lib, dim, &p, &q) == 0);
    sched_hold(q, 1);
    sub s[NT];
    float *vecs = calloc((size_t)NT * dim, sizeof *vecs), *ref = calloc((size_t)dim, sizeof *ref);
    for (int i = 0; i < NT; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].q = q;
        s[i].job.kind = SCHED_TEXT;
        s[i].job.text = TEXTS[i];
        s[i].job.vec = vecs + (size_t)i * dim;
        pthread_create(&s[i].t, NULL, submit, &s[i]);
    }
    wait_queued(q, NT);
    sched_hold(q, 0);
    for (int i = 0; i < NT; i++) pthread_join(s[i].t, NULL);
    sched_stats st;
    sched_get_stats(q, &st);
    CHECKF(st.jobs[SCHED_TEXT] == NT && st.calls[SCHED_TEXT] == 1, "%d text jobs in %llu calls", NT,
           (unsigned long long)st.calls[SCHED_TEXT]);
    for (int i = 0; i < NT; i++) {
        CHECK(s[i].rc == SCHED_DONE && s[i].job.result == CDX_OK);
        CHECK(cdx_library_embed_text(lib, TEXTS[i], ref) == CDX_OK);
        double d = test_max_abs_diff(ref, vecs + (size_t)i * dim, (size_t)dim);
        CHECKF(d < 1e-5, "text '%s': batched differs from single by %g", TEXTS[i], d);
    }
    /* One at a time (nothing to batch with): one call each. */
    sched_job j = {.kind = SCHED_TEXT, .text = "a rocket", .vec = vecs};
    CHECK(sched_run(q, &j) == SCHED_DONE && j.result == CDX_OK);
    sched_get_stats(q, &st);
    CHECK(st.calls[SCHED_TEXT] == 2);
    sched_free(q);
    free(vecs);
    free(ref);
}

static void test_search_sharing(void)
{
    sched_params p = sched_default_params();
    sched *q;
    CHECK(sched_new(lib, dim, &p, &q) == 0);
    float *qv = calloc((size_t)NT * dim, sizeof *qv);
    for (int i = 0; i < NT; i++) CHECK(cdx_library_embed_text(lib, TEXTS[i], qv + (size_t)i * dim) == CDX_OK);
    sched_hold(q, 1);
    sub s[NT];
    cdx_hit hits[NT][8];
    for (int i = 0; i < NT; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].q = q;
        s[i].job.kind = SCHED_SEARCH;
        s[i].job.query = qv + (size_t)i * dim;
        s[i].job.params = cdx_search_default_params();
        s[i].job.params.k = i % 4 == 3 ? 8 : 3;   /* three searches differ */
        s[i].job.hits = hits[i];
        pthread_create(&s[i].t, NULL, submit, &s[i]);
    }
    wait_queued(q, NT);
    sched_hold(q, 0);
    for (int i = 0; i < NT; i++) pthread_join(s[i].t, NULL);
    sched_stats st;
    sched_get_stats(q, &st);
    CHECKF(st.jobs[SCHED_SEARCH] == NT && st.calls[SCHED_SEARCH] == 2, "%d searches in %llu scans", NT,
           (unsigned long long)st.calls[SCHED_SEARCH]);
    for (int i = 0; i < NT; i++) {
        cdx_hit ref[8];
        size_t n = 0;
        uint64_t total = 0;
        CHECK(cdx_library_search_vector(lib, qv + (size_t)i * dim, &s[i].job.params, ref, &n, &total) == CDX_OK);
        int same = s[i].rc == SCHED_DONE && s[i].job.result == CDX_OK && s[i].job.n_hits == n &&
                   s[i].job.total == total && n == s[i].job.params.k;
        for (size_t h = 0; same && h < n; h++)
            same = ref[h].id == hits[i][h].id && ref[h].score == hits[i][h].score;
        CHECKF(same, "search %d: shared scan differs from a single search", i);
    }
    sched_free(q);
    free(qv);
}

/* Image jobs queued together: one batched image-tower call; a bad image
 * gets its own error and does not spoil the others. */
static void test_image_batching(void)
{
    static const char *const files[] = {"rocket.jpg", "chelsea.png", "coffee.png", "horse.png", NULL, "camera.png"};
    enum { NI = 6 };
    sched *q;
    CHECK(sched_new(lib, dim, NULL, &q) == 0);
    sub s[NI];
    void *data[NI] = {0};
    size_t len[NI] = {0};
    float *vecs = calloc((size_t)NI * dim, sizeof *vecs), *ref = calloc((size_t)dim, sizeof *ref);
    sched_hold(q, 1);
    for (int i = 0; i < NI; i++) {
        char path[1200];
        if (files[i]) {
            snprintf(path, sizeof path, "%s/data/formats/%s", test_shared_dir(), files[i]);
            data[i] = test_read_file(path, &len[i]);
            CHECK(data[i] != NULL);
        } else {
            data[i] = strdup("GIF89a but not really an image");
            len[i] = strlen(data[i]);
        }
        memset(&s[i], 0, sizeof s[i]);
        s[i].q = q;
        s[i].job.kind = SCHED_IMAGE;
        s[i].job.data = data[i];
        s[i].job.len = len[i];
        s[i].job.vec = vecs + (size_t)i * dim;
        pthread_create(&s[i].t, NULL, submit, &s[i]);
    }
    wait_queued(q, NI);
    sched_hold(q, 0);
    for (int i = 0; i < NI; i++) pthread_join(s[i].t, NULL);
    sched_stats st;
    sched_get_stats(q, &st);
    CHECKF(st.jobs[SCHED_IMAGE] == NI && st.calls[SCHED_IMAGE] == 1, "%d image jobs in %llu calls", NI,
           (unsigned long long)st.calls[SCHED_IMAGE]);
    for (int i = 0; i < NI; i++) {
        CHECK(s[i].rc == SCHED_DONE);
        if (!files[i]) {
            CHECKF(s[i].job.result != CDX_OK && s[i].job.error[0], "bad image: result %d", s[i].job.result);
            continue;
        }
        CHECK(s[i].job.result == CDX_OK);
        CHECK(cdx_library_embed_image_buffer(lib, data[i], len[i], ref) == CDX_OK);
        double d = test_max_abs_diff(ref, vecs + (size_t)i * dim, (size_t)dim);
        CHECKF(d < 1e-4, "image %s: batched differs from single by %g", files[i], d);
    }
    for (int i = 0; i < NI; i++) free(data[i]);
    sched_free(q);
    free(vecs);
    free(ref);
}

static void test_full_timeout_shutdown(void)
{
    sched_params p = sched_default_params();
    p.queue_limit = 4;
    p.wait_s = 0.2;
    sched *q;
    CHECK(sched_new(lib, dim, &p, &q) == 0);
    float *vecs = calloc((size_t)8 * dim, sizeof *vecs);
    /* Timeout: a job nobody takes is withdrawn. */
    sched_hold(q, 1);
    sched_job j = {.kind = SCHED_TEXT, .text = "late", .vec = vecs};
    double t0 = srv_now_test();
    CHECK(sched_run(q, &j) == SCHED_TIMEOUT);
    CHECK(srv_now_test() - t0 >= 0.15);
    sched_stats st;
    sched_get_stats(q, &st);
    CHECK(st.queued == 0 && st.timed_out == 1);
    sched_free(q);

    /* Full: queue_limit jobs wait, the next is refused at once; then all run. */
    p.wait_s = 0;
    CHECK(sched_new(lib, dim, &p, &q) == 0);
    sched_hold(q, 1);
    sub s[4];
    for (int i = 0; i < 4; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].q = q;
        s[i].job.kind = SCHED_TEXT;
        s[i].job.text = TEXTS[i];
        s[i].job.vec = vecs + (size_t)i * dim;
        pthread_create(&s[i].t, NULL, submit, &s[i]);
    }
    wait_queued(q, 4);
    sched_job extra = {.kind = SCHED_TEXT, .text = "one too many", .vec = vecs + 4 * (size_t)dim};
    CHECK(sched_run(q, &extra) == SCHED_FULL);
    sched_get_stats(q, &st);
    CHECK(st.refused == 1 && st.queued == 4);
    sched_hold(q, 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(s[i].t, NULL);
        CHECK(s[i].rc == SCHED_DONE && s[i].job.result == CDX_OK);
    }

    /* Shutdown with queued jobs: every waiter returns, nothing runs. */
    sched_hold(q, 1);
    for (int i = 0; i < 4; i++) pthread_create(&s[i].t, NULL, submit, &s[i]);
    wait_queued(q, 4);
    sched_get_stats(q, &st);
    uint64_t calls = st.calls[SCHED_TEXT];
    sched_stop(q);
    for (int i = 0; i < 4; i++) {
        pthread_join(s[i].t, NULL);
        CHECK(s[i].rc == SCHED_SHUTDOWN);
    }
    CHECK(sched_run(q, &extra) == SCHED_SHUTDOWN);
    sched_get_stats(q, &st);
    CHECK(st.calls[SCHED_TEXT] == calls);
    sched_free(q);
    free(vecs);
}

static void test_errors(void)
{
    sched *q;
    CHECK(sched_new(lib, dim, NULL, &q) == 0);
    float *v = calloc((size_t)dim, sizeof *v);
    sched_job j = {.kind = SCHED_IMAGE, .data = "not an image at all", .len = 19, .vec = v};
    CHECK(sched_run(q, &j) == SCHED_DONE && j.result != CDX_OK && j.error[0]);
    sched_job k = {.kind = SCHED_SEARCH, .query = v, .params = cdx_search_default_params(), .hits = NULL};
    k.params.k = 0;
    for (int i = 0; i < dim; i++) v[i] = NAN;
    CHECK(sched_run(q, &k) == SCHED_DONE && k.result == CDX_ERR_INVALID_ARG && strstr(k.error, "non-finite"));
    sched_free(q);
    free(v);
    sched_params bad = sched_default_params();
    bad.workers = 0;
    CHECK(sched_new(lib, dim, &bad, &q) != 0 && q == NULL);
}

int main(void)
{
    test_fixture_dir();
    build_library();
    test_text_batching();
    test_search_sharing();
    test_image_batching();
    test_full_timeout_shutdown();
    test_errors();
    cdx_library_close(lib);
    char cmd[600];
    *strrchr(lib_dir, '/') = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", lib_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return test_finish();
}
