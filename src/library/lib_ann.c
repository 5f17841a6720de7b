/*
 * lib_ann.c - the library's approximate index (see lib_ann.h).
 *
 * The in-memory copy `cur` belongs to one vector file id.  It is what the
 * file held when this handle last loaded, built or extended it; `ino` and
 * `bytes` identify that state of the file, so an update that finds the
 * file changed by another process (a `check` that rebuilt it, another
 * handle that appended) reads it again instead of appending after bytes it
 * never saw.  Rebuilds write ann.cdxi.tmp and rename it (ann_file.h); an
 * append is one checksummed segment: a crash leaves the old file or a torn
 * tail, which the next load drops.
 */
#include "library/lib_ann.h"
#include "common/error.h"
#include "common/util.h"
#include "search/ann_file.h"
#include "search/ann_ivf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRAIN_GROWTH 8           /* new centroids past 8x the trained rows */
#define RELOAD_MIN_ROWS 50000      /* searches reload a copy this far behind (or 1/4) */
#define WIDEN_MAX_SHARE 0.5        /* widened probes past half the lists: exact */
#define LARGE_ROWS 1000000         /* from here, float32 rows are read ahead (ann_search_params.prefetch) */

struct lib_ann {
    char *path, *lock_path;
    int dim;
    uint64_t min_rows;
    pthread_mutex_t umu;           /* updates and loads */
    pthread_rwlock_t rw;           /* cur and its fields */
    ann_ivf *cur;
    uint8_t fid[LIB_ANN_ID_BYTES]; /* the vector file cur indexes */
    uint64_t trained;              /* rows its centroids were trained for */
    uint64_t bytes;                /* end of its valid prefix in the file */
    ino_t ino;                     /* the file it came from */
    /* searches' load attempts (under umu): the file id and rows of the last */
    uint8_t tried_fid[LIB_ANN_ID_BYTES];
    uint64_t tried_rows;
};

const char *cdx_ann_state_str(cdx_ann_state s)
{
    switch (s) {
    case CDX_ANN_UNUSED: return "unused";
    case CDX_ANN_OK: return "ok";
    case CDX_ANN_MISSING: return "missing";
    case CDX_ANN_STALE: return "stale";
    case CDX_ANN_DAMAGED: return "damaged";
    case CDX_ANN_BEHIND: return "behind";
    }
    return "?";
}

cdx_result lib_ann_new(const char *dir, int dim, uint64_t min_rows, lib_ann **out)
{
    lib_ann *la = calloc(1, sizeof *la);
    if (!la) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&la->umu, NULL);
    pthread_rwlock_init(&la->rw, NULL);
    la->dim = dim;
    la->min_rows = min_rows;
    la->path = cdx_path_join(dir, "ann.cdxi");
    la->lock_path = cdx_path_join(dir, "ann.lock");
    if (!la->path || !la->lock_path) {
        lib_ann_free(la);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    *out = la;
    return CDX_OK;
}

void lib_ann_free(lib_ann *la)
{
    if (!la) return;
    ann_ivf_free(la->cur);
    pthread_rwlock_destroy(&la->rw);
    pthread_mutex_destroy(&la->umu);
    free(la->path);
    free(la->lock_path);
    free(la);
}

uint64_t lib_ann_min_rows(const lib_ann *la) { return la->min_rows; }

/* A loaded or built index with what identifies its file state. */
typedef struct ann_state {
    ann_ivf *ix;
    uint64_t trained, bytes;
    ino_t ino;
} ann_state;

static int file_now(const lib_ann *la, ino_t *ino, uint64_t *size)
{
    struct stat st;
    if (stat(la->path, &st) != 0) return 0;
    *ino = st.st_ino;
    *size = (uint64_t)st.st_size;
    return 1;
}

/* Read the file and judge it against `rows` vectors of file fid.  L->ix is
 * set when the index is usable (this vector file, centroids intact, at most
 * `rows` rows), also when it is damaged only at its tail or stale by growth
 * (a rebuild is due but it still answers). */
static cdx_ann_state load(lib_ann *la, uint64_t rows, const uint8_t *fid, ann_state *L)
{
    ann_file_header h;
    ann_file_report rep;
    memset(L, 0, sizeof *L);
    uint64_t size;
    int there = file_now(la, &L->ino, &size);
    cdx_result r = ann_file_load(la->path, la->dim, &h, &L->ix, &rep);
    cdx_error_clear();
    if (r == CDX_ERR_NOT_FOUND || (r && !there)) return CDX_ANN_MISSING;
    if (r) return CDX_ANN_DAMAGED;
    L->bytes = rep.valid_bytes;
    L->trained = h.trained_rows;
    if (memcmp(fid, h.vec_id, LIB_ANN_ID_BYTES) || rep.rows > rows) {   /* another vector file */
        ann_ivf_free(L->ix);
        L->ix = NULL;
        return CDX_ANN_STALE;
    }
    if (rows > h.trained_rows * RETRAIN_GROWTH) return CDX_ANN_STALE;
    if (rep.tail_dropped) return CDX_ANN_DAMAGED;   /* the intact prefix is kept and extended */
    return rep.rows < rows ? CDX_ANN_BEHIND : CDX_ANN_OK;
}

/* Put L in place of cur (under umu; frees the old one unless it is L's). */
static void install(lib_ann *la, const ann_state *L, const uint8_t *fid)
{
    pthread_rwlock_wrlock(&la->rw);
    if (la->cur != L->ix) ann_ivf_free(la->cur);
    la->cur = L->ix;
    memcpy(la->fid, fid, LIB_ANN_ID_BYTES);
    la->trained = L->trained;
    la->bytes = L->bytes;
    la->ino = L->ino;
    pthread_rwlock_unlock(&la->rw);
}

static size_t seg_rows(uint64_t first, uint64_t rows)
{
    return rows - first < ANN_FILE_SEGMENT ? (size_t)(rows - first) : ANN_FILE_SEGMENT;
}

/* Train on rows [0, rows), write the whole file; L receives the index. */
static cdx_result build(lib_ann *la, const cdx_rows *src, uint64_t rows, const uint8_t *fid,
                        cdx_cancel_flag *cancel, ann_state *L)
{
    memset(L, 0, sizeof *L);
    ann_ivf *ix = NULL;
    ann_file_writer *w = NULL;
    ann_file_header h;
    memset(&h, 0, sizeof h);
    h.dim = la->dim;
    h.trained_rows = rows;
    memcpy(h.vec_id, fid, LIB_ANN_ID_BYTES);
    cdx_result r = ann_ivf_train(src, rows, NULL, &ix);
    if (!r) {
        h.nlist = ann_ivf_nlist(ix);
        r = ann_file_create(la->path, &h, ix, &w);
    }
    for (uint64_t first = 0; !r && first < rows; first += ANN_FILE_SEGMENT) {
        if (cancel && *cancel) {
            r = cdx_error(CDX_ERR_IO, "building the approximate index: cancelled");
            break;
        }
        ann_segment seg;
        if ((r = ann_ivf_encode(ix, src, first, seg_rows(first, rows), &seg))) break;
        r = ann_file_write_segment(w, &seg);
        if (!r) r = ann_ivf_insert(ix, &seg);
        ann_segment_free(&seg);
    }
    if (r) {
        ann_file_abort(w);
        ann_ivf_free(ix);
        return r;
    }
    if ((r = ann_file_commit(w))) {
        ann_ivf_free(ix);
        return r;
    }
    L->ix = ix;
    L->trained = rows;
    if (!file_now(la, &L->ino, &L->bytes)) {
        ann_ivf_free(ix);
        L->ix = NULL;
        return cdx_error(CDX_ERR_IO, "%s vanished right after it was written", la->path);
    }
    return CDX_OK;
}

/* Append rows [count, rows) to the file and to L->ix, which may be cur
 * (searches read it: inserts take the write lock). */
static cdx_result extend(lib_ann *la, ann_state *L, const cdx_rows *src, uint64_t rows)
{
    cdx_result r = CDX_OK;
    while (!r && ann_ivf_count(L->ix) < rows) {
        uint64_t first = ann_ivf_count(L->ix);
        ann_segment seg;
        if ((r = ann_ivf_encode(L->ix, src, first, seg_rows(first, rows), &seg))) break;
        r = ann_file_append(la->path, L->bytes, &seg, la->dim, &L->bytes);
        if (!r) {
            pthread_rwlock_wrlock(&la->rw);
            r = ann_ivf_insert(L->ix, &seg);
            if (la->cur == L->ix) la->bytes = L->bytes;
            pthread_rwlock_unlock(&la->rw);
        }
        ann_segment_free(&seg);
    }
    return r;
}

/* Under umu and the flock. */
static cdx_result update_locked(lib_ann *la, const cdx_rows *src, const uint8_t *fid, int verify,
                                cdx_cancel_flag *cancel, cdx_ann_state *found)
{
    uint64_t rows = src->count;
    ann_state L;
    memset(&L, 0, sizeof L);
    cdx_ann_state st = CDX_ANN_MISSING;
    ino_t ino;
    uint64_t size;
    /* the copy in memory, when it is still exactly what the file holds */
    if (!verify && la->cur && !memcmp(la->fid, fid, LIB_ANN_ID_BYTES) && file_now(la, &ino, &size) &&
        ino == la->ino && size == la->bytes) {
        L = (ann_state){la->cur, la->trained, la->bytes, la->ino};
        st = ann_ivf_count(L.ix) < rows ? CDX_ANN_BEHIND : CDX_ANN_OK;
        if (rows > L.trained * RETRAIN_GROWTH) st = CDX_ANN_STALE;
    } else {
        st = load(la, rows, fid, &L);
    }
    if (found) *found = st;
    cdx_result r = CDX_OK;
    if (st == CDX_ANN_MISSING || st == CDX_ANN_STALE || !L.ix) {
        if (L.ix != la->cur) ann_ivf_free(L.ix);
        r = build(la, src, rows, fid, cancel, &L);
    }
    if (!r) r = extend(la, &L, src, rows);
    if (!r) install(la, &L, fid);
    else if (L.ix != la->cur) ann_ivf_free(L.ix);
    return r;
}

cdx_result lib_ann_update(lib_ann *la, const cdx_rows *src, const uint8_t fid[LIB_ANN_ID_BYTES],
                          int verify, uint64_t lazy, cdx_cancel_flag *cancel, cdx_ann_state *found,
                          uint64_t *rows)
{
    if (found) *found = CDX_ANN_UNUSED;
    if (rows) *rows = 0;
    if (src->count < la->min_rows || src->count > ANN_IVF_MAX_ROWS || src->dim != la->dim) return CDX_OK;
    pthread_mutex_lock(&la->umu);
    cdx_result r = CDX_OK;
    if (!verify && la->cur && !memcmp(la->fid, fid, LIB_ANN_ID_BYTES) &&
        ann_ivf_count(la->cur) + lazy >= src->count) {   /* current enough: no file access */
        if (found) *found = CDX_ANN_OK;
        if (rows) *rows = ann_ivf_count(la->cur);
        pthread_mutex_unlock(&la->umu);
        return CDX_OK;
    }
    int lfd = open(la->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) {
        r = cdx_error(CDX_ERR_IO, "%s: %s (the approximate index needs a writable library directory)",
                      la->lock_path, strerror(errno));
    } else if (flock(lfd, LOCK_EX) != 0) {
        r = cdx_error(CDX_ERR_IO, "%s: flock: %s", la->lock_path, strerror(errno));
    } else {
        r = update_locked(la, src, fid, verify, cancel, found);
    }
    if (lfd >= 0) close(lfd);   /* releases the flock */
    if (!r && rows) {
        pthread_rwlock_rdlock(&la->rw);
        *rows = la->cur ? ann_ivf_count(la->cur) : 0;
        pthread_rwlock_unlock(&la->rw);
    }
    pthread_mutex_unlock(&la->umu);
    return r;
}

/* Searches load the file on first use for a vector file, and again once
 * the copy is far behind src (another process extends it); a failed
 * attempt is not repeated until as many rows were added.  Never waits for
 * an update: the search goes on with what is installed (or exactly). */
static void maybe_load(lib_ann *la, const cdx_rows *src, const uint8_t *fid)
{
    pthread_rwlock_rdlock(&la->rw);
    int same = la->cur && !memcmp(la->fid, fid, LIB_ANN_ID_BYTES);
    uint64_t have = same ? ann_ivf_count(la->cur) : 0;
    pthread_rwlock_unlock(&la->rw);
    if (same && have >= src->count) return;
    if (pthread_mutex_trylock(&la->umu) != 0) return;   /* an update runs (maybe a long rebuild): not now */
    int tried = !memcmp(la->tried_fid, fid, LIB_ANN_ID_BYTES);
    uint64_t base = tried && la->tried_rows > have ? la->tried_rows : have;
    uint64_t slack = base / 4 > RELOAD_MIN_ROWS ? base / 4 : RELOAD_MIN_ROWS;
    if ((!same && !tried) || (src->count > base && src->count - base > slack)) {
        memcpy(la->tried_fid, fid, LIB_ANN_ID_BYTES);
        la->tried_rows = src->count;
        ann_state L;
        load(la, src->count, fid, &L);
        if (L.ix && ann_ivf_count(L.ix) > have) install(la, &L, fid);
        else ann_ivf_free(L.ix);
    }
    pthread_mutex_unlock(&la->umu);
}

/* Merge two ordered hit lists into out (room for k); returns the count. */
static size_t merge_hits(const topk_hit *a, size_t na, const topk_hit *b, size_t nb, topk_hit *out, size_t k)
{
    size_t i = 0, j = 0, n = 0;
    while (n < k && (i < na || j < nb)) {
        if (j >= nb || (i < na && topk_hit_better(&a[i], &b[j]))) out[n++] = a[i++];
        else out[n++] = b[j++];
    }
    return n;
}

/* Exact scan of the allowed slots >= covered (rows the index does not hold
 * yet), merged into hits (*n of tp->k). */
static cdx_result scan_tail(const cdx_rows *src, uint64_t covered, const float *q, const topk_params *tp,
                            topk_hit *hits, size_t *n)
{
    uint64_t nbits = tp->allow ? tp->allow_nbits : src->count;
    if (nbits > src->count) nbits = src->count;
    if (covered >= nbits) return CDX_OK;
    size_t words = (size_t)((nbits + 63) / 64);
    uint64_t *bits = calloc(words, sizeof *bits);
    topk_hit *t = malloc(tp->k * sizeof *t), *m = malloc(tp->k * sizeof *m);
    cdx_result r = bits && t && m ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!r) {
        for (uint64_t w = covered / 64; w < words; w++) bits[w] = tp->allow ? tp->allow[w] : ~0ull;
        if (covered % 64) bits[covered / 64] &= ~0ull << (covered % 64);
        topk_params tt = *tp;
        tt.allow = bits;
        tt.allow_nbits = nbits;
        tt.counts = NULL;
        tt.weight = NULL;
        size_t nt = 0;
        r = topk_search(src, q, 1, &tt, t, &nt);
        if (!r) {
            *n = merge_hits(hits, *n, t, nt, m, tp->k);
            memcpy(hits, m, *n * sizeof *hits);
        }
    }
    free(bits);
    free(t);
    free(m);
    return r;
}

cdx_result lib_ann_search(lib_ann *la, const cdx_rows *src, const uint8_t fid[LIB_ANN_ID_BYTES],
                          const float *query, const topk_params *tp, int probes, double keep,
                          topk_hit *hits, size_t *n_hits, int *probes_used)
{
    *probes_used = 0;
    if (src->count < la->min_rows || !tp->k) return CDX_OK;
    maybe_load(la, src, fid);
    pthread_rwlock_rdlock(&la->rw);
    ann_ivf *ix = la->cur;
    if (!ix || memcmp(la->fid, fid, LIB_ANN_ID_BYTES) || ann_ivf_dim(ix) != src->dim) {
        pthread_rwlock_unlock(&la->rw);
        return CDX_OK;
    }
    int nl = ann_ivf_nlist(ix);
    double want = probes > 0 ? probes : ann_ivf_default_probes(nl);
    if (keep < 1.0) want /= keep > 1e-9 ? keep : 1e-9;   /* a filter: as many allowed codes */
    if (want > nl * WIDEN_MAX_SHARE && keep < 1.0) {         /* most lists: exact is as cheap */
        pthread_rwlock_unlock(&la->rw);
        return CDX_OK;
    }
    int P = want > nl ? nl : (int)want;
    ann_search_params ap = ann_default_search_params();
    ap.k = tp->k;
    ap.probes = P;
    ap.min_score = tp->min_score;
    ap.allow = tp->allow;
    ap.allow_nbits = tp->allow ? tp->allow_nbits : src->count;
    if (ap.allow_nbits > src->count) ap.allow_nbits = src->count;
    ap.n_threads = tp->n_threads;
    if (src->count >= LARGE_ROWS) {
        /* the vector file may not fit in memory beside the index: re-score
         * the int8 top 3k only, its rows read ahead together (the same
         * recall at 10M; 100 rows read one fault at a time cost ~90 ms) */
        ap.rescore = tp->k * 3 > 30 ? tp->k * 3 : 30;
        ap.prefetch = 1;
    }
    cdx_result r = ann_ivf_search(ix, src, query, &ap, hits, n_hits, NULL);
    uint64_t covered = ann_ivf_count(ix);
    pthread_rwlock_unlock(&la->rw);
    if (!r) r = scan_tail(src, covered, query, tp, hits, n_hits);
    if (!r) *probes_used = P;
    return r;
}
