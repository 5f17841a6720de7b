/*
 * base64.c - strict base64 validation in front of OpenSSL's EVP_DecodeBlock
 * (see base64.h).  Workload: one payload per image query, up to the body
 * limit (32 MiB by default); one pass to validate and compact, one to decode.
 */
#include "base64.h"

#include <openssl/evp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int srv_base64_decode(const char *s, size_t len, size_t max_out, unsigned char **out,
                      size_t *out_len, char *err, size_t err_len)
{
    *out = NULL;
    *out_len = 0;
    if (len >= 5 && !strncasecmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', len);
        if (!comma) {
            snprintf(err, err_len, "data: URL without a comma");
            return -1;
        }
        size_t hl = (size_t)(comma - s);
        if (hl < 7 || strncasecmp(comma - 7, ";base64", 7) != 0) {
            snprintf(err, err_len, "data: URL is not base64 (needs ';base64,')");
            return -1;
        }
        len -= hl + 1;
        s = comma + 1;
    }
    if (len > (size_t)INT_MAX) {
        snprintf(err, err_len, "base64 payload too large");
        return -1;
    }
    char *compact = malloc(len + 1);
    if (!compact) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space(c)) continue;
        if (c == '=') {
            pad++;
        } else if (!b64_char(c) || pad) {
            free(compact);
            if (c == '-' || c == '_')
                snprintf(err, err_len, "invalid base64: URL-safe alphabet ('%c') is not accepted", c);
            else if (pad)
                snprintf(err, err_len, "invalid base64: data after '=' padding");
            else
                snprintf(err, err_len, "invalid base64: bad character 0x%02x at offset %zu", c, i);
            return -1;
        }
        compact[n++] = (char)c;
    }
    if (n == 0) {
        free(compact);
        snprintf(err, err_len, "empty base64 payload");
        return -1;
    }
    if (n % 4 != 0 || pad > 2) {
        free(compact);
        snprintf(err, err_len, "invalid base64: length %zu is not a multiple of 4 or bad padding", n);
        return -1;
    }
    size_t decoded = n / 4 * 3 - pad;
    if (decoded > max_out) {
        free(compact);
        snprintf(err, err_len, "decoded payload of %zu bytes exceeds the limit of %zu", decoded, max_out);
        return -1;
    }
    unsigned char *buf = malloc(n / 4 * 3 + 1);
    if (!buf) {
        free(compact);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    int r = EVP_DecodeBlock(buf, (const unsigned char *)compact, (int)n);
    free(compact);
    if (r < 0 || (size_t)r != n / 4 * 3) {
        free(buf);
        snprintf(err, err_len, "invalid base64");
        return -1;
    }
    buf[decoded] = 0;
    *out = buf;
    *out_len = decoded;
    return 0;
}
