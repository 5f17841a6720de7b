/*
 * test_reindex.c - moving a library to another model (cdx_library_reindex,
 * _rollback, _drop_previous, _sync_model) with clip-tiny and a perturbed
 * copy of it (other weights, so another version, same dimension):
 *  - the switch: new version, name and vectors; `check` passes; a
 *    read-only handle opened before follows (sync_model) and then embeds
 *    and searches exactly like a handle opened on the new model;
 *  - --no-switch then a second run resumes every row and switches;
 *  - an image whose file is gone refuses the switch (nothing changes)
 *    unless drop_missing, which removes it;
 *  - rollback refuses when images were added since the switch, force
 *    removes them; a second rollback goes forward; drop_previous deletes
 *    the previous file; a library already on the model is refused;
 *  - two query threads on a read-only handle while the set switches five
 *    times: no error, no crash (also under ASan).
 * test_reindex_live.c: a writable handle reindexing itself under load, and
 * a read-only handle following 50 switches.
 */
#include "reindex_testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static void info_of(cdx_library_info *info, uint64_t *check_problems)
{
    cdx_library *lib = open_lib(0, NULL, 0);
    CHECK(lib != NULL);
    if (!lib) return;
    CHECK(cdx_library_get_info(lib, info) == CDX_OK);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK);
    *check_problems = rep.problems;
    cdx_library_close(lib);
}

static int vector_files(void)
{
    char d[256];
    path_in(d, sizeof d, "lib");
    DIR *dir = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir)))
        n += !strncmp(e->d_name, "vectors", 7) && strstr(e->d_name, ".cdxv") != NULL;
    if (dir) closedir(dir);
    return n;
}

static cdx_result reindex(const char *model, int no_switch, int drop_missing, cdx_reindex_report *rep)
{
    char d[256];
    path_in(d, sizeof d, "lib");
    cdx_reindex_params p = cdx_reindex_default_params();
    p.model_dir = model;
    p.model_name = "tiny-b";
    p.no_switch = no_switch;
    p.drop_missing = drop_missing;
    p.batch_size = 4;
    return cdx_library_reindex(d, &p, rep);
}

/* Query threads on a read-only handle while the main thread switches its
 * model: every query must succeed (a search may meet the vector file of
 * the other set before this handle synced: a retryable CDX_ERR_MISMATCH
 * is allowed for searches, never a crash or a wrong dimension). */
typedef struct query_thread {
    cdx_library *lib;
    atomic_int *stop;
    int embeds, errors;
} query_thread;

static void *query_loop(void *arg)
{
    query_thread *q = arg;
    while (!atomic_load(q->stop)) {
        float v[DIM];
        cdx_search_params sp = cdx_search_default_params();
        sp.k = 3;
        cdx_hit h[3];
        size_t n = 0;
        if (cdx_library_sync_model(q->lib, NULL) != CDX_OK) q->errors++;
        if (cdx_library_embed_text(q->lib, "a photo of a cat", v) != CDX_OK) q->errors++;
        else q->embeds++;
        cdx_result r = cdx_library_search_vector(q->lib, v, &sp, h, &n, NULL);
        if (r != CDX_OK && r != CDX_ERR_MISMATCH) q->errors++;
    }
    return NULL;
}

int main(void)
{
    const char *shared = test_shared_dir();
    const char *tiny = test_fixture_dir();
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx-test-reindex-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    char mb[256], lib_dir[256], extra[256], formats[512];
    path_in(mb, sizeof mb, "model-b");
    path_in(lib_dir, sizeof lib_dir, "lib");
    path_in(extra, sizeof extra, "extra.png");
    make_model_b(tiny, mb);
    snprintf(formats, sizeof formats, "%s/data/formats", shared);
    char src[4096];
    snprintf(src, sizeof src, "%s/images/coco_cats.png", tiny);
    CHECK(unique_copy(src, extra, "first") == 0);

    /* a library on clip-tiny: data/formats + one copied image */
    cdx_library *w = open_lib(1, tiny, 1);
    CHECK(w != NULL);
    if (!w) return test_finish();
    const char *paths[] = {formats, extra};
    cdx_index_stats st;
    CHECK(cdx_library_index(w, paths, 2, NULL, &st) == CDX_OK);
    CHECKF(st.added == 11, "added %llu", (unsigned long long)st.added);
    cdx_library_info a_info;
    CHECK(cdx_library_get_info(w, &a_info) == CDX_OK);
    cdx_library_close(w);
    cdx_library *ro = open_lib(0, NULL, 1);   /* a server's handle, opened before */
    CHECK(ro != NULL);
    float q_before[DIM];
    CHECK(cdx_library_embed_text(ro, "a photo of a cat", q_before) == CDX_OK);

    /* the file of one image is gone: refused, nothing changes */
    CHECK(unlink(extra) == 0);
    cdx_reindex_report rep;
    CHECK(reindex(mb, 0, 0, &rep) == CDX_ERR_NOT_FOUND);
    CHECK(rep.switched == 0 && rep.missing == 1 && strstr(rep.first_missing, "extra.png"));
    cdx_library_info info;
    uint64_t problems = 1;
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, a_info.model_fingerprint) && info.images == 11);

    /* drop_missing: the embedded rows are resumed, the image removed */
    CHECK(reindex(mb, 0, 1, &rep) == CDX_OK);
    CHECKF(rep.switched && rep.resumed == 10 && rep.embedded == 0 && rep.missing == 1,
           "switched %d resumed %llu embedded %llu missing %llu", rep.switched,
           (unsigned long long)rep.resumed, (unsigned long long)rep.embedded, (unsigned long long)rep.missing);
    info_of(&info, &problems);
    CHECK(problems == 0 && strcmp(info.model_fingerprint, a_info.model_fingerprint) && info.images == 10 &&
          info.vectors == 10 && info.dim == DIM);
    char b_fp[65];
    snprintf(b_fp, sizeof b_fp, "%s", info.model_fingerprint);
    CHECK(vector_files() == 2);

    /* the read-only handle follows: like a handle opened on the new model */
    int changed = 0;
    CHECK(cdx_library_sync_model(ro, &changed) == CDX_OK && changed == 1);
    CHECK(cdx_library_sync_model(ro, &changed) == CDX_OK && changed == 0);
    char name[64] = "";
    CHECK(cdx_library_model_name(ro, name, sizeof name) == CDX_OK && !strcmp(name, "tiny-b"));
    cdx_library *fresh = open_lib(0, NULL, 1);
    float q_ro[DIM], q_fresh[DIM];
    CHECK(fresh && cdx_library_embed_text(ro, "a photo of a cat", q_ro) == CDX_OK &&
          cdx_library_embed_text(fresh, "a photo of a cat", q_fresh) == CDX_OK);
    CHECK(!memcmp(q_ro, q_fresh, sizeof q_ro) && memcmp(q_ro, q_before, sizeof q_ro));
    cdx_search_params sp = cdx_search_default_params();
    sp.k = 5;
    cdx_hit h1[5], h2[5];
    size_t n1 = 0, n2 = 0;
    CHECK(cdx_library_search_vector(ro, q_ro, &sp, h1, &n1, NULL) == CDX_OK &&
          cdx_library_search_vector(fresh, q_ro, &sp, h2, &n2, NULL) == CDX_OK);
    CHECK(n1 == 5 && n1 == n2);
    for (size_t i = 0; i < n1 && i < n2; i++) CHECK(h1[i].id == h2[i].id && h1[i].score == h2[i].score);
    cdx_library_close(fresh);

    /* already on that model */
    CHECK(reindex(mb, 0, 0, &rep) == CDX_ERR_INVALID_ARG);

    /* rollback and forward again */
    CHECK(cdx_library_rollback(lib_dir, 0, NULL) == CDX_OK);
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, a_info.model_fingerprint) && info.images == 10);
    CHECK(cdx_library_sync_model(ro, &changed) == CDX_OK && changed == 1);
    float q_back[DIM];
    CHECK(cdx_library_embed_text(ro, "a photo of a cat", q_back) == CDX_OK && !memcmp(q_back, q_before, sizeof q_back));
    CHECK(cdx_library_rollback(lib_dir, 0, NULL) == CDX_OK);
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, b_fp));

    /* an image added since the switch (a content never embedded by the
     * previous model: bytes after the PNG's end): rollback refused, then forced */
    CHECK(unique_copy(src, extra, "second") == 0);
    w = open_lib(1, NULL, 1);
    const char *one[] = {extra};
    CHECK(w && cdx_library_index(w, one, 1, NULL, &st) == CDX_OK && st.added == 1);
    cdx_library_close(w);
    uint64_t removed = 0;
    CHECK(cdx_library_rollback(lib_dir, 0, &removed) == CDX_ERR_MISMATCH);
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, b_fp) && info.images == 11);
    CHECK(cdx_library_rollback(lib_dir, 1, &removed) == CDX_OK && removed == 1);
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, a_info.model_fingerprint) && info.images == 10);

    /* no_switch, then a run that resumes every row and switches */
    CHECK(reindex(mb, 1, 0, &rep) == CDX_OK && !rep.switched && rep.embedded == 10);
    info_of(&info, &problems);
    CHECK(!strcmp(info.model_fingerprint, a_info.model_fingerprint));
    CHECK(reindex(mb, 0, 0, &rep) == CDX_OK && rep.switched && rep.resumed == 10 && rep.embedded == 0);
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, b_fp));
    CHECK(vector_files() == 2);
    CHECK(cdx_library_drop_previous(lib_dir) == CDX_OK && vector_files() == 1);
    CHECK(cdx_library_rollback(lib_dir, 0, NULL) == CDX_ERR_NOT_FOUND);
    CHECK(cdx_library_drop_previous(lib_dir) == CDX_ERR_NOT_FOUND);

    /* query threads on a read-only handle while the set switches back and
     * forth (a new handle: one follows at most 8 switches before it asks
     * to be opened again, and ro has followed the ones above) */
    CHECK(cdx_library_sync_model(ro, NULL) == CDX_OK);
    cdx_library_close(ro);
    ro = open_lib(0, NULL, 1);
    if (!ro) return test_finish();
    atomic_int stop = 0;
    query_thread qt[2] = {{ro, &stop, 0, 0}, {ro, &stop, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, query_loop, &qt[i]) == 0);
    CHECK(reindex(tiny, 0, 0, &rep) == CDX_OK && rep.switched);
    for (int i = 0; i < 4; i++) {
        CHECK(cdx_library_rollback(lib_dir, 0, NULL) == CDX_OK);
        usleep(50000);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECKF(qt[i].errors == 0 && qt[i].embeds > 0, "thread %d: %d errors, %d embeds", i, qt[i].errors, qt[i].embeds);
    }
    CHECK(cdx_library_sync_model(ro, NULL) == CDX_OK);
    cdx_library_close(ro);
    info_of(&info, &problems);
    CHECK(problems == 0 && !strcmp(info.model_fingerprint, a_info.model_fingerprint));

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_finish();
}
