/*
 * dupes.h - grouping near-duplicate images: confirmed candidate pairs ->
 * union-find groups, each with a keeper and, per member, the pair that
 * joined it (the reason).  The candidate search itself (k-NN of every
 * image) is the library's (cdx_library_dupes in library.c); this module
 * is the part that does not depend on where candidates come from.
 *
 * Invariants: a pair joins two images only when confirmed (same content,
 * or both perceptual hashes known and within max_distance bits); groups
 * have >= 2 members; the keeper is the member with the most pixels, then
 * the oldest date, then the smallest id; members are listed keeper first, then by id.
 * Workload: once per `dupes` run; O(n + pairs) after the search.
 */
#ifndef CDX_SEARCH_DUPES_H
#define CDX_SEARCH_DUPES_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dupes_image {
    int64_t id;
    uint64_t phash;
    int has_phash;
    uint64_t pixels;
    int64_t date;
} dupes_image;

typedef struct dupes_pair {
    uint32_t a, b;        /* indexes into the image array */
    float similarity;
    int distance;         /* pHash bits; -1 = same content */
} dupes_pair;

/* Group n images (sorted by id) joined by confirmed pairs.  *out is
 * allocated (cdx_dupes_free); its counters other than the groups' are the
 * caller's to fill. */
cdx_result dupes_group(const dupes_image *im, size_t n, const dupes_pair *pairs, size_t n_pairs,
                       cdx_dupes **out);

#endif
