/*
 * prepared.h - the engine cache: what a model load can reuse from earlier
 * loads instead of recomputing it (see prepared.c, docs/model-cache.md).
 *
 *  - fingerprints: the SHA-256 fingerprint of a weight file, keyed by the
 *    file's identity (device, inode, size, mtime, ctime) and the hash of
 *    config.json, so an unchanged model is not re-hashed on every open;
 *  - prepared towers: one tower's weights exactly as the engine computes
 *    with them (F32, Linear weights packed for cdx_gemm_packed()), keyed by
 *    fingerprint, precision, layout and instruction-set level, and
 *    memory-mapped read-only by later loads (no conversion; the page cache
 *    shares the pages between processes).
 *
 * Both are caches: every entry is validated before use, a damaged or stale
 * one is ignored (prepared files are deleted and rebuilt), and a cache dir
 * that cannot be created or written only costs the recomputation.
 */
#ifndef CDX_CLIP_PREPARED_H
#define CDX_CLIP_PREPARED_H

#include "clip/model.h"

#include <sys/stat.h>

/* The engine cache directory, malloc'd; NULL when none can be named:
 * $CLIPDEX_CACHE_DIR | $CLIPDEX_HOME/cache | $XDG_CACHE_HOME/clipdex |
 * $HOME/.cache/clipdex (relative values are ignored). */
char *cdx_engine_cache_dir(void);

/* hex SHA-256 of data (all zero digits if libcrypto fails) */
void cdx_sha256_hex(const void *data, size_t len, char out[65]);

/* ---- fingerprint cache */

/* The cached fingerprint of weights_path (whose stat is *st) together with
 * config.json hashing to cfg_sha.  CDX_ERR_NOT_FOUND on a miss (no entry,
 * another identity, unreadable); never an error message worth showing. */
cdx_result cdx_fpcache_get(const char *weights_path, const struct stat *st,
                           const char cfg_sha[65], char fp[65]);

/* Remember fp for this identity.  hash_started is the wall-clock time
 * (CLOCK_REALTIME seconds) at which reading the file for the hash began: an
 * entry is only stored when the file's mtime and ctime are safely older, so
 * a write in the same timestamp tick can never hide behind the entry.
 * Failures are ignored (the cache is an optimisation). */
void cdx_fpcache_put(const char *weights_path, const struct stat *st, const char cfg_sha[65],
                     const char fp[65], double hash_started);

/* ---- prepared towers (tower = CDX_TOWER_TEXT or CDX_TOWER_VISION) */

/* 0 when $CLIPDEX_PREPARED is "0" (no prepared files read or written). */
int cdx_prep_enabled(void);

/* 1 when towers are packed for cdx_gemm_packed() (AVX-512 available and
 * $CLIPDEX_PACK is not "0"). */
int cdx_prep_packed(void);

/* Map the prepared file of `tower` for m (fingerprint, cfg and shapes set)
 * and bind the tower's pointers into it.  CDX_ERR_NOT_FOUND: no file;
 * CDX_ERR_FORMAT: the file was damaged or stale (it has been deleted). */
cdx_result cdx_prep_load(cdx_model *m, int tower);

/* Write `tower` of src (fully built, packed as cdx_prep_packed() says) as
 * the prepared file for fingerprint fp, atomically (temporary + rename). */
cdx_result cdx_prep_save(const cdx_model *src, int tower, const char *fp);

/* Validate the prepared file of `tower` without binding it: CDX_OK,
 * CDX_ERR_NOT_FOUND, or CDX_ERR_FORMAT (damaged; deleted). */
cdx_result cdx_prep_check(const cdx_model *m, int tower);

/* The int8 or bf16 copies of `tower`'s block Linears (prec
 * CDX_PRECISION_INT8: each cdx_linear.q8 allocated, its w, scale, colsum and
 * inv_smooth; CDX_PRECISION_BF16: cdx_linear.bf) in a prepared file of
 * their own, keyed like the tower's plus the precision and `recipe` (the
 * settings the copies depend on, e.g. weight range and SmoothQuant).
 * load: map and bind (CDX_ERR_NOT_FOUND: none; CDX_ERR_FORMAT: damaged or
 * stale, deleted); save: write from m's pointers, atomically. */
cdx_result cdx_prep_load_copies(cdx_model *m, int tower, cdx_precision prec, const char *recipe);
cdx_result cdx_prep_save_copies(const cdx_model *m, int tower, cdx_precision prec, const char *recipe);

/* Drop this process's pages of `tower`'s mapped prepared file (they come
 * back from the page cache when touched): after the int8/bf16 copies were
 * made from the float32 weights, which that precision then never reads. */
void cdx_prep_drop_pages(const cdx_model *m, int tower);

/* Set every Linear / LayerNorm dimension of `tower` from m->cfg and
 * allocate its blocks array (calloc; freed by cdx_model_free). */
cdx_result cdx_tower_shapes(cdx_model *m, int tower);

#endif
