/*
 * util.h - small shared helpers: bounded whole-file reads, checked size
 * arithmetic, aligned allocation, path joining, monotonic time.
 *
 * Every helper that can fail sets the error channel (common/error.h) and
 * returns a cdx_result; sizes are checked for overflow before use.
 */
#ifndef CDX_COMMON_UTIL_H
#define CDX_COMMON_UTIL_H

#include "clipdex.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Open path read-only (O_CLOEXEC) and check it is a regular file; on
 * success *fd is open and *size is its length. */
cdx_result cdx_open_regular(const char *path, int *fd, uint64_t *size);

/* Read a whole file into a NUL-terminated malloc'd buffer; fails with
 * CDX_ERR_TOO_LARGE when the file is larger than max_bytes. */
cdx_result cdx_read_file(const char *path, size_t max_bytes, char **out,
                         size_t *out_len);

/* Write a buffer to path atomically (temp file + fsync + rename). */
cdx_result cdx_write_file_atomic(const char *path, const void *data, size_t len);

/* a*b and a+b with overflow detection: return false on overflow. */
static inline bool cdx_mul_ok(size_t a, size_t b, size_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}
static inline bool cdx_add_ok(size_t a, size_t b, size_t *r)
{
    return !__builtin_add_overflow(a, b, r);
}

/* 64-byte aligned allocation (free with cdx_free_aligned); NULL on failure or
 * overflow of n*size. */
void *cdx_alloc_aligned(size_t n, size_t size);
void cdx_free_aligned(void *p);

/* Join dir and name with one '/'; malloc'd, NULL on allocation failure. */
char *cdx_path_join(const char *dir, const char *name);

/* Monotonic clock in seconds. */
double cdx_now(void);

/* Number of online CPUs (>= 1). */
int cdx_cpu_count(void);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void cdx_hex(const uint8_t *bytes, size_t n, char *out);

#endif
