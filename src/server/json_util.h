/*
 * json_util.h - JSON responses, structured errors and strict validation of
 * request fields for the HTTP server.
 *
 * Every error the server sends is {"error": {"code": CODE, "message": MSG}}
 * with a stable machine-readable code (see docs/server.md).  Validation
 * helpers write that 400 response themselves and return -1, so handlers read
 * as a list of `if (get(...) < 0) return;`.  Strictness: request bodies must
 * be JSON objects, duplicate keys, unknown fields and wrong types are
 * rejected with the field's name.
 */
#ifndef CDX_SERVER_JSON_UTIL_H
#define CDX_SERVER_JSON_UTIL_H

#include "server.h"

#include <jansson.h>
#include <stdarg.h>

/* Error codes (the "code" member). */
#define SRV_E_BAD_REQUEST "bad_request"
#define SRV_E_INVALID_JSON "invalid_json"
#define SRV_E_UNKNOWN_FIELD "unknown_field"
#define SRV_E_INVALID_FIELD "invalid_field"
#define SRV_E_INVALID_IMAGE "invalid_image"
#define SRV_E_URL_REFUSED "url_refused"
#define SRV_E_URL_FETCH "url_fetch_failed"
#define SRV_E_NOT_FOUND "not_found"
#define SRV_E_METHOD "method_not_allowed"
#define SRV_E_TOO_LARGE "payload_too_large"
#define SRV_E_MEDIA_TYPE "unsupported_media_type"
#define SRV_E_UNAUTHORIZED "unauthorized"
#define SRV_E_FORBIDDEN "forbidden"
#define SRV_E_INTERNAL "internal"
#define SRV_E_UNAVAILABLE "unavailable"

/* Set rs to a JSON error (replaces any body). */
void srv_error(srv_response *rs, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Map a failed library call to a response: caller errors (FORMAT,
 * UNSUPPORTED, INVALID_ARG) -> 400 invalid_code, TOO_LARGE -> 413, NOT_FOUND
 * -> 404, NOMEM -> 503, the rest -> 500.  The message is what + cdx_last_error(). */
void srv_error_cdx(srv_response *rs, cdx_result r, const char *invalid_code,
                   const char *what);

/* Serialize obj (reference stolen) as the response body. */
void srv_json_reply(srv_response *rs, int status, json_t *obj);

/* Parse the request body as a JSON object.  0 on success (*out owned by the
 * caller), -1 with a 400/415 response set. */
int srv_parse_body_object(const srv_request *rq, srv_response *rs, json_t **out);

/* Reject any key of obj not in the NULL-terminated list allowed.  where
 * names the object in messages ("body", "filters"). */
int srv_check_fields(json_t *obj, const char *const *allowed, const char *where,
                     srv_response *rs);

/* Typed getters: 0 = absent (out untouched), 1 = present and valid, -1 = a
 * 400 response naming the field has been set. */
int srv_get_string(json_t *obj, const char *key, const char **out, srv_response *rs);
int srv_get_int(json_t *obj, const char *key, long long lo, long long hi,
                long long *out, srv_response *rs);
int srv_get_number(json_t *obj, const char *key, double lo, double hi,
                   double *out, srv_response *rs);

/* Strict parsers for query-string / form values: 0 ok, -1 bad. */
int srv_parse_ll(const char *s, long long lo, long long hi, long long *out);
int srv_parse_double(const char *s, double lo, double hi, double *out);
/* A time as unix seconds ("1700000000") or ISO 8601 UTC ("2024-05-01",
 * "2024-05-01T12:30:00", optional trailing "Z"). */
int srv_parse_time(const char *s, int64_t *out);

/* A JSON string of s; invalid UTF-8 (file names are bytes) is replaced
 * by U+FFFD so the response stays valid JSON.  NULL on OOM. */
json_t *srv_json_string_lossy(const char *s);

/* Reject query arguments not in the NULL-terminated list allowed (400
 * naming the parameter) and duplicates.  0 ok, -1 response set. */
int srv_check_args(const srv_request *rq, const char *const *allowed, srv_response *rs);

/* True when s (len bytes) is valid UTF-8 without NUL bytes. */
int srv_utf8_valid(const char *s, size_t len);

#endif
