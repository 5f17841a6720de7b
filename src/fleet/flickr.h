/*
 * flickr.h - internals of `feed flickr` (flickr.c) that unit tests exercise
 * directly: endpoint resolution, the parsing of one search page and the
 * work record made of one photo.  The entry point is cdx_fleet_feed_flickr()
 * in clipdex.h.
 */
#ifndef CDX_FLEET_FLICKR_H
#define CDX_FLEET_FLICKR_H

#include "clipdex.h"

#include <jansson.h>

/* given, else $CLIPDEX_FLICKR_ENDPOINT, else https://api.flickr.com/services/rest;
 * must be http(s)://HOST... without '?', '#' or spaces.  *out malloc'd. */
cdx_result flickr_endpoint(const char *given, char **out);

/* One flickr.photos.search answer (JSON, nojsoncallback=1) for page
 * want_page: *photos = the "photo" array (a new reference), *pages = the
 * page count.  On failure *retryable says whether another try may help
 * (malformed pages, transient "stat": "fail" codes) or not (bad key, ...). */
cdx_result flickr_parse_page(const char *text, size_t len, long want_page, json_t **photos, long *pages,
                             int *retryable);

/* The work record of one photo object, id "flickr:<id>" into id_out; NULL
 * with *why when the photo cannot be used (no numeric id, no image URL). */
json_t *flickr_photo_record(const json_t *photo, char id_out[48], const char **why);

#endif
