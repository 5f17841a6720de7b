/*
 * fetch.h - internals of the model downloader (fetch.c) that unit tests
 * exercise directly: endpoint and token resolution, URL building, and the
 * parsing of the one response header whose value steers resumption.
 *
 * The public entry points are cdx_fetch_default_params() and
 * cdx_model_fetch() in clipdex.h; cache layout is in cache.h.
 */
#ifndef CDX_FETCH_FETCH_H
#define CDX_FETCH_FETCH_H

#include "clipdex.h"

#include <stdint.h>

#define CDX_FETCH_DEFAULT_ENDPOINT "https://huggingface.co"

/* params->endpoint, else $CLIPDEX_HF_ENDPOINT, else the hub; trailing '/'
 * removed; must be http:// or https:// followed by a host, printable ASCII
 * without '?', '#' or spaces.  *out is malloc'd. */
cdx_result cdx_fetch_endpoint(const cdx_fetch_params *params, char **out);

/* params->token, else $HF_TOKEN; "" means none (*out = NULL).  Refuses
 * bytes outside printable ASCII (they would corrupt the HTTP header) without
 * echoing the token.  *out points into params or the environment. */
cdx_result cdx_fetch_token(const cdx_fetch_params *params, const char **out);

/* "<endpoint>/<repo_id>/resolve/<revision, '/' as %2F>/<file>"; validates
 * repo_id and revision.  *out is malloc'd. */
cdx_result cdx_fetch_file_url(const char *endpoint, const char *repo_id,
                              const char *revision, const char *file, char **out);

/* Total length N from a Content-Range value "bytes A-B/N" or "bytes * /N"
 * (no space before '/'); -1 when absent ("/ *") or malformed. */
int64_t cdx_fetch_content_range_total(const char *value);

/* The sha256 in an X-Linked-Etag value ("<64 hex>", quotes and a W/ prefix
 * optional) as lower-case hex into out; out = "" when it is not one. */
void cdx_fetch_etag_sha256(const char *etag, char out[65]);

#endif
