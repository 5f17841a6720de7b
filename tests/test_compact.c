/*
 * test_compact.c - compaction of a library (cdx_library_compact, automatic
 * compaction, the switch of vector file seen by readers, kill -9).
 *
 *  - real model (clip-tiny, data/formats): remove images, compact; rows and
 *    bytes shrink, the file is renamed and the old one deleted, ids, scores
 *    and vectors are identical before and after, `check` passes, a
 *    read-only handle opened before the compaction follows the switch;
 *  - automatic compaction after remove past the threshold (and not with
 *    dead_fraction 0);
 *  - a synthetic library (catalog + vector file written with the store API
 *    following the library's protocol: 6000 images with known vectors):
 *    searcher threads on the writing handle and on a second read-only
 *    handle while the main thread removes images and compacts, every
 *    search answers the queried image first with score ~1;
 *  - kill -9 of a child process compacting that library at random moments
 *    (orphan rows are appended before each round so there is work): after
 *    each kill the library opens, `check` passes, leftovers are deleted and
 *    every image still present has exactly its vector and is found by it.
 */
#include "clipdex.h"
#include "store/catalog.h"
#include "store/vecfile.h"
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DIM 64
#define N_SYN 6000

static char g_dir[64];
static const char *g_model;
static unsigned char g_removed[N_SYN + 1];   /* synthetic ids removed so far */

static cdx_library *open_at(const char *sub, int writable, int create, const char *model,
                            int load_model, double dead_fraction, uint64_t min_dead)
{
    char d[256];
    snprintf(d, sizeof d, "%s/%s", g_dir, sub);
    cdx_library_params p = cdx_library_default_params();
    p.writable = writable;
    p.create = create;
    p.model_dir = model;
    p.load_model = load_model;
    p.compact.dead_fraction = dead_fraction;
    p.compact.min_dead = min_dead;
    cdx_library *lib = NULL;
    if (cdx_library_open(d, &p, &lib) != CDX_OK) fprintf(stderr, "open %s: %s\n", d, cdx_last_error());
    return lib;
}

/* Names of vector files in a library directory: returns how many. */
static int vector_files(const char *sub, char *first, size_t cap)
{
    char d[256];
    snprintf(d, sizeof d, "%s/%s", g_dir, sub);
    DIR *dir = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "vectors", 7) || l < 5 || strcmp(e->d_name + l - 5, ".cdxv")) continue;
        if (n++ == 0 && first) snprintf(first, cap, "%s", e->d_name);
    }
    if (dir) closedir(dir);
    return n;
}

/* ------------------------------------------------------------ real model */

typedef struct result_set {
    size_t n;
    cdx_hit hits[16];
} result_set;

static void search_all(cdx_library *lib, const float *q, result_set *out)
{
    cdx_search_params sp = cdx_search_default_params();
    sp.k = 16;
    out->n = 0;
    CHECK(cdx_library_search_vector(lib, q, &sp, out->hits, &out->n, NULL) == CDX_OK);
}

static int same_results(const result_set *a, const result_set *b)
{
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->hits[i].id != b->hits[i].id || a->hits[i].score != b->hits[i].score) return 0;
    return 1;
}

static void test_real(const char *shared)
{
    char formats[512];
    snprintf(formats, sizeof formats, "%s/data/formats", shared);
    cdx_library *lib = open_at("real", 1, 1, g_model, 1, 0, 0);   /* no automatic compaction */
    CHECK(lib != NULL);
    if (!lib) return;
    const char *paths[] = {formats};
    cdx_index_stats st;
    CHECK(cdx_library_index(lib, paths, 1, NULL, &st) == CDX_OK && st.added == 10);
    cdx_library *ro = open_at("real", 0, 0, NULL, 0, 0, 0);     /* opened before: must follow */
    CHECK(ro != NULL);
    float q[3][DIM];
    const char *texts[3] = {"a photo of a cat", "a rocket", "coffee"};
    for (int i = 0; i < 3; i++) CHECK(cdx_library_embed_text(lib, texts[i], q[i]) == CDX_OK);
    result_set before[3], after[3], ro_after[3];
    for (int i = 0; i < 3; i++) search_all(lib, q[i], &before[i]);
    if (ro) for (int i = 0; i < 3; i++) search_all(ro, q[i], &ro_after[i]);
    for (int i = 0; i < 3; i++) CHECK(same_results(&before[i], &ro_after[i]));
    /* remove 4 images (the 2nd..5th best of the first query) */
    int64_t gone[4];
    for (int i = 0; i < 4; i++) {
        gone[i] = before[0].hits[1 + i].id;
        CHECK(cdx_library_remove(lib, gone[i]) == CDX_OK);
    }
    /* what the search must return afterwards: the old lists without them */
    result_set want[3];
    float vec_before[16][DIM];
    for (int i = 0; i < 3; i++) {
        want[i].n = 0;
        for (size_t j = 0; j < before[i].n; j++) {
            int removed = 0;
            for (int g = 0; g < 4; g++) removed |= before[i].hits[j].id == gone[g];
            if (!removed) want[i].hits[want[i].n++] = before[i].hits[j];
        }
    }
    for (size_t j = 0; j < want[0].n; j++) CHECK(cdx_library_get_vector(lib, want[0].hits[j].id, vec_before[j]) == CDX_OK);
    cdx_library_info info;
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.vectors == 6 && info.vector_rows == 10 &&
          info.dead_rows == 4 && info.reclaimable_bytes > 0);
    char name0[128] = "", name1[128] = "";
    CHECK(vector_files("real", name0, sizeof name0) == 1 && !strcmp(name0, "vectors.cdxv"));

    cdx_compact_params cp = cdx_compact_default_params();
    cp.only_if_needed = 1;                  /* 4 dead rows: below the 1024 default */
    cdx_compact_report rep;
    CHECK(cdx_library_compact(lib, &cp, &rep) == CDX_OK && !rep.compacted && rep.rows_before == 10);
    CHECKF(cdx_library_compact(lib, NULL, &rep) == CDX_OK, "%s", cdx_last_error());
    CHECK(rep.compacted && rep.rows_before == 10 && rep.rows_after == 6);
    CHECK(rep.bytes_freed > 0 && rep.bytes_freed == rep.bytes_before - rep.bytes_after &&
          rep.bytes_freed == info.reclaimable_bytes);
    CHECK(vector_files("real", name1, sizeof name1) == 1 && strncmp(name1, "vectors-", 8) == 0);
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.vector_rows == 6 && info.dead_rows == 0);
    for (int i = 0; i < 3; i++) {
        search_all(lib, q[i], &after[i]);
        CHECKF(same_results(&after[i], &want[i]), "query %d differs after compaction", i);
        if (ro) {
            search_all(ro, q[i], &ro_after[i]);
            CHECKF(same_results(&ro_after[i], &want[i]), "read-only handle, query %d", i);
        }
    }
    for (size_t j = 0; j < want[0].n; j++) {
        float v[DIM];
        CHECK(cdx_library_get_vector(lib, want[0].hits[j].id, v) == CDX_OK && !memcmp(v, vec_before[j], sizeof v));
        CHECK(ro && cdx_library_get_vector(ro, want[0].hits[j].id, v) == CDX_OK && !memcmp(v, vec_before[j], sizeof v));
    }
    cdx_check_report cr;
    CHECK(cdx_library_check(lib, NULL, NULL, &cr) == CDX_OK && cr.problems == 0 && cr.images == 6);
    CHECK(ro && cdx_library_check(ro, NULL, NULL, &cr) == CDX_OK && cr.problems == 0 && cr.images == 6);
    CHECK(cdx_library_compact(lib, NULL, &rep) == CDX_OK && !rep.compacted && rep.rows_after == 6);
    CHECK(ro && cdx_library_compact(ro, NULL, &rep) == CDX_ERR_INVALID_ARG);   /* read-only */
    /* indexing again re-embeds the removed ones; ids are new, never reused */
    CHECK(cdx_library_index(lib, paths, 1, NULL, &st) == CDX_OK && st.added == 4 && st.unchanged == 6);
    CHECK(cdx_library_check(lib, NULL, NULL, &cr) == CDX_OK && cr.problems == 0 && cr.images == 10);
    cdx_library_close(ro);
    cdx_library_close(lib);

    /* reopen (read-only and writable) finds the renamed file */
    lib = open_at("real", 0, 0, NULL, 0, 0, 0);
    CHECK(lib && cdx_library_check(lib, NULL, NULL, &cr) == CDX_OK && cr.problems == 0 && cr.images == 10);
    cdx_library_close(lib);
}

static void test_auto(const char *shared)
{
    char formats[512];
    snprintf(formats, sizeof formats, "%s/data/formats", shared);
    /* threshold: >= 3 dead rows and >= 25% */
    cdx_library *lib = open_at("auto", 1, 1, g_model, 1, 0.25, 3);
    CHECK(lib != NULL);
    if (!lib) return;
    const char *paths[] = {formats};
    CHECK(cdx_library_index(lib, paths, 1, NULL, NULL) == CDX_OK);
    cdx_library_info info;
    int64_t ids[10];
    int n = 0;
    for (int64_t id = 1; id < 100 && n < 10; id++)
        if (cdx_library_get_image(lib, id, &(cdx_image_record){0}) == CDX_OK) ids[n++] = id;
    CHECK(n == 10);
    CHECK(cdx_library_remove(lib, ids[0]) == CDX_OK && cdx_library_remove(lib, ids[1]) == CDX_OK);
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.vector_rows == 10 && info.dead_rows == 2);
    CHECK(cdx_library_remove(lib, ids[2]) == CDX_OK);   /* 3 dead of 10: compacts */
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.vector_rows == 7 && info.dead_rows == 0);
    CHECK(cdx_library_remove(lib, ids[3]) == CDX_OK && cdx_library_remove(lib, ids[4]) == CDX_OK);
    CHECK(cdx_library_get_info(lib, &info) == CDX_OK && info.vector_rows == 7 && info.dead_rows == 2);
    cdx_library_close(lib);
    /* dead_fraction 0 disables it */
    lib = open_at("auto", 1, 0, NULL, 0, 0, 0);
    CHECK(lib && cdx_library_remove(lib, ids[5]) == CDX_OK);
    CHECK(lib && cdx_library_get_info(lib, &info) == CDX_OK && info.vector_rows == 7 && info.dead_rows == 3);
    cdx_check_report cr;
    CHECK(lib && cdx_library_check(lib, NULL, NULL, &cr) == CDX_OK && cr.problems == 0 && cr.images == 4);
    cdx_library_close(lib);
}

/* ------------------------------------------------------------ synthetic library */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Content c: its vector normalised as the vector file does, and its key. */
static void content_vec(uint64_t c, float *v)
{
    double s = 0;
    for (int d = 0; d < DIM; d++) {
        v[d] = (float)((double)(mix(c * 131 + (uint64_t)d) >> 11) / 9007199254740992.0 - 0.5);
        s += (double)v[d] * v[d];
    }
    double inv = 1.0 / sqrt(s);
    for (int d = 0; d < DIM; d++) v[d] = (float)(v[d] * inv);
}
static void content_key(uint64_t c, uint8_t key[32], char hex[65])
{
    for (int i = 0; i < 4; i++) {
        uint64_t x = mix(c ^ ((uint64_t)i << 56));
        for (int b = 0; b < 8; b++) key[i * 8 + b] = (uint8_t)(x >> (8 * b));
    }
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
}

/* The vector file the catalog of `sub` names (the meta key; default name). */
static void current_vec_path(const char *sub, char *out, size_t cap)
{
    char db[256], name[128] = "vectors.cdxv";
    snprintf(db, sizeof db, "%s/%s/catalog.db", g_dir, sub);
    catalog *c = NULL;
    if (catalog_open(db, 0, 0, &c) == CDX_OK && catalog_meta_get(c, "vec_file", name, sizeof name) != CDX_OK)
        snprintf(name, sizeof name, "vectors.cdxv");
    catalog_close(c);
    snprintf(out, cap, "%s/%s/%s", g_dir, sub, name);
}

/* Append contents first..first+n-1 to the vector file; with cat, also
 * commit their catalog rows (image id = content + 1 on a fresh catalog). */
static int append_contents(const char *sub, uint64_t first, size_t n, int with_catalog)
{
    char vp[512], db[256];
    current_vec_path(sub, vp, sizeof vp);
    snprintf(db, sizeof db, "%s/%s/catalog.db", g_dir, sub);
    vecfile_params p = vecfile_default_params();
    p.writable = 1;
    vecfile *vf = NULL;
    catalog *c = NULL;
    float *v = malloc(n * DIM * sizeof(float));
    uint8_t (*keys)[32] = malloc(n * 32);
    char (*hex)[65] = malloc(n * 65);
    int ok = vecfile_open(vp, &p, &vf, NULL) == CDX_OK && (!with_catalog || catalog_open(db, 1, 0, &c) == CDX_OK);
    for (size_t i = 0; ok && i < n; i++) {
        content_vec(first + i, v + i * DIM);
        content_key(first + i, keys[i], hex[i]);
    }
    uint64_t slot = 0;
    ok = ok && vecfile_append(vf, v, (const uint8_t (*)[32])keys, n, &slot) == CDX_OK;
    if (ok && c) {
        ok = catalog_begin(c) == CDX_OK;
        for (size_t i = 0; ok && i < n; i++) {
            cdx_image_record rec;
            memset(&rec, 0, sizeof rec);
            snprintf(rec.sha256, sizeof rec.sha256, "%s", hex[i]);
            rec.size = 1000;
            rec.width = rec.height = 8;
            snprintf(rec.format, sizeof rec.format, "png");
            char path[64];
            snprintf(path, sizeof path, "/synthetic/%06llu.png", (unsigned long long)(first + i));
            int64_t id = 0;
            ok = catalog_content_insert(c, &rec, (int64_t)(slot + i)) == CDX_OK &&
                 catalog_image_insert(c, path, hex[i], 1, 1, &id) == CDX_OK && id == (int64_t)(first + i + 1);
        }
        ok = ok && catalog_commit(c) == CDX_OK;
    }
    if (!ok) fprintf(stderr, "append_contents: %s\n", cdx_last_error());
    catalog_close(c);
    vecfile_close(vf);
    free(v);
    free(keys);
    free(hex);
    return ok;
}

static int build_synthetic(const char *sub)
{
    cdx_library *lib = open_at(sub, 1, 1, g_model, 0, 0, 0);   /* creates; bound to clip-tiny (dim 64) */
    if (!lib) return 0;
    cdx_library_close(lib);
    for (uint64_t c = 0; c < N_SYN; c += 1000)
        if (!append_contents(sub, c, 1000, 1)) return 0;
    return 1;
}

/* Image id (= content + 1) answers a search by its own vector first. */
static int finds_itself(cdx_library *lib, int64_t id)
{
    float v[DIM];
    content_vec((uint64_t)id - 1, v);
    cdx_search_params sp = cdx_search_default_params();
    sp.k = 2;
    cdx_hit h[2];
    size_t n = 0;
    cdx_result r = cdx_library_search_vector(lib, v, &sp, h, &n, NULL);
    if (r != CDX_OK) fprintf(stderr, "search: %s\n", cdx_last_error());
    else if (!(n == 2 && h[0].id == id && h[0].score > 0.9999f && h[1].score < 0.99f))
        fprintf(stderr, "search for %lld: n %zu, %lld %f, %lld %f\n", (long long)id, n,
                n ? (long long)h[0].id : -1LL, n ? h[0].score : 0, n > 1 ? (long long)h[1].id : -1LL,
                n > 1 ? h[1].score : 0);
    return r == CDX_OK && n == 2 && h[0].id == id && h[0].score > 0.9999f && h[1].score < 0.99f;
}

/* Every image not removed has exactly its vector; a sample is found by it. */
static int verify_synthetic(cdx_library *lib, int sample_every)
{
    int bad = 0;
    for (int64_t id = 1; id <= N_SYN; id++) {
        float v[DIM], want[DIM];
        cdx_result r = cdx_library_get_vector(lib, id, v);
        if (g_removed[id]) {
            bad += r != CDX_ERR_NOT_FOUND;
            continue;
        }
        content_vec((uint64_t)id - 1, want);
        if (r != CDX_OK || memcmp(v, want, sizeof v)) {
            if (bad++ < 3) fprintf(stderr, "image %lld: %s\n", (long long)id, r ? cdx_last_error() : "wrong vector");
            continue;
        }
        if (id % sample_every == 0 && !finds_itself(lib, id)) bad++;
    }
    return bad == 0;
}

typedef struct searcher {
    cdx_library *lib;
    volatile int *stop;
    int n, errors;
    uint64_t seed;
} searcher;

/* Searches ids = 7k+1 (never removed meanwhile): each must find itself. */
static void *search_loop(void *arg)
{
    searcher *s = arg;
    while (!*s->stop) {
        s->seed = mix(s->seed);
        int64_t id = 1 + 7 * (int64_t)(s->seed % (N_SYN / 7));
        if (g_removed[id]) continue;   /* by the kill test, before this one */
        float v[DIM], want[DIM];
        content_vec((uint64_t)id - 1, want);
        int f = finds_itself(s->lib, id);
        cdx_result r = cdx_library_get_vector(s->lib, id, v);
        if (r) fprintf(stderr, "get_vector %lld: %s\n", (long long)id, cdx_last_error());
        if (!f || r || memcmp(v, want, sizeof v)) {
            if (s->errors++ < 3) fprintf(stderr, "searcher: image %lld wrong\n", (long long)id);
        }
        s->n++;
    }
    return NULL;
}

static void test_concurrent(void)
{
    cdx_library *w = open_at("syn", 1, 0, NULL, 0, 0, 0);
    cdx_library *ro = open_at("syn", 0, 0, NULL, 0, 0, 0);
    CHECK(w && ro);
    if (!w || !ro) { cdx_library_close(w); cdx_library_close(ro); return; }
    volatile int stop = 0;
    searcher s[2] = {{w, &stop, 0, 0, 1}, {ro, &stop, 0, 0, 2}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, search_loop, &s[i]);
    int compactions = 0;
    for (int round = 0; round < 4; round++) {
        /* remove ids 7k+3+round (never a searched one) */
        for (int64_t id = 3 + round; id <= N_SYN; id += 7 * 11) {
            if (g_removed[id]) continue;
            CHECK(cdx_library_remove(w, id) == CDX_OK);
            g_removed[id] = 1;
        }
        cdx_compact_report rep;
        CHECKF(cdx_library_compact(w, NULL, &rep) == CDX_OK, "%s", cdx_last_error());
        compactions += rep.compacted;
        usleep(100000);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        CHECKF(s[i].errors == 0, "searcher %d: %d of %d searches wrong", i, s[i].errors, s[i].n);
        CHECK(s[i].n > 4);
    }
    printf("concurrent: %d compactions, %d + %d searches meanwhile (writer's and a read-only handle)\n",
           compactions, s[0].n, s[1].n);
    CHECK(compactions == 4);
    CHECK(verify_synthetic(ro, 97));
    cdx_check_report cr;
    CHECK(cdx_library_check(ro, NULL, NULL, &cr) == CDX_OK && cr.problems == 0);
    cdx_library_close(ro);
    cdx_library_close(w);
}

/* ------------------------------------------------------------ kill -9 */

static void compact_child(void)
{
    cdx_library *lib = open_at("syn", 1, 0, NULL, 0, 0, 0);
    if (!lib) _exit(3);
    cdx_compact_report rep;
    cdx_result r = cdx_library_compact(lib, NULL, &rep);
    cdx_library_close(lib);
    _exit(r == CDX_OK && rep.compacted ? 0 : 4);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_kill9(void)
{
    const int rounds = 14;
    uint64_t orphan = 1000000000ull, seed = (uint64_t)time(NULL);
    printf("kill -9 seed %llu\n", (unsigned long long)seed);
    double full = 0;
    int killed_mid = 0, finished = 0, before_start = 0;
    for (int round = 0; round <= rounds; round++) {
        /* dead rows to compact: orphans (appended, never catalogued) and a
         * few removed images (their catalog rows change too) */
        CHECK(append_contents("syn", orphan, 3000, 0));
        orphan += 3000;
        cdx_library *w = open_at("syn", 1, 0, NULL, 0, 0, 0);
        for (int64_t id = 5 + round; w && id <= N_SYN; id += 7 * 211) {
            if (g_removed[id]) continue;
            CHECK(cdx_library_remove(w, id) == CDX_OK);
            g_removed[id] = 1;
        }
        cdx_library_close(w);
        char before[128] = "", after[128] = "";
        vector_files("syn", before, sizeof before);
        double t0 = now_s();
        pid_t pid = fork();
        if (pid == 0) compact_child();
        int status = 0;
        if (round == 0) {
            waitpid(pid, &status, 0);     /* round 0 measures a whole run */
            full = now_s() - t0;
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            printf("kill -9: an uninterrupted compaction run takes %.0f ms\n", full * 1e3);
        } else {
            seed = mix(seed);
            useconds_t delay = (useconds_t)((double)(seed % 10000) / 10000.0 * full * 1.1e6);
            usleep(delay);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (WIFEXITED(status)) finished++;
        }
        int files = vector_files("syn", after, sizeof after);
        if (round > 0 && !WIFEXITED(status)) {
            if (files > 1) killed_mid++;            /* the new file existed: mid-compaction */
            else if (!strcmp(before, after)) before_start++;
        }
        /* a reader opens the library as the kill left it (leftovers and
         * all), then a writable open deletes the leftovers; check, every
         * image intact */
        cdx_library *ro = open_at("syn", 0, 0, NULL, 0, 0, 0);
        cdx_check_report rr;
        CHECK(ro && cdx_library_check(ro, NULL, NULL, &rr) == CDX_OK && rr.problems == 0);
        CHECK(ro && finds_itself(ro, 1 + 7 * (round + 1)));
        cdx_library_close(ro);
        w = open_at("syn", 1, 0, NULL, 0, 0, 0);
        CHECK(w != NULL);
        if (!w) break;
        CHECK(vector_files("syn", NULL, 0) == 1);
        cdx_check_report cr;
        CHECKF(cdx_library_check(w, NULL, NULL, &cr) == CDX_OK && cr.problems == 0,
               "round %d: check found %llu problems", round, (unsigned long long)cr.problems);
        int ok = verify_synthetic(w, 997);
        CHECKF(ok, "round %d: images lost or wrong after the kill", round);
        cdx_library_close(w);
        if (!ok) break;
    }
    printf("kill -9: %d rounds: %d killed mid-compaction (new file present), %d before it began, "
           "%d finished before the kill, the rest after the switch\n",
           rounds, killed_mid, before_start, finished);
    CHECK(killed_mid > 0);
}

int main(void)
{
    const char *shared = test_shared_dir();
    g_model = test_fixture_dir();
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx_test_compact_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    /* The kill test forks: run it before this process uses OpenMP. */
    double t = now_s();
    CHECK(build_synthetic("syn"));
    printf("[%.1f s] synthetic library built\n", now_s() - t);
    test_kill9();
    printf("[%.1f s] kill -9 done\n", now_s() - t);
    test_concurrent();
    printf("[%.1f s] concurrent done\n", now_s() - t);
    test_real(shared);
    test_auto(shared);
    printf("[%.1f s] model tests done\n", now_s() - t);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (test_failures == 0) CHECK(system(cmd) == 0);
    return test_finish();
}
