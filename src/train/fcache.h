/*
 * fcache.h - the frozen-prefix cache of the trainer (scopes last:K and
 * proj): the output of a tower's frozen part for one input (an image's
 * residual stream entering the first trained block, a caption's rows up to
 * its end token, or the pooled row when every block is frozen), keyed by a
 * 128-bit hash of the input and the tower, computed in the first epoch and
 * reused in later ones.
 *
 * Invariants: an entry is only ever read back whole and exactly as stored
 * (same length, same bytes); the trainer clears the cache whenever a frozen
 * weight could have changed (checkpoint loaded, a weight pointer handed
 * out), so a key needs no model fingerprint of its own within one trainer.
 * Bounds: values live in RAM up to ram_bytes; beyond that they go to an
 * anonymous spill file (created in spill_dir and unlinked at once, so a
 * crash leaves nothing behind) up to disk_bytes; beyond both, nothing more
 * is stored and the caller recomputes.  A failed spill write or read
 * disables the spill file (the caller recomputes).
 *
 * Workload: a few inserts and lookups per example and epoch, entries of
 * 2 KB (pooled rows) to ~150 KB (a ViT-B/32 image's 50 x 768 rows).  Not
 * thread-safe (one per trainer).
 */
#ifndef CDX_TRAIN_FCACHE_H
#define CDX_TRAIN_FCACHE_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cdx_fcache cdx_fcache;
typedef struct cdx_fcache_key { uint64_t h1, h2; } cdx_fcache_key;

/* spill_dir NULL or disk_bytes 0: RAM only. */
cdx_result cdx_fcache_new(size_t ram_bytes, const char *spill_dir, size_t disk_bytes, cdx_fcache **out);
void cdx_fcache_free(cdx_fcache *c);
/* Forget every entry (the spill file is truncated). */
void cdx_fcache_clear(cdx_fcache *c);

/* The key of n bytes of input, salted by tag (tower and kind of value). */
cdx_fcache_key cdx_fcache_hash(const void *data, size_t n, uint64_t tag);

/* 1 and the entry's n floats in dst when present with exactly n floats;
 * 0 otherwise. */
int cdx_fcache_get(cdx_fcache *c, cdx_fcache_key k, float *dst, size_t n);
/* Store n floats under k (replacing nothing: a present key is left as is);
 * 0 when stored or present, -1 when over both bounds or on an I/O error. */
int cdx_fcache_put(cdx_fcache *c, cdx_fcache_key k, const float *src, size_t n);

void cdx_fcache_stats(const cdx_fcache *c, cdx_train_cache_stats *s);

#endif
