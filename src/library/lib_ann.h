/*
 * lib_ann.h - the library's approximate index (DIR/ann.cdxi, an IVF of int8
 * codes: search/ann_ivf.h, search/ann_file.h) kept in step with its vector
 * file, and the approximate search over it.  Used only by library.c.
 *
 * Invariants: the index is derived data, keyed to the vector file id like
 * the companion codes (lib_codes.h): a file made for another vector file
 * (compaction changed the id), damaged beyond its segments, or trained for
 * far fewer rows is rebuilt; one that covers fewer rows is extended.  A
 * search never depends on it being up to date: the slots it does not cover
 * are scanned exactly, and a search without a usable index is exact.
 * Updates hold a process mutex and an exclusive flock on DIR/ann.lock (any
 * process may build: the writer after index/import runs, `check` from a
 * read-only handle); the in-memory copy is read-locked by searches and
 * write-locked only to insert a segment or to replace it.
 *
 * Workload: one update per index/import run (an append of the new rows) or
 * per compaction (a rebuild); a read-lock and a compare per search.
 */
#ifndef CDX_LIBRARY_LIB_ANN_H
#define CDX_LIBRARY_LIB_ANN_H

#include "clipdex.h"
#include "common/rows.h"
#include "search/topk.h"

#include <stdint.h>

#define LIB_ANN_ID_BYTES 16

typedef struct lib_ann lib_ann;

/* min_rows: below it the index is neither built nor used. */
cdx_result lib_ann_new(const char *dir, int dim, uint64_t min_rows, lib_ann **out);
void lib_ann_free(lib_ann *la);

uint64_t lib_ann_min_rows(const lib_ann *la);

/* Bring the file and this handle's copy up to date with src (the vector
 * file fid).  verify: judge the file on disk (every checksum) even when the
 * copy in memory is current (check).  lazy: do nothing while the copy is
 * at most that many rows behind.  *found (may be NULL) receives the state
 * found; *rows (may be NULL) the rows covered afterwards.  Libraries below
 * min_rows: CDX_ANN_UNUSED, nothing done. */
cdx_result lib_ann_update(lib_ann *la, const cdx_rows *src, const uint8_t fid[LIB_ANN_ID_BYTES],
                          int verify, uint64_t lazy, cdx_cancel_flag *cancel, cdx_ann_state *found,
                          uint64_t *rows);

/* Approximate top-k of one query over the allowed slots of src (tp: k,
 * min_score, allow, allow_nbits, n_threads; no counts).  keep = the share
 * of the slots the filters allow (0..1): the probes are widened by 1/keep,
 * and when that would read most lists the exact scan is the better choice.
 * *probes_used = the lists scanned, or 0 when the index was not used (no
 * usable index, or exact is as cheap): the caller then scans exactly and
 * hits are untouched.  probes 0 = the default for the index. */
cdx_result lib_ann_search(lib_ann *la, const cdx_rows *src, const uint8_t fid[LIB_ANN_ID_BYTES],
                          const float *query, const topk_params *tp, int probes, double keep,
                          topk_hit *hits, size_t *n_hits, int *probes_used);

#endif
