/*
 * error.c - thread-local last-error message (see error.h).
 */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[CDX_ERROR_MAX];

static cdx_result set_message(cdx_result code, const char *fmt, va_list ap)
{
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    return code;
}

cdx_result cdx_error(cdx_result code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(code, fmt, ap);
    va_end(ap);
    return code;
}

/* The public name of cdx_error for code outside the library (clipdex.h). */
cdx_result cdx_set_error(cdx_result code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(code, fmt, ap);
    va_end(ap);
    return code;
}

cdx_result cdx_error_prefix(cdx_result code, const char *prefix)
{
    /* Truncation is fine: messages are bounded by design. */
    char tmp[CDX_ERROR_MAX];
    size_t pl = strnlen(prefix, CDX_ERROR_MAX - 3);
    memcpy(tmp, prefix, pl);
    memcpy(tmp + pl, ": ", 2);
    size_t room = CDX_ERROR_MAX - pl - 3, ml = strnlen(g_msg, room);
    memcpy(tmp + pl + 2, g_msg, ml);
    tmp[pl + 2 + ml] = '\0';
    memcpy(g_msg, tmp, sizeof g_msg);
    return code;
}

void cdx_error_clear(void) { g_msg[0] = '\0'; }

const char *cdx_last_error(void) { return g_msg; }

const char *cdx_result_str(cdx_result r)
{
    switch (r) {
    case CDX_OK: return "CDX_OK";
    case CDX_ERR_INVALID_ARG: return "CDX_ERR_INVALID_ARG";
    case CDX_ERR_IO: return "CDX_ERR_IO";
    case CDX_ERR_FORMAT: return "CDX_ERR_FORMAT";
    case CDX_ERR_NOMEM: return "CDX_ERR_NOMEM";
    case CDX_ERR_UNSUPPORTED: return "CDX_ERR_UNSUPPORTED";
    case CDX_ERR_TOO_LARGE: return "CDX_ERR_TOO_LARGE";
    case CDX_ERR_NETWORK: return "CDX_ERR_NETWORK";
    case CDX_ERR_NOT_FOUND: return "CDX_ERR_NOT_FOUND";
    case CDX_ERR_MISMATCH: return "CDX_ERR_MISMATCH";
    case CDX_ERR_INTERNAL: return "CDX_ERR_INTERNAL";
    }
    return "CDX_ERR_UNKNOWN";
}
