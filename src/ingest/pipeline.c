/*
 * pipeline.c - the index run (see pipeline.h for the thread split and the
 * invariants).
 *
 * Stages:
 *  1. (caller thread) walk the paths, read the URL list; every candidate
 *     whose path is catalogued with the same size and mtime (URLs: any
 *     catalogued URL) is "unchanged" and never opened.
 *  2. (workers) read the bytes (capped), sha256 them; a content the catalog
 *     already has is passed on without decoding (moved / duplicate);
 *     otherwise decode + preprocess into a pooled pixel buffer, read EXIF.
 *  3. (caller thread) collect batches, embed, vecfile_append (fdatasync),
 *     then one catalog transaction for the batch plus any pending
 *     catalog-only changes; then emit the events.
 * A content whose vector is already in the vecfile but no catalog row
 * refers to it (an orphan left by a crash between steps 3a and 3b) is
 * adopted: its slot is reused instead of embedding again.
 */
#include "ingest/pipeline.h"

#include "common/error.h"
#include "common/util.h"
#include "clip/model.h"
#include "image/decode.h"
#include "image/ocr.h"
#include "image/preprocess.h"
#include "ingest/source.h"
#include "ingest/walk.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <time.h>

#define URL_FILE_MAX ((size_t)64 << 20)
#define URL_MAX_LEN 8192
#define OPS_FLUSH 256            /* catalog-only changes per transaction */
#define COMMIT_INTERVAL_S 1.0    /* commit pending catalog-only changes at least this often */

/* ---- content key map: sha256 -> slot (catalog contents and orphans) ------- */

enum { KEY_EMPTY = 0, KEY_CATALOG, KEY_ORPHAN };

typedef struct keyent {
    uint8_t key[32];
    int64_t slot;
    int state;
} keyent;

typedef struct keymap {
    keyent *v;
    size_t n, cap;
    pthread_mutex_t mu;
} keymap;

static size_t keymap_pos(const keymap *m, const uint8_t key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);   /* sha256 bytes are uniformly distributed */
    size_t j = (size_t)h & (m->cap - 1);
    while (m->v[j].state != KEY_EMPTY && memcmp(m->v[j].key, key, 32)) j = (j + 1) & (m->cap - 1);
    return j;
}

/* Insert or overwrite (caller holds mu or is single-threaded). */
static cdx_result keymap_put(keymap *m, const uint8_t key[32], int64_t slot, int state)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 4096;
        keyent *old = m->v;
        size_t oc = m->cap;
        if (!(m->v = calloc(nc, sizeof *m->v))) {
            m->v = old;
            return cdx_error(CDX_ERR_NOMEM, "out of memory");
        }
        m->cap = nc;
        for (size_t i = 0; i < oc; i++)
            if (old[i].state != KEY_EMPTY) m->v[keymap_pos(m, old[i].key)] = old[i];
        free(old);
    }
    size_t j = keymap_pos(m, key);
    if (m->v[j].state == KEY_EMPTY) m->n++;
    memcpy(m->v[j].key, key, 32);
    m->v[j].slot = slot;
    m->v[j].state = state;
    return CDX_OK;
}

static int keymap_get(keymap *m, const uint8_t key[32], int64_t *slot)
{
    pthread_mutex_lock(&m->mu);
    int st = KEY_EMPTY;
    if (m->cap) {
        size_t j = keymap_pos(m, key);
        st = m->v[j].state;
        if (st != KEY_EMPTY && slot) *slot = m->v[j].slot;
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

/* ---- jobs and items ------------------------------------------------------ */

typedef struct job {
    const char *path;        /* absolute path or URL */
    int is_url;
    int64_t mtime;
    int64_t existing_id;     /* catalogued path whose size/mtime changed; 0 = new */
    char existing_sha[65];
} job;

typedef struct item {
    job *j;
    cdx_result status;
    int skip;                /* status set, but not an image by name or content */
    char reason[512];
    uint8_t raw[32];
    int known;               /* content already in the catalog: no pixels */
    float *pixels;           /* pooled buffer or NULL */
    cdx_image_record rec;    /* content facts (sha256, size, w, h, format, taken, camera) */
    char *meta_text;         /* embedded text and keyword list (malloc'd or NULL) */
    char *keywords;
    char *ocr_text;          /* (params.ocr) malloc'd text read, or NULL */
    int ocr_state;           /* 0 not read, 1 read, 2 skipped (no text-like regions) */
    uint64_t phash;          /* perceptual hash (valid when has_phash) */
    int has_phash;
    int64_t mtime;
    cdx_index_event_kind ev; /* filled when applied */
    int64_t id;
    int emit;
    struct item *next;
} item;

typedef struct run {
    ingest_target *t;
    const cdx_index_params *p;
    cdx_index_stats *st;
    keymap keys;
    job *jobs;
    size_t n_jobs;
    size_t next_job;         /* atomic */
    size_t pix_floats;       /* 3*S*S */
    int dim;

    pthread_mutex_t mu;      /* queue, pool, stop, active */
    pthread_cond_t cv_item;  /* an item was queued or a worker ended */
    pthread_cond_t cv_pool;  /* a buffer was returned or stop */
    item *head, *tail;
    float **pool;
    size_t n_pool;
    int stop;
    int active;

    double t0, last_progress;
} run;

static int is_cancelled(const cdx_index_params *p)
{
    return p->cancel && atomic_load_explicit(p->cancel, memory_order_relaxed);
}

static void emit(run *r, cdx_index_event_kind kind, const char *path, const char *reason,
                 int64_t id)
{
    r->st->seconds = cdx_now() - r->t0;
    r->st->images_per_s = r->st->seconds > 0 ? (double)r->st->added / r->st->seconds : 0;
    if (!r->p->callback) return;
    cdx_index_event ev = {kind, path, reason, id, r->st};
    r->p->callback(r->p->user, &ev);
}

static void progress(run *r, int force)
{
    double now = cdx_now();
    if (!force && now - r->last_progress < 0.5) return;
    r->last_progress = now;
    emit(r, CDX_INDEX_EVENT_PROGRESS, NULL, NULL, 0);
}

static void fail_path(run *r, const char *path, const char *reason)
{
    r->st->failed++;
    emit(r, CDX_INDEX_EVENT_FAILED, path, reason, 0);
}

/* An item that did not become an image: skipped (a README.md or a CSV in a
 * photo folder: not an image by name nor by content) or failed. */
static void item_not_indexed(run *r, const item *it)
{
    if (!it->skip) {
        fail_path(r, it->j->path, it->reason);
        return;
    }
    r->st->skipped++;
    emit(r, CDX_INDEX_EVENT_SKIPPED, it->j->path, it->reason, 0);
}

static void pool_put(run *r, float *buf)
{
    if (!buf) return;
    pthread_mutex_lock(&r->mu);
    r->pool[r->n_pool++] = buf;
    pthread_cond_signal(&r->cv_pool);
    pthread_mutex_unlock(&r->mu);
}

static float *pool_get(run *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->n_pool && !r->stop) pthread_cond_wait(&r->cv_pool, &r->mu);
    float *b = r->stop ? NULL : r->pool[--r->n_pool];
    pthread_mutex_unlock(&r->mu);
    return b;
}

/* Keep the descriptive text of the file for the full-text index (failures
 * to allocate only lose the text, never the image). */
static void embedded_text(item *it, const cdx_image_exif *ex)
{
    if (ex->text[0]) {
        size_t n = strlen(ex->text);
        if ((it->meta_text = strdup(ex->text)) && n && it->meta_text[n - 1] == '\n')
            it->meta_text[n - 1] = '\0';
    }
    if (ex->keywords[0]) {
        const char *kw[256];
        size_t n = 0;
        char *copy = strdup(ex->keywords);
        for (char *p = copy, *nl; p && *p && n < 256; p = nl + 1) {
            if (!(nl = strchr(p, '\n'))) break;
            *nl = '\0';
            kw[n++] = p;
        }
        if (copy && catalog_tag_list(kw, n, &it->keywords) != CDX_OK) cdx_error_clear();
        free(copy);
    }
}

static void item_free(run *r, item *it)
{
    if (!it) return;
    pool_put(r, it->pixels);
    free(it->meta_text);
    free(it->keywords);
    free(it->ocr_text);
    free(it);
}

/* ---- workers ------------------------------------------------------------- */

static void set_reason(item *it, cdx_result code)
{
    it->status = code;
    snprintf(it->reason, sizeof it->reason, "%s", *cdx_last_error() ? cdx_last_error()
                                                                       : cdx_result_str(code));
}

/* OCR on the decoded pixels (params.ocr): a grey copy, the text-likeness
 * test, Tesseract when it passes.  Failures only lose the text (the
 * content stays unread, so `clipdex ocr` can try again). */
typedef struct ocr_job {
    ocr_engine **eng;        /* the worker's Tesseract, made at first use */
    int *eng_failed;
    const char *lang;
    item *it;
} ocr_job;

static void ocr_hook(const cdx_pixels *px, void *user)
{
    ocr_job *oj = user;
    ocr_grey g;
    if (!*oj->eng && !*oj->eng_failed && ocr_engine_new(oj->lang, oj->eng) != CDX_OK)
        *oj->eng_failed = 1;
    if (!*oj->eng || ocr_grey_from_pixels(px, &g) != CDX_OK) {
        cdx_error_clear();
        return;
    }
    if (!ocr_text_likely(&g)) oj->it->ocr_state = 2;
    else if (ocr_engine_read(*oj->eng, &g, &oj->it->ocr_text) == CDX_OK) oj->it->ocr_state = 1;
    else cdx_error_clear();
    ocr_grey_free(&g);
}

static void work_one(run *r, item *it, ocr_engine **eng, int *eng_failed)
{
    job *j = it->j;
    void *data = NULL;
    size_t len = 0;
    cdx_result e;
    it->mtime = j->mtime;
    if (j->is_url)
        e = source_fetch_url(j->path, r->p->url_max_bytes, r->p->url_timeout_s, &data, &len,
                             &it->mtime);
    else
        e = source_read_file(j->path, r->p->max_file_bytes, &data, &len);
    if (e) {
        set_reason(it, e);
        it->skip = !j->is_url && e == CDX_ERR_UNSUPPORTED && !source_image_name(j->path);
        return;
    }
    source_sha256(data, len, it->raw, it->rec.sha256);
    it->rec.size = len;
    if (keymap_get(&r->keys, it->raw, NULL) == KEY_CATALOG) {
        it->known = 1;
        free(data);
        return;
    }
    if (!(it->pixels = pool_get(r))) {   /* stopping */
        free(data);
        it->status = CDX_ERR_INTERNAL;
        snprintf(it->reason, sizeof it->reason, "cancelled");
        return;
    }
    cdx_image_meta meta;
    ocr_job oj = {eng, eng_failed, r->p->ocr_lang, it};
    e = cdx_image_preprocess_hook(data, len, &r->t->model->cfg.pre, &r->p->image, it->pixels,
                                  &meta, r->p->ocr ? ocr_hook : NULL, &oj);
    if (!e) {
        cdx_image_exif ex;
        it->rec.width = meta.width;
        it->rec.height = meta.height;
        snprintf(it->rec.format, sizeof it->rec.format, "%s", meta.format);
        it->phash = meta.phash;
        it->has_phash = meta.has_phash;
        if (cdx_image_read_exif(data, len, &ex) == CDX_OK) {
            it->rec.taken = ex.taken;
            snprintf(it->rec.camera, sizeof it->rec.camera, "%s", ex.camera);
            embedded_text(it, &ex);
        }
    } else {
        set_reason(it, e);
        pool_put(r, it->pixels);
        it->pixels = NULL;
    }
    free(data);
}

static void *worker(void *arg)
{
    run *r = arg;
    ocr_engine *eng = NULL;   /* one Tesseract per worker thread (params.ocr) */
    int eng_failed = 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
        size_t i = __atomic_fetch_add(&r->next_job, 1, __ATOMIC_RELAXED);
        if (i >= r->n_jobs) break;
        item *it = calloc(1, sizeof *it);
        if (!it) break;   /* out of memory: this worker stops; the others go on */
        it->j = &r->jobs[i];
        work_one(r, it, &eng, &eng_failed);
        pthread_mutex_lock(&r->mu);
        if (r->tail) r->tail->next = it;
        else r->head = it;
        r->tail = it;
        pthread_cond_signal(&r->cv_item);
        pthread_mutex_unlock(&r->mu);
    }
    ocr_engine_free(eng);
    pthread_mutex_lock(&r->mu);
    r->active--;
    pthread_cond_broadcast(&r->cv_item);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Next item, or NULL after a timeout (*done set when no more will come). */
static item *next_item(run *r, int *done)
{
    *done = 0;
    pthread_mutex_lock(&r->mu);
    if (!r->head && r->active > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv_item, &r->mu, &ts);
    }
    item *it = r->head;
    if (it) {
        r->head = it->next;
        if (!r->head) r->tail = NULL;
        it->next = NULL;
    } else if (r->active == 0) {
        *done = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return it;
}

/* ---- applying items to the catalog (inside a transaction) ---------------- */

typedef struct move_find {
    int64_t id;
} move_find;

static int find_gone(void *user, int64_t id, const char *path, int64_t mtime)
{
    (void)mtime;
    move_find *m = user;
    struct stat st;
    if (strncmp(path, "http://", 7) && strncmp(path, "https://", 8) && stat(path, &st) != 0 &&
        (errno == ENOENT || errno == ENOTDIR)) {
        m->id = id;
        return 1;
    }
    return 0;
}

/* Point the item's path at its (now catalogued) content.  kind_new is the
 * event for a fresh path (ADDED when it was embedded, else MOVED/DUPLICATE
 * decided here). */
static cdx_result apply_path(run *r, item *it, int embedded)
{
    catalog *c = r->t->cat;
    job *j = it->j;
    cdx_result e;
    if (j->existing_id) {   /* the file at a catalogued path changed */
        if (!strcmp(j->existing_sha, it->rec.sha256)) {
            /* same bytes, new mtime: just remember the mtime */
            if ((e = catalog_image_update(c, j->existing_id, j->path, it->rec.sha256, it->mtime)))
                return e;
            it->emit = 0;
            r->st->unchanged++;
            return CDX_OK;
        }
        if ((e = catalog_image_update(c, j->existing_id, j->path, it->rec.sha256, it->mtime)) ||
            (e = catalog_content_gc(c, j->existing_sha)))
            return e;
        it->id = j->existing_id;
        it->ev = embedded ? CDX_INDEX_EVENT_ADDED : CDX_INDEX_EVENT_DUPLICATE;
    } else if (!embedded) {
        move_find m = {0};
        if ((e = catalog_each_image_of_content(c, it->rec.sha256, find_gone, &m))) return e;
        if (m.id) {
            if ((e = catalog_image_update(c, m.id, j->path, it->rec.sha256, it->mtime))) return e;
            it->id = m.id;
            it->ev = CDX_INDEX_EVENT_MOVED;
        } else {
            if ((e = catalog_image_insert(c, j->path, it->rec.sha256, it->mtime, (int64_t)time(NULL),
                                          &it->id)))
                return e;
            it->ev = CDX_INDEX_EVENT_DUPLICATE;
        }
    } else {
        if ((e = catalog_image_insert(c, j->path, it->rec.sha256, it->mtime, (int64_t)time(NULL),
                                      &it->id)))
            return e;
        it->ev = CDX_INDEX_EVENT_ADDED;
    }
    it->emit = 1;
    return CDX_OK;
}

static void count_event(run *r, item *it)
{
    switch (it->ev) {
    case CDX_INDEX_EVENT_ADDED: r->st->added++; break;
    case CDX_INDEX_EVENT_MOVED: r->st->moved++; break;
    case CDX_INDEX_EVENT_DUPLICATE: r->st->duplicates++; break;
    default: break;
    }
}

typedef struct batch {
    item **emb;          /* to embed */
    size_t n_emb;
    item **ops;          /* known contents: catalog only */
    size_t n_ops, cap_ops;
    float *pixels;       /* contiguous batch input */
    float *vecs;
    uint8_t (*keys)[32];
    int64_t *slots;      /* per emb item: slot (adopted or appended), -1 = dup in batch */
    double last_commit;
} batch;

/* Embed, append, commit, emit.  On a fatal error (I/O, catalog) returns it;
 * per-item problems become FAILED events. */
static cdx_result flush(run *r, batch *b)
{
    if (!b->n_emb && !b->n_ops) return CDX_OK;
    cdx_result e = CDX_OK;
    size_t m = 0;   /* items actually embedded */
    size_t S = r->pix_floats;
    for (size_t i = 0; i < b->n_emb; i++) {
        item *it = b->emb[i];
        int64_t slot = -1;
        int st = keymap_get(&r->keys, it->raw, &slot);
        b->slots[i] = -2;   /* embed */
        if (st == KEY_ORPHAN) b->slots[i] = slot;   /* adopt */
        else if (st == KEY_CATALOG) b->slots[i] = -1;
        else
            for (size_t k = 0; k < i; k++)
                if (!memcmp(b->emb[k]->raw, it->raw, 32)) b->slots[i] = -1;   /* same bytes twice */
        if (b->slots[i] == -2) {
            memcpy(b->pixels + m * S, it->pixels, S * sizeof(float));
            memcpy(b->keys[m], it->raw, 32);
            m++;
        }
    }
    uint64_t first = 0;
    if (m) {
        e = cdx_encode_images(r->t->ctx, b->pixels, (int)m, b->vecs, 1);
        if (e) return cdx_error_prefix(e, "embedding a batch");
        e = vecfile_append(r->t->vf, b->vecs, (const uint8_t(*)[32])b->keys, m, &first);
        if (e) return e;
    }
    catalog *c = r->t->cat;
    if ((e = catalog_begin(c))) return e;
    size_t k = 0;
    for (size_t i = 0; i < b->n_emb && !e; i++) {
        item *it = b->emb[i];
        int64_t slot = b->slots[i] == -2 ? (int64_t)(first + k++) : b->slots[i];
        if (slot >= 0) {
            e = catalog_content_insert(c, &it->rec, slot);
            if (!e && (it->meta_text || it->keywords))
                e = catalog_content_set_text(c, it->rec.sha256, it->meta_text, it->keywords);
            if (!e && it->ocr_state)
                e = catalog_content_set_ocr_read(c, it->rec.sha256, it->ocr_text,
                                                 r->p->ocr_lang && *r->p->ocr_lang
                                                     ? r->p->ocr_lang : "eng",
                                                 it->ocr_state == 2);
            if (!e && it->has_phash) e = catalog_content_set_phash(c, it->rec.sha256, it->phash);
            if (!e) e = apply_path(r, it, 1);
        } else {
            e = apply_path(r, it, 0);
        }
    }
    for (size_t i = 0; i < b->n_ops && !e; i++) {
        int64_t slot;
        cdx_result s = catalog_content_slot(c, b->ops[i]->rec.sha256, &slot);
        if (s == CDX_ERR_NOT_FOUND) {   /* removed meanwhile (cannot happen: one writer) */
            b->ops[i]->status = CDX_ERR_INTERNAL;
            snprintf(b->ops[i]->reason, sizeof b->ops[i]->reason, "content vanished; index again");
            continue;
        }
        if (s) { e = s; break; }
        e = apply_path(r, b->ops[i], 0);
    }
    if (!e) e = catalog_commit(c);
    if (e) {
        catalog_rollback(c);
        return e;
    }
    /* Committed: publish the new contents and report. */
    pthread_mutex_lock(&r->keys.mu);
    k = 0;
    for (size_t i = 0; i < b->n_emb && !e; i++) {
        int64_t slot = b->slots[i] == -2 ? (int64_t)(first + k++) : b->slots[i];
        if (slot >= 0) e = keymap_put(&r->keys, b->emb[i]->raw, slot, KEY_CATALOG);
        if (slot >= 0 && b->emb[i]->ocr_state == 1) r->st->ocr_read++;
        if (slot >= 0 && b->emb[i]->ocr_state == 2) r->st->ocr_skipped++;
    }
    pthread_mutex_unlock(&r->keys.mu);
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? b->n_ops : b->n_emb;
        item **v = pass ? b->ops : b->emb;
        for (size_t i = 0; i < n; i++) {
            item *it = v[i];
            if (it->status) item_not_indexed(r, it);
            else if (it->emit) {
                count_event(r, it);
                emit(r, it->ev, it->j->path, NULL, it->id);
            }
            item_free(r, it);
        }
    }
    b->n_emb = b->n_ops = 0;
    b->last_commit = cdx_now();
    return e;
}

/* ---- stage 1: candidates ------------------------------------------------- */

static void walk_err(void *user, const char *path, const char *reason)
{
    fail_path(user, path, reason);
}

static cdx_result add_job(run *r, size_t *cap, const char *path, int is_url, uint64_t size,
                          int64_t mtime)
{
    cdx_image_record rec;
    cdx_result e = catalog_image_by_path(r->t->cat, path, &rec);
    if (e && e != CDX_ERR_NOT_FOUND) return e;
    r->st->found++;
    if (!e && (is_url || (rec.size == size && rec.mtime == mtime))) {
        r->st->unchanged++;
        return CDX_OK;
    }
    if (r->n_jobs == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        job *nv = realloc(r->jobs, nc * sizeof *nv);
        if (!nv) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        r->jobs = nv;
        *cap = nc;
    }
    job *j = &r->jobs[r->n_jobs++];
    memset(j, 0, sizeof *j);
    j->path = path;
    j->is_url = is_url;
    j->mtime = mtime;
    if (!e) {
        j->existing_id = rec.id;
        snprintf(j->existing_sha, sizeof j->existing_sha, "%s", rec.sha256);
    }
    return CDX_OK;
}

/* Split the URL file into lines in place; returns the URL pointers. */
static cdx_result read_urls(run *r, char *text, size_t len, size_t *cap)
{
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        *e = '\0';
        char *s = p;
        p = e + 1;
        while (*s == ' ' || *s == '\t') s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
        if (!n || s[0] == '#') continue;
        if (n > URL_MAX_LEN) {
            fail_path(r, "(url list)", "a line is longer than 8192 bytes");
            continue;
        }
        cdx_result er = add_job(r, cap, s, 1, 0, 0);
        if (er) return er;
    }
    return CDX_OK;
}

typedef struct prune_ctx {
    int64_t *ids;
    char **paths;
    size_t n, cap;
    int oom;
} prune_ctx;

static int prune_collect(void *user, int64_t id, const char *path, int64_t mtime)
{
    (void)mtime;
    prune_ctx *pc = user;
    struct stat st;
    if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return 0;
    if (pc->n == pc->cap) {
        size_t nc = pc->cap ? pc->cap * 2 : 256;
        int64_t *ni = realloc(pc->ids, nc * sizeof *ni);
        if (ni) pc->ids = ni;
        char **np = realloc(pc->paths, nc * sizeof *np);
        if (np) pc->paths = np;
        if (!ni || !np) { pc->oom = 1; return 1; }
        pc->cap = nc;
    }
    if (!(pc->paths[pc->n] = strdup(path))) { pc->oom = 1; return 1; }
    pc->ids[pc->n++] = id;
    return 0;
}

static cdx_result prune(run *r, const char *const *paths, int n_paths)
{
    prune_ctx pc = {0};
    cdx_result e = CDX_OK;
    for (int i = 0; i < n_paths && !e; i++) {
        char *abs = walk_abspath(paths[i]);
        size_t n = abs ? strlen(abs) : 0;
        char *dir = abs ? malloc(n + 2) : NULL;
        if (!dir) {
            free(abs);
            e = cdx_error(CDX_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(dir, n + 2, "%s%s", abs, n && abs[n - 1] == '/' ? "" : "/");
        cdx_image_record rec;
        if (catalog_image_by_path(r->t->cat, abs, &rec) == CDX_OK)
            prune_collect(&pc, rec.id, rec.path, rec.mtime);
        e = catalog_each_image(r->t->cat, dir, prune_collect, &pc);
        free(abs);
        free(dir);
    }
    if (!e && pc.oom) e = cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < pc.n && !e; i += OPS_FLUSH) {
        size_t hi = i + OPS_FLUSH < pc.n ? i + OPS_FLUSH : pc.n;
        if ((e = catalog_begin(r->t->cat))) break;
        for (size_t k = i; k < hi && !e; k++) {
            e = catalog_image_delete(r->t->cat, pc.ids[k]);
            if (e == CDX_ERR_NOT_FOUND) e = CDX_OK;   /* listed twice via overlapping roots */
        }
        if (!e) e = catalog_commit(r->t->cat);
        if (e) {
            catalog_rollback(r->t->cat);
            break;
        }
        for (size_t k = i; k < hi; k++) {
            r->st->removed++;
            emit(r, CDX_INDEX_EVENT_REMOVED, pc.paths[k], NULL, pc.ids[k]);
        }
    }
    for (size_t i = 0; i < pc.n; i++) free(pc.paths[i]);
    free(pc.paths);
    free(pc.ids);
    return e;
}

/* ---- key map setup: catalog contents + orphan slots ---------------------- */

typedef struct load_ctx {
    run *r;
    uint64_t *referenced;
    uint64_t count;
    cdx_result err;
} load_ctx;

static int load_content(void *user, const char *sha, int64_t slot)
{
    load_ctx *lc = user;
    uint8_t raw[32];
    if (source_unhex(sha, raw) != 0) return 0;   /* check reports it */
    if (slot >= 0 && (uint64_t)slot < lc->count)
        lc->referenced[(uint64_t)slot / 64] |= 1ull << ((uint64_t)slot % 64);
    lc->err = keymap_put(&lc->r->keys, raw, slot, KEY_CATALOG);
    return lc->err != CDX_OK;
}

static cdx_result load_keys(run *r)
{
    load_ctx lc = {r, NULL, vecfile_count(r->t->vf), CDX_OK};
    lc.referenced = calloc(lc.count / 64 + 1, sizeof(uint64_t));
    if (!lc.referenced) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result e = catalog_each_content(r->t->cat, load_content, &lc);
    if (!e) e = lc.err;
    for (uint64_t s = 0; s < lc.count && !e; s++) {
        if (lc.referenced[s / 64] >> (s % 64) & 1) continue;
        uint8_t key[32];
        if (vecfile_get(r->t->vf, s, NULL, key) != CDX_OK) continue;   /* damaged: never adopt */
        if (keymap_get(&r->keys, key, NULL) == KEY_EMPTY) e = keymap_put(&r->keys, key, (int64_t)s, KEY_ORPHAN);
    }
    free(lc.referenced);
    cdx_error_clear();
    return e;
}

/* ---- the run ------------------------------------------------------------- */

static cdx_result consume(run *r, batch *b, size_t bs)
{
    cdx_result e = CDX_OK;
    int done = 0;
    while (!done) {
        if (is_cancelled(r->p)) break;
        item *it = next_item(r, &done);
        if (it) {
            if (it->status) {
                item_not_indexed(r, it);
                item_free(r, it);
            } else if (it->known) {
                if (b->n_ops == b->cap_ops) {
                    size_t nc = b->cap_ops ? b->cap_ops * 2 : 64;
                    item **nv = realloc(b->ops, nc * sizeof *nv);
                    if (!nv) {
                        item_free(r, it);
                        return cdx_error(CDX_ERR_NOMEM, "out of memory");
                    }
                    b->ops = nv;
                    b->cap_ops = nc;
                }
                b->ops[b->n_ops++] = it;
            } else {
                b->emb[b->n_emb++] = it;
            }
        }
        int full = b->n_emb == bs || b->n_ops >= OPS_FLUSH;
        int stale = (b->n_ops || b->n_emb) && !it && cdx_now() - b->last_commit > COMMIT_INTERVAL_S &&
                    b->n_emb == 0;
        if (full || stale || done) {
            if ((e = flush(r, b))) return e;
        }
        progress(r, 0);
    }
    return flush(r, b);   /* cancelled: commit what is complete */
}

cdx_result ingest_run(ingest_target *t, const char *const *paths, int n_paths,
                      const cdx_index_params *p, cdx_index_stats *stats)
{
    run r;
    memset(&r, 0, sizeof r);
    memset(stats, 0, sizeof *stats);
    r.t = t;
    r.p = p;
    r.st = stats;
    r.t0 = r.last_progress = cdx_now();
    pthread_mutex_init(&r.mu, NULL);
    pthread_mutex_init(&r.keys.mu, NULL);
    pthread_cond_init(&r.cv_item, NULL);
    pthread_cond_init(&r.cv_pool, NULL);
    cdx_model_info mi;
    cdx_model_get_info(t->model, &mi);
    r.pix_floats = (size_t)3 * mi.image_size * mi.image_size;
    r.dim = mi.embed_dim;
    size_t bs = p->batch_size > 0 ? (size_t)p->batch_size : 32;
    int nw = t->n_decode > 0 ? t->n_decode : 1;

    walk_list wl = {0};
    char *urltext = NULL;
    batch b = {0};
    pthread_t *tids = NULL;
    int started = 0;
    size_t cap = 0;
    cdx_result e = load_keys(&r);

    /* 1. candidates */
    for (int i = 0; i < n_paths && !e; i++) {
        struct stat gs;   /* gone_ok: a vanished path is only pruned */
        if (p->gone_ok && lstat(paths[i], &gs) != 0 && (errno == ENOENT || errno == ENOTDIR)) continue;
        e = walk_path(paths[i], t->skip_dir, &wl, walk_err, &r, p->cancel);
    }
    for (size_t i = 0; i < wl.n && !e; i++)
        e = add_job(&r, &cap, wl.v[i].path, 0, wl.v[i].size, wl.v[i].mtime);
    if (!e && p->urls_file) {
        size_t len = 0;
        e = cdx_read_file(p->urls_file, URL_FILE_MAX, &urltext, &len);
        if (!e) e = read_urls(&r, urltext, len, &cap);
    }
    progress(&r, 1);

    /* 2+3. workers and the consumer */
    if (!e && r.n_jobs) {
        r.n_pool = 2 * bs + (size_t)nw;
        r.pool = calloc(r.n_pool, sizeof *r.pool);
        b.emb = calloc(bs, sizeof *b.emb);
        b.slots = calloc(bs, sizeof *b.slots);
        b.keys = calloc(bs, sizeof *b.keys);
        b.pixels = cdx_alloc_aligned(bs * r.pix_floats, sizeof(float));
        b.vecs = cdx_alloc_aligned(bs * (size_t)r.dim, sizeof(float));
        tids = calloc((size_t)nw, sizeof *tids);
        int ok = r.pool && b.emb && b.slots && b.keys && b.pixels && b.vecs && tids;
        for (size_t i = 0; ok && i < r.n_pool; i++)
            ok = (r.pool[i] = cdx_alloc_aligned(r.pix_floats, sizeof(float))) != NULL;
        if (!ok) e = cdx_error(CDX_ERR_NOMEM, "out of memory for the ingest buffers");
        b.last_commit = cdx_now();
        r.active = nw;
        for (int i = 0; i < nw && !e; i++) {
            if (pthread_create(&tids[i], NULL, worker, &r) != 0) {
                pthread_mutex_lock(&r.mu);
                r.active -= nw - i;
                pthread_mutex_unlock(&r.mu);
                if (i == 0) e = cdx_error(CDX_ERR_INTERNAL, "cannot start decode threads");
                break;
            }
            started++;
        }
        if (!e) e = consume(&r, &b, bs);
        pthread_mutex_lock(&r.mu);
        r.stop = 1;
        pthread_cond_broadcast(&r.cv_pool);
        pthread_mutex_unlock(&r.mu);
        for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
        /* discard anything decoded but not committed (cancel or error) */
        for (size_t i = 0; i < b.n_emb; i++) item_free(&r, b.emb[i]);
        for (size_t i = 0; i < b.n_ops; i++) item_free(&r, b.ops[i]);
        while (r.head) {
            item *it = r.head;
            r.head = it->next;
            item_free(&r, it);
        }
    }
    int cancelled = is_cancelled(p);
    if (!e && p->prune && !cancelled) e = prune(&r, paths, n_paths);
    progress(&r, 1);

    for (size_t i = 0; r.pool && i < r.n_pool; i++) cdx_free_aligned(r.pool[i]);
    free(r.pool);
    free(b.emb);
    free(b.ops);
    free(b.slots);
    free(b.keys);
    cdx_free_aligned(b.pixels);
    cdx_free_aligned(b.vecs);
    free(tids);
    free(r.jobs);
    free(urltext);
    walk_list_free(&wl);
    free(r.keys.v);
    pthread_mutex_destroy(&r.mu);
    pthread_mutex_destroy(&r.keys.mu);
    pthread_cond_destroy(&r.cv_item);
    pthread_cond_destroy(&r.cv_pool);
    stats->seconds = cdx_now() - r.t0;
    stats->images_per_s = stats->seconds > 0 ? (double)stats->added / stats->seconds : 0;
    return e;
}
