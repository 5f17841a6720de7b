/*
 * api_dupes.h - near-duplicate groups as JSON: GET /api/dupes and
 * `clipdex dupes --json` print the same document (docs/server.md).
 */
#ifndef CDX_SERVER_API_DUPES_H
#define CDX_SERVER_API_DUPES_H

#include "clipdex.h"

#include <jansson.h>

/* {"threshold", "max_distance", "images", "unhashed", "hashed",
 *  "candidates", "rejected", "seconds", "cancelled",
 *  "groups": [{"keeper": id, "members": [{image record..., "keeper",
 *  "via", "similarity", "distance"}]}]}.  NULL when out of memory. */
json_t *srv_dupes_json(cdx_library *lib, const cdx_dupes *d, const cdx_dupes_params *p);

#endif
