/*
 * test_library.c - the library API end to end on the clip-tiny fixture:
 * create/open/refuse another model, index (added/unchanged/duplicates),
 * search vs a brute-force expectation (with filters and pagination),
 * add_buffer, remove, concurrent searches while indexing, a kill -9 of a
 * child in the middle of an index followed by reopen + check + resume, and
 * check detecting a corrupted vector and a deleted catalog row.
 */
#include "clipdex.h"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];
static const char *g_model;

static cdx_library *open_lib_p(const char *sub, int writable, int create, const char *model,
                              int load_model)
{
    char d[256];
    snprintf(d, sizeof d, "%s/%s", g_dir, sub);
    cdx_library_params p = cdx_library_default_params();
    p.writable = writable;
    p.create = create;
    p.model_dir = model;
    p.load_model = load_model;
    cdx_library *lib = NULL;
    cdx_result r = cdx_library_open(d, &p, &lib);
    if (r) fprintf(stderr, "open %s: %s\n", d, cdx_last_error());
    return lib;
}

static cdx_library *open_lib(const char *sub, int writable, int create, const char *model)
{
    return open_lib_p(sub, writable, create, model, 1);
}

typedef struct scored {
    int64_t id;
    float score;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    return x->score < y->score ? 1 : x->score > y->score ? -1 : (x->id > y->id) - (x->id < y->id);
}

/* Brute force: every id 1..max_id that exists and passes the prefix filter. */
static size_t brute(cdx_library *lib, const float *q, int dim, const char *prefix, scored *out)
{
    size_t n = 0;
    float *v = malloc(sizeof(float) * (size_t)dim);
    cdx_image_record rec;
    for (int64_t id = 1; id < 2000; id++) {
        if (cdx_library_get_image(lib, id, &rec) != CDX_OK) continue;
        if (prefix && strncmp(rec.path, prefix, strlen(prefix))) continue;
        CHECK(cdx_library_get_vector(lib, id, v) == CDX_OK);
        double s = 0;
        for (int i = 0; i < dim; i++) s += (double)v[i] * q[i];
        out[n++] = (scored){id, (float)s};
    }
    free(v);
    qsort(out, n, sizeof *out, cmp_scored);
    return n;
}

static void test_basic(const char *shared)
{
    char formats[512];
    snprintf(formats, sizeof formats, "%s/data/formats", shared);
    CHECK(open_lib("basic", 0, 0, NULL) == NULL);                  /* does not exist */
    CHECK(open_lib("basic", 1, 1, NULL) == NULL);                  /* create needs a model */
    cdx_library *lib = open_lib("basic", 1, 1, g_model);
    CHECK(lib != NULL);
    if (!lib) return;
    const char *paths[] = {formats};
    cdx_index_stats st;
    cdx_index_params ip = cdx_index_default_params();
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK);
    CHECKF(st.added == 10 && st.failed == 0 && st.skipped == 1, "added %llu failed %llu skipped %llu",
           (unsigned long long)st.added, (unsigned long long)st.failed,
           (unsigned long long)st.skipped);   /* README.md: not an image by name nor content */
    CHECK(cdx_library_index(lib, paths, 1, &ip, &st) == CDX_OK);
    CHECK(st.added == 0 && st.unchanged == 10);
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.images == 10 && info.vectors == 10 && info.dim == 64);

    /* search vs brute force */
    int dim = info.dim;
    float q[64];
    CHECK(cdx_library_embed_text(lib, "a photo of a cat", q) == CDX_OK);
    scored exp[64];
    size_t ne = brute(lib, q, dim, NULL, exp);
    CHECK(ne == 10);
    cdx_search_params sp = cdx_search_default_params();
    cdx_hit hits[16];
    size_t n = 0;
    uint64_t total = 0;
    sp.k = 4;
    CHECK(cdx_library_search_vector(lib, q, &sp, hits, &n, &total) == CDX_OK);
    CHECK(n == 4 && total == 10);
    for (size_t i = 0; i < n; i++)
        CHECKF(hits[i].id == exp[i].id && fabsf(hits[i].score - exp[i].score) < 1e-5f,
               "rank %zu: %lld %f vs %lld %f", i, (long long)hits[i].id, hits[i].score,
               (long long)exp[i].id, exp[i].score);
    /* min_score is compared with the engine's own float scores, which may
     * differ from the double-precision reference in the last bit. */
    float third = hits[2].score;
    sp.offset = 7;   /* last page: 3 left */
    CHECK(cdx_library_search_vector(lib, q, &sp, hits, &n, &total) == CDX_OK);
    CHECK(n == 3 && hits[0].id == exp[7].id && hits[2].id == exp[9].id);
    sp.offset = 0;
    sp.min_score = third;
    CHECK(cdx_library_search_vector(lib, q, &sp, hits, &n, &total) == CDX_OK);
    CHECKF(n == 3 && total == 3, "n %zu total %llu", n, (unsigned long long)total);
    sp.min_score = -2;
    sp.format = "jpeg";
    sp.k = 10;
    CHECK(cdx_library_search_vector(lib, q, &sp, hits, &n, &total) == CDX_OK);
    CHECK(n == 1 && total == 1);
    sp.format = NULL;
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/c", formats);   /* camera, chelsea, coffee */
    sp.path_prefix = prefix;
    scored expp[16];
    size_t np = brute(lib, q, dim, prefix, expp);
    CHECK(cdx_library_search_vector(lib, q, &sp, hits, &n, &total) == CDX_OK);
    CHECK(np == 3 && n == 3 && total == 3);
    for (size_t i = 0; i < n && i < np; i++) CHECK(hits[i].id == expp[i].id);
    sp.path_prefix = NULL;

    /* like-this: the stored vector finds itself first */
    float v[64];
    CHECK(cdx_library_get_vector(lib, exp[5].id, v) == CDX_OK);
    sp.k = 1;
    CHECK(cdx_library_search_vector(lib, v, &sp, hits, &n, NULL) == CDX_OK);
    CHECK(n == 1 && hits[0].id == exp[5].id && hits[0].score > 0.9999f);

    /* add_buffer: stored under images/, known content returns the same id */
    char rocket[600];
    snprintf(rocket, sizeof rocket, "%s/rocket.jpg", formats);
    size_t len = 0;
    void *bytes = test_read_file(rocket, &len);
    int64_t id1 = 0, id2 = 0;
    CHECK(cdx_library_add_buffer(lib, bytes, len, NULL, &id1) == CDX_OK);
    int64_t rid;
    CHECK(cdx_library_find(lib, rocket, &rid) == CDX_OK && rid == id1);   /* content known */
    ((unsigned char *)bytes)[len - 100] ^= 0x55;                           /* new content */
    CHECK(cdx_library_add_buffer(lib, bytes, len, NULL, &id2) == CDX_OK && id2 != id1);
    CHECK(cdx_library_add_buffer(lib, bytes, len, NULL, &id1) == CDX_OK && id1 == id2);
    cdx_image_record rec;
    CHECK(cdx_library_get_image(lib, id2, &rec) == CDX_OK && strstr(rec.path, "/images/") &&
          strstr(rec.path, rec.sha256) && access(rec.path, R_OK) == 0);
    CHECK(cdx_library_add_buffer(lib, "not an image", 12, NULL, &id1) == CDX_ERR_FORMAT);
    free(bytes);

    /* info->bytes is cached until the catalog changes: a file dropped into
     * the directory is not counted until the next write */
    cdx_library_info b1, b2;
    CHECK(cdx_library_get_info(lib, &b1) == CDX_OK);
    char pad[600];
    snprintf(pad, sizeof pad, "%s/basic/padding.bin", g_dir);
    FILE *pf = fopen(pad, "wb");
    CHECK(pf && fseek(pf, 99999, SEEK_SET) == 0 && fputc(0, pf) == 0 && fclose(pf) == 0);
    CHECK(cdx_library_get_info(lib, &b2) == CDX_OK && b2.bytes == b1.bytes);

    /* remove */
    CHECK(cdx_library_remove(lib, id2) == CDX_OK);
    CHECK(cdx_library_get_info(lib, &b2) == CDX_OK && b2.bytes >= b1.bytes + 100000);
    unlink(pad);
    CHECK(cdx_library_get_image(lib, id2, &rec) == CDX_ERR_NOT_FOUND);
    CHECK(cdx_library_remove(lib, id2) == CDX_ERR_NOT_FOUND);
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0 && rep.images == 10);
    cdx_library_close(lib);

    /* a second writer is refused while the first holds the lock */
    cdx_library *w1 = open_lib("basic", 1, 0, NULL);
    CHECK(w1 != NULL);
    CHECK(open_lib("basic", 1, 0, NULL) == NULL);
    cdx_library *r1 = open_lib("basic", 0, 0, NULL);   /* readers are fine */
    CHECK(r1 != NULL);
    cdx_library_close(r1);
    cdx_library_close(w1);

    /* another model is refused with CDX_ERR_MISMATCH */
    char other[256], cmd[1024];
    snprintf(other, sizeof other, "%s/other-model", g_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/*.json %s/merges.txt %s/ && cp %s/model.fp16.safetensors %s/model.safetensors",
             other, g_model, g_model, other, g_model, other);
    CHECK(system(cmd) == 0);
    char d[256];
    snprintf(d, sizeof d, "%s/basic", g_dir);
    cdx_library_params p = cdx_library_default_params();
    p.model_dir = other;
    cdx_library *bad = NULL;
    CHECK(cdx_library_open(d, &p, &bad) == CDX_ERR_MISMATCH && bad == NULL);
    CHECK(strstr(cdx_last_error(), "fingerprint") != NULL);
}

/* ---- concurrency: searches while indexing */

typedef struct searcher {
    cdx_library *lib;
    volatile int *stop;
    int n, errors;
} searcher;

static void *search_loop(void *arg)
{
    searcher *s = arg;
    float q[64];
    cdx_hit hits[5];
    while (!*s->stop) {
        if (cdx_library_embed_text(s->lib, s->n % 2 ? "a dog" : "a boat", q) != CDX_OK) { s->errors++; continue; }
        cdx_search_params sp = cdx_search_default_params();
        sp.k = 5;
        size_t n = 0;
        uint64_t total = 0;
        if (cdx_library_search_vector(s->lib, q, &sp, hits, &n, &total) != CDX_OK) {
            fprintf(stderr, "search: %s\n", cdx_last_error());
            s->errors++;
        }
        if (n > 5 || n > total || (total >= 5 && n != 5)) s->errors++;
        for (size_t i = 1; i < n; i++) if (hits[i].score > hits[i - 1].score) s->errors++;
        s->n++;
        usleep(5000);   /* leave the index some CPU */
    }
    return NULL;
}

static void test_concurrent(const char *imagenet)
{
    cdx_library *lib = open_lib("conc", 1, 1, g_model);
    CHECK(lib != NULL);
    if (!lib) return;
    volatile int stop = 0;
    searcher s[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (searcher){lib, &stop, 0, 0};
        pthread_create(&t[i], NULL, search_loop, &s[i]);
    }
    const char *paths[] = {imagenet};
    cdx_index_stats st;
    CHECK(cdx_library_index(lib, paths, 1, NULL, &st) == CDX_OK);
    CHECK(st.added == 500);
    stop = 1;
    int total = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK(s[i].errors == 0);
        total += s[i].n;
    }
    printf("concurrent: %d searches during the index\n", total);
    CHECK(total > 3);
    cdx_library_close(lib);
}

/* ---- kill -9 in the middle of an index, reopen, check, resume */

/* Runs first: libgomp is not fork-safe once the parent has used OpenMP, so
 * the parent touches no model before the fork (the child creates the
 * library and indexes; the parent polls without loading the model). */
static void test_crash(const char *imagenet)
{
    cdx_library *lib;
    pid_t pid = fork();
    if (pid == 0) {
        cdx_library *l = open_lib("crash", 1, 1, g_model);
        const char *paths[] = {imagenet};
        cdx_index_params ip = cdx_index_default_params();
        ip.batch_size = 8;
        if (l) cdx_library_index(l, paths, 1, &ip, NULL);
        _exit(0);
    }
    /* wait until something was committed, then a little more */
    char db[256];
    snprintf(db, sizeof db, "%s/crash/catalog.db", g_dir);
    for (int i = 0; i < 400; i++) {
        cdx_library *r = access(db, F_OK) == 0 ? open_lib_p("crash", 0, 0, NULL, 0) : NULL;
        cdx_library_info info = {0};
        if (r) cdx_library_get_info(r, &info);
        cdx_library_close(r);
        if (info.images > 0) break;
        usleep(25000);
    }
    usleep(150000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
    lib = open_lib("crash", 1, 0, NULL);
    CHECK(lib != NULL);
    if (!lib) return;
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0);
    printf("crash: %llu images committed before the kill\n", (unsigned long long)rep.images);
    CHECK(rep.images > 0 && rep.images < 500);
    const char *paths[] = {imagenet};
    cdx_index_stats st;
    CHECK(cdx_library_index(lib, paths, 1, NULL, &st) == CDX_OK);
    CHECK(st.unchanged == rep.images && st.added + st.unchanged == 500);
    CHECK(cdx_library_check(lib, NULL, NULL, &rep) == CDX_OK && rep.problems == 0 && rep.images == 500);
    cdx_library_close(lib);
}

/* ---- check detects damage */

static void count_problem(void *u, const char *line)
{
    (*(int *)u)++;
    fprintf(stderr, "  (expected) %s\n", line);
}

static void test_damage(void)
{
    char path[256];
    /* corrupt the first vector row of the basic library */
    snprintf(path, sizeof path, "%s/basic/vectors.cdxv", g_dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 4096 + 8, SEEK_SET);
    float x = 0.5f;
    fwrite(&x, sizeof x, 1, f);
    fclose(f);
    cdx_library *lib = open_lib("basic", 0, 0, NULL);
    CHECK(lib != NULL);
    if (!lib) return;
    int seen = 0;
    cdx_check_report rep;
    CHECK(cdx_library_check(lib, count_problem, &seen, &rep) == CDX_OK && rep.problems >= 1 && seen >= 1);
    cdx_library_close(lib);
    /* delete a catalog row (a content still referenced by an image) */
    snprintf(path, sizeof path, "%s/conc/catalog.db", g_dir);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM contents WHERE slot = 3", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    lib = open_lib("conc", 0, 0, NULL);
    CHECK(lib != NULL);
    if (!lib) return;
    seen = 0;
    CHECK(cdx_library_check(lib, count_problem, &seen, &rep) == CDX_OK && rep.problems == 1 && seen == 1);
    cdx_library_close(lib);
}

int main(void)
{
    const char *shared = test_shared_dir();
    g_model = test_fixture_dir();
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx_test_library_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    char imagenet[512];
    snprintf(imagenet, sizeof imagenet, "%s/data/imagenet-sample", shared);
    test_crash(imagenet);
    test_basic(shared);
    test_concurrent(imagenet);
    test_damage();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
