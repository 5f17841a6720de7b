/*
 * library.c - the public library API (cdx_library_*): a directory holding
 *   DIR/catalog.db(-wal,-shm)   SQLite catalog (store/catalog.h)
 *   DIR/vectors*.cdxv           vecfile (store/vecfile.h): the one the catalog
 *                               names (meta vec_file; "vectors.cdxv" until
 *                               the first compaction, then
 *                               "vectors-<file id>.cdxv")
 *   DIR/lock                    flock()ed by the one writer process
 *   DIR/reindex.json, reindex.lock  a reindex in progress (the reindex
 *                               block at the end; meta prev_* name the set
 *                               a rollback returns to)
 *   DIR/images/<sha256>.<ext>   bytes stored by cdx_library_add_buffer
 *   DIR/ann.cdxi                approximate index (lib_ann.h; derived data)
 *
 * Concurrency inside one handle:
 *  - wmu serialises writes (index, add, remove) and owns the writer catalog
 *    connection `wcat` (NULL for read-only handles);
 *  - rmu guards the reader connection `rcat` and the cached unfiltered
 *    search snapshot; searches hold it only to obtain a snapshot, the scan
 *    itself runs unlocked on a refcounted snapshot;
 *  - vmu guards the current vector file `vec` (a refcounted vecref:
 *    searches hold a reference while they scan, so a switch to a compacted
 *    file never unmaps rows under a scan) and vecfile_refresh vs
 *    vecfile_rows;
 *  - pmu/pcv guard the model generations (struct cdx_library_pin: the
 *    current one and those queries pin, reference-counted) and their
 *    pools of inference contexts (query embeddings); indexing has its own
 *    batched context on the current model, used under wmu.
 * Ordering rule for searches: the catalog snapshot is read BEFORE the
 * vecfile view is taken, and vectors are durable before the catalog rows
 * that name them commit, so every slot in the snapshot is < the view's
 * count (a read-only handle refreshes when it is not).  The snapshot also
 * records which vector file (file id) its slots refer to, read in the same
 * read transaction; a search uses that file (a read-only handle switches to
 * it) or, when the writer already switched, retries with a fresh snapshot.
 * Lock order: wmu -> rmu -> vmu (the compaction commit takes vmu under wmu
 * only).
 *
 * Workload: a few opens per process; searches from many threads; one
 * index run at a time.
 */
#include "clipdex.h"

#include "common/error.h"
#include "common/pool.h"
#include "common/util.h"
#include "image/ocr.h"
#include "ingest/import.h"
#include "ingest/ocr_pass.h"
#include "ingest/pipeline.h"
#include "ingest/source.h"
#include "ingest/walk.h"
#include "library/lib_ann.h"
#include "library/lib_codes.h"
#include "search/dupes.h"
#include "library/lib_watch.h"
#include "library/lib_fleet.h"
#include "search/topk.h"
#include "store/catalog.h"
#include "store/npy.h"
#include "store/vecfile.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 8
#define EMBED_BATCH 16           /* texts per encode call (pool contexts' max_batch) */
#define SEARCH_K_MAX 10000
#define SEARCH_OFFSET_MAX 1000000
#define VEC_DEFAULT_NAME "vectors.cdxv"
#define VEC_NAME_MAX 64          /* > strlen("vectors-<32 hex>.cdxv") */
#define VEC_ID_HEX (2 * VECFILE_ID_BYTES + 1)
#define VEC_RETRIES 8            /* snapshot/file races with a compacting writer */
#define ANN_DEFAULT_MIN_ROWS 10000   /* exact below (crossover measured, docs/search.md) */
#define ANN_LAZY_ROWS 1024       /* single adds extend the index once this far behind */
#define ANN_MAX_WANT 4096        /* deeper pages (offset + k) are scanned exactly */

/* One open vector file; refs: the library's (while current) + readers'. */
typedef struct vecref {
    vecfile *vf;
    char *path;
    char id[VEC_ID_HEX];
    int refs;
    atomic_int *live;        /* the library's live_vecs */
} vecref;

typedef struct snapshot {
    catalog_pair *pairs;     /* sorted by slot, id */
    size_t n;
    uint64_t *bits;          /* allowed slots */
    uint64_t nbits;          /* max slot + 1 */
    uint32_t *weight;        /* images per slot (nbits entries); NULL when
                                every allowed slot has exactly one */
    int refs;
    char vec_id[VEC_ID_HEX];         /* the vector file the slots refer to */
    char vec_name[VEC_NAME_MAX];
    char model_fp[72];               /* the model that made its vectors */
} snapshot;

struct cdx_library {
    char *dir, *cat_path;
    uint8_t model_tag[32];
    cdx_compact_params compact;      /* automatic compaction */
    int writable;
    int lock_fd;
    int n_threads;
    int dim;
    char fingerprint[65];
    char model_dir[4096];
    cdx_model *model;
    cdx_precision precision;         /* resolved (never auto) */

    pthread_mutex_t wmu;
    catalog *wcat;
    cdx_ctx *index_ctx;
    int index_batch;

    pthread_mutex_t rmu;
    catalog *rcat;
    snapshot *all;           /* unfiltered snapshot for all_version */
    uint64_t all_version;

    pthread_mutex_t vmu;
    vecref *vec;             /* current vector file */

    /* info->bytes walks the directory (images/, thumbs/): cached until the
     * catalog changes or BYTES_MAX_AGE_S pass (guarded by rmu). */
    uint64_t bytes_cache, bytes_version;
    double bytes_at;

    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    struct cdx_library_pin *gen;     /* current model generation (under pmu) */
    int live_gens;                   /* generations not yet freed (under pmu) */
    atomic_int live_vecs;            /* vecrefs not yet closed */

    lib_codes *codes;        /* companion code files (lib_codes.h) */
    lib_ann *ann;            /* approximate index (lib_ann.h) */
    uint64_t ann_min_rows;
    /* cdx_library_has_text's answer for text_version (under rmu) */
    int has_text, has_text_known;
    uint64_t text_version;
    /* reindex: the catalog version last synced (cdx_library_sync_model) */
    uint64_t model_seen;
    int model_seen_known;
};

/* One model generation (a cdx_library_pin): a model and its pool of query
 * contexts.  refs (under the library's pmu): the library's own while it is
 * current, plus one per pin (a query in flight).  A switch installs a new
 * generation and drops the library's reference; the last unpin frees the
 * old one, so a handle follows any number of switches holding only the
 * current generation and those queries still use (live_gens counts them). */
struct cdx_library_pin {
    cdx_library *lib;
    cdx_model *model;        /* owned */
    char fingerprint[65];
    int dim;
    int refs;
    cdx_ctx *pool[POOL_MAX];
    int pool_free[POOL_MAX];
    int n_pool;
};
typedef struct cdx_library_pin modelgen;

/* ---------------------------------------------------------------- defaults */

static uint64_t ann_default_min_rows(void);
static cdx_result gen_install(cdx_library *lib, cdx_model *m);
static void gen_release(modelgen *g);
static cdx_result gen_new(cdx_library *lib, cdx_model *m, modelgen **out);
static void gen_swap(cdx_library *lib, modelgen *g);
static cdx_result meta_or_empty(catalog *c, const char *key, char *out, size_t cap);
static void ann_refresh(cdx_library *lib, uint64_t lazy, cdx_cancel_flag *cancel);
static cdx_result search_ann(cdx_library *lib, const vecref *vr, const snapshot *s,
                             const cdx_rows *src, const float *queries, size_t nq,
                             const cdx_search_params *p, const topk_params *tp, topk_hit *th,
                             size_t *nth, int *used);

cdx_compact_params cdx_compact_default_params(void)
{
    cdx_compact_params p = {0};
    p.dead_fraction = 0.25;
    p.min_dead = 1024;
    return p;
}

cdx_library_params cdx_library_default_params(void)
{
    cdx_library_params p = {0};
    p.load_model = 1;
    p.compact = cdx_compact_default_params();
    return p;
}

const char *cdx_library_default_dir(void)
{
    const char *e = getenv("CLIPDEX_LIBRARY");
    return e && *e ? e : "./clipdex-library";
}

cdx_index_params cdx_index_default_params(void)
{
    cdx_index_params p = {0};
    p.max_file_bytes = (uint64_t)256 << 20;
    p.url_timeout_s = 60;
    p.url_max_bytes = (uint64_t)64 << 20;
    p.batch_size = 32;
    p.image = cdx_image_default_params();
    return p;
}

cdx_search_params cdx_search_default_params(void)
{
    cdx_search_params p = {0};
    p.k = 10;
    p.min_score = -2.0f;
    p.keyword_weight = 0.5f;
    return p;
}

/* ---------------------------------------------------------------- open */

static cdx_result load_checked(cdx_library *lib, const char *model_dir, int recorded)
{
    cdx_result r = cdx_model_load(model_dir, NULL, &lib->model);
    if (r) return cdx_error_prefix(r, recorded ? "loading the library's model" : "loading model");
    cdx_model_info mi;
    cdx_model_get_info(lib->model, &mi);
    if (strcmp(mi.fingerprint, lib->fingerprint) != 0 || mi.embed_dim != lib->dim)
        return cdx_error(CDX_ERR_MISMATCH,
                         "library %s was made with model %s (fingerprint %.16s..., dim %d) but "
                         "%s%s has fingerprint %.16s... (dim %d); use the same model or "
                         "another library", lib->dir, lib->model_dir, lib->fingerprint, lib->dim,
                         model_dir, recorded ? " (its files changed since)" : "",
                         mi.fingerprint, mi.embed_dim);
    return CDX_OK;
}

static cdx_result meta_int(catalog *c, const char *key, long lo, long hi, long *out)
{
    char buf[64];
    cdx_result r = catalog_meta_get(c, key, buf, sizeof buf);
    if (r) return r;
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || end == buf || *end || v < lo || v > hi)
        return cdx_error(CDX_ERR_FORMAT, "catalog meta '%s' is malformed", key);
    *out = v;
    return CDX_OK;
}

/* ---------------------------------------------------------------- vector file */

/* "vectors.cdxv" or "vectors-<32 lower-case hex>.cdxv": the only names the
 * catalog may give (it is input too: no path can be smuggled in). */
static int vec_name_ok(const char *name)
{
    if (!strcmp(name, VEC_DEFAULT_NAME)) return 1;
    if (strlen(name) != 8 + 32 + 5 || strncmp(name, "vectors-", 8) || strcmp(name + 40, ".cdxv")) return 0;
    for (int i = 8; i < 40; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
    return 1;
}

/* The vector file the catalog names: its file id (hex) and name.  Call in a
 * read transaction when other connections may write. */
static cdx_result vec_meta(catalog *c, char id[VEC_ID_HEX], char name[VEC_NAME_MAX])
{
    char buf[VEC_NAME_MAX + 8];
    cdx_result r = catalog_meta_get(c, "vec_file_id", buf, sizeof buf);
    if (r == CDX_ERR_NOT_FOUND) return cdx_error(CDX_ERR_FORMAT, "catalog meta vec_file_id is missing");
    if (r) return cdx_error_prefix(r, "reading library metadata");
    if (strlen(buf) != VEC_ID_HEX - 1) return cdx_error(CDX_ERR_FORMAT, "catalog meta vec_file_id is malformed");
    memcpy(id, buf, VEC_ID_HEX);
    r = catalog_meta_get(c, "vec_file", buf, sizeof buf);
    if (r == CDX_ERR_NOT_FOUND) {
        cdx_error_clear();
        snprintf(buf, sizeof buf, "%s", VEC_DEFAULT_NAME);   /* libraries made before compaction */
    } else if (r) {
        return cdx_error_prefix(r, "reading library metadata");
    }
    if (!vec_name_ok(buf)) return cdx_error(CDX_ERR_FORMAT, "catalog meta vec_file '%.80s' is not a vector file name", buf);
    memcpy(name, buf, strlen(buf) + 1);      /* vec_name_ok: at most 45 bytes */
    return CDX_OK;
}

static void vecref_release(vecref *v)    /* caller holds vmu (or owns v alone) */
{
    if (!v || --v->refs > 0) return;
    atomic_fetch_sub(v->live, 1);
    vecfile_close(v->vf);
    free(v->path);
    free(v);
}

static void vecref_id(vecfile *vf, char id[VEC_ID_HEX])
{
    uint8_t fid[VECFILE_ID_BYTES];
    vecfile_file_id(vf, fid);
    cdx_hex(fid, sizeof fid, id);
}

/* Wrap an open vecfile (takes ownership, also on failure). */
static cdx_result vecref_wrap(cdx_library *lib, vecfile *vf, const char *path, vecref **out)
{
    vecref *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        vecfile_close(vf);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    v->vf = vf;
    v->refs = 1;
    v->live = &lib->live_vecs;
    atomic_fetch_add(v->live, 1);
    vecref_id(vf, v->id);
    *out = v;
    return CDX_OK;
}

/* Open the named vector file and require the file id the catalog expects.
 * *stale = 1 when the file is gone or is another one (for a reader: a
 * compaction switched files after the catalog was read). */
static cdx_result vecref_open(cdx_library *lib, const char *name, const char *want_id, vecref **out,
                              int *stale)
{
    *stale = 0;
    char *path = cdx_path_join(lib->dir, name);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    vecfile_params vp = vecfile_default_params();
    vp.writable = lib->writable;
    vp.dim = lib->dim;
    vp.model_tag = lib->model_tag;
    vecfile *vf = NULL;
    cdx_result r = vecfile_open(path, &vp, &vf, NULL);
    if (r == CDX_ERR_NOT_FOUND) *stale = 1;
    if (!r) r = vecref_wrap(lib, vf, path, out);
    if (!r && strcmp((*out)->id, want_id)) {
        *stale = 1;
        r = cdx_error(CDX_ERR_FORMAT, "%s is not the vector file this catalog was made with "
                      "(file id %s, catalog expects %s)", path, (*out)->id, want_id);
        vecref_release(*out);
        *out = NULL;
    }
    free(path);
    return r;
}

/* A reference to the vector file with file id `id` (named `name`).  A
 * read-only handle switches to it; *stale = 1 when the catalog and the
 * files moved on meanwhile (a compaction): take a fresh snapshot. */
static cdx_result vec_acquire(cdx_library *lib, const char *id, const char *name, vecref **out,
                              int *stale)
{
    cdx_result r = CDX_OK;
    *stale = 0;
    *out = NULL;
    pthread_mutex_lock(&lib->vmu);
    if (lib->vec && !strcmp(lib->vec->id, id)) {
        *out = lib->vec;
    } else if (lib->writable) {   /* the writer switches under vmu right after its commit */
        *stale = 1;
        r = cdx_error(CDX_ERR_MISMATCH, "the vector file was switched by a compaction meanwhile");
    } else {
        vecref *n = NULL;
        r = vecref_open(lib, name, id, &n, stale);
        if (!r) {
            vecref_release(lib->vec);
            lib->vec = n;
            *out = n;
        }
    }
    if (*out) (*out)->refs++;
    pthread_mutex_unlock(&lib->vmu);
    return r;
}

static void vec_put(cdx_library *lib, vecref *v)
{
    if (!v) return;
    pthread_mutex_lock(&lib->vmu);
    vecref_release(v);
    pthread_mutex_unlock(&lib->vmu);
}

/* A reference to the vector file with file id `id` (see vec_acquire) and
 * a view of it covering every slot < need (need = UINT64_MAX: refresh a
 * reader's view whatever its count, and require nothing). */
static cdx_result vectors_view(cdx_library *lib, const char *id, const char *name, uint64_t need,
                               vecref **ref, cdx_rows *src, int *stale)
{
    cdx_result r = vec_acquire(lib, id, name, ref, stale);
    if (r) return r;
    pthread_mutex_lock(&lib->vmu);
    if (vecfile_count((*ref)->vf) < need && !lib->writable) r = vecfile_refresh((*ref)->vf);
    *src = vecfile_rows((*ref)->vf);
    pthread_mutex_unlock(&lib->vmu);
    if (!r) r = vecfile_verify((*ref)->vf);   /* truncated underneath? (faults branch) */
    if (r == CDX_ERR_MISMATCH) *stale = 1;   /* the file was replaced or deleted meanwhile */
    if (!r && need != UINT64_MAX && src->count < need)
        r = cdx_error(CDX_ERR_FORMAT, "the catalog refers to vector slot %llu but %s has only %llu "
                      "(run clipdex check)", (unsigned long long)(need - 1), (*ref)->path,
                      (unsigned long long)src->count);
    if (r) {
        vec_put(lib, *ref);
        *ref = NULL;
    }
    return r;
}

static int reindex_keeps(cdx_library *lib, const char *name);

/* Writers: delete vector files the catalog does not name (a compaction
 * that died before its commit, or the old file of one that died after). */
static void remove_leftovers(cdx_library *lib, const char *keep)
{
    DIR *d = opendir(lib->dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!vec_name_ok(e->d_name) || !strcmp(e->d_name, keep) || reindex_keeps(lib, e->d_name)) continue;
        char *p = cdx_path_join(lib->dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
}

/* First-time setup of a library directory (inside the writer lock). */
static cdx_result init_library(cdx_library *lib, const char *model_dir)
{
    if (!model_dir)
        return cdx_error(CDX_ERR_INVALID_ARG, "library %s is new: a model is needed to create it "
                         "(--model DIR)", lib->dir);
    cdx_result r = cdx_model_load(model_dir, NULL, &lib->model);
    if (r) return cdx_error_prefix(r, "loading model");
    cdx_model_info mi;
    cdx_model_get_info(lib->model, &mi);
    char *abs = walk_abspath(model_dir);
    if (!abs) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    snprintf(lib->model_dir, sizeof lib->model_dir, "%s", abs);
    free(abs);
    snprintf(lib->fingerprint, sizeof lib->fingerprint, "%s", mi.fingerprint);
    lib->dim = mi.embed_dim;
    if (source_unhex(mi.fingerprint, lib->model_tag) != 0) memset(lib->model_tag, 0, sizeof lib->model_tag);
    vecfile_params vp = vecfile_default_params();
    vp.writable = 1;
    vp.create = 1;
    vp.dim = lib->dim;
    vp.model_tag = lib->model_tag;
    char *vpath = cdx_path_join(lib->dir, VEC_DEFAULT_NAME);
    vecfile *vf = NULL;
    if (!vpath) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    r = vecfile_open(vpath, &vp, &vf, NULL);
    if (!r) r = vecref_wrap(lib, vf, vpath, &lib->vec);
    free(vpath);
    if (r) return r;
    char dimtxt[32], now[32];
    snprintf(dimtxt, sizeof dimtxt, "%d", lib->dim);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    if ((r = catalog_begin(lib->wcat))) return r;
    if ((r = catalog_meta_set(lib->wcat, "model_dir", lib->model_dir)) ||
        (r = catalog_meta_set(lib->wcat, "model_fingerprint", lib->fingerprint)) ||
        (r = catalog_meta_set(lib->wcat, "dim", dimtxt)) ||
        (r = catalog_meta_set(lib->wcat, "vec_file_id", lib->vec->id)) ||
        (r = catalog_meta_set(lib->wcat, "vec_file", VEC_DEFAULT_NAME)) ||
        (r = catalog_meta_set(lib->wcat, "created", now)) ||
        (r = catalog_commit(lib->wcat))) {
        catalog_rollback(lib->wcat);
        return r;
    }
    return CDX_OK;
}

static cdx_result open_existing(cdx_library *lib, const cdx_library_params *p)
{
    catalog *c = lib->wcat ? lib->wcat : lib->rcat;
    long dim = 0;
    cdx_result r = meta_int(c, "dim", 1, VECFILE_MAX_DIM, &dim);
    if (!r) r = catalog_meta_get(c, "model_fingerprint", lib->fingerprint, sizeof lib->fingerprint);
    if (!r) r = catalog_meta_get(c, "model_dir", lib->model_dir, sizeof lib->model_dir);
    if (r) return cdx_error_prefix(r, "reading library metadata");
    lib->dim = (int)dim;
    if (p->model_dir) r = load_checked(lib, p->model_dir, 0);
    else if (p->load_model) r = load_checked(lib, lib->model_dir, 1);
    if (r) return r;
    if (source_unhex(lib->fingerprint, lib->model_tag) != 0)
        return cdx_error(CDX_ERR_FORMAT, "catalog meta model_fingerprint is malformed");
    /* The writer holds the lock: nothing moves.  A reader reads the name
     * and id in one transaction and retries when a compaction switched the
     * file between that read and the open. */
    for (int attempt = 0;; attempt++) {
        char id[VEC_ID_HEX], name[VEC_NAME_MAX];
        int txn = !lib->writable && catalog_begin_read(c) == CDX_OK;
        r = vec_meta(c, id, name);
        if (txn) catalog_rollback(c);
        if (r) return r;
        int stale;
        r = vecref_open(lib, name, id, &lib->vec, &stale);
        if (!r || !stale || lib->writable || attempt >= VEC_RETRIES) break;
    }
    if (!r && lib->writable) remove_leftovers(lib, strrchr(lib->vec->path, '/') + 1);
    return r;
}

static cdx_result take_lock(cdx_library *lib)
{
    char *path = cdx_path_join(lib->dir, "lock");
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    lib->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    cdx_result r = CDX_OK;
    if (lib->lock_fd < 0) r = cdx_error(CDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (flock(lib->lock_fd, LOCK_EX | LOCK_NB) != 0)
        r = cdx_error(CDX_ERR_IO, "library %s is being written by another process (%s is locked); "
                      "wait for it to finish", lib->dir, path);
    free(path);
    return r;
}

cdx_result cdx_library_open(const char *dir, const cdx_library_params *params, cdx_library **out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_open: NULL out");
    *out = NULL;
    cdx_library_params defaults = cdx_library_default_params();
    const cdx_library_params *p = params ? params : &defaults;
    if (!dir) dir = cdx_library_default_dir();
    if (p->create && !p->writable)
        return cdx_error(CDX_ERR_INVALID_ARG, "creating a library needs writable = 1");
    cdx_library *lib = calloc(1, sizeof *lib);
    if (!lib) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    lib->lock_fd = -1;
    pthread_mutex_init(&lib->wmu, NULL);
    pthread_mutex_init(&lib->rmu, NULL);
    pthread_mutex_init(&lib->vmu, NULL);
    pthread_mutex_init(&lib->pmu, NULL);
    pthread_cond_init(&lib->pcv, NULL);
    lib->writable = p->writable;
    lib->n_threads = p->n_threads > 0 ? p->n_threads : 0;
    cdx_result r = CDX_OK;
    if (p->load_model && (r = cdx_precision_resolve(p->precision, &lib->precision)) != CDX_OK) goto fail;
    lib->dir = walk_abspath(dir);
    lib->compact = p->compact;
    if (!lib->dir || !(lib->cat_path = cdx_path_join(lib->dir, "catalog.db"))) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (p->create && mkdir(lib->dir, 0777) != 0 && errno != EEXIST) {
        r = cdx_error(CDX_ERR_IO, "%s: cannot create: %s", lib->dir, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (stat(lib->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        r = cdx_error(CDX_ERR_NOT_FOUND, "no library at %s (create one with 'clipdex init "
                      "--library DIR --model MODEL' or 'clipdex index --model MODEL ...')", lib->dir);
        goto fail;
    }
    if (lib->writable && (r = take_lock(lib))) goto fail;
    int have_catalog = stat(lib->cat_path, &st) == 0;
    if (!have_catalog && !p->create) {
        r = cdx_error(CDX_ERR_NOT_FOUND, "%s is not a clipdex library (no catalog.db); create one "
                      "with 'clipdex init --library DIR --model MODEL'", lib->dir);
        goto fail;
    }
    if (lib->writable && (r = catalog_open(lib->cat_path, 1, p->create, &lib->wcat))) goto fail;
    int initialised = 1;
    if (lib->wcat) {
        char tmp[8];
        r = catalog_meta_get(lib->wcat, "model_fingerprint", tmp, sizeof tmp);
        if (r == CDX_ERR_NOT_FOUND) initialised = 0;
        else if (r) goto fail;
        cdx_error_clear();
    }
    if (!initialised) {
        if (!p->create) {
            r = cdx_error(CDX_ERR_FORMAT, "library %s was never initialised", lib->dir);
            goto fail;
        }
        if ((r = init_library(lib, p->model_dir))) goto fail;
    }
    if ((r = catalog_open(lib->cat_path, 0, 0, &lib->rcat)) == CDX_ERR_UNSUPPORTED && !lib->writable) {
        /* An older schema seen by a reader: upgrade it in place once (the
         * writer's transaction), unless it is newer or the file read-only. */
        catalog *up = NULL;
        if (catalog_open(lib->cat_path, 1, 0, &up) == CDX_OK) {
            catalog_close(up);
            r = catalog_open(lib->cat_path, 0, 0, &lib->rcat);
        } else {
            r = catalog_open(lib->cat_path, 0, 0, &lib->rcat);   /* the first message */
        }
    }
    if (r) goto fail;
    if (initialised && (r = open_existing(lib, p))) goto fail;
    if (lib->model) {   /* the handle's first model generation owns it */
        cdx_model *m = lib->model;
        lib->model = NULL;
        if ((r = gen_install(lib, m))) goto fail;
    }
    if (lib->writable && (r = lib_fleet_attach(lib))) goto fail;   /* an owner's outbox (lib_fleet.h) */
    if ((r = lib_codes_new(lib->dir, &lib->codes))) goto fail;
    lib->ann_min_rows = p->ann_min_rows ? p->ann_min_rows : ann_default_min_rows();
    if ((r = lib_ann_new(lib->dir, lib->dim, lib->ann_min_rows, &lib->ann))) goto fail;
    *out = lib;
    return CDX_OK;
fail:
    cdx_library_close(lib);
    return r;
}

static void snapshot_release(snapshot *s)
{
    if (!s || --s->refs > 0) return;
    free(s->pairs);
    free(s->bits);
    free(s->weight);
    free(s);
}

void cdx_library_close(cdx_library *lib)
{
    if (!lib) return;
    cdx_ctx_free(lib->index_ctx);
    if (lib->all) snapshot_release(lib->all);
    lib_codes_free(lib->codes);
    lib_ann_free(lib->ann);
    vecref_release(lib->vec);
    catalog_close(lib->rcat);
    catalog_close(lib->wcat);
    if (lib->gen) gen_release(lib->gen);   /* pins must be released before close */
    else cdx_model_free(lib->model);
    if (lib->lock_fd >= 0) close(lib->lock_fd);   /* releases the flock */
    pthread_mutex_destroy(&lib->wmu);
    pthread_mutex_destroy(&lib->rmu);
    pthread_mutex_destroy(&lib->vmu);
    pthread_mutex_destroy(&lib->pmu);
    pthread_cond_destroy(&lib->pcv);
    free(lib->dir);
    free(lib->cat_path);
    free(lib);
}

const cdx_model *cdx_library_model(const cdx_library *lib) { return lib ? lib->model : NULL; }

const char *lib_watch_dir(const cdx_library *lib) { return lib ? lib->dir : NULL; }   /* lib_watch.h */

catalog *lib_fleet_writer_lock(cdx_library *lib)   /* lib_fleet.h */
{
    if (!lib || !lib->wcat) return NULL;
    pthread_mutex_lock(&lib->wmu);
    return lib->wcat;
}
void lib_fleet_writer_unlock(cdx_library *lib) { pthread_mutex_unlock(&lib->wmu); }

/* ---------------------------------------------------------------- info */

#define BYTES_MAX_AGE_S 30.0

static uint64_t dir_bytes(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = cdx_path_join(dir, e->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0) {
            if (S_ISREG(st.st_mode)) sum += (uint64_t)st.st_size;
            else if (S_ISDIR(st.st_mode) && depth < 4) sum += dir_bytes(p, depth + 1);
        }
        free(p);
    }
    closedir(d);
    return sum;
}

cdx_result cdx_library_get_info(cdx_library *lib, cdx_library_info *info)
{
    if (!lib || !info) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    cdx_result r;
    uint64_t version = 0;
    for (int attempt = 0;; attempt++) {
        char vid[VEC_ID_HEX], vname[VEC_NAME_MAX];
        pthread_mutex_lock(&lib->rmu);
        r = catalog_begin_read(lib->rcat);
        if (!r) r = catalog_counts(lib->rcat, &info->images, &info->vectors);
        if (!r) r = catalog_ocr_counts(lib->rcat, &info->ocr_images, &info->ocr_read,
                                       &info->ocr_skipped);
        if (!r) r = vec_meta(lib->rcat, vid, vname);
        catalog_rollback(lib->rcat);
        if (!r) r = catalog_version(lib->rcat, &version);
        pthread_mutex_unlock(&lib->rmu);
        if (r) return r;
        vecref *vr = NULL;
        cdx_rows src;
        int stale;
        r = vectors_view(lib, vid, vname, UINT64_MAX, &vr, &src, &stale);
        if (!r) {
            info->vector_rows = src.count;
            info->dead_rows = src.count > info->vectors ? src.count - info->vectors : 0;
            info->reclaimable_bytes = vecfile_bytes_for(vr->vf, src.count) -
                                      vecfile_bytes_for(vr->vf, src.count - info->dead_rows);
            vec_put(lib, vr);
        }
        if (!r || !stale || attempt >= VEC_RETRIES) break;
    }
    if (r) return r;
    double now = cdx_now();
    pthread_mutex_lock(&lib->rmu);
    int fresh = lib->bytes_at > 0 && lib->bytes_version == version && now - lib->bytes_at < BYTES_MAX_AGE_S;
    info->bytes = lib->bytes_cache;
    pthread_mutex_unlock(&lib->rmu);
    if (!fresh) {   /* the walk runs unlocked; concurrent callers may both walk */
        info->bytes = dir_bytes(lib->dir, 0);
        pthread_mutex_lock(&lib->rmu);
        lib->bytes_cache = info->bytes;
        lib->bytes_version = version;
        lib->bytes_at = now;
        pthread_mutex_unlock(&lib->rmu);
    }
    info->dim = lib->dim;
    pthread_mutex_lock(&lib->rmu);
    if (catalog_meta_get(lib->rcat, "precision", info->precision, sizeof info->precision) != CDX_OK ||
        !info->precision[0])
        snprintf(info->precision, sizeof info->precision, "%s", "fp32");
    pthread_mutex_unlock(&lib->rmu);
    snprintf(info->run_precision, sizeof info->run_precision, "%s",
             lib->model ? cdx_precision_name(lib->precision) : "");
    snprintf(info->model_fingerprint, sizeof info->model_fingerprint, "%s", lib->fingerprint);
    snprintf(info->model_dir, sizeof info->model_dir, "%s", lib->model_dir);
    return CDX_OK;
}

cdx_result cdx_library_get_image(cdx_library *lib, int64_t id, cdx_image_record *rec)
{
    if (!lib || !rec) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_image: NULL argument");
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_image_by_id(lib->rcat, id, rec);
    pthread_mutex_unlock(&lib->rmu);
    if (r == CDX_ERR_NOT_FOUND) return cdx_error(r, "no image with id %lld", (long long)id);
    return r;
}

static int is_url(const char *s) { return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8); }

cdx_result cdx_library_find(cdx_library *lib, const char *path_or_url, int64_t *id)
{
    if (!lib || !path_or_url || !id) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_find: NULL argument");
    char *abs = is_url(path_or_url) ? strdup(path_or_url) : walk_abspath(path_or_url);
    if (!abs) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_image_record *rec = malloc(sizeof *rec);
    cdx_result r = rec ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) {
        pthread_mutex_lock(&lib->rmu);
        r = catalog_image_by_path(lib->rcat, abs, rec);
        /* Indexed through a symlinked folder and named through the real one
         * (or the reverse): try the path with symlinks resolved. */
        char *real = r == CDX_ERR_NOT_FOUND && !is_url(abs) ? realpath(abs, NULL) : NULL;
        if (real && strcmp(real, abs)) r = catalog_image_by_path(lib->rcat, real, rec);
        free(real);
        pthread_mutex_unlock(&lib->rmu);
        if (!r) *id = rec->id;
        else if (r == CDX_ERR_NOT_FOUND) r = cdx_error(r, "%s is not in the library", abs);
    }
    free(rec);
    free(abs);
    return r;
}

static void auto_compact(cdx_library *lib);

cdx_result cdx_library_remove(cdx_library *lib, int64_t id)
{
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_remove: NULL library");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    pthread_mutex_lock(&lib->wmu);
    cdx_result r = catalog_begin(lib->wcat);
    if (!r) r = catalog_image_delete(lib->wcat, id);
    if (!r) r = catalog_commit(lib->wcat);
    if (r) catalog_rollback(lib->wcat);
    vecref *before = lib->vec;
    if (!r) auto_compact(lib);
    int compacted = lib->vec != before;
    pthread_mutex_unlock(&lib->wmu);
    if (compacted) ann_refresh(lib, 0, NULL);   /* slots renumbered: a new index */
    return r;
}

/* ---------------------------------------------------------------- compaction */

/* Live slots in increasing order (catalog_each_content sorts by slot). */
typedef struct slot_list {
    int64_t *v;
    size_t n, cap;
    uint64_t rows;           /* vector rows: every slot must be below */
    int bad;                 /* 1 = slot out of range, 2 = out of memory */
} slot_list;

static int collect_slot(void *user, const char *sha, int64_t slot)
{
    (void)sha;
    slot_list *l = user;
    if (slot < 0 || (uint64_t)slot >= l->rows || (l->n && slot <= l->v[l->n - 1])) {
        l->bad = 1;
        return 1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        int64_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->bad = 2;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = slot;
    return 0;
}

static int compact_wanted(const cdx_compact_params *p, uint64_t rows, uint64_t dead)
{
    if (!dead) return 0;
    if (!p->only_if_needed) return 1;
    return p->dead_fraction > 0 && dead >= p->min_dead && (double)dead >= p->dead_fraction * (double)rows;
}

/* Write the live rows to a new file vectors-<id>.cdxv (fsynced), then ONE
 * catalog transaction renumbers the slots and names the new file; the old
 * file is deleted after the commit.  A crash before the commit leaves the
 * old file in use and the new one a leftover; after it, the reverse; the
 * next writable open deletes the file the catalog does not name.  The
 * switch of lib->vec happens under vmu together with the commit, so a
 * search of this handle sees either the old catalog and file or the new
 * ones (see vec_acquire). */
static cdx_result compact_locked(cdx_library *lib, const cdx_compact_params *p, cdx_compact_report *rep)
{
    double t0 = cdx_now();
    memset(rep, 0, sizeof *rep);
    vecref *old = lib->vec;     /* only this function replaces it, under wmu */
    uint64_t rows = vecfile_count(old->vf), images = 0, contents = 0;
    rep->rows_before = rep->rows_after = rows;
    rep->bytes_before = rep->bytes_after = vecfile_bytes_for(old->vf, rows);
    cdx_result r = catalog_counts(lib->wcat, &images, &contents);
    if (r) return r;
    if (contents > rows)
        return cdx_error(CDX_ERR_FORMAT, "the catalog has %llu contents but %s only %llu vectors "
                         "(run clipdex check)", (unsigned long long)contents, old->path,
                         (unsigned long long)rows);
    if (!compact_wanted(p, rows, rows - contents)) return CDX_OK;

    slot_list live = {NULL, 0, 0, rows, 0};
    uint64_t *keep = calloc(rows / 64 + 1, sizeof *keep), *map = malloc((rows + 1) * sizeof *map);
    char *path = NULL, *old_path = strdup(old->path);
    vecfile *nvf = NULL;
    vecref *nref = NULL;
    if (!keep || !map || !old_path) { r = cdx_error(CDX_ERR_NOMEM, "out of memory"); goto done; }
    if ((r = catalog_begin(lib->wcat))) goto done;
    if ((r = catalog_each_content(lib->wcat, collect_slot, &live))) goto done;
    if (live.bad) {
        r = live.bad == 2 ? cdx_error(CDX_ERR_NOMEM, "out of memory")
                          : cdx_error(CDX_ERR_FORMAT, "the catalog holds an invalid or duplicate slot "
                                      "(run clipdex check)");
        goto done;
    }
    for (size_t i = 0; i < live.n; i++) keep[live.v[i] / 64] |= 1ull << (live.v[i] % 64);
    uint8_t id[VECFILE_ID_BYTES];
    char hex[VEC_ID_HEX], name[VEC_NAME_MAX];
    vecfile_new_id(id);
    cdx_hex(id, sizeof id, hex);
    snprintf(name, sizeof name, "vectors-%s.cdxv", hex);
    if (!(path = cdx_path_join(lib->dir, name))) { r = cdx_error(CDX_ERR_NOMEM, "out of memory"); goto done; }
    if ((r = vecfile_compact_into(old->vf, keep, map, path, id, &nvf))) goto done;
    if ((r = vecref_wrap(lib, nvf, path, &nref))) {
        unlink(path);
        goto done;
    }
    for (size_t i = 0; !r && i < live.n; i++)       /* increasing old slot: no collisions */
        if (map[live.v[i]] != (uint64_t)live.v[i])
            r = catalog_content_reslot(lib->wcat, live.v[i], (int64_t)map[live.v[i]]);
    if (!r) r = catalog_meta_set(lib->wcat, "vec_file_id", nref->id);
    if (!r) r = catalog_meta_set(lib->wcat, "vec_file", name);
    if (r) {
        unlink(path);
        goto done;
    }
    pthread_mutex_lock(&lib->vmu);
    r = catalog_commit(lib->wcat);   /* the switch */
    if (!r) {
        lib->vec = nref;
        vecref_release(old);         /* searches still holding it keep it open */
        nref = NULL;
    }
    pthread_mutex_unlock(&lib->vmu);
    /* A failed commit may still have reached the disk: keep the new file;
     * the next writable open deletes whichever file the catalog does not name. */
    if (r) goto done;
    unlink(old_path);                /* open handles of readers keep their copy */
    rep->compacted = 1;
    rep->rows_after = live.n;
    rep->bytes_after = vecfile_bytes_for(lib->vec->vf, live.n);
done:
    catalog_rollback(lib->wcat);
    if (nref) vecref_release(nref);
    rep->bytes_freed = rep->bytes_before - rep->bytes_after;
    rep->seconds = cdx_now() - t0;
    free(live.v);
    free(keep);
    free(map);
    free(path);
    free(old_path);
    return r;
}

cdx_result cdx_library_compact(cdx_library *lib, const cdx_compact_params *params,
                               cdx_compact_report *report)
{
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_compact: NULL library");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    cdx_compact_params defaults = cdx_compact_default_params();
    const cdx_compact_params *p = params ? params : &defaults;
    if (isnan(p->dead_fraction) || p->dead_fraction > 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "dead_fraction must be in 0..1");
    cdx_compact_report local;
    if (!report) report = &local;
    pthread_mutex_lock(&lib->wmu);
    cdx_result r = compact_locked(lib, p, report);
    pthread_mutex_unlock(&lib->wmu);
    if (!r && report->compacted) ann_refresh(lib, 0, NULL);   /* slots renumbered: a new index */
    return r;
}

/* After a successful write (under wmu).  A failure (e.g. no disk space for
 * the copy) leaves the library as it was and is not the write's failure:
 * the next write tries again, `clipdex compact` reports it. */
static void auto_compact(cdx_library *lib)
{
    if (!(lib->compact.dead_fraction > 0)) return;
    cdx_compact_params p = lib->compact;
    p.only_if_needed = 1;
    cdx_compact_report rep;
    if (compact_locked(lib, &p, &rep) != CDX_OK) cdx_error_clear();
}

/* ---------------------------------------------------------------- indexing */

static int decode_threads(void)
{
    const char *e = getenv("CLIPDEX_DECODE_THREADS");
    long v = e ? strtol(e, NULL, 10) : 0;
    if (v >= 1 && v <= 64) return (int)v;
    return cdx_cpu_count();
}

/* Catalog meta "precision": the precisions vectors were embedded at, joined
 * by "+" in order of first use (absent: all fp32, the only one before). */
static cdx_result record_precision_of(cdx_library *lib, cdx_precision prec, uint64_t added)
{
    char have[32] = "", want[40];
    const char *name = cdx_precision_name(prec);
    cdx_result r = catalog_meta_get(lib->wcat, "precision", have, sizeof have);
    if (r == CDX_ERR_NOT_FOUND || (!r && !have[0])) {
        uint64_t images = 0, vectors = 0;   /* vectors of earlier runs: fp32 */
        r = catalog_counts(lib->wcat, &images, &vectors);
        if (r) return r;
        if (vectors <= added) return catalog_meta_set(lib->wcat, "precision", name);
        snprintf(have, sizeof have, "%s", "fp32");
    } else if (r) return r;
    for (const char *p = have; *p;) {   /* already listed? */
        size_t n = strcspn(p, "+");
        if (n == strlen(name) && !strncmp(p, name, n)) return CDX_OK;
        p += n + (p[n] == '+');
    }
    snprintf(want, sizeof want, "%s+%s", have, name);
    if (strlen(want) >= sizeof have) return CDX_OK;   /* cannot grow: all three listed */
    return catalog_meta_set(lib->wcat, "precision", want);
}

static cdx_result record_precision(cdx_library *lib, uint64_t added)
{
    return record_precision_of(lib, lib->precision, added);
}

static cdx_result index_locked(cdx_library *lib, const char *const *paths, int n_paths,
                               const cdx_index_params *p, cdx_index_stats *stats)
{
    if (!lib->model)
        return cdx_error(CDX_ERR_INVALID_ARG, "library opened without its model (load_model = 0)");
    int bs = p->batch_size > 0 ? p->batch_size : 32;
    if (bs > 1024) return cdx_error(CDX_ERR_INVALID_ARG, "batch_size %d is too large (max 1024)", bs);
    if (!lib->index_ctx || lib->index_batch < bs) {
        cdx_ctx_free(lib->index_ctx);
        lib->index_ctx = NULL;
        cdx_ctx_params cp = cdx_ctx_default_params();
        cp.n_threads = lib->n_threads;
        cp.max_batch = bs;
        cp.precision = lib->precision;
        cdx_result r = cdx_ctx_new(lib->model, &cp, &lib->index_ctx);
        if (r) return r;
        lib->index_batch = bs;
    }
    ingest_target t = {lib->wcat, lib->vec->vf, lib->model, lib->index_ctx, lib->dir, decode_threads()};
    cdx_result r = ingest_run(&t, paths, n_paths, p, stats);
    if (!r && stats->added) r = record_precision(lib, stats->added);
    return r;
}

/* After indexing: bring existing companions up to date, build requested ones. */
static cdx_result refresh_codes(cdx_library *lib, int wanted)
{
    for (int scan = CDX_SCAN_INT8; scan <= CDX_SCAN_LAST; scan++) {
        if (!(wanted & (1 << scan)) && !lib_codes_exists(lib->codes, scan)) continue;
        cdx_result r = cdx_library_build_codes(lib, scan);
        if (r == CDX_ERR_INVALID_ARG && vecfile_count(lib->vec->vf) == 0) {   /* nothing to code yet */
            cdx_error_clear();
            continue;
        }
        if (r) {
            char what[64];
            snprintf(what, sizeof what, "updating the %s companion codes", cdx_scan_name(scan));
            return cdx_error_prefix(r, what);
        }
    }
    return CDX_OK;
}

cdx_result cdx_library_index(cdx_library *lib, const char *const *paths, int n_paths,
                             const cdx_index_params *params, cdx_index_stats *stats)
{
    if (!lib || (n_paths > 0 && !paths) || n_paths < 0)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_index: bad arguments");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    cdx_index_params defaults = cdx_index_default_params();
    cdx_index_stats local;
    if (!stats) stats = &local;
    const cdx_index_params *ip = params ? params : &defaults;
    if (ip->ocr) {   /* an unknown language fails before any work */
        cdx_result lr = ocr_check_langs(ip->ocr_lang);
        if (lr) return lr;
    }
    pthread_mutex_lock(&lib->wmu);
    cdx_result r = index_locked(lib, paths, n_paths, ip, stats);
    if (!r && !(ip->cancel && *ip->cancel)) auto_compact(lib);
    pthread_mutex_unlock(&lib->wmu);
    if (!r) r = refresh_codes(lib, (params ? params : &defaults)->codes);
    if (!r && !(ip->cancel && *ip->cancel)) ann_refresh(lib, 0, ip->cancel);
    return r;
}

/* ---------------------------------------------------------------- OCR */

cdx_result cdx_ocr_check_langs(const char *langs)
{
    return ocr_check_langs(langs);
}

cdx_ocr_params cdx_ocr_default_params(void)
{
    cdx_ocr_params p = {0};
    p.image = cdx_image_default_params();
    return p;
}

cdx_result cdx_library_ocr(cdx_library *lib, const cdx_ocr_params *params, cdx_ocr_stats *stats)
{
    cdx_ocr_params defaults = cdx_ocr_default_params();
    cdx_ocr_stats local;
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_ocr: NULL library");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    pthread_mutex_lock(&lib->wmu);
    cdx_result r = ocr_pass_run(lib->wcat, params ? params : &defaults, stats ? stats : &local);
    pthread_mutex_unlock(&lib->wmu);
    return r;
}

typedef struct add_watch {
    char reason[1024];
    int failed;
    int catalogued;   /* an ADDED / MOVED / DUPLICATE event: a new image row or path */
} add_watch;

static void add_cb(void *user, const cdx_index_event *ev)
{
    add_watch *w = user;
    if (ev->kind == CDX_INDEX_EVENT_FAILED) {
        w->failed = 1;
        snprintf(w->reason, sizeof w->reason, "%s", ev->reason ? ev->reason : "failed");
    }
    if (ev->kind == CDX_INDEX_EVENT_ADDED || ev->kind == CDX_INDEX_EVENT_DUPLICATE ||
        ev->kind == CDX_INDEX_EVENT_MOVED)
        w->catalogued = 1;
}

cdx_result cdx_library_add_buffer(cdx_library *lib, const void *data, size_t len,
                                  const cdx_image_params *image, int64_t *id)
{
    return cdx_library_add_buffer_ex(lib, data, len, image, id, NULL);
}

cdx_result cdx_library_add_buffer_ex(cdx_library *lib, const void *data, size_t len,
                                     const cdx_image_params *image, int64_t *id, int *created)
{
    if (created) *created = 0;
    if (!lib || !data || !id) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_add_buffer: NULL argument");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    if (len == 0) return cdx_error(CDX_ERR_FORMAT, "empty image (0 bytes)");
    cdx_index_params ip = cdx_index_default_params();
    if (len > ip.max_file_bytes) return cdx_error(CDX_ERR_TOO_LARGE, "image of %zu bytes is too large", len);
    const char *fmt = source_sniff(data, len);
    if (!fmt) return cdx_error(CDX_ERR_FORMAT, "not an image (content is no known image format)");
    uint8_t raw[32];
    char sha[65];
    source_sha256(data, len, raw, sha);
    cdx_image_record *rec = malloc(sizeof *rec);
    char *imgdir = cdx_path_join(lib->dir, "images");
    char name[80];
    snprintf(name, sizeof name, "%s.%s", sha, source_ext(fmt));
    char *path = imgdir ? cdx_path_join(imgdir, name) : NULL;
    cdx_result r = rec && path ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&lib->wmu);
    if (!r) {
        r = catalog_image_by_content(lib->wcat, sha, rec);
        if (!r) {
            *id = rec->id;   /* known content */
            goto done;
        }
        if (r != CDX_ERR_NOT_FOUND) goto done;
        r = CDX_OK;
    }
    if (!r && mkdir(imgdir, 0777) != 0 && errno != EEXIST)
        r = cdx_error(CDX_ERR_IO, "%s: cannot create: %s", imgdir, strerror(errno));
    if (!r) r = cdx_write_file_atomic(path, data, len);
    if (!r) {
        add_watch w = {"", 0, 0};
        if (image) ip.image = *image;
        ip.callback = add_cb;
        ip.user = &w;
        ip.batch_size = 1;
        const char *one[1] = {path};
        cdx_index_stats st;
        r = index_locked(lib, one, 1, &ip, &st);
        if (!r && w.failed) {
            unlink(path);
            r = cdx_error(CDX_ERR_FORMAT, "%s", w.reason);
        }
        if (!r) r = catalog_image_by_path(lib->wcat, path, rec);
        if (!r) *id = rec->id;
        else if (r == CDX_ERR_NOT_FOUND) r = cdx_error(CDX_ERR_INTERNAL, "stored image was not indexed");
        if (!r && created) *created = w.catalogued;
    }
done:
    pthread_mutex_unlock(&lib->wmu);
    if (!r) ann_refresh(lib, ANN_LAZY_ROWS, NULL);
    free(rec);
    free(path);
    free(imgdir);
    return r;
}

/* ---------------------------------------------------------------- embeddings */

/* A new generation for model m (owned by it from here, also on failure). */
static cdx_result gen_new(cdx_library *lib, cdx_model *m, modelgen **out)
{
    modelgen *g = calloc(1, sizeof *g);
    if (!g) {
        cdx_model_free(m);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    cdx_model_info mi;
    cdx_model_get_info(m, &mi);
    g->lib = lib;
    g->model = m;
    g->dim = mi.embed_dim;
    g->refs = 1;
    snprintf(g->fingerprint, sizeof g->fingerprint, "%s", mi.fingerprint);
    pthread_mutex_lock(&lib->pmu);
    lib->live_gens++;
    pthread_mutex_unlock(&lib->pmu);
    *out = g;
    return CDX_OK;
}

static void gen_release(modelgen *g)
{
    if (!g) return;
    cdx_library *lib = g->lib;
    pthread_mutex_lock(&lib->pmu);
    int last = --g->refs == 0;
    if (last) lib->live_gens--;
    pthread_mutex_unlock(&lib->pmu);
    if (!last) return;
    for (int i = 0; i < g->n_pool; i++) cdx_ctx_free(g->pool[i]);
    cdx_model_free(g->model);
    free(g);
}

/* Make g (or model m, owned from here) the handle's current model: new
 * queries pin it; queries in flight finish on the one they pinned.
 * Writers call it under wmu (the indexing context belongs to the old
 * model). */
static void gen_swap(cdx_library *lib, modelgen *g)
{
    pthread_mutex_lock(&lib->pmu);
    modelgen *old = lib->gen;
    lib->gen = g;
    lib->model = g->model;
    pthread_mutex_unlock(&lib->pmu);
    if (lib->writable) {
        cdx_ctx_free(lib->index_ctx);
        lib->index_ctx = NULL;
    }
    gen_release(old);
}

static cdx_result gen_install(cdx_library *lib, cdx_model *m)
{
    modelgen *g = NULL;
    cdx_result r = gen_new(lib, m, &g);
    if (!r) gen_swap(lib, g);
    return r;
}

cdx_result cdx_library_pin_take(cdx_library *lib, cdx_library_pin **out)
{
    if (!lib || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_pin: NULL argument");
    *out = NULL;
    pthread_mutex_lock(&lib->pmu);
    modelgen *g = lib->gen;
    if (g) g->refs++;
    pthread_mutex_unlock(&lib->pmu);
    if (!g) return cdx_error(CDX_ERR_INVALID_ARG, "library opened without its model (load_model = 0)");
    *out = g;
    return CDX_OK;
}

void cdx_library_pin_release(cdx_library_pin *pin) { gen_release(pin); }

void cdx_library_live_sets(cdx_library *lib, int *models, int *vector_files)
{
    if (!lib) return;
    pthread_mutex_lock(&lib->pmu);
    if (models) *models = lib->live_gens;
    pthread_mutex_unlock(&lib->pmu);
    if (vector_files) *vector_files = atomic_load(&lib->live_vecs);
}

const char *cdx_library_pin_fingerprint(const cdx_library_pin *pin) { return pin ? pin->fingerprint : ""; }

const cdx_model *cdx_library_pin_model(const cdx_library_pin *pin) { return pin ? pin->model : NULL; }

static cdx_result ctx_get(modelgen *g, int *idx)
{
    cdx_library *lib = g->lib;
    pthread_mutex_lock(&lib->pmu);
    for (;;) {
        for (int i = 0; i < g->n_pool; i++)
            if (g->pool_free[i]) {
                g->pool_free[i] = 0;
                *idx = i;
                pthread_mutex_unlock(&lib->pmu);
                return CDX_OK;
            }
        if (g->n_pool < POOL_MAX) {
            cdx_ctx_params cp = cdx_ctx_default_params();
            cp.n_threads = lib->n_threads;
            cp.max_batch = EMBED_BATCH;   /* cdx_library_embed_texts batches */
            cp.precision = lib->precision;
            cdx_result r = cdx_ctx_new(g->model, &cp, &g->pool[g->n_pool]);
            if (!r) {
                *idx = g->n_pool++;
                g->pool_free[*idx] = 0;
            }
            pthread_mutex_unlock(&lib->pmu);
            return r;
        }
        pthread_cond_wait(&lib->pcv, &lib->pmu);
    }
}

static void ctx_put(modelgen *g, int idx)
{
    pthread_mutex_lock(&g->lib->pmu);
    g->pool_free[idx] = 1;
    pthread_cond_broadcast(&g->lib->pcv);
    pthread_mutex_unlock(&g->lib->pmu);
}

cdx_result cdx_library_embed_text(cdx_library *lib, const char *text, float *out)
{
    if (!lib || !text || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_text: NULL argument");
    return cdx_library_embed_texts(lib, &text, 1, out);
}

/* Several texts through one context: one text-tower call per EMBED_BATCH
 * texts (the server batches concurrent text queries this way). */
cdx_result cdx_library_pin_embed_texts(cdx_library_pin *g, const char *const *texts, size_t n, float *out)
{
    if (!g || (n && (!texts || !out)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_texts: NULL argument");
    for (size_t j = 0; j < n; j++)
        if (!texts[j]) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_texts: text %zu is NULL", j);
    if (!n) return CDX_OK;
    int i;
    cdx_result r = ctx_get(g, &i);
    if (r) return r;
    for (size_t j = 0; !r && j < n; j += EMBED_BATCH) {
        int m = (int)(n - j < EMBED_BATCH ? n - j : EMBED_BATCH);
        r = cdx_encode_texts(g->pool[i], texts + j, m, out + j * (size_t)g->dim, 1);
    }
    ctx_put(g, i);
    return r;
}

cdx_result cdx_library_embed_texts(cdx_library *lib, const char *const *texts, size_t n, float *out)
{
    if (!lib || (n && (!texts || !out)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_texts: NULL argument");
    if (!n) return CDX_OK;
    cdx_library_pin *g;
    cdx_result r = cdx_library_pin_take(lib, &g);
    if (!r) r = cdx_library_pin_embed_texts(g, texts, n, out);
    cdx_library_pin_release(g);
    return r;
}

static cdx_result embed_pixels(modelgen *g, const float *px, float *out)
{
    int i;
    cdx_result r = ctx_get(g, &i);
    if (r) return r;
    r = cdx_encode_images(g->pool[i], px, 1, out, 1);
    ctx_put(g, i);
    return r;
}

static float *pixel_buffer(modelgen *g)
{
    cdx_model_info mi;
    cdx_model_get_info(g->model, &mi);
    return cdx_alloc_aligned((size_t)3 * mi.image_size * mi.image_size, sizeof(float));
}

/* One image from a file (path) or a buffer, on the current model. */
static cdx_result embed_image_one(cdx_library *lib, const char *path, const void *data, size_t len, float *out)
{
    cdx_library_pin *g;
    cdx_result r = cdx_library_pin_take(lib, &g);
    if (r) return r;
    float *px = pixel_buffer(g);
    if (!px) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    else if (path) r = cdx_preprocess_file(g->model, path, NULL, px, NULL);
    else r = cdx_preprocess_buffer(g->model, data, len, NULL, px, NULL);
    if (!r) r = embed_pixels(g, px, out);
    cdx_free_aligned(px);
    cdx_library_pin_release(g);
    return r;
}

cdx_result cdx_library_embed_image_file(cdx_library *lib, const char *path, float *out)
{
    if (!lib || !path || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_image_file: NULL argument");
    return embed_image_one(lib, path, NULL, 0, out);
}

cdx_result cdx_library_embed_image_buffer(cdx_library *lib, const void *data, size_t len, float *out)
{
    if (!lib || !data || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_image_buffer: NULL argument");
    return embed_image_one(lib, NULL, data, len, out);
}

/* Several encoded images: each decoded on its own (results[i] says how it
 * went), the decodable ones through the image tower EMBED_BATCH at a time
 * on one context (the server batches concurrent image queries this way). */
cdx_result cdx_library_pin_embed_image_buffers(cdx_library_pin *g, const void *const *data, const size_t *len,
                                               size_t n, float *out, cdx_result *results)
{
    if (!g || (n && (!data || !len || !out || !results)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_image_buffers: NULL argument");
    if (!n) return CDX_OK;
    cdx_model_info mi;
    cdx_model_get_info(g->model, &mi);
    size_t px_n = (size_t)3 * mi.image_size * mi.image_size;
    size_t m = n < EMBED_BATCH ? n : EMBED_BATCH;
    float *px = cdx_alloc_aligned(m * px_n, sizeof(float));
    float *emb = malloc(m * (size_t)g->dim * sizeof *emb);
    size_t *which = malloc(m * sizeof *which);
    cdx_result r = px && emb && which ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    int ci = -1;
    if (!r) r = ctx_get(g, &ci);
    for (size_t j = 0; !r && j < n;) {
        size_t k = 0;   /* decode up to m images into the batch */
        for (; j < n && k < m; j++) {
            results[j] = data[j] ? cdx_preprocess_buffer(g->model, data[j], len[j], NULL, px + k * px_n, NULL)
                                 : CDX_ERR_INVALID_ARG;
            if (!results[j]) which[k++] = j;
        }
        if (k) r = cdx_encode_images(g->pool[ci], px, (int)k, emb, 1);
        for (size_t i = 0; !r && i < k; i++)
            memcpy(out + which[i] * (size_t)g->dim, emb + i * (size_t)g->dim, (size_t)g->dim * sizeof *emb);
    }
    if (ci >= 0) ctx_put(g, ci);
    cdx_free_aligned(px);
    free(emb);
    free(which);
    return r;
}

cdx_result cdx_library_embed_image_buffers(cdx_library *lib, const void *const *data, const size_t *len,
                                           size_t n, float *out, cdx_result *results)
{
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_embed_image_buffers: NULL argument");
    cdx_library_pin *g;
    cdx_result r = cdx_library_pin_take(lib, &g);
    if (!r) r = cdx_library_pin_embed_image_buffers(g, data, len, n, out, results);
    cdx_library_pin_release(g);
    return r;
}

/* ---------------------------------------------------------------- search */

static cdx_result snapshot_build(catalog *c, const catalog_filter *f, snapshot **out)
{
    snapshot *s = calloc(1, sizeof *s);
    if (!s) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    s->refs = 1;
    cdx_result r = catalog_begin_read(c);    /* the slots and the file they refer to */
    if (!r) r = vec_meta(c, s->vec_id, s->vec_name);
    if (!r) r = meta_or_empty(c, "model_fingerprint", s->model_fp, sizeof s->model_fp);
    if (!r) r = catalog_query(c, f, &s->pairs, &s->n);
    catalog_rollback(c);
    if (!r) {
        int64_t maxs = -1;
        for (size_t i = 0; i < s->n; i++)
            if (s->pairs[i].slot > maxs) maxs = s->pairs[i].slot;
        s->nbits = (uint64_t)(maxs + 1);
        s->bits = calloc(s->nbits / 64 + 1, sizeof(uint64_t));
        if (!s->bits) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        int shared = 0;
        for (size_t i = 0; !r && i < s->n; i++) {
            if (s->pairs[i].slot < 0) continue;   /* damaged catalog: check reports it */
            uint64_t sl = (uint64_t)s->pairs[i].slot;
            s->bits[sl / 64] |= 1ull << (sl % 64);
            if (i > 0 && s->pairs[i - 1].slot == s->pairs[i].slot) shared = 1;
        }
        /* Several images on one slot: the in-scan count weighs the slot. */
        if (!r && shared && !(s->weight = calloc(s->nbits + 1, sizeof *s->weight)))
            r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !r && s->weight && i < s->n; i++)
            if (s->pairs[i].slot >= 0) s->weight[s->pairs[i].slot]++;
    }
    if (r) {
        snapshot_release(s);
        return r;
    }
    *out = s;
    return CDX_OK;
}

static cdx_result snapshot_get(cdx_library *lib, const cdx_search_params *p, snapshot **out)
{
    catalog_filter f = {p->path_prefix && *p->path_prefix ? p->path_prefix : NULL,
                        p->format && *p->format ? p->format : NULL, p->after, p->before,
                        p->tag && *p->tag ? p->tag : NULL};
    int filtered = f.path_prefix || f.format || f.after || f.before || f.tag;
    cdx_result r = CDX_OK;
    pthread_mutex_lock(&lib->rmu);
    if (filtered) {
        r = snapshot_build(lib->rcat, &f, out);
    } else {
        uint64_t v = 0;
        r = catalog_version(lib->rcat, &v);   /* unreadable: no cached snapshot is trusted */
        if (!r && (!lib->all || lib->all_version != v)) {
            snapshot *s;
            r = snapshot_build(lib->rcat, &f, &s);
            if (!r) {
                if (lib->all) snapshot_release(lib->all);
                lib->all = s;
                lib->all_version = v;
            }
        }
        if (!r) {
            lib->all->refs++;
            *out = lib->all;
        }
    }
    pthread_mutex_unlock(&lib->rmu);
    return r;
}

static void snapshot_put(cdx_library *lib, snapshot *s)
{
    pthread_mutex_lock(&lib->rmu);
    snapshot_release(s);
    pthread_mutex_unlock(&lib->rmu);
}

static size_t lower_bound(const catalog_pair *v, size_t n, int64_t slot)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].slot < slot) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static cdx_result check_search_params(const cdx_search_params *p)
{
    if (p->k > SEARCH_K_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "k = %zu is more than the maximum %d", p->k, SEARCH_K_MAX);
    if (p->offset > SEARCH_OFFSET_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "offset %zu is more than the maximum %d", p->offset,
                         SEARCH_OFFSET_MAX);
    if (isnan(p->min_score)) return cdx_error(CDX_ERR_INVALID_ARG, "min_score is NaN");
    if (!cdx_scan_name(p->scan)) return cdx_error(CDX_ERR_INVALID_ARG, "unknown scan %d", p->scan);
    if (p->rescore > 1000)
        return cdx_error(CDX_ERR_INVALID_ARG, "rescore %zu is more than the maximum 1000", p->rescore);
    if (p->probes < 0 || p->probes > 65536)
        return cdx_error(CDX_ERR_INVALID_ARG, "probes = %d is out of range (0..65536)", p->probes);
    if (!(p->keyword_weight >= 0.0f && p->keyword_weight <= 1.0f))
        return cdx_error(CDX_ERR_INVALID_ARG, "keyword_weight must be between 0 and 1");
    return CDX_OK;
}

/* Slot hits of one query -> image hits (a slot expands to its images in id
 * order; the image offset is applied here).  Returns the count written. */
static size_t expand_hits(const snapshot *s, const topk_hit *th, size_t nth,
                          const cdx_search_params *p, cdx_hit *hits)
{
    size_t skip = p->offset, n = 0;
    for (size_t i = 0; i < nth && n < p->k; i++) {
        size_t j = lower_bound(s->pairs, s->n, (int64_t)th[i].slot);
        for (; j < s->n && s->pairs[j].slot == (int64_t)th[i].slot && n < p->k; j++) {
            if (skip) {
                skip--;
                continue;
            }
            hits[n].id = s->pairs[j].id;
            hits[n].score = th[i].score;
            n++;
        }
    }
    return n;
}

cdx_result cdx_library_search_vectors(cdx_library *lib, const float *queries, size_t nq,
                                      const cdx_search_params *params, cdx_hit *hits,
                                      size_t *n_hits, uint64_t *totals)
{
    if (!lib || (nq && (!queries || !n_hits)) || (!hits && nq && params && params->k))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_search_vectors: NULL argument");
    cdx_search_params defaults = cdx_search_default_params();
    const cdx_search_params *p = params ? params : &defaults;
    if (p->info) memset(p->info, 0, sizeof *p->info);
    for (size_t i = 0; i < nq; i++) {
        n_hits[i] = 0;
        if (totals) totals[i] = 0;
    }
    cdx_result r = check_search_params(p);
    if (r) return r;
    if (nq > CDX_SEARCH_MAX_QUERIES)
        return cdx_error(CDX_ERR_INVALID_ARG, "%zu queries in one call (the maximum is %d)", nq,
                         CDX_SEARCH_MAX_QUERIES);
    for (size_t i = 0; i < nq * (size_t)lib->dim; i++)
        if (!isfinite(queries[i]))
            return cdx_error(CDX_ERR_INVALID_ARG, "query vector %zu has a non-finite value",
                             i / (size_t)lib->dim);
    if (!nq) return CDX_OK;
    size_t scratch;
    if (!cdx_mul_ok(p->offset + p->k, nq, &scratch) || scratch > TOPK_MAX_HEAP_BYTES / sizeof(topk_hit))
        return cdx_error(CDX_ERR_TOO_LARGE, "%zu queries x (offset + k = %zu) results is too much for "
                         "one call; split the queries", nq, p->offset + p->k);
    snapshot *s = NULL;
    vecref *vr = NULL;
    cdx_rows src;
    for (int attempt = 0;; attempt++) {
        int stale;
        if ((r = snapshot_get(lib, p, &s))) return r;
        if (p->model_fingerprint && *p->model_fingerprint && strcmp(p->model_fingerprint, s->model_fp)) {
            r = cdx_error(CDX_ERR_MISMATCH, "the library switched to model %.12s; the query was embedded "
                          "with %.12s: embed it again", s->model_fp, p->model_fingerprint);
            break;
        }
        r = vectors_view(lib, s->vec_id, s->vec_name, s->nbits, &vr, &src, &stale);
        if (!r || !stale || attempt >= VEC_RETRIES) break;
        snapshot_put(lib, s);    /* a compaction switched files: again */
    }
    topk_hit *th = NULL;
    size_t *nth = NULL;
    uint64_t *counts = NULL;
    size_t want = p->offset + p->k;   /* each slot yields >= 1 image */
    /* total: every allowed image when min_score lets all through, else
     * counted inside the scan (weighted by images per slot). */
    int count = totals && p->min_score > -1.5f;
    if (r) goto done;
    if (totals && !count)
        for (size_t i = 0; i < nq; i++) totals[i] = s->n;
    if ((!p->k && !count) || !s->n) goto done;
    if (!(th = malloc((want ? want : 1) * nq * sizeof *th)) || !(nth = calloc(nq, sizeof *nth)) ||
        (count && !(counts = calloc(nq, sizeof *counts)))) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    topk_params tp = topk_default_params();
    tp.k = p->k ? want : 0;
    tp.min_score = p->min_score;
    tp.allow = s->bits;
    tp.allow_nbits = s->nbits;
    tp.n_threads = lib->n_threads;
    tp.counts = counts;
    tp.weight = s->weight;
    if (p->scan == CDX_SCAN_F32) {
        /* the approximate index when it pays (not when the scan must count:
         * that reads every vector anyway) */
        int approx = 0;
        if (!count && p->k) r = search_ann(lib, vr, s, &src, queries, nq, p, &tp, th, nth, &approx);
        if (!r && !approx) r = topk_search(&src, queries, nq, &tp, th, nth);
    } else {
        /* Compressed scan per query (candidates re-scored exactly); the
         * compressed kernels do not count, so totals take one float32
         * pass with k = 0. */
        uint8_t fid[VECFILE_ID_BYTES];
        vecfile_file_id(vr->vf, fid);
        topk_params cq = tp;
        cq.counts = NULL;
        cq.weight = NULL;
        for (size_t i = 0; !r && p->k && i < nq; i++)
            r = lib_codes_search(lib->codes, p->scan, p->rescore, &src, fid, queries + i * (size_t)lib->dim,
                                 &cq, th + i * want, &nth[i]);
        if (!r && count) {
            topk_params ct = tp;
            ct.k = 0;
            size_t *none = calloc(nq, sizeof *none);
            r = none ? topk_search(&src, queries, nq, &ct, th, none) : cdx_error(CDX_ERR_NOMEM, "out of memory");
            free(none);
        }
    }
    if (!r) r = vecfile_verify(vr->vf);   /* a read hit a truncated file: no zeros as scores */
    if (r) goto done;
    for (size_t i = 0; i < nq; i++) {
        if (p->k) n_hits[i] = expand_hits(s, th + i * want, nth[i], p, hits + i * p->k);
        if (count) totals[i] = counts[i];
    }
done:
    free(th);
    free(nth);
    free(counts);
    vec_put(lib, vr);
    snapshot_put(lib, s);
    return r;
}

cdx_result cdx_library_search_vector(cdx_library *lib, const float *query,
                                     const cdx_search_params *params, cdx_hit *hits,
                                     size_t *n_hits, uint64_t *total)
{
    if (!lib || !query || !n_hits || (!hits && params && params->k))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_search_vector: NULL argument");
    return cdx_library_search_vectors(lib, query, 1, params, hits, n_hits, total);
}

cdx_result cdx_vector_normalize(float *v, int dim)
{
    if (!v || dim < 1) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_vector_normalize: bad arguments");
    double s = 0;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(v[i])) return cdx_error(CDX_ERR_INVALID_ARG, "vector value %d is not finite", i);
        s += (double)v[i] * v[i];
    }
    if (!(s > 1e-30) || !isfinite(s))
        return cdx_error(CDX_ERR_INVALID_ARG, "the vector has no usable length (all zero or too large)");
    double inv = 1.0 / sqrt(s);
    for (int i = 0; i < dim; i++) v[i] = (float)(v[i] * inv);
    return CDX_OK;
}

cdx_result cdx_library_search_raw(cdx_library *lib, const float *vec, int dim,
                                  const cdx_search_params *params, cdx_hit *hits,
                                  size_t *n_hits, uint64_t *total)
{
    if (!lib || !vec) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_search_raw: NULL argument");
    if (dim != lib->dim)
        return cdx_error(CDX_ERR_MISMATCH, "the query vector has %d dimensions but the library's "
                         "model embeds in %d", dim, lib->dim);
    float *q = malloc((size_t)dim * sizeof *q);
    if (!q) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    memcpy(q, vec, (size_t)dim * sizeof *q);
    cdx_result r = cdx_vector_normalize(q, dim);
    if (!r) r = cdx_library_search_vector(lib, q, params, hits, n_hits, total);
    free(q);
    return r;
}

cdx_result cdx_library_get_vector(cdx_library *lib, int64_t id, float *out)
{
    if (!lib || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_vector: NULL argument");
    cdx_image_record *rec = malloc(sizeof *rec);
    if (!rec) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r;
    for (int attempt = 0;; attempt++) {
        int64_t slot = -1;
        char vid[VEC_ID_HEX], vname[VEC_NAME_MAX];
        pthread_mutex_lock(&lib->rmu);
        r = catalog_begin_read(lib->rcat);   /* the slot and the file it refers to */
        if (!r) r = catalog_image_by_id(lib->rcat, id, rec);
        if (!r) r = catalog_content_slot(lib->rcat, rec->sha256, &slot);
        if (!r) r = vec_meta(lib->rcat, vid, vname);
        catalog_rollback(lib->rcat);
        pthread_mutex_unlock(&lib->rmu);
        if (r == CDX_ERR_NOT_FOUND) r = cdx_error(r, "no image with id %lld", (long long)id);
        if (!r && slot < 0) r = cdx_error(CDX_ERR_FORMAT, "image %lld has a bad slot", (long long)id);
        if (r) break;
        cdx_rows src;
        vecref *vr = NULL;
        int stale;
        r = vectors_view(lib, vid, vname, (uint64_t)slot + 1, &vr, &src, &stale);
        if (!r) {
            r = vecfile_get(vr->vf, (uint64_t)slot, out, NULL);
            vec_put(lib, vr);
        }
        if (!r || !stale || attempt >= VEC_RETRIES) break;
    }
    free(rec);
    return r;
}

/* ---------------------------------------------------------------- codes */

/* The vector file the catalog names now (a reference: vec_put it), its
 * rows (refreshed) and its file id. */
static cdx_result current_rows(cdx_library *lib, vecref **vr, cdx_rows *src, uint8_t fid[VECFILE_ID_BYTES])
{
    cdx_result r;
    for (int attempt = 0;; attempt++) {
        char vid[VEC_ID_HEX], vname[VEC_NAME_MAX];
        int stale = 0;
        pthread_mutex_lock(&lib->rmu);
        r = vec_meta(lib->rcat, vid, vname);
        pthread_mutex_unlock(&lib->rmu);
        if (!r) r = vectors_view(lib, vid, vname, UINT64_MAX, vr, src, &stale);
        if (!r || !stale || attempt >= VEC_RETRIES) break;
    }
    if (!r) vecfile_file_id((*vr)->vf, fid);
    return r;
}

cdx_result cdx_library_build_codes(cdx_library *lib, int scan)
{
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_build_codes: NULL library");
    cdx_rows src;
    uint8_t fid[VECFILE_ID_BYTES];
    vecref *vr = NULL;
    cdx_result r = current_rows(lib, &vr, &src, fid);
    if (!r) r = lib_codes_update(lib->codes, scan, &src, fid, 1);
    vec_put(lib, vr);
    return r;
}

/* The state of a companion against the vector file vr (held by the caller). */
static cdx_result codes_info_of(cdx_library *lib, vecref *vr, int scan, int verify, cdx_codes_info *info)
{
    uint8_t fid[VECFILE_ID_BYTES];
    pthread_mutex_lock(&lib->vmu);
    uint64_t rows = vecfile_count(vr->vf);
    pthread_mutex_unlock(&lib->vmu);
    vecfile_file_id(vr->vf, fid);
    return lib_codes_info(lib->codes, scan, rows, fid, verify, info);
}

cdx_result cdx_library_codes_info(cdx_library *lib, int scan, int verify, cdx_codes_info *info)
{
    if (!lib || !info) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_codes_info: NULL argument");
    cdx_rows src;
    uint8_t fid[VECFILE_ID_BYTES];
    vecref *vr = NULL;
    cdx_result r = current_rows(lib, &vr, &src, fid);
    if (!r) r = codes_info_of(lib, vr, scan, verify, info);
    vec_put(lib, vr);
    return r;
}

/* ---------------------------------------------------------------- approximate index
 * (lib_ann.h, docs/search.md): derived data kept in step after index, import
 * and compaction runs; searches use it when it pays and scan exactly
 * otherwise. */

static uint64_t ann_default_min_rows(void)
{
    const char *e = getenv("CLIPDEX_ANN_MIN_ROWS");
    char *end = NULL;
    unsigned long long v = e && *e ? strtoull(e, &end, 10) : 0;
    return v > 0 && end && !*end ? (uint64_t)v : ANN_DEFAULT_MIN_ROWS;
}

/* Bring the index up to date (lazy: unless at most that many rows behind).
 * A failure is not the caller's: searches stay exact, check reports it. */
static void ann_refresh(cdx_library *lib, uint64_t lazy, cdx_cancel_flag *cancel)
{
    cdx_rows src;
    uint8_t fid[VECFILE_ID_BYTES];
    vecref *vr = NULL;
    cdx_result r = current_rows(lib, &vr, &src, fid);
    if (!r) r = lib_ann_update(lib->ann, &src, fid, 0, lazy, cancel, NULL, NULL);
    vec_put(lib, vr);
    if (r) cdx_error_clear();
}

/* The approximate search of nq queries into th / nth (room for tp->k
 * each); *used = 0 when the exact scan is the better choice (--exact, a
 * small library, no usable index, a deep page, a filter that keeps few
 * images): nothing was done. */
static cdx_result search_ann(cdx_library *lib, const vecref *vr, const snapshot *s,
                             const cdx_rows *src, const float *queries, size_t nq,
                             const cdx_search_params *p, const topk_params *tp, topk_hit *th,
                             size_t *nth, int *used)
{
    *used = 0;
    if (p->exact || src->count < lib->ann_min_rows || tp->k > ANN_MAX_WANT) return CDX_OK;
    uint8_t fid[VECFILE_ID_BYTES];
    vecfile_file_id(vr->vf, fid);
    double keep = src->count ? (double)s->n / (double)src->count : 0;   /* share the filters allow */
    if (keep > 1) keep = 1;
    cdx_result r = CDX_OK;
    int probes = 0;
    for (size_t i = 0; !r && i < nq; i++) {
        const float *q = queries + i * (size_t)lib->dim;
        int used_i = 0;
        r = lib_ann_search(lib->ann, src, fid, q, tp, p->probes, keep, th + i * tp->k, &nth[i], &used_i);
        if (!r && !used_i) {
            if (i == 0) return CDX_OK;   /* all exact, in one scan */
            r = topk_search(src, q, 1, tp, th + i * tp->k, &nth[i]);   /* the index was replaced meanwhile */
        }
        if (used_i > probes) probes = used_i;
    }
    if (r) return r;
    *used = 1;
    if (p->info) {
        p->info->approximate = 1;
        p->info->probes = probes;
    }
    return CDX_OK;
}

/* ---------------------------------------------------------------- keyword,
 * hybrid and combined search (docs/search.md) */

#define KEYWORD_QUERY_MAX 4096
#define RRF_K 60.0
#define COMBINE_MAX 64

cdx_result cdx_search_mode_parse(const char *name, cdx_search_mode *out)
{
    static const char *const names[] = {"semantic", "keyword", "hybrid"};
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, names[i])) {
            *out = (cdx_search_mode)i;
            return CDX_OK;
        }
    return cdx_error(CDX_ERR_INVALID_ARG, "unknown search mode '%.40s' (expected semantic, keyword "
                     "or hybrid)", name ? name : "");
}

const char *cdx_search_mode_name(cdx_search_mode mode)
{
    return mode == CDX_SEARCH_KEYWORD ? "keyword" : mode == CDX_SEARCH_HYBRID ? "hybrid" : "semantic";
}

cdx_result cdx_library_has_text(cdx_library *lib, int *yes)
{
    if (!lib || !yes) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_has_text: NULL argument");
    /* A scan when no image has text: cached until the catalog changes. */
    pthread_mutex_lock(&lib->rmu);
    uint64_t v = 0;
    cdx_result r = catalog_version(lib->rcat, &v);   /* unreadable: nothing cached is trusted */
    if (r) lib->has_text_known = 0;
    else if (!lib->has_text_known || lib->text_version != v) {
        r = catalog_has_text(lib->rcat, &lib->has_text);
        lib->has_text_known = r == CDX_OK;
        lib->text_version = v;
    }
    *yes = lib->has_text;
    pthread_mutex_unlock(&lib->rmu);
    return r;
}

static catalog_filter filter_of(const cdx_search_params *p)
{
    catalog_filter f = {p->path_prefix && *p->path_prefix ? p->path_prefix : NULL,
                        p->format && *p->format ? p->format : NULL, p->after, p->before,
                        p->tag && *p->tag ? p->tag : NULL};
    return f;
}

/* Ranked keyword hits (offset, limit) under the reader lock. */
static cdx_result keyword_hits(cdx_library *lib, const char *match, const cdx_search_params *p,
                               size_t offset, size_t limit, catalog_fts_hit *out, size_t *n,
                               uint64_t *total)
{
    catalog_filter f = filter_of(p);
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_fts_query(lib->rcat, match, &f, offset, limit, out, n, total);
    pthread_mutex_unlock(&lib->rmu);
    return r;
}

static cdx_result check_query_text(const char *q, const char *what)
{
    size_t len = strlen(q);
    if (len > KEYWORD_QUERY_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "%s is longer than %d bytes", what, KEYWORD_QUERY_MAX);
    for (size_t i = 0; i < len; i++)
        if (q[i] != ' ' && q[i] != '\t' && q[i] != '\n' && q[i] != '\r') return CDX_OK;
    return cdx_error(CDX_ERR_INVALID_ARG, "%s is empty", what);
}

cdx_result cdx_library_search_keyword(cdx_library *lib, const char *query,
                                      const cdx_search_params *params, cdx_hit *hits,
                                      size_t *n_hits, uint64_t *total)
{
    if (!lib || !query || !n_hits || (!hits && params && params->k))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_search_keyword: NULL argument");
    cdx_search_params defaults = cdx_search_default_params();
    const cdx_search_params *p = params ? params : &defaults;
    *n_hits = 0;
    if (total) *total = 0;
    cdx_result r = check_search_params(p);
    if (!r) r = check_query_text(query, "the keyword query");
    if (r) return r;
    catalog_fts_hit *fh = p->k ? malloc(p->k * sizeof *fh) : NULL;
    if (p->k && !fh) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    size_t n = 0;
    r = keyword_hits(lib, query, p, p->offset, p->k, fh, &n, total);
    for (size_t i = 0; !r && i < n; i++) {
        hits[i].id = fh[i].id;
        hits[i].score = (float)fh[i].score;
    }
    if (!r) *n_hits = n;
    free(fh);
    return r;
}

/* English words too common to rank by (each would match most images that
 * have descriptions, and ranking every match costs ~1.5 us). */
static int stopword(const char *w, size_t n)
{
    static const char *const stop[] = {"a", "an", "the", "of", "in", "on", "at", "to", "and", "or",
                                       "with", "for", "from", "by", "is", "are", "this", "that",
                                       "photo", "picture", "image", "some", "my"};
    for (size_t i = 0; i < sizeof stop / sizeof stop[0]; i++)
        if (strlen(stop[i]) == n && !strncasecmp(stop[i], w, n)) return 1;
    return 0;
}

static int blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* Free text -> an FTS5 query matching any of its words: each
 * whitespace-separated word (stopwords skipped) becomes a quoted string
 * ("" inside doubled), joined by OR.  Returns a malloc'd string ("" when
 * no word is left) or NULL. */
static char *words_query(const char *text)
{
    size_t len = strlen(text);
    char *q = malloc(8 * len + 1);   /* worst case: 4 bytes out per byte in */
    if (!q) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && blank(text[i])) i++;
        size_t start = i;
        while (i < len && !blank(text[i])) i++;
        if (i == start || stopword(text + start, i - start)) continue;
        if (j) {
            memcpy(q + j, " OR ", 4);
            j += 4;
        }
        q[j++] = '"';
        for (size_t k = start; k < i; k++) {
            if (text[k] == '"') q[j++] = '"';
            q[j++] = text[k];
        }
        q[j++] = '"';
    }
    q[j] = '\0';
    return q;
}

typedef struct fused {
    int64_t id;
    double score;
    int semantic;     /* in the semantic list */
} fused;

static int fused_cmp(const void *a, const void *b)
{
    const fused *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int fused_id_cmp(const void *a, const void *b)
{
    const fused *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

cdx_result cdx_library_search_hybrid(cdx_library *lib, const float *vector, const char *text,
                                     const cdx_search_params *params, cdx_hit *hits,
                                     size_t *n_hits, uint64_t *total)
{
    if (!lib || !vector || !text || !n_hits || (!hits && params && params->k))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_search_hybrid: NULL argument");
    cdx_search_params defaults = cdx_search_default_params();
    const cdx_search_params *p = params ? params : &defaults;
    *n_hits = 0;
    if (total) *total = 0;
    cdx_result r = check_search_params(p);
    if (!r) r = check_query_text(text, "the query text");
    if (r) return r;
    size_t cand = 2 * (p->offset + p->k);
    if (cand < 100) cand = 100;
    if (cand > SEARCH_K_MAX) cand = SEARCH_K_MAX;
    char *match = words_query(text);
    cdx_hit *sem = malloc(cand * sizeof *sem);
    catalog_fts_hit *kw = malloc(cand * sizeof *kw);
    fused *all = malloc(2 * cand * sizeof *all);
    if (!match || !sem || !kw || !all) {
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto done;
    }
    cdx_search_params sp = *p;
    sp.k = cand;
    sp.offset = 0;
    size_t ns = 0, nk = 0;
    if ((r = cdx_library_search_vector(lib, vector, &sp, sem, &ns, total))) goto done;
    if (*match && (r = keyword_hits(lib, match, p, 0, cand, kw, &nk, NULL))) goto done;
    /* One entry per (list, image); merged by id below.  Semantic lists may
     * repeat no id (one hit per image). */
    float w = p->keyword_weight;
    size_t m = 0;
    for (size_t i = 0; i < ns; i++) all[m++] = (fused){sem[i].id, (1.0 - w) / (RRF_K + (double)(i + 1)), 1};
    for (size_t i = 0; i < nk; i++) all[m++] = (fused){kw[i].id, w / (RRF_K + (double)(i + 1)), 0};
    qsort(all, m, sizeof *all, fused_id_cmp);
    /* With a min_score, only images of the (thresholded) semantic list are
     * kept: every result then has a cosine >= min_score. */
    int thresholded = p->min_score > -1.5f;
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u && all[u - 1].id == all[i].id) {
            all[u - 1].score += all[i].score;
            all[u - 1].semantic |= all[i].semantic;
        } else {
            all[u++] = all[i];
        }
    }
    if (thresholded) {
        size_t kept = 0;
        for (size_t i = 0; i < u; i++)
            if (all[i].semantic) all[kept++] = all[i];
        u = kept;
    }
    qsort(all, u, sizeof *all, fused_cmp);
    size_t n = 0;
    for (size_t i = p->offset; i < u && n < p->k; i++, n++) {
        hits[n].id = all[i].id;
        hits[n].score = (float)all[i].score;
    }
    *n_hits = n;
done:
    free(match);
    free(sem);
    free(kw);
    free(all);
    return r;
}

cdx_result cdx_query_combine(const float *vecs, const float *weights, int n, int dim, float *out)
{
    if (!vecs || !weights || !out || n < 1 || dim < 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_query_combine: bad arguments");
    if (n > COMBINE_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "a combined query has at most %d parts (got %d)",
                         COMBINE_MAX, n);
    double *acc = calloc((size_t)dim, sizeof *acc);
    if (!acc) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = CDX_OK;
    for (int i = 0; i < n && !r; i++) {
        const float *v = vecs + (size_t)i * dim;
        if (!isfinite(weights[i]) || weights[i] == 0.0f || fabsf(weights[i]) > 10.0f) {
            r = cdx_error(CDX_ERR_INVALID_ARG, "weight %d (%g) must be a non-zero number between "
                          "-10 and 10", i + 1, (double)weights[i]);
            break;
        }
        double norm = 0;
        for (int d = 0; d < dim; d++) norm += (double)v[d] * v[d];
        if (!isfinite(norm) || norm <= 0) {
            r = cdx_error(CDX_ERR_INVALID_ARG, "part %d of the query has no direction (a zero "
                          "or non-finite vector)", i + 1);
            break;
        }
        double s = weights[i] / sqrt(norm);
        for (int d = 0; d < dim; d++) acc[d] += s * v[d];
    }
    if (!r) {
        double norm = 0, wsum = 0;
        for (int d = 0; d < dim; d++) norm += acc[d] * acc[d];
        for (int i = 0; i < n; i++) wsum += fabs(weights[i]);
        if (!(sqrt(norm) > 1e-6 * wsum))
            r = cdx_error(CDX_ERR_INVALID_ARG, "the parts of the query cancel out (their weighted "
                          "sum is zero)");
        for (int d = 0; !r && d < dim; d++) out[d] = (float)(acc[d] / sqrt(norm));
    }
    free(acc);
    return r;
}

/* Valid UTF-8 without control characters (see catalog_text_ok). */
static int text_ok(const char *s, size_t max) { return catalog_text_ok(s, max); }

cdx_result cdx_library_set_source_meta(cdx_library *lib, int64_t id, const cdx_source_meta *meta)
{
    if (!lib || !meta || (meta->n_tags && !meta->tags))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_set_source_meta: NULL argument");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    const char *title = meta->title ? meta->title : "", *desc = meta->description ? meta->description : "";
    if (!text_ok(title, CATALOG_TEXT_MAX) || !text_ok(desc, CATALOG_TEXT_MAX))
        return cdx_error(CDX_ERR_INVALID_ARG, "title and description must be UTF-8 text of at most "
                         "%d bytes", CATALOG_TEXT_MAX);
    for (size_t i = 0; i < meta->n_tags; i++)
        if (meta->tags[i] && !text_ok(meta->tags[i], CATALOG_TAG_MAX))
            return cdx_error(CDX_ERR_INVALID_ARG, "tag %zu must be UTF-8 text of at most %d bytes",
                             i + 1, CATALOG_TAG_MAX);
    char *tags;
    cdx_result r = catalog_tag_list(meta->tags, meta->n_tags, &tags);
    if (r) return r;
    pthread_mutex_lock(&lib->wmu);
    r = catalog_begin(lib->wcat);
    if (!r) r = catalog_image_set_source(lib->wcat, id, title, desc, tags);
    if (!r) r = catalog_commit(lib->wcat);
    if (r) catalog_rollback(lib->wcat);
    pthread_mutex_unlock(&lib->wmu);
    free(tags);
    return r;
}

/* "\na\nb\n" -> "a\nb" in place. */
static void list_lines(char *s)
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[--n] = '\0';
    if (s[0] == '\n') memmove(s, s + 1, n);
}

cdx_result cdx_library_get_text(cdx_library *lib, int64_t id, cdx_image_text *out)
{
    if (!lib || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_text: NULL argument");
    memset(out, 0, sizeof *out);
    catalog_text t;
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_image_text(lib->rcat, id, &t);
    pthread_mutex_unlock(&lib->rmu);
    if (r) return r;
    list_lines(t.tags);
    list_lines(t.keywords);
    out->title = t.title;
    out->description = t.description;
    out->tags = t.tags;
    out->embedded = t.meta_text;
    out->keywords = t.keywords;
    out->ocr = t.ocr_text;
    return CDX_OK;
}

void cdx_image_text_free(cdx_image_text *t)
{
    if (!t) return;
    free(t->title);
    free(t->description);
    free(t->tags);
    free(t->embedded);
    free(t->keywords);
    free(t->ocr);
    memset(t, 0, sizeof *t);
}

/* ---- source records and thumbnails from the fleet (docs/fleet.md) */

#define SOURCE_JSON_MAX (256 * 1024)
#define THUMB_BYTES_MAX ((size_t)1 << 20)

static cdx_result source_record_check(const cdx_source_record *s)
{
    if (!s->path || (s->meta.n_tags && !s->meta.tags))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_set_sources: NULL path or tags");
    if ((s->meta.title && !text_ok(s->meta.title, CATALOG_TEXT_MAX)) ||
        (s->meta.description && !text_ok(s->meta.description, CATALOG_TEXT_MAX)))
        return cdx_error(CDX_ERR_INVALID_ARG, "%.200s: title and description must be UTF-8 text of at most "
                         "%d bytes", s->path, CATALOG_TEXT_MAX);
    for (size_t i = 0; i < s->meta.n_tags; i++)
        if (s->meta.tags[i] && !text_ok(s->meta.tags[i], CATALOG_TAG_MAX))
            return cdx_error(CDX_ERR_INVALID_ARG, "%.200s: tag %zu must be UTF-8 text of at most %d bytes",
                             s->path, i + 1, CATALOG_TAG_MAX);
    if (s->source_json) {
        json_t *o = text_ok(s->source_json, SOURCE_JSON_MAX) ? json_loads(s->source_json, 0, NULL) : NULL;
        int ok = json_is_object(o);
        json_decref(o);
        if (!ok)
            return cdx_error(CDX_ERR_INVALID_ARG, "%.200s: source record must be a JSON object of at most %d bytes",
                             s->path, SOURCE_JSON_MAX);
    }
    if ((s->embedded_text && !text_ok(s->embedded_text, CATALOG_TEXT_MAX)) ||
        (s->embedded_keywords && !text_ok(s->embedded_keywords, CATALOG_TEXT_MAX)))
        return cdx_error(CDX_ERR_INVALID_ARG, "%.200s: embedded text and keywords must be UTF-8 text of at "
                         "most %d bytes", s->path, CATALOG_TEXT_MAX);
    const unsigned char *t = s->thumbnail;
    if (t && (s->thumbnail_len < 4 || s->thumbnail_len > THUMB_BYTES_MAX || t[0] != 0xff || t[1] != 0xd8))
        return cdx_error(CDX_ERR_INVALID_ARG, "%.200s: thumbnail must be a JPEG of at most %zu bytes", s->path,
                         THUMB_BYTES_MAX);
    return CDX_OK;
}

/* One record inside the writer's transaction; *found = 0 when its path is
 * not catalogued. */
static cdx_result source_record_apply(cdx_library *lib, const cdx_source_record *s, cdx_image_record *rec,
                                      int *found)
{
    *found = 0;
    cdx_result r = catalog_image_by_path(lib->wcat, s->path, rec);
    if (r == CDX_ERR_NOT_FOUND) return CDX_OK;
    if (r) return r;
    *found = 1;
    if (s->embedded_text || s->embedded_keywords) {
        /* the content's text, as the local ingest stores it (keywords in
         * the catalog's tag-list form) */
        const char *kw[256];
        size_t nk = 0;
        char *copy = s->embedded_keywords ? strdup(s->embedded_keywords) : NULL;
        if (s->embedded_keywords && !copy) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        for (char *p = copy, *nl; p && *p && nk < 256; p = nl ? nl + 1 : NULL) {
            if ((nl = strchr(p, '\n'))) *nl = '\0';
            if (*p) kw[nk++] = p;
        }
        char *kwl = NULL;
        r = nk ? catalog_tag_list(kw, nk, &kwl) : CDX_OK;
        if (!r) r = catalog_content_set_text(lib->wcat, rec->sha256, s->embedded_text, kwl);
        free(kwl);
        free(copy);
        if (r) return r;
    }
    int text = s->meta.title || s->meta.description || s->meta.n_tags || s->source_json;
    if (!text)   /* a thumbnail alone leaves the text as it is */
        return s->thumbnail ? catalog_thumb_put(lib->wcat, rec->sha256, s->thumbnail, s->thumbnail_len) : CDX_OK;
    char *tags;
    if ((r = catalog_tag_list(s->meta.tags, s->meta.n_tags, &tags))) return r;
    r = catalog_image_set_source(lib->wcat, rec->id, s->meta.title, s->meta.description, tags);
    free(tags);
    if (!r) r = catalog_source_set(lib->wcat, rec->id, s->source_json);
    if (!r && s->thumbnail) r = catalog_thumb_put(lib->wcat, rec->sha256, s->thumbnail, s->thumbnail_len);
    return r;
}

cdx_result cdx_library_set_sources(cdx_library *lib, const cdx_source_record *recs, size_t n, size_t *applied)
{
    if (applied) *applied = 0;
    if (!lib || (n && !recs)) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_set_sources: NULL argument");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    for (size_t i = 0; i < n; i++) {
        cdx_result r = source_record_check(&recs[i]);
        if (r) return r;
    }
    cdx_image_record *rec = malloc(sizeof *rec);
    if (!rec) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    size_t done = 0;
    pthread_mutex_lock(&lib->wmu);
    cdx_result r = catalog_begin(lib->wcat);
    for (size_t i = 0; i < n && !r; i++) {
        int found;
        r = source_record_apply(lib, &recs[i], rec, &found);
        done += (size_t)found;
    }
    if (!r) r = catalog_commit(lib->wcat);
    if (r) catalog_rollback(lib->wcat);
    pthread_mutex_unlock(&lib->wmu);
    free(rec);
    if (!r && applied) *applied = done;
    return r;
}

cdx_result cdx_library_get_source(cdx_library *lib, int64_t id, char **json)
{
    if (!lib || !json) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_source: NULL argument");
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_source_get(lib->rcat, id, json);
    pthread_mutex_unlock(&lib->rmu);
    return r == CDX_ERR_NOT_FOUND ? CDX_OK : r;
}

cdx_result cdx_library_get_thumbnail(cdx_library *lib, int64_t id, void **jpeg, size_t *len)
{
    if (!lib || !jpeg || !len) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_thumbnail: NULL argument");
    *jpeg = NULL;
    *len = 0;
    cdx_image_record *rec = malloc(sizeof *rec);
    if (!rec) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_image_by_id(lib->rcat, id, rec);
    if (!r) r = catalog_thumb_get(lib->rcat, rec->sha256, jpeg, len);
    pthread_mutex_unlock(&lib->rmu);
    free(rec);
    if (r == CDX_ERR_NOT_FOUND) return cdx_error(r, "image %lld has no stored thumbnail", (long long)id);
    return r;
}

/* ---------------------------------------------------------------- check */

typedef struct check_ctx {
    vecfile *vf;
    void (*fn)(void *, const char *);
    void *user;
    uint64_t problems;
    uint64_t count;
    const vecfile_damage *damaged;
    size_t n_damaged;
} check_ctx;

static void problem(check_ctx *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(check_ctx *cc, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cc->problems++;
    if (cc->fn) cc->fn(cc->user, line);
}

static int check_content(void *user, const char *sha, int64_t slot)
{
    check_ctx *cc = user;
    if (slot < 0 || (uint64_t)slot >= cc->count) {
        problem(cc, "content %s refers to vector slot %lld but the vector file has %llu",
                sha, (long long)slot, (unsigned long long)cc->count);
        return 0;
    }
    uint8_t key[32], want[32];
    cdx_result r = vecfile_get(cc->vf, (uint64_t)slot, NULL, key);
    if (r == CDX_ERR_FORMAT) {
        for (size_t i = 0; i < cc->n_damaged; i++)
            if (cc->damaged[i].slot == (uint64_t)slot) return 0;   /* already reported */
        problem(cc, "vector slot %lld (content %s) is damaged: %s", (long long)slot, sha, cdx_last_error());
        return 0;
    }
    if (r) {
        problem(cc, "vector slot %lld: %s", (long long)slot, cdx_last_error());
        return 0;
    }
    if (source_unhex(sha, want) == 0 && memcmp(key, want, 32))
        problem(cc, "vector slot %lld holds another content than %s", (long long)slot, sha);
    return 0;
}

static void catalog_problem(void *user, const char *line)
{
    check_ctx *cc = user;
    problem(cc, "%s", line);
}

#define CHECK_LIST 1000

/* check: judge DIR/ann.cdxi on disk (every checksum) and rebuild or extend
 * it when it is not ok; only a failed rebuild is a problem. */
static void ann_check(cdx_library *lib, check_ctx *cc, cdx_check_report *rep)
{
    cdx_rows src;
    uint8_t fid[VECFILE_ID_BYTES];
    vecref *vr = NULL;
    cdx_result r = current_rows(lib, &vr, &src, fid);
    if (!r) r = lib_ann_update(lib->ann, &src, fid, 1, 0, NULL, &rep->ann_state, &rep->ann_rows);
    vec_put(lib, vr);
    rep->ann_rebuilt = !r && rep->ann_state != CDX_ANN_OK && rep->ann_state != CDX_ANN_UNUSED;
    if (r) problem(cc, "the approximate index %s/ann.cdxi is %s and could not be rebuilt: %s", lib->dir,
                   cdx_ann_state_str(rep->ann_state), cdx_last_error());
}

cdx_result cdx_library_check(cdx_library *lib, void (*fn)(void *user, const char *problem),
                             void *user, cdx_check_report *report)
{
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_check: NULL library");
    cdx_check_report local;
    if (!report) report = &local;
    memset(report, 0, sizeof *report);
    check_ctx cc = {NULL, fn, user, 0, 0, NULL, 0};
    vecfile_damage *dmg = calloc(CHECK_LIST, sizeof *dmg);
    if (!dmg) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    vecref *vr = NULL;
    pthread_mutex_lock(&lib->rmu);
    cdx_result r;
    for (int attempt = 0;; attempt++) {   /* the catalog snapshot and its vector file */
        int stale;
        char vid[VEC_ID_HEX], vname[VEC_NAME_MAX];
        cdx_rows src;
        r = catalog_begin_read(lib->rcat);
        if (!r) r = vec_meta(lib->rcat, vid, vname);
        if (!r) r = vectors_view(lib, vid, vname, UINT64_MAX, &vr, &src, &stale);
        if (!r || !stale || attempt >= VEC_RETRIES) break;
        catalog_rollback(lib->rcat);
    }
    if (!r) cc.vf = vr->vf;
    if (!r) {
        uint64_t catp = 0;
        r = catalog_check(lib->rcat, fn ? catalog_problem : NULL, &cc, &catp);
        /* catalog_check counted via catalog_problem already when fn is set */
        if (!fn) cc.problems += catp;
    }
    if (!r) r = catalog_counts(lib->rcat, &report->images, &report->vectors);
    if (!r) {
        cc.count = vecfile_count(cc.vf);
        vecfile_check_report vrep;
        cdx_result vc = vecfile_check(cc.vf, dmg, CHECK_LIST, &vrep);
        if (vc == CDX_ERR_FORMAT) {
            for (size_t i = 0; i < vrep.listed; i++)
                problem(&cc, "vector slot %llu is damaged (%s)", (unsigned long long)dmg[i].slot,
                        vecfile_damage_str(dmg[i].kind));
            if (vrep.damaged > vrep.listed)
                problem(&cc, "... and %llu more damaged vector slots",
                        (unsigned long long)(vrep.damaged - vrep.listed));
            cc.damaged = dmg;
            cc.n_damaged = vrep.listed;
        } else if (vc) {
            r = vc;
        }
    }
    if (!r) r = catalog_each_content(lib->rcat, check_content, &cc);
    for (int scan = CDX_SCAN_INT8; !r && scan <= CDX_SCAN_LAST; scan++) {
        cdx_codes_info ci;
        if ((r = codes_info_of(lib, vr, scan, 1, &ci))) break;   /* rmu is held: not the public call */
        if (ci.damaged)   /* a cache: reported with how it gets rebuilt */
            problem(&cc, "companion codes %s are damaged (%s); %s", ci.path,
                    ci.present ? "data checksum mismatch" : cdx_last_error(),
                    ci.present ? "'clipdex index --codes KIND' rebuilds them"
                               : "they are rebuilt on next use");
    }
    catalog_rollback(lib->rcat);
    pthread_mutex_unlock(&lib->rmu);
    vec_put(lib, vr);
    free(dmg);
    if (!r) ann_check(lib, &cc, report);
    report->problems = cc.problems;
    return r;
}

/* ---------------------------------------------------------------- listing, import, export
 * (vecio branch) */

typedef struct list_ctx {
    cdx_image_record *recs;
    size_t n;
} list_ctx;

static int list_one(void *user, const cdx_image_record *rec, int64_t slot)
{
    (void)slot;
    list_ctx *lc = user;
    lc->recs[lc->n++] = *rec;
    return 0;
}

cdx_result cdx_library_list_images(cdx_library *lib, uint64_t offset, size_t limit,
                                   cdx_image_record *recs, size_t *n, uint64_t *total)
{
    if (!lib || !n || (limit && !recs))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_list_images: NULL argument");
    *n = 0;
    if (limit > CDX_LIST_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "limit %zu is more than the maximum %d", limit, CDX_LIST_MAX);
    list_ctx lc = {recs, 0};
    uint64_t contents;
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_begin_read(lib->rcat);   /* page and total from one snapshot */
    if (!r && limit) r = catalog_images_page(lib->rcat, offset, (int64_t)limit, list_one, &lc);
    if (!r && total) r = catalog_counts(lib->rcat, total, &contents);
    catalog_rollback(lib->rcat);
    pthread_mutex_unlock(&lib->rmu);
    *n = lc.n;
    return r;
}

cdx_import_params cdx_import_default_params(void)
{
    cdx_import_params p;
    memset(&p, 0, sizeof p);
    p.batch_size = 4096;
    return p;
}

cdx_result cdx_library_import(cdx_library *lib, const char *vectors_path, const char *meta_path,
                              const cdx_import_params *params, cdx_import_stats *stats)
{
    if (!lib || !vectors_path || !meta_path)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_import: NULL argument");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    cdx_import_params defaults = cdx_import_default_params();
    cdx_import_stats local;
    import_target t = {lib->wcat, lib->vec->vf, lib->dim, lib->fingerprint};
    pthread_mutex_lock(&lib->wmu);
    const cdx_import_params *ip = params ? params : &defaults;
    cdx_result r = import_run(&t, vectors_path, meta_path, ip, stats ? stats : &local);
    pthread_mutex_unlock(&lib->wmu);
    if (!r && !(ip->cancel && *ip->cancel)) ann_refresh(lib, 0, ip->cancel);
    return r;
}

/* Vectors embedded elsewhere with this library's model (fleet workers):
 * committed like an import batch, keyed by the image's sha256. */
cdx_result cdx_library_add_vectors(cdx_library *lib, const cdx_image_record *recs, const float *vecs,
                                   size_t n, const char *model_fingerprint, cdx_import_stats *stats)
{
    if (!lib || (n && (!recs || !vecs)))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_add_vectors: NULL argument");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    if (model_fingerprint && strcmp(model_fingerprint, lib->fingerprint))
        return cdx_error(CDX_ERR_MISMATCH, "vectors made by model %.16s..., but the library uses %.16s...",
                         model_fingerprint, lib->fingerprint);
    meta_row *rows = calloc(n ? n : 1, sizeof *rows);
    char (*keys)[65] = calloc(n ? n : 1, sizeof *keys);
    cdx_result r = rows && keys ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !r; i++) {
        if (!recs[i].path[0] || memchr(recs[i].path, '\0', sizeof recs[i].path) == NULL)
            r = cdx_error(CDX_ERR_INVALID_ARG, "record %zu has no path", i);
        snprintf(rows[i].path, sizeof rows[i].path, "%s", recs[i].path);
        rows[i].width = recs[i].width;
        rows[i].height = recs[i].height;
        rows[i].mtime = recs[i].mtime;
        rows[i].taken = recs[i].taken;
        rows[i].size = (int64_t)recs[i].size;
        snprintf(rows[i].format, sizeof rows[i].format, "%s", recs[i].format);
        snprintf(rows[i].camera, sizeof rows[i].camera, "%s", recs[i].camera);
        snprintf(keys[i], sizeof keys[i], "%s", recs[i].sha256);
    }
    cdx_import_stats local;
    memset(&local, 0, sizeof local);
    import_target t = {lib->wcat, lib->vec->vf, lib->dim, lib->fingerprint};
    if (!r) {
        pthread_mutex_lock(&lib->wmu);
        r = import_rows(&t, rows, vecs, (const char (*)[65])keys, n, stats ? stats : &local);
        pthread_mutex_unlock(&lib->wmu);
        if (!r) ann_refresh(lib, ANN_LAZY_ROWS, NULL);
    }
    free(rows);
    free(keys);
    return r;
}

cdx_result cdx_library_note_precision(cdx_library *lib, cdx_precision precision, uint64_t added)
{
    if (!lib || (precision != CDX_PRECISION_FP32 && precision != CDX_PRECISION_INT8 &&
                 precision != CDX_PRECISION_BF16))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_note_precision: bad arguments");
    if (!lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "library opened read-only");
    if (!added) return CDX_OK;
    pthread_mutex_lock(&lib->wmu);
    cdx_result r = record_precision_of(lib, precision, added);
    pthread_mutex_unlock(&lib->wmu);
    return r;
}

typedef struct export_ctx {
    cdx_library *lib;
    vecref *vr;              /* the vector file the export's catalog snapshot names */
    npy_writer *w;
    FILE *jf;
    const char *jtmp;
    float *v;
    uint64_t n;
    cdx_result err;
} export_ctx;

static int export_one(void *user, const cdx_image_record *rec, int64_t slot)
{
    export_ctx *x = user;
    cdx_result r = CDX_OK;
    if (slot < 0) r = cdx_error(CDX_ERR_FORMAT, "image %lld has a bad slot (run clipdex check)",
                                (long long)rec->id);
    if (!r) r = vecfile_get(x->vr->vf, (uint64_t)slot, x->v, NULL);
    if (!r) r = npy_writer_rows(x->w, x->v, 1);
    if (!r) {
        json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:i,s:i,s:s,s:I,s:I,s:s,s:I}", "id", (json_int_t)rec->id,
                              "path", rec->path, "sha256", rec->sha256, "size", (json_int_t)rec->size,
                              "width", rec->width, "height", rec->height, "format", rec->format,
                              "mtime", (json_int_t)rec->mtime, "taken", (json_int_t)rec->taken,
                              "camera", rec->camera, "added", (json_int_t)rec->added);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (!line) r = cdx_error(CDX_ERR_FORMAT, "image %lld: its path is not valid UTF-8 and cannot be "
                                 "exported as JSON", (long long)rec->id);
        else if (fputs(line, x->jf) < 0 || fputc('\n', x->jf) < 0)
            r = cdx_error(CDX_ERR_IO, "%s: write: %s", x->jtmp, strerror(errno));
        free(line);
        json_decref(o);
    }
    x->err = r;
    x->n++;
    return r != CDX_OK;
}

cdx_result cdx_library_export(cdx_library *lib, const char *npy_path, const char *jsonl_path, uint64_t *n)
{
    if (!lib || !npy_path || !jsonl_path)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_export: NULL argument");
    if (n) *n = 0;
    size_t jl = strlen(jsonl_path) + 32;
    char *jtmp = malloc(jl);
    float *v = malloc((size_t)lib->dim * sizeof *v);
    catalog *c = NULL;
    export_ctx x = {lib, NULL, NULL, NULL, jtmp, v, 0, CDX_OK};
    cdx_result r = jtmp && v ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    /* Its own catalog connection: one consistent snapshot for the whole
     * export without holding the searchers' connection, and the vector
     * file that snapshot names (retried when a compaction switches it). */
    if (!r) r = catalog_open(lib->cat_path, 0, 0, &c);
    for (int attempt = 0; !r; attempt++) {
        char vid[VEC_ID_HEX], vname[VEC_NAME_MAX];
        cdx_rows src;
        int stale = 0;
        r = catalog_begin_read(c);
        if (!r) r = vec_meta(c, vid, vname);
        if (!r) r = vectors_view(lib, vid, vname, UINT64_MAX, &x.vr, &src, &stale);
        if (!r || !stale || attempt >= VEC_RETRIES) break;
        catalog_rollback(c);
        r = CDX_OK;
    }
    if (!r) {
        snprintf(jtmp, jl, "%s.tmp.%d", jsonl_path, (int)getpid());
        if (!(x.jf = fopen(jtmp, "we"))) r = cdx_error(CDX_ERR_IO, "%s: %s", jtmp, strerror(errno));
    }
    if (!r) r = npy_writer_open(npy_path, lib->dim, &x.w);
    if (!r) r = catalog_images_page(c, 0, -1, export_one, &x);
    if (!r) r = x.err;
    if (!r && (fflush(x.jf) != 0 || fsync(fileno(x.jf)) != 0))
        r = cdx_error(CDX_ERR_IO, "%s: %s", jtmp, strerror(errno));
    if (x.jf && fclose(x.jf) != 0 && !r) r = cdx_error(CDX_ERR_IO, "%s: close: %s", jtmp, strerror(errno));
    if (!r) {
        r = npy_writer_finish(x.w);
        x.w = NULL;
    }
    if (!r && rename(jtmp, jsonl_path) != 0) r = cdx_error(CDX_ERR_IO, "%s: %s", jsonl_path, strerror(errno));
    if (r && x.jf) unlink(jtmp);
    npy_writer_abort(x.w);
    vec_put(lib, x.vr);
    if (c) catalog_rollback(c);
    catalog_close(c);
    free(jtmp);
    free(v);
    if (!r && n) *n = x.n;
    return r;
}

#define VECTORS_READ_MAX ((uint64_t)1 << 30)

cdx_result cdx_vectors_read(const char *path, int dim, float **out, size_t *n)
{
    if (!path || !out || !n || dim < 1)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_vectors_read: bad arguments");
    *out = NULL;
    *n = 0;
    const char *dot = strrchr(path, '.');
    if (dot && !strcasecmp(dot, ".npy")) {
        npy_file f;
        cdx_result r = npy_open(path, &f);
        if (r) return r;
        if (f.dim != dim) {
            npy_close(&f);
            return cdx_error(CDX_ERR_MISMATCH, "%s holds %d-dimensional vectors but the library's model "
                             "embeds in %d", path, f.dim, dim);
        }
        if (f.rows * (uint64_t)dim * 4 > VECTORS_READ_MAX) {
            npy_close(&f);
            return cdx_error(CDX_ERR_TOO_LARGE, "%s: more than 1 GiB of vectors", path);
        }
        float *v = malloc((size_t)(f.rows ? f.rows : 1) * (size_t)dim * sizeof *v);
        if (!v) {
            npy_close(&f);
            return cdx_error(CDX_ERR_NOMEM, "out of memory");
        }
        for (uint64_t i = 0; i < f.rows; i++) npy_row(&f, i, v + i * (size_t)dim);
        *n = (size_t)f.rows;
        *out = v;
        npy_close(&f);
        return CDX_OK;
    }
    char *buf;
    size_t len;
    cdx_result r = cdx_read_file(path, (size_t)VECTORS_READ_MAX, &buf, &len);
    if (r) return r;
    if (len == 0 || len % ((size_t)dim * 4)) {
        free(buf);
        return cdx_error(CDX_ERR_MISMATCH, "%s: %zu bytes is not a whole number of %d-dimensional "
                         "float32 vectors (%d bytes each)", path, len, dim, dim * 4);
    }
    float *v = malloc(len);
    if (!v) {
        free(buf);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    memcpy(v, buf, len);   /* little-endian host */
    free(buf);
    *out = v;
    *n = len / ((size_t)dim * 4);
    return CDX_OK;
}

/* ---------------------------------------------------------------- reindex (model lifecycle)
 * docs/models.md "Reindex and rollback".  State between runs:
 *  - DIR/reindex.json names the vector file being filled and its model
 *    (written before the file is created, removed after the switch); its
 *    rows carry their content keys, so a resumed run knows what is done
 *    by reading them, whatever the catalog did meanwhile;
 *  - catalog meta prev_* name the set switched away from (vector file,
 *    model version, directory, name, dimension) until the next reindex or
 *    drop_previous; remove_leftovers spares both files.
 * The switch renumbers every content's slot to its row in the new file,
 * names the new file and model in the same transaction (a crash leaves
 * either the old or the new set), then deletes the file retired two
 * switches ago.  DIR/reindex.lock keeps two reindex runs apart. */

#define REINDEX_STATE "reindex.json"
#define REINDEX_LOCK "reindex.lock"

cdx_reindex_params cdx_reindex_default_params(void)
{
    cdx_reindex_params p;
    memset(&p, 0, sizeof p);
    p.batch_size = 16;
    return p;
}

/* sha256 key -> slot, open addressing (keys are uniformly random). */
typedef struct keymap {
    uint8_t (*key)[VECFILE_KEY_BYTES];
    int64_t *slot;           /* -1 = empty */
    size_t cap, n;
} keymap;

static void keymap_free(keymap *m)
{
    free(m->key);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

static size_t keymap_pos(const keymap *m, const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof h);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slot[i] >= 0 && memcmp(m->key[i], k, VECFILE_KEY_BYTES)) i = (i + 1) & (m->cap - 1);
    return i;
}

static cdx_result keymap_put(keymap *m, const uint8_t *k, int64_t slot)
{
    if (2 * (m->n + 1) > m->cap) {
        keymap o = *m;
        m->cap = o.cap ? o.cap * 2 : 1024;
        m->n = 0;
        m->key = malloc(m->cap * sizeof *m->key);
        m->slot = malloc(m->cap * sizeof *m->slot);
        if (!m->key || !m->slot) {
            keymap_free(m);
            *m = o;
            return cdx_error(CDX_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < m->cap; i++) m->slot[i] = -1;
        for (size_t i = 0; i < o.cap; i++)
            if (o.slot[i] >= 0) {
                size_t j = keymap_pos(m, o.key[i]);
                memcpy(m->key[j], o.key[i], VECFILE_KEY_BYTES);
                m->slot[j] = o.slot[i];
                m->n++;
            }
        keymap_free(&o);
    }
    size_t i = keymap_pos(m, k);
    if (m->slot[i] < 0) m->n++;
    memcpy(m->key[i], k, VECFILE_KEY_BYTES);
    m->slot[i] = slot;   /* a repeated key (a content removed and added again): the later row */
    return CDX_OK;
}

static int64_t keymap_get(const keymap *m, const uint8_t *k)
{
    return m->cap ? m->slot[keymap_pos(m, k)] : -1;
}

/* The key of every row of vf. */
static cdx_result keymap_of_file(vecfile *vf, keymap *m)
{
    uint64_t n = vecfile_count(vf);
    uint8_t key[VECFILE_KEY_BYTES];
    for (uint64_t s = 0; s < n; s++) {
        cdx_result r = vecfile_get(vf, s, NULL, key);
        if (!r) r = keymap_put(m, key, (int64_t)s);
        if (r) return r;
    }
    return CDX_OK;
}

/* Content shas (hex) of the catalog, in slot order. */
typedef struct sha_list {
    char (*v)[65];
    int64_t *slot;
    size_t n, cap;
    int nomem;
} sha_list;

static int collect_sha(void *user, const char *sha, int64_t slot)
{
    sha_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        char (*v)[65] = realloc(l->v, cap * sizeof *v);
        if (v) l->v = v;
        int64_t *sl = realloc(l->slot, cap * sizeof *sl);
        if (sl) l->slot = sl;
        if (!v || !sl) {
            l->nomem = 1;
            return 1;
        }
        l->cap = cap;
    }
    snprintf(l->v[l->n], 65, "%s", sha);
    l->slot[l->n++] = slot;
    return 0;
}

static void sha_list_free(sha_list *l)
{
    free(l->v);
    free(l->slot);
    memset(l, 0, sizeof *l);
}

static cdx_result list_contents(catalog *c, int txn, sha_list *l)
{
    sha_list_free(l);
    cdx_result r = txn ? catalog_begin_read(c) : CDX_OK;
    if (!r) r = catalog_each_content(c, collect_sha, l);
    if (txn) catalog_rollback(c);
    if (!r && l->nomem) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    return r;
}

/* Catalog meta value or "" when absent. */
static cdx_result meta_or_empty(catalog *c, const char *key, char *out, size_t cap)
{
    cdx_result r = catalog_meta_get(c, key, out, cap);
    if (r == CDX_ERR_NOT_FOUND) {
        cdx_error_clear();
        out[0] = 0;
        return CDX_OK;
    }
    return r;
}

/* The reindex state file: which file is being filled for which model. */
typedef struct reindex_state {
    char file[VEC_NAME_MAX], file_id[VEC_ID_HEX], fingerprint[65];
} reindex_state;

static int state_read(const char *dir, reindex_state *st)
{
    memset(st, 0, sizeof *st);
    char *path = cdx_path_join(dir, REINDEX_STATE);
    json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
    free(path);
    const char *f = json_string_value(json_object_get(j, "file"));
    const char *id = json_string_value(json_object_get(j, "file_id"));
    const char *fp = json_string_value(json_object_get(j, "model_fingerprint"));
    int ok = f && id && fp && vec_name_ok(f) && strcmp(f, VEC_DEFAULT_NAME) &&
             strlen(id) == VEC_ID_HEX - 1 && strlen(fp) == 64;
    if (ok) {
        snprintf(st->file, sizeof st->file, "%s", f);
        snprintf(st->file_id, sizeof st->file_id, "%s", id);
        snprintf(st->fingerprint, sizeof st->fingerprint, "%s", fp);
    }
    json_decref(j);
    return ok;
}

static int reindex_keeps(cdx_library *lib, const char *name)
{
    reindex_state st;
    if (state_read(lib->dir, &st) && !strcmp(st.file, name)) return 1;
    char prev[VEC_NAME_MAX + 8];
    catalog *c = lib->wcat ? lib->wcat : lib->rcat;
    return meta_or_empty(c, "prev_vec_file", prev, sizeof prev) == CDX_OK && !strcmp(prev, name);
}

static void unlink_in(const char *dir, const char *name)
{
    char *p = cdx_path_join(dir, name);
    if (p) unlink(p);
    free(p);
}

/* The embedding side of a reindex: the new model, its context, the file. */
typedef struct reembed {
    const char *dir;
    cdx_model *model;
    cdx_ctx *ctx;
    int dim, batch;
    size_t px_n;
    vecfile *vf;
    keymap done;             /* contents with a row in vf */
    float *px, *emb;
    uint8_t (*keys)[VECFILE_KEY_BYTES];
    int k;                   /* pending batch */
    const cdx_reindex_params *p;
    cdx_reindex_report *rep;
    uint64_t total, progressed;
} reembed;

static cdx_result reembed_flush(reembed *e)
{
    if (!e->k) return CDX_OK;
    cdx_result r = cdx_encode_images(e->ctx, e->px, e->k, e->emb, 1);
    uint64_t first = 0;
    if (!r) r = vecfile_append(e->vf, e->emb, (const uint8_t (*)[VECFILE_KEY_BYTES])e->keys, (size_t)e->k, &first);
    for (int i = 0; !r && i < e->k; i++) r = keymap_put(&e->done, e->keys[i], (int64_t)(first + (uint64_t)i));
    if (!r) e->rep->embedded += (uint64_t)e->k;
    e->k = 0;
    return r;
}

typedef struct path_list {
    char *paths[8];
    int n;
} path_list;

static int collect_path(void *user, int64_t id, const char *path, int64_t mtime)
{
    (void)id;
    (void)mtime;
    path_list *l = user;
    if (l->n < 8 && (l->paths[l->n] = strdup(path))) l->n++;
    return 0;
}

/* Read one content from any of its paths whose bytes still hash to it,
 * preprocess it into the pending batch.  1 = added, 0 = missing (noted). */
static cdx_result reembed_one(reembed *e, catalog *c, const char *sha, int *added)
{
    *added = 0;
    path_list pl = {{0}, 0};
    cdx_result r = catalog_each_image_of_content(c, sha, collect_path, &pl);
    char why[1024] = "no image refers to it";
    for (int i = 0; !r && !*added && i < pl.n; i++) {
        char *data = NULL;
        size_t len = 0;
        cdx_result rr = is_url(pl.paths[i]) ? cdx_error(CDX_ERR_UNSUPPORTED, "URLs are not fetched again")
                                            : cdx_read_file(pl.paths[i], (size_t)1 << 28, &data, &len);
        uint8_t raw[32];
        char hex[65];
        if (!rr) {
            source_sha256(data, len, raw, hex);
            if (strcmp(hex, sha)) rr = cdx_error(CDX_ERR_MISMATCH, "the file changed since it was indexed");
        }
        if (!rr) rr = cdx_preprocess_buffer(e->model, data, len, NULL, e->px + (size_t)e->k * e->px_n, NULL);
        free(data);
        if (rr) {
            snprintf(why, sizeof why, "%s: %s", pl.paths[i], cdx_last_error());
            cdx_error_clear();
            continue;
        }
        memcpy(e->keys[e->k++], raw, VECFILE_KEY_BYTES);
        *added = 1;
    }
    for (int i = 0; i < pl.n; i++) free(pl.paths[i]);
    if (r) return r;
    if (!*added) {
        if (!e->rep->missing++) snprintf(e->rep->first_missing, sizeof e->rep->first_missing, "%s", why);
    } else if (e->k == e->batch) {
        r = reembed_flush(e);
    }
    return r;
}

/* Embed every listed content without a row; missing ones are counted. */
static cdx_result reembed_all(reembed *e, catalog *c, const sha_list *l)
{
    cdx_result r = CDX_OK;
    e->rep->missing = 0;
    e->rep->first_missing[0] = 0;
    for (size_t i = 0; !r && i < l->n; i++) {
        if (e->p->cancel && atomic_load(e->p->cancel)) {
            r = reembed_flush(e);
            return r ? r : cdx_error(CDX_ERR_IO, "reindex interrupted (embedded rows are kept: run it again to resume)");
        }
        uint8_t key[32];
        if (source_unhex(l->v[i], key) != 0) return cdx_error(CDX_ERR_FORMAT, "catalog content '%s' is not a sha256", l->v[i]);
        if (keymap_get(&e->done, key) >= 0) continue;
        int added;
        r = reembed_one(e, c, l->v[i], &added);
        e->progressed++;
        if (e->p->progress) e->p->progress(e->p->user, e->rep->resumed + e->rep->embedded + (uint64_t)e->k, e->total);
    }
    if (!r) r = reembed_flush(e);
    return r;
}

static void reembed_free(reembed *e)
{
    cdx_ctx_free(e->ctx);
    cdx_model_free(e->model);
    vecfile_close(e->vf);
    keymap_free(&e->done);
    cdx_free_aligned(e->px);
    free(e->emb);
    free(e->keys);
}

/* Load the model; open the file of an interrupted run for it, or start one. */
static cdx_result reembed_open(reembed *e, cdx_library *ro)
{
    const char *cur_fp = ro->fingerprint, *cur_name = strrchr(ro->vec->path, '/') + 1;
    char prev_name[VEC_NAME_MAX + 8] = "";
    pthread_mutex_lock(&ro->rmu);
    cdx_result pr = meta_or_empty(ro->rcat, "prev_vec_file", prev_name, sizeof prev_name);
    pthread_mutex_unlock(&ro->rmu);
    if (pr) return pr;
    cdx_result r = cdx_model_load(e->p->model_dir, NULL, &e->model);
    if (r) return cdx_error_prefix(r, "loading the new model");
    cdx_model_info mi;
    cdx_model_get_info(e->model, &mi);
    if (!strcmp(mi.fingerprint, cur_fp))
        return cdx_error(CDX_ERR_INVALID_ARG, "the library already uses model %.12s (%s)", mi.fingerprint, e->p->model_dir);
    e->dim = mi.embed_dim;
    e->batch = e->p->batch_size > 0 && e->p->batch_size <= 256 ? e->p->batch_size : 16;
    e->px_n = (size_t)3 * mi.image_size * mi.image_size;
    e->px = cdx_alloc_aligned((size_t)e->batch * e->px_n, sizeof(float));
    e->emb = malloc((size_t)e->batch * (size_t)e->dim * sizeof *e->emb);
    e->keys = malloc((size_t)e->batch * sizeof *e->keys);
    if (!e->px || !e->emb || !e->keys) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.n_threads = e->p->n_threads;
    cp.max_batch = e->batch;
    if ((r = cdx_ctx_new(e->model, &cp, &e->ctx))) return r;
    uint8_t tag[32];
    if (source_unhex(mi.fingerprint, tag) != 0) return cdx_error(CDX_ERR_FORMAT, "model fingerprint is malformed");
    vecfile_params vp = vecfile_default_params();
    vp.writable = 1;
    vp.dim = e->dim;
    vp.model_tag = tag;
    reindex_state st;
    /* A run killed after its switch but before removing the state: the
     * state names a file in use (current or previous); forget the state. */
    if (state_read(e->dir, &st) && (!strcmp(st.file, cur_name) || !strcmp(st.file, prev_name)))
        unlink_in(e->dir, REINDEX_STATE);
    else if (state_read(e->dir, &st)) {
        if (!strcmp(st.fingerprint, mi.fingerprint)) {
            char *path = cdx_path_join(e->dir, st.file);
            if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
            r = vecfile_open(path, &vp, &e->vf, NULL);
            free(path);
            char id[VEC_ID_HEX];
            if (!r) vecref_id(e->vf, id);
            if (!r && strcmp(id, st.file_id)) r = cdx_error(CDX_ERR_FORMAT, "%s is another file", st.file);
            if (!r) r = keymap_of_file(e->vf, &e->done);
            if (!r) {
                e->rep->resumed = e->done.n;
                return CDX_OK;
            }
            vecfile_close(e->vf);   /* unusable: start again */
            e->vf = NULL;
            keymap_free(&e->done);
            cdx_error_clear();
        }
        unlink_in(e->dir, st.file);   /* a run for another model */
    }
    uint8_t id[VECFILE_ID_BYTES];
    vecfile_new_id(id);
    cdx_hex(id, sizeof id, st.file_id);
    snprintf(st.file, sizeof st.file, "vectors-%s.cdxv", st.file_id);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "file", st.file, "file_id", st.file_id,
                          "model_fingerprint", mi.fingerprint, "model_dir", e->p->model_dir);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    char *spath = cdx_path_join(e->dir, REINDEX_STATE), *path = cdx_path_join(e->dir, st.file);
    r = text && spath && path ? cdx_write_file_atomic(spath, text, strlen(text)) : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) {
        vp.create = 1;
        r = vecfile_open(path, &vp, &e->vf, NULL);
    }
    /* the file id is chosen by creation: record it (the state names the file before it exists) */
    if (!r) {
        char fid[VEC_ID_HEX];
        vecref_id(e->vf, fid);
        j = json_pack("{s:s,s:s,s:s,s:s}", "file", st.file, "file_id", fid,
                      "model_fingerprint", mi.fingerprint, "model_dir", e->p->model_dir);
        free(text);
        text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        json_decref(j);
        r = text ? cdx_write_file_atomic(spath, text, strlen(text)) : cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    free(text);
    free(spath);
    free(path);
    return r;
}

/* Renumber contents (slot order list l) to new slots nv[i] (-1: remove
 * the content and its images) inside the caller's transaction. */
static cdx_result reslot_all(catalog *c, const sha_list *l, const int64_t *nv)
{
    cdx_result r = CDX_OK;
    for (size_t i = 0; !r && i < l->n; i++) {
        if (nv[i] >= 0) continue;
        for (;;) {   /* delete its images (the last one removes the content) */
            cdx_image_record rec;
            r = catalog_image_by_content(c, l->v[i], &rec);
            if (r == CDX_ERR_NOT_FOUND) {
                cdx_error_clear();
                r = catalog_content_gc(c, l->v[i]);
                break;
            }
            if (!r) r = catalog_image_delete(c, rec.id);
            if (r) break;
        }
    }
    for (size_t i = 0; !r && i < l->n; i++)   /* to negative numbers first: no collision */
        if (nv[i] >= 0 && nv[i] != l->slot[i]) r = catalog_content_reslot(c, l->slot[i], -nv[i] - 1);
    for (size_t i = 0; !r && i < l->n; i++)
        if (nv[i] >= 0 && nv[i] != l->slot[i]) r = catalog_content_reslot(c, -nv[i] - 1, nv[i]);
    return r;
}

static int dim_of(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end != s && !*end && v > 0 && v <= VECFILE_MAX_DIM ? (int)v : 0;
}

typedef struct model_ref {
    char file[VEC_NAME_MAX + 8], file_id[VEC_ID_HEX + 8], fp[72], dir[4096], name[160], dim[32];
} model_ref;

static cdx_result ref_read(catalog *c, const char *pre, model_ref *m)
{
    static const char *keys[] = {"vec_file", "vec_file_id", "model_fingerprint", "model_dir", "model_name", "dim"};
    char *out[6] = {m->file, m->file_id, m->fp, m->dir, m->name, m->dim};
    size_t cap[6] = {sizeof m->file, sizeof m->file_id, sizeof m->fp, sizeof m->dir, sizeof m->name, sizeof m->dim};
    for (int i = 0; i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", pre, keys[i]);
        cdx_result r = meta_or_empty(c, key, out[i], cap[i]);
        if (r) return r;
    }
    if (!*pre && !*m->file) snprintf(m->file, sizeof m->file, "%s", VEC_DEFAULT_NAME);
    return CDX_OK;
}

static cdx_result ref_write(catalog *c, const char *pre, const model_ref *m)
{
    static const char *keys[] = {"vec_file", "vec_file_id", "model_fingerprint", "model_dir", "model_name", "dim"};
    const char *v[6] = {m->file, m->file_id, m->fp, m->dir, m->name, m->dim};
    cdx_result r = CDX_OK;
    for (int i = 0; !r && i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", pre, keys[i]);
        r = catalog_meta_set(c, key, v[i]);
    }
    return r;
}

/* Commit the switch to (nref, cur) with the catalog renumbered by nv; the
 * current set becomes prev; *model (when not NULL: the new model of a
 * handle that embeds) becomes the handle's model generation.  Under wmu
 * with a transaction open. */
static cdx_result switch_commit(cdx_library *lib, const sha_list *l, const int64_t *nv, vecref *nref,
                                const model_ref *to, model_ref *from, cdx_model **model)
{
    modelgen *g = NULL;   /* made before the commit: nothing can fail after it */
    cdx_result r = *model ? gen_new(lib, *model, &g) : CDX_OK;
    *model = NULL;
    if (!r) r = reslot_all(lib->wcat, l, nv);
    if (!r) r = ref_write(lib->wcat, "", to);
    if (!r) r = ref_write(lib->wcat, "prev_", from);
    if (r) {
        gen_release(g);
        return r;
    }
    /* rmu: no search takes a snapshot between the commit and the new
     * model generation, so a query that pinned the old model and meets
     * the new set finds the new model when it pins again */
    pthread_mutex_lock(&lib->rmu);
    pthread_mutex_lock(&lib->vmu);
    r = catalog_commit(lib->wcat);   /* the switch */
    if (!r && g) {   /* the handle's queries move to the new model (a reindex's
                      * context on it is freed later, the generation holds it) */
        gen_swap(lib, g);
        g = NULL;
    }
    if (!r) {
        vecref_release(lib->vec);
        lib->vec = nref;
        lib->dim = dim_of(to->dim);
        snprintf(lib->fingerprint, sizeof lib->fingerprint, "%.64s", to->fp);
        snprintf(lib->model_dir, sizeof lib->model_dir, "%s", to->dir);
        if (source_unhex(lib->fingerprint, lib->model_tag) != 0) memset(lib->model_tag, 0, sizeof lib->model_tag);
    }
    pthread_mutex_unlock(&lib->vmu);
    pthread_mutex_unlock(&lib->rmu);
    gen_release(g);   /* the commit failed */
    return r;
}

static cdx_result take_reindex_lock(const char *dir, int *fd)
{
    char *path = cdx_path_join(dir, REINDEX_LOCK);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    cdx_result r = CDX_OK;
    if (*fd < 0) r = cdx_error(CDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (flock(*fd, LOCK_EX | LOCK_NB) != 0)
        r = cdx_error(CDX_ERR_IO, "another reindex of %s is running (%s is locked)", dir, path);
    free(path);
    return r;
}

static cdx_result open_writer(const char *dir, cdx_library **lib)
{
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = 1;
    lp.load_model = 0;
    lp.compact.dead_fraction = 0;
    return cdx_library_open(dir, &lp, lib);
}

/* A reindex of dir, or of the open writable handle `given` (its writer
 * lock, wmu and model generation are used for the switch). */
static cdx_result reindex_run(const char *dir, cdx_library *given, const cdx_reindex_params *params,
                              cdx_reindex_report *report)
{
    cdx_reindex_report local;
    if (!report) report = &local;
    memset(report, 0, sizeof *report);
    if (!params || !params->model_dir)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_reindex: a model directory is needed");
    if (params->model_name && *params->model_name && !cdx_registry_name_ok(params->model_name))
        return cdx_error(CDX_ERR_INVALID_ARG, "'%.80s' is not a model name", params->model_name);
    double t0 = cdx_now();
    if (given) dir = given->dir;
    if (!dir) dir = cdx_library_default_dir();
    cdx_library *ro = NULL, *w = NULL;
    cdx_library_params lp = cdx_library_default_params();
    lp.load_model = 0;
    int lock_fd = -1;
    reembed e;
    memset(&e, 0, sizeof e);
    e.p = params;
    e.rep = report;
    sha_list l = {0};
    int64_t *nv = NULL;
    vecref *nref = NULL;
    char *abs_model = walk_abspath(params->model_dir);
    cdx_result r = abs_model ? cdx_library_open(dir, &lp, &ro) : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) r = take_reindex_lock(ro->dir, &lock_fd);
    e.dir = ro ? ro->dir : NULL;
    if (!r) r = reembed_open(&e, ro);
    if (!r && given && given->model && e.dim != given->dim)
        r = cdx_error(CDX_ERR_UNSUPPORTED, "a running handle cannot change the embedding dimension "
                      "(%d to %d): stop the server and run clipdex reindex", given->dim, e.dim);
    /* 1. in the background: the current set keeps serving, no writer lock;
     * a second pass takes what was added during the first */
    for (int pass = 0; !r && pass < 2; pass++) {
        r = list_contents(ro->rcat, 1, &l);
        if (!r) {
            report->contents = e.total = l.n;
            r = reembed_all(&e, ro->rcat, &l);
        }
    }
    if (r || params->no_switch) goto done;
    /* 2. the switch: under the writer lock, catch up with what changed */
    if (given) w = given;
    else if ((r = open_writer(dir, &w))) goto done;
    pthread_mutex_lock(&w->wmu);
    r = list_contents(w->wcat, 0, &l);
    if (!r) {
        report->contents = e.total = l.n;
        r = reembed_all(&e, w->wcat, &l);
    }
    if (!r && report->missing && !params->drop_missing)
        r = cdx_error(CDX_ERR_NOT_FOUND, "%llu image(s) could not be read again (first: %s); nothing "
                      "switched, the %llu embedded are kept: restore the files and run again, or "
                      "run again with --drop-missing to remove them from the library at the switch",
                      (unsigned long long)report->missing, report->first_missing,
                      (unsigned long long)e.done.n);
    if (!r && !(nv = malloc((l.n + 1) * sizeof *nv))) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) r = catalog_begin(w->wcat);
    if (!r) {
        sha_list_free(&l);   /* again inside the transaction: exactly what is switched */
        r = list_contents(w->wcat, 0, &l);
        int64_t *nv2 = r ? NULL : realloc(nv, (l.n + 1) * sizeof *nv);
        if (nv2) nv = nv2;
        else if (!r) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        uint64_t absent = 0;
        for (size_t i = 0; !r && i < l.n; i++) {
            uint8_t key[32];
            nv[i] = source_unhex(l.v[i], key) == 0 ? keymap_get(&e.done, key) : -1;
            absent += nv[i] < 0;
        }
        if (!r && absent && !params->drop_missing)
            r = cdx_error(CDX_ERR_NOT_FOUND, "%llu image(s) have no new vector; run again",
                          (unsigned long long)absent);
    }
    model_ref to, from;
    char old_prev[VEC_NAME_MAX + 8] = "";
    if (!r) r = ref_read(w->wcat, "", &from);
    if (!r) r = meta_or_empty(w->wcat, "prev_vec_file", old_prev, sizeof old_prev);
    reindex_state st;
    if (!r && !state_read(w->dir, &st)) r = cdx_error(CDX_ERR_IO, "%s/%s vanished", w->dir, REINDEX_STATE);
    if (!r) {
        cdx_model_info mi;
        cdx_model_get_info(e.model, &mi);
        memset(&to, 0, sizeof to);
        snprintf(to.file, sizeof to.file, "%s", st.file);
        snprintf(to.file_id, sizeof to.file_id, "%s", st.file_id);
        snprintf(to.fp, sizeof to.fp, "%s", mi.fingerprint);
        snprintf(to.dir, sizeof to.dir, "%s", abs_model);
        snprintf(to.name, sizeof to.name, "%s", params->model_name ? params->model_name : "");
        snprintf(to.dim, sizeof to.dim, "%d", mi.embed_dim);
        char *path = cdx_path_join(w->dir, st.file);
        vecfile_close(e.vf);   /* the library's handle takes over the file */
        e.vf = NULL;
        vecfile_params vp = vecfile_default_params();
        vp.writable = 1;
        vp.dim = mi.embed_dim;
        vecfile *vf = NULL;
        r = path ? vecfile_open(path, &vp, &vf, NULL) : cdx_error(CDX_ERR_NOMEM, "out of memory");
        if (!r) r = vecref_wrap(w, vf, path, &nref);
        free(path);
        if (!r && strcmp(nref->id, st.file_id)) r = cdx_error(CDX_ERR_FORMAT, "%s is another file", st.file);
    }
    cdx_model *none = NULL;
    if (!r) r = switch_commit(w, &l, nv, nref, &to, &from, w->model ? &e.model : &none);
    if (!r) nref = NULL;
    catalog_rollback(w->wcat);
    pthread_mutex_unlock(&w->wmu);
    if (r) goto done;
    report->switched = 1;
    report->missing = 0;
    for (size_t i = 0; i < l.n; i++) report->missing += nv[i] < 0;
    unlink_in(w->dir, REINDEX_STATE);
    if (*old_prev && strcmp(old_prev, to.file) && strcmp(old_prev, from.file))
        unlink_in(w->dir, old_prev);   /* retired two switches ago */
    if (refresh_codes(w, 0) != CDX_OK) cdx_error_clear();   /* stale companions: rebuilt on next use */
    if (given) ann_refresh(w, 0, NULL);
done:
    if (nref) vecref_release(nref);
    free(nv);
    sha_list_free(&l);
    reembed_free(&e);
    if (w != given) cdx_library_close(w);
    cdx_library_close(ro);
    if (lock_fd >= 0) close(lock_fd);
    free(abs_model);
    report->seconds = cdx_now() - t0;
    return r;
}

static cdx_result rollback_run(const char *dir, cdx_library *given, int force, uint64_t *removed)
{
    if (removed) *removed = 0;
    cdx_library *w = given;
    cdx_model *pm = NULL;   /* the previous model, for a handle that embeds */
    int lock_fd = -1;
    sha_list l = {0};
    keymap m = {0};
    int64_t *nv = NULL;
    vecref *pref = NULL;
    model_ref cur, prev;
    cdx_result r = given ? CDX_OK : open_writer(dir, &w);
    if (!r) r = take_reindex_lock(w->dir, &lock_fd);
    if (r) goto out;
    pthread_mutex_lock(&w->wmu);
    r = ref_read(w->wcat, "prev_", &prev);
    if (!r) r = ref_read(w->wcat, "", &cur);
    if (!r && (!*prev.file || !*prev.fp))
        r = cdx_error(CDX_ERR_NOT_FOUND, "library %s has no previous set to roll back to", w->dir);
    if (!r && (!vec_name_ok(prev.file) || strlen(prev.file_id) != VEC_ID_HEX - 1 || !dim_of(prev.dim)))
        r = cdx_error(CDX_ERR_FORMAT, "catalog meta prev_* is malformed");
    if (!r && !*cur.dim) snprintf(cur.dim, sizeof cur.dim, "%d", w->dim);
    if (!r && !*cur.file_id) snprintf(cur.file_id, sizeof cur.file_id, "%s", w->vec->id);
    if (!r) {
        uint8_t tag[32];
        char *path = cdx_path_join(w->dir, prev.file);
        vecfile_params vp = vecfile_default_params();
        vp.writable = 1;
        vp.dim = dim_of(prev.dim);
        vp.model_tag = source_unhex(prev.fp, tag) == 0 ? tag : NULL;
        vecfile *vf = NULL;
        r = path ? vecfile_open(path, &vp, &vf, NULL) : cdx_error(CDX_ERR_NOMEM, "out of memory");
        if (!r) r = vecref_wrap(w, vf, path, &pref);
        free(path);
        if (!r && strcmp(pref->id, prev.file_id)) r = cdx_error(CDX_ERR_FORMAT, "%s is not the previous set's file", prev.file);
    }
    if (!r) r = keymap_of_file(pref->vf, &m);
    if (!r && w->model) {
        r = cdx_model_load(prev.dir, NULL, &pm);
        cdx_model_info mi;
        if (!r) cdx_model_get_info(pm, &mi);
        if (!r && (strcmp(mi.fingerprint, prev.fp) || mi.embed_dim != w->dim))
            r = cdx_error(CDX_ERR_MISMATCH, "%s is not the previous model %.12s (of dimension %d)", prev.dir,
                          prev.fp, w->dim);
        if (r) r = cdx_error_prefix(r, "loading the previous model");
    }
    if (!r) r = catalog_begin(w->wcat);
    if (!r) r = list_contents(w->wcat, 0, &l);
    if (!r && !(nv = malloc((l.n + 1) * sizeof *nv))) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    uint64_t absent = 0;
    for (size_t i = 0; !r && i < l.n; i++) {
        uint8_t key[32];
        nv[i] = source_unhex(l.v[i], key) == 0 ? keymap_get(&m, key) : -1;
        absent += nv[i] < 0;
    }
    if (!r && absent && !force)
        r = cdx_error(CDX_ERR_MISMATCH, "%llu image content(s) were added since the switch and have no "
                      "vector in the previous set; nothing changed (--force removes them from the "
                      "library; index them again afterwards)", (unsigned long long)absent);
    if (!r) r = switch_commit(w, &l, nv, pref, &prev, &cur, &pm);
    if (!r) {
        pref = NULL;
        if (removed) *removed = absent;
    }
    catalog_rollback(w->wcat);
    pthread_mutex_unlock(&w->wmu);
    if (!r && refresh_codes(w, 0) != CDX_OK) cdx_error_clear();
    if (!r && given) ann_refresh(w, 0, NULL);
out:
    if (pref) vecref_release(pref);
    cdx_model_free(pm);
    keymap_free(&m);
    free(nv);
    sha_list_free(&l);
    if (w != given) cdx_library_close(w);
    if (lock_fd >= 0) close(lock_fd);
    return r;
}

static cdx_result drop_previous_run(const char *dir, cdx_library *given)
{
    cdx_library *w = given;
    cdx_result r = given ? CDX_OK : open_writer(dir, &w);
    if (r) return r;
    pthread_mutex_lock(&w->wmu);
    model_ref prev, none;
    memset(&none, 0, sizeof none);
    r = ref_read(w->wcat, "prev_", &prev);
    if (!r && !*prev.file) r = cdx_error(CDX_ERR_NOT_FOUND, "library %s has no previous set", w->dir);
    if (!r) r = catalog_begin(w->wcat);
    if (!r) r = ref_write(w->wcat, "prev_", &none);
    if (!r) r = catalog_commit(w->wcat);
    catalog_rollback(w->wcat);
    pthread_mutex_unlock(&w->wmu);
    if (!r && vec_name_ok(prev.file) && strcmp(prev.file, strrchr(w->vec->path, '/') + 1))
        unlink_in(w->dir, prev.file);
    if (w != given) cdx_library_close(w);
    return r;
}

cdx_result cdx_library_reindex(const char *dir, const cdx_reindex_params *params, cdx_reindex_report *report)
{
    return reindex_run(dir, NULL, params, report);
}

cdx_result cdx_library_rollback(const char *dir, int force, uint64_t *removed)
{
    return rollback_run(dir, NULL, force, removed);
}

cdx_result cdx_library_drop_previous(const char *dir)
{
    return drop_previous_run(dir, NULL);
}

/* The same through an open writable handle (a writable server's): its
 * writer lock covers the switch, and its queries move to the new model. */
static cdx_result need_writer(cdx_library *lib, const char *what)
{
    if (!lib || !lib->writable) return cdx_error(CDX_ERR_INVALID_ARG, "%s: a writable library handle is needed", what);
    return CDX_OK;
}

cdx_result cdx_library_reindex_handle(cdx_library *lib, const cdx_reindex_params *params, cdx_reindex_report *report)
{
    cdx_result r = need_writer(lib, "cdx_library_reindex_handle");
    return r ? r : reindex_run(NULL, lib, params, report);
}

cdx_result cdx_library_rollback_handle(cdx_library *lib, int force, uint64_t *removed)
{
    cdx_result r = need_writer(lib, "cdx_library_rollback_handle");
    return r ? r : rollback_run(NULL, lib, force, removed);
}

cdx_result cdx_library_drop_previous_handle(cdx_library *lib)
{
    cdx_result r = need_writer(lib, "cdx_library_drop_previous_handle");
    return r ? r : drop_previous_run(NULL, lib);
}

cdx_result cdx_library_model_name(cdx_library *lib, char *out, size_t cap)
{
    if (!lib || !out || !cap) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_model_name: bad arguments");
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = meta_or_empty(lib->rcat, "model_name", out, cap);
    pthread_mutex_unlock(&lib->rmu);
    return r;
}

/* The rest of a sync once the catalog named fp / mdir / dimtxt at version
 * ver (under wmu, which a read-only handle uses for nothing else: one
 * thread loads the new model, the others find it done). */
static cdx_result sync_locked(cdx_library *lib, uint64_t ver, const char *fp, const char *mdir,
                              const char *dimtxt, int *changed)
{
    cdx_result r;
    if (!strcmp(fp, lib->fingerprint)) {
        pthread_mutex_lock(&lib->rmu);
        lib->model_seen = ver;
        lib->model_seen_known = 1;
        pthread_mutex_unlock(&lib->rmu);
        return CDX_OK;
    }
    if (dim_of(dimtxt) != lib->dim)
        return cdx_error(CDX_ERR_MISMATCH, "library %s switched to model %.12s of dimension %s (was %d): "
                         "open it again (restart serve)", lib->dir, fp, dimtxt, lib->dim);
    if (lib->model) {   /* new queries pin the new model; those in flight keep theirs */
        cdx_model *nm = NULL;
        r = cdx_model_load(mdir, NULL, &nm);
        if (r) return cdx_error_prefix(r, "loading the library's new model");
        cdx_model_info mi;
        cdx_model_get_info(nm, &mi);
        if (strcmp(mi.fingerprint, fp) || mi.embed_dim != lib->dim) {
            cdx_model_free(nm);
            return cdx_error(CDX_ERR_MISMATCH, "%s is not model %.12s the library switched to", mdir, fp);
        }
        if ((r = gen_install(lib, nm))) return r;
    }
    pthread_mutex_lock(&lib->vmu);
    snprintf(lib->fingerprint, sizeof lib->fingerprint, "%.64s", fp);
    snprintf(lib->model_dir, sizeof lib->model_dir, "%s", mdir);
    if (source_unhex(lib->fingerprint, lib->model_tag) != 0) memset(lib->model_tag, 0, sizeof lib->model_tag);
    pthread_mutex_unlock(&lib->vmu);
    pthread_mutex_lock(&lib->rmu);
    lib->model_seen = ver;
    lib->model_seen_known = 1;
    pthread_mutex_unlock(&lib->rmu);
    if (changed) *changed = 1;
    return CDX_OK;
}

cdx_result cdx_library_sync_model(cdx_library *lib, int *changed)
{
    if (changed) *changed = 0;
    if (!lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_sync_model: NULL library");
    if (lib->writable) return CDX_OK;   /* it holds the writer lock: nobody else switches */
    uint64_t ver = 0;
    char fp[72] = "", mdir[4096] = "", dimtxt[32] = "";
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_version(lib->rcat, &ver);
    int same = !r && lib->model_seen_known && ver == lib->model_seen;
    if (!r && !same) {
        r = catalog_begin_read(lib->rcat);
        if (!r) r = meta_or_empty(lib->rcat, "model_fingerprint", fp, sizeof fp);
        if (!r) r = meta_or_empty(lib->rcat, "model_dir", mdir, sizeof mdir);
        if (!r) r = meta_or_empty(lib->rcat, "dim", dimtxt, sizeof dimtxt);
        catalog_rollback(lib->rcat);
    }
    pthread_mutex_unlock(&lib->rmu);
    if (r || same) return r;
    pthread_mutex_lock(&lib->wmu);
    r = sync_locked(lib, ver, fp, mdir, dimtxt, changed);
    pthread_mutex_unlock(&lib->wmu);
    return r;
}

/* ---------------------------------------------------------------- near-duplicates
 * (dupes branch; include/clipdex.h, docs/search.md "Near-duplicates").
 * 1. one read transaction: every image's slot, hash, size and date, and
 *    the vector file the slots refer to;
 * 2. writable handles hash the images that have none (rehash 2: all),
 *    from their files (checked against the catalogued sha256), committed
 *    in batches;
 * 3. the k nearest images of each content, DUPES_BATCH contents per
 *    cdx_library_search_vectors call (the one place an approximate index
 *    will serve), each hit confirmed by the hashes;
 * 4. search/dupes.c groups the confirmed pairs. */

#define DUPES_BATCH 256
#define DUPES_HASH_COMMIT 64
#define DUPES_MAX_PAIRS ((size_t)1 << 28)

cdx_dupes_params cdx_dupes_default_params(void)
{
    cdx_dupes_params p;
    memset(&p, 0, sizeof p);
    p.threshold = 0.9f;
    p.max_distance = 12;
    p.neighbours = 8;
    p.scan = CDX_SCAN_F32;   /* batched: see cdx_dupes_params.scan */
    p.rehash = 1;
    return p;
}

typedef struct dupes_scan {
    dupes_image *im;
    int64_t *slot;
    char (*sha)[65];
    char **path;          /* only for images to hash, else NULL */
    size_t n, cap;
    int all;              /* rehash every image */
    int oom;
    char vid[VEC_ID_HEX], vname[VEC_NAME_MAX];
} dupes_scan;

static void dupes_scan_free(dupes_scan *ds)
{
    for (size_t i = 0; i < ds->n; i++) free(ds->path[i]);
    free(ds->im);
    free(ds->slot);
    free(ds->sha);
    free(ds->path);
    memset(ds, 0, sizeof *ds);
}

static int dupes_row(void *user, const catalog_dupe_row *row)
{
    dupes_scan *ds = user;
    if (ds->n == ds->cap) {
        size_t nc = ds->cap ? ds->cap * 2 : 1024;
        dupes_image *im = realloc(ds->im, nc * sizeof *im);
        if (im) ds->im = im;
        int64_t *sl = realloc(ds->slot, nc * sizeof *sl);
        if (sl) ds->slot = sl;
        char(*sha)[65] = realloc(ds->sha, nc * sizeof *sha);
        if (sha) ds->sha = sha;
        char **pa = realloc(ds->path, nc * sizeof *pa);
        if (pa) ds->path = pa;
        if (!im || !sl || !sha || !pa) return ds->oom = 1;
        ds->cap = nc;
    }
    size_t i = ds->n;
    ds->im[i] = (dupes_image){row->id, row->phash, row->has_phash, row->pixels, row->date};
    ds->slot[i] = row->slot;
    snprintf(ds->sha[i], sizeof ds->sha[i], "%s", row->sha256);
    ds->path[i] = NULL;
    if ((ds->all || !row->has_phash) && !is_url(row->path) && !(ds->path[i] = strdup(row->path)))
        return ds->oom = 1;
    ds->n++;
    return 0;
}

static cdx_result dupes_read(cdx_library *lib, dupes_scan *ds)
{
    pthread_mutex_lock(&lib->rmu);
    cdx_result r = catalog_begin_read(lib->rcat);
    if (!r) r = vec_meta(lib->rcat, ds->vid, ds->vname);
    if (!r) r = catalog_each_dupe_row(lib->rcat, dupes_row, ds);
    catalog_rollback(lib->rcat);
    pthread_mutex_unlock(&lib->rmu);
    if (!r && ds->oom) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    return r;
}

/* Step 2: hash from the files, DUPES_HASH_COMMIT images at a time on the
 * library's threads (decoding dominates), each chunk committed at once. */
typedef struct hash_job {
    dupes_scan *ds;
    const size_t *idx;   /* images of this chunk */
} hash_job;

static void hash_one(void *arg, int item, int slot)
{
    (void)slot;
    hash_job *j = arg;
    size_t i = j->idx[item];
    void *data = NULL;
    size_t len = 0;
    uint8_t raw[32];
    char hex[65];
    uint64_t h;
    j->ds->im[i].has_phash = 0;
    if (source_read_file(j->ds->path[i], (uint64_t)1 << 30, &data, &len) == CDX_OK) {
        source_sha256(data, len, raw, hex);   /* the file must still be the catalogued content */
        if (!strcmp(hex, j->ds->sha[i]) && cdx_image_phash(data, len, NULL, &h) == CDX_OK) {
            j->ds->im[i].phash = h;
            j->ds->im[i].has_phash = 1;
        }
    }
    cdx_error_clear();   /* a file gone, changed or undecodable: left without a hash */
    free(data);
}

typedef struct sha_idx {
    const char *sha;
    size_t idx;
} sha_idx;

static int sha_idx_cmp(const void *a, const void *b)
{
    const sha_idx *x = a, *y = b;
    int c = strcmp(x->sha, y->sha);
    return c ? c : x->idx < y->idx ? -1 : x->idx > y->idx;
}

static cdx_result dupes_hash(cdx_library *lib, dupes_scan *ds, const cdx_dupes_params *p, cdx_dupes *d)
{
    /* one image per content is hashed; the others of its content copy it */
    size_t todo = 0, done = 0, nw = 0;
    size_t *idx = malloc((ds->n ? ds->n : 1) * sizeof *idx);
    sha_idx *want = malloc((ds->n ? ds->n : 1) * sizeof *want);
    if (!idx || !want) {
        free(idx);
        free(want);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ds->n; i++)
        if (ds->path[i]) want[nw++] = (sha_idx){ds->sha[i], i};
    qsort(want, nw, sizeof *want, sha_idx_cmp);
    for (size_t k = 0; k < nw; k++)
        if (!k || strcmp(want[k].sha, want[k - 1].sha)) idx[todo++] = want[k].idx;
    cdx_result r = CDX_OK;
    int threads = lib->n_threads > 0 ? lib->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    while (!r && done < todo && !(p->cancel && atomic_load(p->cancel))) {
        if (p->progress) p->progress(p->user, "hash", done, todo);
        size_t m = todo - done < DUPES_HASH_COMMIT ? todo - done : DUPES_HASH_COMMIT;
        hash_job job = {ds, idx + done};
        cdx_par_for((int)m, threads, hash_one, &job);
        pthread_mutex_lock(&lib->wmu);
        r = catalog_begin(lib->wcat);
        for (size_t k = 0; !r && k < m; k++) {
            size_t i = idx[done + k];
            if (!ds->im[i].has_phash) continue;
            r = catalog_content_set_phash(lib->wcat, ds->sha[i], ds->im[i].phash);
            d->hashed++;
        }
        if (!r) r = catalog_commit(lib->wcat);
        if (r) catalog_rollback(lib->wcat);
        pthread_mutex_unlock(&lib->wmu);
        done += m;
    }
    for (size_t k = 1; k < nw; k++)
        if (!strcmp(want[k].sha, want[k - 1].sha)) {
            ds->im[want[k].idx].phash = ds->im[want[k - 1].idx].phash;
            ds->im[want[k].idx].has_phash = ds->im[want[k - 1].idx].has_phash;
        }
    free(idx);
    free(want);
    if (!r && p->progress) p->progress(p->user, "hash", done, todo);
    return r;
}

typedef struct slot_idx {
    int64_t slot;
    size_t idx;
} slot_idx;

static int slot_idx_cmp(const void *a, const void *b)
{
    const slot_idx *x = a, *y = b;
    if (x->slot != y->slot) return x->slot < y->slot ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static size_t dupes_index_of(const dupes_scan *ds, int64_t id)
{
    size_t lo = 0, hi = ds->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ds->im[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < ds->n && ds->im[lo].id == id ? lo : SIZE_MAX;
}

typedef struct pair_buf {
    dupes_pair *v;
    size_t n, cap;
} pair_buf;

static cdx_result pair_push(pair_buf *b, size_t a, size_t c, float sim, int dist)
{
    if (b->n == b->cap) {
        if (b->cap >= DUPES_MAX_PAIRS)
            return cdx_error(CDX_ERR_TOO_LARGE, "more than %zu confirmed pairs: raise the threshold",
                             DUPES_MAX_PAIRS);
        size_t nc = b->cap ? b->cap * 2 : 4096;
        dupes_pair *v = realloc(b->v, nc * sizeof *v);
        if (!v) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        b->v = v;
        b->cap = nc;
    }
    b->v[b->n++] = (dupes_pair){(uint32_t)a, (uint32_t)c, sim, dist};
    return CDX_OK;
}

/* Step 3. */
static cdx_result dupes_search(cdx_library *lib, dupes_scan *ds, const cdx_dupes_params *p, pair_buf *pairs,
                               cdx_dupes *d)
{
    slot_idx *so = malloc((ds->n ? ds->n : 1) * sizeof *so);
    size_t *order = malloc((ds->n ? ds->n : 1) * sizeof *order);
    size_t k = p->neighbours + 1;
    float *q = malloc((size_t)DUPES_BATCH * (size_t)lib->dim * sizeof *q);
    cdx_hit *hits = malloc(DUPES_BATCH * k * sizeof *hits);
    size_t *nh = malloc(DUPES_BATCH * sizeof *nh), *first = malloc((DUPES_BATCH + 1) * sizeof *first);
    vecref *vr = NULL;
    cdx_rows src;
    int stale = 0;
    int64_t maxslot = -1;
    cdx_result r = CDX_OK;
    if (!so || !order || !q || !hits || !nh || !first) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !r && i < ds->n; i++) {
        so[i] = (slot_idx){ds->slot[i], i};
        if (ds->slot[i] < 0) r = cdx_error(CDX_ERR_FORMAT, "image %lld has a bad slot (run clipdex check)",
                                           (long long)ds->im[i].id);
        if (ds->slot[i] > maxslot) maxslot = ds->slot[i];
    }
    if (!r && ds->n) r = vectors_view(lib, ds->vid, ds->vname, (uint64_t)maxslot + 1, &vr, &src, &stale);
    if (r && stale) r = cdx_error(CDX_ERR_MISMATCH, "the library was compacted meanwhile; run dupes again");
    if (!r) qsort(so, ds->n, sizeof *so, slot_idx_cmp);
    for (size_t i = 0; !r && i < ds->n; i++) order[i] = so[i].idx;
    free(so);
    cdx_search_params sp = cdx_search_default_params();
    sp.k = k;
    sp.min_score = p->threshold;
    sp.scan = p->scan;
    uint64_t contents = 0, done = 0;
    for (size_t i = 0; i < ds->n; i++) contents += !i || ds->slot[order[i]] != ds->slot[order[i - 1]];
    for (size_t i = 0; !r && i < ds->n;) {
        if (p->cancel && atomic_load(p->cancel)) {
            d->cancelled = 1;
            break;
        }
        size_t nb = 0;
        while (i < ds->n && nb < DUPES_BATCH) {   /* one query per content */
            size_t j = i;
            first[nb] = i;
            memcpy(q + nb * (size_t)lib->dim, cdx_rows_at(&src, (uint64_t)ds->slot[order[i]]),
                   (size_t)lib->dim * sizeof *q);
            while (j < ds->n && ds->slot[order[j]] == ds->slot[order[i]]) {
                if (j > i) r = r ? r : pair_push(pairs, order[i], order[j], 1.0f, -1);   /* same bytes */
                j++;
            }
            i = j;
            nb++;
        }
        first[nb] = i;
        if (!r) r = cdx_library_search_vectors(lib, q, nb, &sp, hits, nh, NULL);
        for (size_t b = 0; !r && b < nb; b++) {
            size_t a = order[first[b]];
            for (size_t h = 0; !r && h < nh[b]; h++) {
                size_t c = dupes_index_of(ds, hits[b * k + h].id);
                if (c == SIZE_MAX || ds->slot[c] == ds->slot[a]) continue;   /* added since, or itself */
                d->candidates++;
                int dist = cdx_phash_distance(ds->im[a].phash, ds->im[c].phash);
                if (!ds->im[a].has_phash || !ds->im[c].has_phash || dist > p->max_distance) {
                    d->rejected++;
                    continue;
                }
                r = pair_push(pairs, a, c, hits[b * k + h].score, dist);
            }
        }
        done += nb;
        if (p->progress) p->progress(p->user, "search", done, contents);
    }
    vec_put(lib, vr);
    free(order);
    free(q);
    free(hits);
    free(nh);
    free(first);
    return r;
}

cdx_result cdx_library_dupes(cdx_library *lib, const cdx_dupes_params *params, cdx_dupes **out)
{
    if (!lib || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_dupes: NULL argument");
    *out = NULL;
    cdx_dupes_params p = params ? *params : cdx_dupes_default_params();
    if (!(p.threshold > 0.0f && p.threshold <= 1.0f))
        return cdx_error(CDX_ERR_INVALID_ARG, "threshold %g is out of range: a cosine similarity above 0 "
                         "and at most 1 (e.g. 0.9)", (double)p.threshold);
    if (p.max_distance < 0 || p.max_distance > 32)
        return cdx_error(CDX_ERR_INVALID_ARG, "max distance %d is out of range 0..32 (bits of 64)",
                         p.max_distance);
    if (p.neighbours < 1 || p.neighbours > CDX_DUPES_MAX_NEIGHBOURS)
        return cdx_error(CDX_ERR_INVALID_ARG, "neighbours %zu is out of range 1..%d", p.neighbours,
                         CDX_DUPES_MAX_NEIGHBOURS);
    if (!cdx_scan_name(p.scan)) return cdx_error(CDX_ERR_INVALID_ARG, "unknown scan %d", p.scan);
    if (p.rehash < 0 || p.rehash > 2) return cdx_error(CDX_ERR_INVALID_ARG, "rehash must be 0, 1 or 2");
    double t0 = cdx_now();
    cdx_dupes tmp;
    memset(&tmp, 0, sizeof tmp);
    dupes_scan ds;
    memset(&ds, 0, sizeof ds);
    ds.all = p.rehash == 2 && lib->writable;
    pair_buf pairs = {NULL, 0, 0};
    cdx_result r = dupes_read(lib, &ds);
    if (!r && lib->writable && p.rehash) r = dupes_hash(lib, &ds, &p, &tmp);
    if (!r) r = dupes_search(lib, &ds, &p, &pairs, &tmp);
    cdx_dupes *d = NULL;
    if (!r) r = dupes_group(ds.im, ds.n, pairs.v, pairs.n, &d);
    if (!r) {
        d->images = ds.n;
        for (size_t i = 0; i < ds.n; i++) d->unhashed += !ds.im[i].has_phash;
        d->hashed = tmp.hashed;
        d->candidates = tmp.candidates;
        d->rejected = tmp.rejected;
        d->cancelled = tmp.cancelled;
        d->seconds = cdx_now() - t0;
        *out = d;
    }
    free(pairs.v);
    dupes_scan_free(&ds);
    return r;
}
