/*
 * lib_codes.h - the library's companion code files (store/codes.h) kept in
 * step with its vector file, and the compressed searches over them
 * (search/qscan.h).  Used only by library.c.
 *
 * Invariants: a snapshot handed out covers exactly the rows of the vector
 * view it was obtained with, made from the vector file with the given file
 * id; anything else on disk (missing, damaged header, other file id, more
 * rows) is rebuilt, fewer rows are appended.  Updates hold a process mutex
 * and an exclusive flock on DIR/codes.lock (other processes); snapshots are
 * refcounted so a search keeps its mapping while another thread updates.
 *
 * Workload: one update per indexing run or per first search after one; a
 * snapshot lookup (mutex + compare) per search.
 */
#ifndef CDX_LIBRARY_LIB_CODES_H
#define CDX_LIBRARY_LIB_CODES_H

#include "clipdex.h"
#include "common/rows.h"
#include "search/topk.h"

#include <stdint.h>

#define LIB_CODES_ID_BYTES 16

typedef struct lib_codes lib_codes;

cdx_result lib_codes_new(const char *dir, lib_codes **out);
void lib_codes_free(lib_codes *lc);

/* Bring the companion of scan (CDX_SCAN_INT8/BIT) up to date with src;
 * verify: also read it all and rebuild it when its data checksum fails
 * (searches do not verify: damaged codes cost recall, never wrong scores). */
cdx_result lib_codes_update(lib_codes *lc, int scan, const cdx_rows *src,
                            const uint8_t fid[LIB_CODES_ID_BYTES], int verify);

/* Search one query over the companion of scan (updated first when behind
 * src); tp as for topk_search; rescore 0 = the default for the scan. */
cdx_result lib_codes_search(lib_codes *lc, int scan, size_t rescore, const cdx_rows *src,
                            const uint8_t fid[LIB_CODES_ID_BYTES], const float *query,
                            const topk_params *tp, topk_hit *hits, size_t *n_hits);

/* cdx_library_codes_info for a vector file of `rows` rows and id fid. */
cdx_result lib_codes_info(lib_codes *lc, int scan, uint64_t rows,
                          const uint8_t fid[LIB_CODES_ID_BYTES], int verify, cdx_codes_info *info);

/* Rows encoded per write when building (default 2^20; 0 = default): bounds
 * the memory of a build; tests make it small to cover chunked builds. */
void lib_codes_set_chunk_rows(lib_codes *lc, uint64_t rows);

/* 1 when the companion file of scan exists (refreshed after indexing). */
int lib_codes_exists(lib_codes *lc, int scan);

#endif
