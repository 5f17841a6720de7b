/*
 * test_lib_watch.c - cdx_library_watch in-process on the clip-tiny fixture:
 * bad arguments refused with the library untouched; the start pass; a new
 * file indexed by one debounced pass while searches on the same handle
 * keep answering; the full pass (the path an IN_Q_OVERFLOW takes, asked
 * here through *rescan) finding a file no event announced (written under a
 * hidden name the watcher ignores, then hard-linked to a visible one,
 * which raises no close-write or move event); cancel; check.
 */
#include "clipdex.h"
#include "testutil.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct run {
    cdx_library *lib;
    const char *dir;
    cdx_watch_params wp;
    cdx_watch_stats st;
    cdx_result r;
    pthread_mutex_t mu;
    char reasons[32][16];
    int n_passes;
} run;

static void on_pass(void *user, const cdx_watch_pass *ps)
{
    run *x = user;
    pthread_mutex_lock(&x->mu);
    if (x->n_passes < 32) snprintf(x->reasons[x->n_passes], sizeof x->reasons[0], "%s", ps->reason);
    x->n_passes++;
    pthread_mutex_unlock(&x->mu);
}

static void *watch_thread(void *arg)
{
    run *x = arg;
    const char *dirs[1] = {x->dir};
    x->r = cdx_library_watch(x->lib, dirs, 1, &x->wp, &x->st);
    return NULL;
}

static int passes_with(run *x, const char *reason)
{
    int n = 0;
    pthread_mutex_lock(&x->mu);
    for (int i = 0; i < x->n_passes && i < 32; i++) n += !strcmp(x->reasons[i], reason);
    pthread_mutex_unlock(&x->mu);
    return n;
}

static int images(cdx_library *lib)
{
    cdx_library_info info;
    return cdx_library_get_info(lib, &info) == CDX_OK ? (int)info.images : -1;
}

/* Poll cond for up to 30 s. */
#define WAIT_FOR(cond) do { for (int t_ = 0; t_ < 300 && !(cond); t_++) usleep(100 * 1000); } while (0)

static void copy(const char *from, const char *to)
{
    size_t len = 0;
    void *data = test_read_file(from, &len);
    FILE *f = data ? fopen(to, "wb") : NULL;
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(data, 1, len, f) == len);
        fclose(f);
    }
    free(data);
}

int main(void)
{
    const char *shared = test_shared_dir();
    char root[] = "/tmp/cdx_test_lib_watch_XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char photos[256], libdir[256], src[512], dst[512], hidden[512];
    snprintf(photos, sizeof photos, "%s/photos", root);
    snprintf(libdir, sizeof libdir, "%s/lib", root);
    CHECK(mkdir(photos, 0755) == 0);
    static const char *names[] = {"n01440764_tench.JPEG", "n01484850_great_white_shark.JPEG",
                                  "n01494475_hammerhead.JPEG", "n01498041_stingray.JPEG"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/data/imagenet-sample/%s", shared, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", photos, names[i]);
        copy(src, dst);
    }
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = test_fixture_dir();
    lp.create = 1;
    lp.writable = 1;
    lp.n_threads = 1;
    cdx_library *lib = NULL;
    CHECK(cdx_library_open(libdir, &lp, &lib) == CDX_OK);
    if (!lib) return test_finish();

    /* refused: no folders, a file as folder, debounce above the cap */
    const char *none[1] = {"/nonexistent/folder"};
    CHECK(cdx_library_watch(lib, none, 0, NULL, NULL) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_library_watch(lib, none, 1, NULL, NULL) == CDX_ERR_INVALID_ARG);
    cdx_watch_params bad = cdx_watch_default_params();
    bad.debounce_ms = 9000;
    const char *ok[1] = {photos};
    CHECK(cdx_library_watch(lib, ok, 1, &bad, NULL) == CDX_ERR_INVALID_ARG);
    CHECK(images(lib) == 0);

    run x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.mu, NULL);
    x.lib = lib;
    x.dir = photos;
    x.wp = cdx_watch_default_params();
    x.wp.debounce_ms = 200;
    x.wp.pass = on_pass;
    x.wp.user = &x;
    cdx_cancel_flag cancel = 0, rescan = 0;
    x.wp.cancel = &cancel;
    x.wp.rescan = &rescan;
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, watch_thread, &x) == 0);

    WAIT_FOR(passes_with(&x, "start") == 1);
    CHECK(passes_with(&x, "start") == 1);
    CHECK(images(lib) == 2);

    /* a new file: one debounced pass; searches on the handle meanwhile */
    snprintf(src, sizeof src, "%s/data/imagenet-sample/%s", shared, names[2]);
    snprintf(dst, sizeof dst, "%s/%s", photos, names[2]);
    copy(src, dst);
    float q[512];
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.dim <= 512);
    CHECK(cdx_library_get_vector(lib, 1, q) == CDX_OK);
    for (int i = 0; i < 20; i++) {
        cdx_search_params sp = cdx_search_default_params();
        sp.k = 8;
        cdx_hit res[8];
        size_t n = 0;
        CHECK(cdx_library_search_vector(lib, q, &sp, res, &n, NULL) == CDX_OK && n >= 1 && res[0].id == 1);
    }
    WAIT_FOR(passes_with(&x, "changes") >= 1);   /* reported after its commit */
    CHECK(passes_with(&x, "changes") >= 1);
    CHECK(images(lib) == 3);

    /* the full pass (what an overflow runs): a file that arrived under a
     * hidden name (ignored by the watcher) and was then made visible by a
     * hard link, which raises no close-write or move event */
    snprintf(src, sizeof src, "%s/data/imagenet-sample/%s", shared, names[3]);
    snprintf(hidden, sizeof hidden, "%s/.incoming.jpg", photos);
    snprintf(dst, sizeof dst, "%s/linked.jpg", photos);
    copy(src, hidden);
    CHECK(link(hidden, dst) == 0);
    usleep(800 * 1000);
    CHECK(images(lib) == 3);   /* unseen so far */
    atomic_store(&rescan, 1);
    WAIT_FOR(passes_with(&x, "request") == 1);
    CHECK(passes_with(&x, "request") == 1);
    CHECK(images(lib) == 4);
    int64_t id = 0;
    CHECK(cdx_library_find(lib, dst, &id) == CDX_OK && id > 0);

    atomic_store(&cancel, 1);
    CHECK(pthread_join(tid, NULL) == 0);
    CHECK(x.r == CDX_OK);
    CHECK(x.st.full_passes == 2 && x.st.added == 4);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    cdx_library_close(lib);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    return test_finish();
}
