/*
 * api.h - helpers shared by the endpoint handlers (api_search.c,
 * api_images.c, api_misc.c): fetching a client-given URL with the server's
 * limits, finding the image part of a multipart body, and the JSON form of
 * a catalogued image.
 */
#ifndef CDX_SERVER_API_H
#define CDX_SERVER_API_H

#include "multipart.h"
#include "server.h"

#include <jansson.h>

#define SRV_MAX_PARTS 16

/* Fetch an image URL with the server's limits and SSRF policy.  0 ok
 * (*data malloc'd), -1 with an error response set (400 refused / bad URL /
 * not an image, 413 too large, 502 upstream failure, 504 timeout). */
int srv_fetch_image(srv_ctx *s, const char *url, char **data, size_t *len, srv_response *rs);

/* Parse a multipart body.  0 ok, -1 with a 400 response set. */
int srv_parse_multipart(const srv_request *rq, srv_part *parts, size_t *n_parts,
                        srv_response *rs);

/* The image file part ("image" or "file"); -1 with a 400 response when
 * there is none, several, or it is empty. */
int srv_image_part(const srv_part *parts, size_t n, const srv_part **out, srv_response *rs);

/* {"id", "path", "sha256", ..., "file", "thumbnail"} of a record. */
json_t *srv_image_json(const cdx_image_record *rec);
/* (ocr branch) Add "ocr": the image's OCR text, cut to at most max bytes
 * at a character boundary ("..." appended when cut); nothing when it has
 * none. */
void srv_image_add_ocr(cdx_library *lib, json_t *o, int64_t id, size_t max);
/* Add an image's source metadata to o when it has some: "title",
 * "description", "tags" (array) and "source" (the record a feed stored:
 * owner, owner_name, license_name, page, date_taken, geo, ...). */
void srv_image_add_source(cdx_library *lib, int64_t id, json_t *o);

#endif
