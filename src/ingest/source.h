/*
 * source.h - getting an image's bytes for ingestion: content sniffing from
 * the first bytes (never the file name), capped whole-file reads, URL
 * downloads with libcurl under size and time limits, and the sha256 that
 * identifies a content in the library.
 *
 * Invariants: every read is capped (max_bytes) before allocation; URL
 * fetches allow only http/https (redirects too), at most 5 redirects, and
 * abort as soon as the body exceeds the cap.  All functions are thread-safe
 * (libcurl's global init is done once).
 *
 * Workload: one call per candidate file/URL from the ingest worker threads.
 */
#ifndef CDX_INGEST_SOURCE_H
#define CDX_INGEST_SOURCE_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

/* The image format the first bytes announce ("jpeg", "png", "gif", "webp",
 * "tiff", "heif", "avif", "bmp"), or NULL when they announce none.  This is
 * only a cheap pre-filter so non-image files are not read whole; the decoder
 * decides for real. */
const char *source_sniff(const void *head, size_t len);

/* File-name extension for a sniffed format ("jpg" for jpeg, else the name). */
const char *source_ext(const char *format);

/* Nonzero when the file name has an image extension (case-insensitive).
 * A file whose name and content both say "not an image" (README.md,
 * notes.csv) is skipped by indexing, not reported as failed. */
int source_image_name(const char *path);

/* Read a whole file of at most max_bytes (after sniffing its first bytes:
 * CDX_ERR_UNSUPPORTED "not an image" when they announce no image format).
 * *data is malloc'd. */
cdx_result source_read_file(const char *path, uint64_t max_bytes, void **data, size_t *len);

/* GET url into memory: CDX_ERR_NETWORK (message: HTTP status or curl
 * error), CDX_ERR_TOO_LARGE, CDX_ERR_UNSUPPORTED for a non-http(s) URL.
 * *mtime receives Last-Modified (0 if none).  *data is malloc'd. */
cdx_result source_fetch_url(const char *url, uint64_t max_bytes, long timeout_s,
                            void **data, size_t *len, int64_t *mtime);

/* GET url into memory whatever the HTTP status (the caller judges it):
 * CDX_ERR_NETWORK only when no response came (curl error), TOO_LARGE,
 * UNSUPPORTED for a non-http(s) URL.  retry_after_s = the Retry-After
 * header in seconds (0 when absent).  data is malloc'd (may be NULL when
 * the body is empty). */
typedef struct source_http_reply {
    void *data;
    size_t len;
    long status;
    int64_t mtime;
    long retry_after_s;
} source_http_reply;

cdx_result source_http_get(const char *url, uint64_t max_bytes, long timeout_s, source_http_reply *out);

/* sha256 of the bytes: raw (32 bytes) and lower-case hex (65 with NUL). */
void source_sha256(const void *data, size_t len, uint8_t raw[32], char hex[65]);

/* Parse 64 hex digits into 32 bytes; 0 on success. */
int source_unhex(const char *hex, uint8_t raw[32]);

#endif
