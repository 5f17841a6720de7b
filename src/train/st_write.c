/*
 * st_write.c - streaming safetensors writer (st_write.h).
 */
#include "train/st_write.h"
#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HDR_CAP ((size_t)64 << 20)

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int fail;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->fail) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = cap <= HDR_CAP ? realloc(b->p, cap) : NULL;
        if (!q) { b->fail = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_string(sbuf *b, const char *s)
{
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; put(b, e, 2); }
        else if (c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); puts_(b, e); }
        else put(b, (const char *)&c, 1);
    }
    put(b, "\"", 1);
}

static size_t numel_of(const cdx_st_out *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static cdx_result build_header(const cdx_st_out *t, int n, const char *meta, sbuf *b)
{
    char num[64];
    size_t off = 0;
    puts_(b, "{\"__metadata__\":");
    puts_(b, meta ? meta : "{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        if (t[i].ndim < 0 || t[i].ndim > 8)
            return cdx_error(CDX_ERR_INVALID_ARG, "safetensors writer: tensor '%s': bad rank %d",
                             t[i].name, t[i].ndim);
        size_t bytes = numel_of(&t[i]) * sizeof(float);
        puts_(b, ",");
        put_json_string(b, t[i].name);
        puts_(b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
            puts_(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        puts_(b, num);
        off += bytes;
    }
    puts_(b, "}");
    while (!b->fail && (8 + b->len) % 8) put(b, " ", 1);
    return b->fail ? cdx_error(CDX_ERR_NOMEM, "safetensors writer: header too large") : CDX_OK;
}

cdx_result cdx_st_write_f32(const char *path, const cdx_st_out *t, int n, const char *meta)
{
    if (!path || (n > 0 && !t) || n < 0)
        return cdx_error(CDX_ERR_INVALID_ARG, "safetensors writer: bad arguments");
    sbuf b = {0};
    cdx_result r = build_header(t, n, meta, &b);
    if (r) { free(b.p); return r; }
    size_t plen = strlen(path) + 5;
    char *tmp = malloc(plen);
    if (!tmp) { free(b.p); return cdx_error(CDX_ERR_NOMEM, "out of memory"); }
    snprintf(tmp, plen, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        r = cdx_error(CDX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        free(b.p);
        return r;
    }
    unsigned char len8[8];
    uint64_t hl = b.len;
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(b.p, 1, b.len, f) == b.len;
    for (int i = 0; ok && i < n; i++) {
        size_t k = numel_of(&t[i]);
        ok = fwrite(t[i].data, sizeof(float), k, f) == k;   /* x86-64: little-endian */
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) { ok = 0; err = errno; }
    if (!ok) {
        unlink(tmp);
        r = cdx_error(CDX_ERR_IO, "%s: write failed: %s", path, strerror(err));
    }
    free(tmp);
    free(b.p);
    return r;
}
