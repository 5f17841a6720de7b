/*
 * test_model_cache.c - start-up caches of the model loader (clip/prepared.c,
 * model.c) on copies of the clip-tiny fixture in a temporary directory:
 *  - the fingerprint cache: miss, hit, invalidation on touch and on a
 *    same-size rewrite, a wrong entry found and fixed by cdx_model_verify(),
 *    an unwritable cache dir (still loads, never cached);
 *  - lazy towers: a text encode prepares only the text tower (load info);
 *  - prepared weights: embeddings from a fresh in-memory build, the build
 *    that saves the file, and the mapped file are bit-identical (packed and
 *    plain layouts); damaged, truncated or foreign files are rebuilt;
 *    cdx_model_verify() validates and removes damaged ones;
 *  - threads racing to prepare the towers of one model;
 *  - int8 and bf16 copies of the block Linears (prepared.h
 *    cdx_prep_load_copies): built in memory, built and saved, mapped - all
 *    bit-identical; damaged, truncated or foreign copy files are rebuilt;
 *    another SmoothQuant setting is another file; a mapped load does not
 *    calibrate or keep owned copies.
 */
#include "clip/model.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char g_tmp[512], g_model[600], g_cache[600];

static const char *const texts[2] = {"a photo of a cat", "playing dogs on the beach"};
#define N_TEXTS 2
#define N_IMAGES 2
#define PIX (3 * 224 * 224)

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void copy_file(const char *name)
{
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/%s", test_fixture_dir(), name);
    snprintf(dst, sizeof dst, "%s/%s", g_model, name);
    size_t n = 0;
    void *b = test_read_file(src, &n);
    FILE *f = fopen(dst, "wb");
    CHECKF(b && f && fwrite(b, 1, n, f) == n, "copy %s", name);
    if (f) fclose(f);
    free(b);
}

static cdx_model *load_ok(void)
{
    cdx_model *m = NULL;
    cdx_result r = cdx_model_load(g_model, NULL, &m);
    CHECKF(r == CDX_OK, "load: %s", cdx_last_error());
    return m;
}

static cdx_model_load_info info_of(const cdx_model *m)
{
    cdx_model_load_info li;
    cdx_model_get_load_info(m, &li);
    return li;
}

static void fingerprint_of(const cdx_model *m, char fp[65])
{
    cdx_model_info mi;
    cdx_model_get_info(m, &mi);
    memcpy(fp, mi.fingerprint, 65);
}

/* Flip one byte of `path` at offset `off` in place (same size, same inode). */
static void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char c = 0;
    CHECKF(fd >= 0 && pread(fd, &c, 1, off) == 1, "%s at %ld", path, off);
    c ^= 0x40;
    CHECK(fd >= 0 && pwrite(fd, &c, 1, off) == 1);
    if (fd >= 0) close(fd);
}

/* ------------------------------------------------------------ fingerprints */

static void test_fingerprint_cache(void)
{
    printf("fingerprint cache\n");
    char weights[700], fp1[65], fp[65];
    snprintf(weights, sizeof weights, "%s/model.safetensors", g_model);
    sleep_ms(120);   /* entries are not stored within a timestamp tick of a write */
    cdx_model *m = load_ok();
    if (!m) return;
    CHECK(info_of(m).fingerprint_cached == 0);   /* miss: hashed */
    fingerprint_of(m, fp1);
    cdx_model_free(m);

    m = load_ok();
    CHECK(m && info_of(m).fingerprint_cached == 1);   /* hit */
    if (m) fingerprint_of(m, fp);
    CHECK(m && strcmp(fp, fp1) == 0);
    cdx_model_free(m);

    /* touch: identity changed -> recomputed, same value; then cached again */
    CHECK(utimensat(AT_FDCWD, weights, NULL, 0) == 0);
    sleep_ms(120);
    m = load_ok();
    CHECK(m && info_of(m).fingerprint_cached == 0);
    if (m) fingerprint_of(m, fp);
    CHECK(m && strcmp(fp, fp1) == 0);
    cdx_model_free(m);
    m = load_ok();
    CHECK(m && info_of(m).fingerprint_cached == 1);
    cdx_model_free(m);

    /* rewrite in place, same size: the new bytes get a new fingerprint */
    struct stat st;
    CHECK(stat(weights, &st) == 0);
    flip_byte(weights, (long)st.st_size - 3);   /* inside the last tensor's data */
    sleep_ms(120);
    m = load_ok();
    CHECK(m && info_of(m).fingerprint_cached == 0);
    if (m) fingerprint_of(m, fp);
    CHECKF(m && strcmp(fp, fp1) != 0, "same-size rewrite kept fingerprint %s", fp);
    cdx_model_free(m);
    flip_byte(weights, (long)st.st_size - 3);   /* restore the bytes */
    sleep_ms(120);
    m = load_ok();
    if (m) fingerprint_of(m, fp);
    CHECK(m && strcmp(fp, fp1) == 0);
    cdx_model_free(m);

    /* a wrong entry (bytes changed behind an unchanged identity): loads
     * trust it, `model verify` recomputes, reports and repairs it */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/fingerprints", g_cache);
    DIR *d = opendir(dir);
    struct dirent *e;
    int tampered = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            char p[1000];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat es;
            CHECK(stat(p, &es) == 0);
            int fd = open(p, O_RDWR);   /* another hex digit: still a well-formed entry */
            char c = 0;
            CHECK(fd >= 0 && pread(fd, &c, 1, (long)es.st_size - 2) == 1);
            c = c == 'a' ? 'b' : 'a';
            CHECK(fd >= 0 && pwrite(fd, &c, 1, (long)es.st_size - 2) == 1);
            if (fd >= 0) close(fd);
            tampered++;
        }
    if (d) closedir(d);
    CHECK(tampered == 1);
    m = load_ok();
    char wrong[65] = "";
    if (m) fingerprint_of(m, wrong);
    CHECK(m && info_of(m).fingerprint_cached == 1 && strcmp(wrong, fp1) != 0);
    cdx_model_free(m);
    cdx_model_verify_report vr;
    CHECKF(cdx_model_verify(g_model, NULL, &vr) == CDX_OK, "verify: %s", cdx_last_error());
    CHECK(strcmp(vr.fingerprint, fp1) == 0 && strcmp(vr.cached, wrong) == 0 && vr.cache_was_wrong == 1);
    sleep_ms(10);
    m = load_ok();
    if (m) fingerprint_of(m, fp);
    CHECK(m && info_of(m).fingerprint_cached == 1 && strcmp(fp, fp1) == 0);
    cdx_model_free(m);
    CHECK(cdx_model_verify(g_model, NULL, &vr) == CDX_OK && vr.cache_was_wrong == 0 &&
          strcmp(vr.cached, fp1) == 0);

    /* no writable cache dir: loads still work, nothing is cached */
    char blocker[700], bad[800];
    snprintf(blocker, sizeof blocker, "%s/a-file", g_tmp);
    FILE *f = fopen(blocker, "w");
    if (f) fclose(f);
    snprintf(bad, sizeof bad, "%s/cache", blocker);
    setenv("CLIPDEX_CACHE_DIR", bad, 1);
    for (int i = 0; i < 2; i++) {
        m = load_ok();
        if (m) fingerprint_of(m, fp);
        CHECK(m && info_of(m).fingerprint_cached == 0 && strcmp(fp, fp1) == 0);
        float emb[64];
        cdx_ctx *c = NULL;
        CHECK(m && cdx_ctx_new(m, NULL, &c) == CDX_OK);
        CHECKF(c && cdx_encode_texts(c, texts, 1, emb, 1) == CDX_OK, "%s", cdx_last_error());
        CHECK(m && info_of(m).text_source == CDX_TOWER_SRC_BUILT);
        cdx_ctx_free(c);
        cdx_model_free(m);
    }
    setenv("CLIPDEX_CACHE_DIR", g_cache, 1);
}

/* ------------------------------------------------------------ towers */

typedef struct embs {
    float text[N_TEXTS * 64];
    float image[N_IMAGES * 64];
} embs;

static float *g_pixels;

/* Embed texts (then images unless text_only) with a new load of g_model. */
static int embed_all(embs *out, int text_only, cdx_model_load_info *li)
{
    cdx_model *m = load_ok();
    cdx_ctx *c = NULL;
    int ok = m && cdx_ctx_new(m, NULL, &c) == CDX_OK;
    if (ok) CHECK(info_of(m).towers_loaded == 0);   /* nothing prepared at load */
    ok = ok && cdx_encode_texts(c, texts, N_TEXTS, out->text, 1) == CDX_OK;
    if (ok) {   /* a text encode prepares the text tower only */
        cdx_model_load_info t = info_of(m);
        CHECK(t.towers_loaded == CDX_TOWER_TEXT && t.vision_source == CDX_TOWER_SRC_NONE);
    }
    if (ok && !text_only) ok = cdx_encode_images(c, g_pixels, N_IMAGES, out->image, 1) == CDX_OK;
    CHECKF(ok, "embed: %s", cdx_last_error());
    if (m) *li = info_of(m);
    cdx_ctx_free(c);
    cdx_model_free(m);
    return ok;
}

/* The prepared file of `tower` in the cache ("" when none). */
static void prepared_path(const char *tower, char *out, size_t cap)
{
    char dir[700], want[32];
    snprintf(dir, sizeof dir, "%s/prepared", g_cache);
    snprintf(want, sizeof want, "-%s-", tower);
    out[0] = '\0';
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, want) && strlen(e->d_name) > 5 &&
            !strcmp(e->d_name + strlen(e->d_name) - 5, ".cdxw"))
            snprintf(out, cap, "%s/%s", dir, e->d_name);
    if (d) closedir(d);
}

static void test_prepared(const char *layout)
{
    printf("prepared weights (%s)\n", layout);
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/prepared'", g_cache);
    CHECK(system(cmd) == 0);
    embs fresh, built, mapped, again;
    cdx_model_load_info li;

    setenv("CLIPDEX_PREPARED", "0", 1);
    CHECK(embed_all(&fresh, 0, &li) && li.text_source == CDX_TOWER_SRC_BUILT &&
          li.vision_source == CDX_TOWER_SRC_BUILT);
    setenv("CLIPDEX_PREPARED", "1", 1);
    CHECK(embed_all(&built, 0, &li) && li.text_source == CDX_TOWER_SRC_BUILT_SAVED &&
          li.vision_source == CDX_TOWER_SRC_BUILT_SAVED);
    CHECK(embed_all(&mapped, 0, &li) && li.text_source == CDX_TOWER_SRC_MAPPED &&
          li.vision_source == CDX_TOWER_SRC_MAPPED && li.towers_loaded == CDX_TOWER_ALL);
    CHECK(memcmp(&fresh, &built, sizeof fresh) == 0);   /* bit-identical */
    CHECK(memcmp(&fresh, &mapped, sizeof fresh) == 0);

    cdx_model_verify_report vr;
    CHECK(cdx_model_verify(g_model, NULL, &vr) == CDX_OK && vr.prepared_ok == 2 &&
          vr.prepared_removed == 0);

    /* damaged data (checksum), truncated file, a foreign file under the
     * name (the vision tower's): each is ignored, deleted and rebuilt */
    char tp[1000], vp[1000];
    prepared_path("text", tp, sizeof tp);
    prepared_path("vision", vp, sizeof vp);
    CHECK(tp[0] && vp[0]);
    struct stat st;
    CHECK(stat(tp, &st) == 0);
    for (int damage = 0; damage < 3; damage++) {
        if (damage == 0) flip_byte(tp, (long)st.st_size / 2);
        if (damage == 1) CHECK(truncate(tp, st.st_size - 4096) == 0);
        if (damage == 2) {
            snprintf(cmd, sizeof cmd, "cp '%s' '%s'", vp, tp);
            CHECK(system(cmd) == 0);
        }
        CHECK(embed_all(&again, 1, &li) && li.text_source == CDX_TOWER_SRC_BUILT_SAVED);
        CHECKF(memcmp(fresh.text, again.text, sizeof fresh.text) == 0, "damage %d", damage);
        CHECK(embed_all(&again, 1, &li) && li.text_source == CDX_TOWER_SRC_MAPPED);
        CHECK(memcmp(fresh.text, again.text, sizeof fresh.text) == 0);
    }

    /* verify finds a damaged file and removes it */
    CHECK(stat(vp, &st) == 0);
    flip_byte(vp, (long)st.st_size / 2);
    CHECK(cdx_model_verify(g_model, NULL, &vr) == CDX_OK && vr.prepared_ok == 1 &&
          vr.prepared_removed == 1);
    CHECK(access(vp, F_OK) != 0);
}

/* ------------------------------------------------------------ int8 / bf16 copies */

/* Embed texts and images at `prec` with a new load of g_model; the copies'
 * sources of both towers in src[0] (text), src[1] (vision); owned: the
 * model's owned buffers after the encodes. */
static int embed_prec(cdx_precision prec, embs *out, int src[2], int *owned)
{
    cdx_model *m = load_ok();
    cdx_ctx *c = NULL;
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.precision = prec;
    int ci = prec == CDX_PRECISION_BF16;
    int ok = m && cdx_ctx_new(m, &cp, &c) == CDX_OK &&
             cdx_encode_texts(c, texts, N_TEXTS, out->text, 1) == CDX_OK &&
             cdx_encode_images(c, g_pixels, N_IMAGES, out->image, 1) == CDX_OK;
    CHECKF(ok, "embed at %s: %s", cdx_precision_name(prec), cdx_last_error());
    if (m) {
        src[0] = m->copies_source[0][ci];
        src[1] = m->copies_source[1][ci];
        *owned = m->n_owned;
    }
    cdx_ctx_free(c);
    cdx_model_free(m);
    return ok;
}

static void test_copies(cdx_precision prec)
{
    const char *pn = cdx_precision_name(prec);
    printf("prepared %s copies\n", pn);
    char cmd[1000], stem[2][32], path[2][1000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/prepared'", g_cache);
    CHECK(system(cmd) == 0);
    snprintf(stem[0], sizeof stem[0], "text_%s", pn);
    snprintf(stem[1], sizeof stem[1], "vision_%s", pn);
    embs fresh, built, mapped, again;
    int src[2], owned_fresh = 0, owned_built = 0, owned_mapped = 0, owned = 0;

    setenv("CLIPDEX_PREPARED", "0", 1);
    CHECK(embed_prec(prec, &fresh, src, &owned_fresh) && src[0] == CDX_TOWER_SRC_BUILT &&
          src[1] == CDX_TOWER_SRC_BUILT);
    setenv("CLIPDEX_PREPARED", "1", 1);
    CHECK(embed_prec(prec, &built, src, &owned_built) && src[0] == CDX_TOWER_SRC_BUILT_SAVED &&
          src[1] == CDX_TOWER_SRC_BUILT_SAVED);
    CHECK(embed_prec(prec, &mapped, src, &owned_mapped) && src[0] == CDX_TOWER_SRC_MAPPED &&
          src[1] == CDX_TOWER_SRC_MAPPED);
    CHECK(memcmp(&fresh, &built, sizeof fresh) == 0);   /* bit-identical */
    CHECK(memcmp(&fresh, &mapped, sizeof fresh) == 0);
    /* saved copies replace their owned buffers; mapped ones own none (int8:
     * only the small per-Linear structs and calibration maxima remain) */
    CHECKF(owned_built < owned_fresh && owned_mapped <= owned_built, "owned %d %d %d", owned_fresh,
           owned_built, owned_mapped);
    prepared_path(stem[0], path[0], sizeof path[0]);   /* "-text_int8-" ... */
    prepared_path(stem[1], path[1], sizeof path[1]);
    CHECK(path[0][0] && path[1][0]);

    /* damaged data, truncated file, a foreign file (the vision copies under
     * the text copies' name): each is detected, deleted and rebuilt */
    struct stat st;
    CHECK(stat(path[0], &st) == 0);
    for (int damage = 0; damage < 3; damage++) {
        if (damage == 0) flip_byte(path[0], (long)st.st_size / 2);
        if (damage == 1) CHECK(truncate(path[0], st.st_size - 64) == 0);
        if (damage == 2) {
            snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path[1], path[0]);
            CHECK(system(cmd) == 0);
        }
        CHECK(embed_prec(prec, &again, src, &owned) && src[0] == CDX_TOWER_SRC_BUILT_SAVED &&
              src[1] == CDX_TOWER_SRC_MAPPED);
        CHECKF(memcmp(&fresh, &again, sizeof fresh) == 0, "%s damage %d", pn, damage);
        CHECK(embed_prec(prec, &again, src, &owned) && src[0] == CDX_TOWER_SRC_MAPPED);
        CHECK(memcmp(&fresh, &again, sizeof fresh) == 0);
    }
    if (prec != CDX_PRECISION_INT8) return;

    /* the SmoothQuant setting is part of the key: another file, other codes */
    setenv("CLIPDEX_INT8_SMOOTH", "0", 1);
    CHECK(embed_prec(prec, &again, src, &owned) && src[0] == CDX_TOWER_SRC_BUILT_SAVED &&
          src[1] == CDX_TOWER_SRC_BUILT_SAVED);
    CHECK(memcmp(&fresh, &again, sizeof fresh) != 0);
    CHECK(embed_prec(prec, &again, src, &owned) && src[0] == CDX_TOWER_SRC_MAPPED);
    unsetenv("CLIPDEX_INT8_SMOOTH");
    CHECK(embed_prec(prec, &again, src, &owned) && src[0] == CDX_TOWER_SRC_MAPPED &&
          src[1] == CDX_TOWER_SRC_MAPPED);
    CHECK(memcmp(&fresh, &again, sizeof fresh) == 0);
}

/* ------------------------------------------------------------ threads */

typedef struct race {
    const cdx_model *m;
    int image;
    float out[64];
    int ok;
} race;

static void *race_main(void *arg)
{
    race *r = arg;
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.n_threads = 1;
    cp.max_batch = 1;
    cdx_ctx *c = NULL;
    r->ok = cdx_ctx_new(r->m, &cp, &c) == CDX_OK &&
            (r->image ? cdx_encode_images(c, g_pixels, 1, r->out, 1)
                      : cdx_encode_texts(c, texts, 1, r->out, 1)) == CDX_OK;
    cdx_ctx_free(c);
    return NULL;
}

static void test_threads(void)
{
    printf("threads preparing towers\n");
    race ref[2];   /* the same encodes, one after the other */
    cdx_model *rm = load_ok();
    for (int i = 0; i < 2 && rm; i++) {
        ref[i] = (race){rm, i, {0}, 0};
        race_main(&ref[i]);
        CHECK(ref[i].ok);
    }
    cdx_model_free(rm);
    for (int pass = 0; pass < 2; pass++) {   /* 0: from prepared files; 1: building */
        if (pass == 1) setenv("CLIPDEX_PREPARED", "0", 1);
        cdx_model *m = load_ok();
        if (!m) return;
        race rs[6];
        pthread_t th[6];
        for (int i = 0; i < 6; i++) {
            rs[i] = (race){m, i % 2, {0}, 0};
            CHECK(pthread_create(&th[i], NULL, race_main, &rs[i]) == 0);
        }
        for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < 6; i++)
            CHECKF(rs[i].ok && memcmp(rs[i].out, ref[rs[i].image].out, sizeof rs[i].out) == 0,
                   "thread %d (pass %d)", i, pass);
        CHECK(info_of(m).towers_loaded == CDX_TOWER_ALL);
        cdx_model_free(m);
    }
    setenv("CLIPDEX_PREPARED", "1", 1);
}

int main(void)
{
    if (!test_shared_dir()) return 77;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/cdx_test_model_cache_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_model, sizeof g_model, "%s/model", g_tmp);
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_tmp);
    mkdir(g_model, 0755);
    setenv("CLIPDEX_CACHE_DIR", g_cache, 1);
    unsetenv("CLIPDEX_PREPARED");
    const char *files[] = {"config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
                           "model.safetensors"};
    for (int i = 0; i < 5; i++) copy_file(files[i]);
    g_pixels = malloc(N_IMAGES * PIX * sizeof(float));
    for (int i = 0; i < N_IMAGES * PIX; i++) g_pixels[i] = (float)(((long)i * 7919) % 4001) / 2000.0f - 1.0f;

    test_fingerprint_cache();
    const char *pack = getenv("CLIPDEX_PACK");
    test_prepared(pack && !strcmp(pack, "0") ? "plain" : "default");
    setenv("CLIPDEX_PACK", "0", 1);   /* the other layout has its own key and file */
    test_prepared("plain");
    if (pack) setenv("CLIPDEX_PACK", pack, 1);
    else unsetenv("CLIPDEX_PACK");
    test_threads();
    setenv("CLIPDEX_PRECISION_EMULATE", "1", 1);   /* bf16 (and int8 below AVX2): reference kernels */
    test_copies(CDX_PRECISION_INT8);
    test_copies(CDX_PRECISION_BF16);
    unsetenv("CLIPDEX_PRECISION_EMULATE");

    free(g_pixels);
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return test_finish();
}
