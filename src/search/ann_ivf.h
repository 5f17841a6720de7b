/*
 * ann_ivf.h - the approximate index: an inverted file (IVF) of int8 codes
 * whose candidates are re-scored exactly in float32.
 *
 * Structure: nlist unit-length centroids (spherical k-means on a sample of
 * the rows); every row belongs to the list of its most similar centroid and
 * is stored there as an int8 code (round(x / s), s = max|x| / 127, one float
 * scale per row) with its slot.  A query scores the centroids, scans the
 * `probes` best lists with an integer kernel (query quantised to int8 the
 * same way), keeps the best `rerank` candidates by approximate score and
 * re-scores them from the float32 rows (common/rows.h): returned scores are
 * exact, only the candidate set is approximate.  Scans of >= 64k codes
 * first estimate every probed row from a 1-bit sign code of its residual
 * (derived at insert, never stored; scanned 32 rows at a time with table
 * look-ups, see ann_ivf.c) and pass only the best `bits_keep` to the int8
 * kernel.
 *
 * Invariants: the index covers slots 0..count-1 of one vector file, added in
 * slot order (ann_ivf_encode / ann_ivf_insert take the next slots); slots
 * are < 2^32.  Deleted slots stay in the lists; searches skip every slot
 * the allow bitmap does not set.  The index never owns the float32 rows.
 *
 * Concurrency: searches only read; insert and free need the caller's
 * exclusive lock (library.c holds a rwlock).
 *
 * Workload: 10^4..10^7 rows of 64..1024 dims; nlist ~ sqrt(rows); one query
 * scans probes/nlist of the codes (sign codes: 1/32 of the float32 bytes,
 * or int8: 1/4) plus up to `rerank` float32 rows.
 */
#ifndef CDX_SEARCH_ANN_IVF_H
#define CDX_SEARCH_ANN_IVF_H

#include "clipdex.h"
#include "common/rows.h"
#include "search/topk.h"

#include <stddef.h>
#include <stdint.h>

#define ANN_IVF_MAX_LISTS 65536
#define ANN_IVF_MAX_ROWS 0xffffffffull

typedef struct ann_ivf ann_ivf;

typedef struct ann_ivf_train_params {
    int nlist;          /* 0 = automatic (about sqrt(rows), a power of two) */
    int iters;          /* k-means iterations (default 8) */
    size_t per_list;    /* training sample rows per list (default 40) */
    uint64_t seed;      /* sample and initial centroids (default 1) */
} ann_ivf_train_params;

ann_ivf_train_params ann_ivf_default_train_params(void);

/* The automatic list count for n rows. */
int ann_ivf_auto_nlist(uint64_t n);

/* Train centroids on rows [0, n) of src: an empty index (count 0). */
cdx_result ann_ivf_train(const cdx_rows *src, uint64_t n, const ann_ivf_train_params *p,
                         ann_ivf **out);
/* An empty index with the given unit-length centroids (nlist x dim). */
cdx_result ann_ivf_from_centroids(int dim, int nlist, const float *centroids, ann_ivf **out);
void ann_ivf_free(ann_ivf *ix);

int ann_ivf_dim(const ann_ivf *ix);
int ann_ivf_nlist(const ann_ivf *ix);
uint64_t ann_ivf_count(const ann_ivf *ix);
const float *ann_ivf_centroids(const ann_ivf *ix);
/* Bytes of memory held (codes, scales, slots, centroids). */
uint64_t ann_ivf_bytes(const ann_ivf *ix);

/* Bytes of one code row (dim rounded up to 32). */
size_t ann_ivf_code_bytes(int dim);

/* Consecutive rows in their encoded form, as persisted (store/annfile). */
typedef struct ann_segment {
    uint64_t first;      /* slot of the first row */
    size_t n;
    uint32_t *lists;     /* n list numbers */
    float *scales;       /* n scales */
    int8_t *codes;       /* n * ann_ivf_code_bytes(dim) */
} ann_segment;

cdx_result ann_segment_alloc(ann_segment *seg, size_t n, int dim);
void ann_segment_free(ann_segment *seg);

/* Encode rows [first, first+n) of src (assign each to its list). */
cdx_result ann_ivf_encode(const ann_ivf *ix, const cdx_rows *src, uint64_t first, size_t n,
                          ann_segment *seg);
/* Add an encoded segment; seg->first must equal ann_ivf_count(). */
cdx_result ann_ivf_insert(ann_ivf *ix, const ann_segment *seg);
/* Reserve room for `extra` more rows in each list (exact sizing on load). */
cdx_result ann_ivf_reserve(ann_ivf *ix, const uint64_t *extra);

typedef struct ann_search_params {
    size_t k;                 /* results (offset included by the caller) */
    int probes;               /* lists scanned (clamped to 1..nlist) */
    size_t rerank;            /* candidates re-scored (>= k; 0 = default) */
    float min_score;          /* keep exact scores >= this */
    const uint64_t *allow;    /* allowed slots bitmap, NULL = all */
    uint64_t allow_nbits;
    int n_threads;            /* 0 = all cores; 1 = this thread only */
    int bits;                 /* sign-code first stage: 0 = when >= 256k codes are
                                 scanned, 1 = always, -1 = never */
    size_t bits_keep;         /* candidates it passes to the int8 stage (0 = 1/50 of
                                 the codes scanned, at least 8 * rerank; at least
                                 rerank when set) */
    size_t rescore;           /* re-score only the best `rescore` (>= k) candidates
                                 in float32 (0 = all `rerank`) */
    int prefetch;             /* madvise(WILLNEED) the float32 rows first (for a
                                 mapped file larger than memory) */
} ann_search_params;

ann_search_params ann_default_search_params(void);

/* Two-level assignment of encoded rows (indexes of >= 1024 lists): a row
 * is compared with the centroids of the `group_probes` (default 8) groups
 * of centroids most similar to it only; 0 compares it with every centroid
 * (exact, sqrt(nlist)/8 times the work).  Not persisted. */
void ann_ivf_set_group_probes(ann_ivf *ix, int group_probes);

/* Default probes for an index of nlist lists. */
int ann_ivf_default_probes(int nlist);

/* Approximate top-k of one unit query: hits (room for p->k) ordered as
 * topk.h orders them, with exact scores from src (which must cover the
 * index's slots).  *scanned (may be NULL) receives the codes scanned. */
cdx_result ann_ivf_search(const ann_ivf *ix, const cdx_rows *src, const float *query,
                          const ann_search_params *p, topk_hit *hits, size_t *n_hits,
                          uint64_t *scanned);

/* The int8 dot-product kernel (n bytes, a multiple of 32): reference and
 * the best for this CPU; both exact, so they must agree bit for bit. */
int32_t ann_i8dot_ref(const int8_t *a, const int8_t *b, size_t n);
int32_t ann_i8dot(const int8_t *a, const int8_t *b, size_t n);

/* The sign-code estimates of <query, row> for every row of one list, in
 * list order (slots, when not NULL, receives their slots), with the kernel of the current instruction-set level (for
 * tests: the levels must agree exactly, and the estimates must stay near
 * the true scores).  Returns the rows written to out, -1 on a bad list or
 * out of memory. */
int ann_ivf_sign_estimates(const ann_ivf *ix, const float *query, uint32_t list, float *out, uint64_t *slots);

#endif
