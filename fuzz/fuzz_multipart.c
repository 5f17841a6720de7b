/*
 * fuzz_multipart.c - libFuzzer target for the server's multipart/form-data
 * parser (src/server/multipart.c) and its base64 decoder
 * (src/server/base64.c), both fed request bodies from the network.
 *
 * Input: the first line is the Content-Type header value, the rest the
 * body.  On success every part must lie inside the body, names and
 * filenames must be NUL-terminated within their arrays, and at most
 * max_parts parts come back.  Each part's data is then also given to the
 * base64 decoder, whose output must be at most 3/4 of its input and within
 * the cap.  The sources are included so libFuzzer instruments them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "server/base64.c"
#include "server/multipart.c"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARTS 8
#define B64_CAP 4096

static void check_base64(const char *s, size_t len)
{
    unsigned char *out = NULL;
    size_t out_len = 0;
    char err[256];
    if (srv_base64_decode(s, len, B64_CAP, &out, &out_len, err, sizeof err) == 0) {
        if (!out || out_len > B64_CAP || out_len > len / 4 * 3 + 3 || out[out_len] != '\0') abort();
    } else {
        if (!memchr(err, '\0', sizeof err) || !err[0]) abort();   /* a message, terminated */
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    if (!nl) {
        check_base64((const char *)data, size);
        return 0;
    }
    size_t ct_len = (size_t)(nl - (const char *)data);
    char *ct = malloc(ct_len + 1);
    if (!ct) return 0;
    memcpy(ct, data, ct_len);
    ct[ct_len] = '\0';
    const char *body = nl + 1;
    size_t len = size - ct_len - 1;
    srv_part parts[MAX_PARTS];
    size_t n = 0;
    char err[256];
    if (srv_multipart_parse(ct, body, len, parts, MAX_PARTS, &n, err, sizeof err) == 0) {
        if (n > MAX_PARTS) abort();
        for (size_t i = 0; i < n; i++) {
            const srv_part *p = &parts[i];
            if (p->data < body || p->len > len || p->data + p->len > body + len) abort();
            if (!memchr(p->name, '\0', sizeof p->name) || !memchr(p->filename, '\0', sizeof p->filename) ||
                !memchr(p->content_type, '\0', sizeof p->content_type))
                abort();
            check_base64(p->data, p->len);
        }
    } else if (!memchr(err, '\0', sizeof err)) {
        abort();
    }
    free(ct);
    return 0;
}
