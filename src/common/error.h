/*
 * error.h - the project-wide error channel.
 *
 * Library code reports a failure by calling cdx_error(code, fmt, ...), which
 * formats a message into a thread-local buffer and returns code, so the usual
 * idiom is `return cdx_error(CDX_ERR_FORMAT, "%s: bad header", path);`.
 * cdx_last_error() (public) reads the message back.  Messages are truncated
 * to CDX_ERROR_MAX bytes; formatting never allocates.
 */
#ifndef CDX_COMMON_ERROR_H
#define CDX_COMMON_ERROR_H

#include "clipdex.h"

#define CDX_ERROR_MAX 1024

cdx_result cdx_error(cdx_result code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current message with "prefix: " (e.g. a file name added by an
 * outer layer) and return code. */
cdx_result cdx_error_prefix(cdx_result code, const char *prefix);

void cdx_error_clear(void);

#endif
