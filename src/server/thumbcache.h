/*
 * thumbcache.h - the server's on-disk thumbnail cache, capped in bytes with
 * least-recently-used eviction.
 *
 * Entries are files DIR/<name> (name = "<sha256>-<size>.jpg"), written to a
 * unique temporary name and renamed, so a reader never sees a partial file.
 * Recency is the file's mtime: a hit touches it.  The byte total is counted
 * at open (one directory scan) and kept up to date by puts; when a put takes
 * it over the cap, the oldest entries are removed until the total is at most
 * 90% of the cap (one scan + sort per eviction round, so the cost is
 * amortised over many puts).  Several server processes may share one
 * directory: each one's total is then an estimate, corrected by the rescan
 * every eviction makes.
 *
 * Thread-safe.  Workload: one lookup per /thumb request (open + futimens),
 * one put per miss; directories of up to ~10^5 entries.
 */
#ifndef CDX_SERVER_THUMBCACHE_H
#define CDX_SERVER_THUMBCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

typedef struct thumb_cache thumb_cache;

typedef struct thumb_cache_stats {
    uint64_t entries, bytes, max_bytes;
    uint64_t hits, misses, evictions;
} thumb_cache_stats;

/* Open (creating dir when missing) with a cap of max_bytes (> 0).  NULL
 * when the directory cannot be used (a read-only library): callers then
 * simply do not cache. */
thumb_cache *thumb_cache_open(const char *dir, uint64_t max_bytes);
void thumb_cache_close(thumb_cache *c);

/* An open fd of entry `name` (and its stat), marked as recently used; -1 on
 * a miss.  name must be a plain file name (no '/'). */
int thumb_cache_get(thumb_cache *c, const char *name, struct stat *st);

/* Store an entry (best effort: a failed write only costs time), evicting
 * the least recently used ones when over the cap. */
void thumb_cache_put(thumb_cache *c, const char *name, const void *data, size_t len);

void thumb_cache_get_stats(thumb_cache *c, thumb_cache_stats *out);

#endif
