/*
 * http.h - the shared libcurl set-up behind cdx_http_get (public, see
 * clipdex.h) and the model downloader (fetch.c).
 *
 * libcurl does the HTTP; this module only owns what every transfer of
 * clipdex must agree on: curl_global_init exactly once per process, http and
 * https only (also on redirects), no signals, one User-Agent.
 */
#ifndef CDX_FETCH_HTTP_H
#define CDX_FETCH_HTTP_H

#include <curl/curl.h>

#include "clipdex.h"

/* curl_global_init once per process (thread-safe).  CDX_OK or an error. */
cdx_result http_global_init(void);

/* Options every clipdex transfer sets: protocols http/https (redirects too),
 * NOSIGNAL, the User-Agent. */
void http_easy_defaults(CURL *c);

#endif
