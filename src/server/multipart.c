/*
 * multipart.c - multipart/form-data over a buffered body (see multipart.h
 * for why MHD's post processor is not used).  Every offset is checked
 * against the body length before use; nothing is copied except the short
 * header fields.
 */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MP_MAX_HEADER 8192

int srv_is_multipart(const char *ct)
{
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    return strncasecmp(ct, "multipart/form-data", 19) == 0 &&
           (ct[19] == '\0' || ct[19] == ';' || ct[19] == ' ');
}

/* Copy a parameter value (quoted or token) of `param` from a header value
 * "form-data; name=\"x\"; filename=\"y\"".  Returns 1 found, 0 absent, -1 bad. */
static int header_param(const char *v, size_t vlen, const char *param, char *out, size_t out_len)
{
    size_t plen = strlen(param);
    size_t i = 0;
    while (i < vlen) {
        /* skip to the next ';' separated parameter */
        while (i < vlen && v[i] != ';') {
            if (v[i] == '"') { /* skip a quoted string */
                i++;
                while (i < vlen && v[i] != '"') i += (v[i] == '\\') ? 2 : 1;
            }
            i++;
        }
        if (i >= vlen) break;
        i++;
        while (i < vlen && (v[i] == ' ' || v[i] == '\t')) i++;
        if (vlen - i > plen && !strncasecmp(v + i, param, plen) && v[i + plen] == '=') {
            i += plen + 1;
            size_t o = 0;
            if (i < vlen && v[i] == '"') {
                i++;
                while (i < vlen && v[i] != '"') {
                    if (v[i] == '\\' && i + 1 < vlen) i++;
                    if (o + 1 >= out_len) return -1;
                    out[o++] = v[i++];
                }
                if (i >= vlen) return -1;  /* unterminated quote */
            } else {
                while (i < vlen && v[i] != ';' && v[i] != ' ') {
                    if (o + 1 >= out_len) return -1;
                    out[o++] = v[i++];
                }
            }
            out[o] = '\0';
            return 1;
        }
    }
    return 0;
}

static int get_boundary(const char *ct, char *b, size_t blen)
{
    const char *semi = strchr(ct, ';');
    if (!semi) return -1;
    int r = header_param(semi, strlen(semi), "boundary", b, blen);
    if (r != 1) return -1;
    size_t n = strlen(b);
    return (n >= 1 && n <= 70) ? 0 : -1;
}

static int parse_headers(const char *h, size_t hlen, srv_part *p, char *err, size_t err_len)
{
    int have_disp = 0;
    size_t i = 0;
    while (i < hlen) {
        const char *eol = memmem(h + i, hlen - i, "\r\n", 2);
        size_t ll = eol ? (size_t)(eol - (h + i)) : hlen - i;
        const char *line = h + i;
        const char *colon = memchr(line, ':', ll);
        if (!colon) {
            snprintf(err, err_len, "multipart: malformed part header line");
            return -1;
        }
        size_t nl = (size_t)(colon - line);
        const char *val = colon + 1;
        size_t vl = ll - nl - 1;
        while (vl && (*val == ' ' || *val == '\t')) { val++; vl--; }
        if (nl == 19 && !strncasecmp(line, "Content-Disposition", 19)) {
            if (vl < 9 || strncasecmp(val, "form-data", 9) != 0) {
                snprintf(err, err_len, "multipart: Content-Disposition is not form-data");
                return -1;
            }
            if (header_param(val, vl, "name", p->name, sizeof p->name) != 1) {
                snprintf(err, err_len, "multipart: part without a valid name");
                return -1;
            }
            int fr = header_param(val, vl, "filename", p->filename, sizeof p->filename);
            if (fr < 0) {
                snprintf(err, err_len, "multipart: bad filename parameter");
                return -1;
            }
            p->has_filename = fr == 1;
            have_disp = 1;
        } else if (nl == 12 && !strncasecmp(line, "Content-Type", 12)) {
            size_t n = vl < sizeof p->content_type - 1 ? vl : sizeof p->content_type - 1;
            memcpy(p->content_type, val, n);
            p->content_type[n] = '\0';
        }
        i += ll + 2;
    }
    if (!have_disp) {
        snprintf(err, err_len, "multipart: part without Content-Disposition");
        return -1;
    }
    return 0;
}

int srv_multipart_parse(const char *ct, const char *body, size_t len,
                        srv_part *parts, size_t max_parts, size_t *n_parts,
                        char *err, size_t err_len)
{
    *n_parts = 0;
    char boundary[80];
    if (!srv_is_multipart(ct) || get_boundary(ct, boundary, sizeof boundary) != 0) {
        snprintf(err, err_len, "multipart: missing or invalid boundary in Content-Type");
        return -1;
    }
    char delim[84];
    int dl = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    size_t dlen = (size_t)dl;
    /* The first delimiter may start the body (no preceding CRLF). */
    size_t pos;
    if (len >= dlen - 2 && !memcmp(body, delim + 2, dlen - 2)) {
        pos = dlen - 2;
    } else {
        const char *f = len ? memmem(body, len, delim, dlen) : NULL;
        if (!f) {
            snprintf(err, err_len, "multipart: boundary not found in the body");
            return -1;
        }
        pos = (size_t)(f - body) + dlen;
    }
    for (;;) {
        if (len - pos >= 2 && !memcmp(body + pos, "--", 2)) {
            return 0;  /* closing delimiter; epilogue ignored */
        }
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t')) pos++;
        if (len - pos < 2 || memcmp(body + pos, "\r\n", 2) != 0) {
            snprintf(err, err_len, "multipart: truncated or malformed body after a boundary");
            return -1;
        }
        pos += 2;
        if (*n_parts >= max_parts) {
            snprintf(err, err_len, "multipart: more than %zu parts", max_parts);
            return -1;
        }
        srv_part *p = &parts[*n_parts];
        memset(p, 0, sizeof *p);
        size_t search = len - pos < MP_MAX_HEADER + 4 ? len - pos : MP_MAX_HEADER + 4;
        if (search >= 2 && !memcmp(body + pos, "\r\n", 2)) {
            snprintf(err, err_len, "multipart: part without Content-Disposition");
            return -1;
        }
        const char *hend = memmem(body + pos, search, "\r\n\r\n", 4);
        if (!hend) {
            snprintf(err, err_len, "multipart: part headers missing, unterminated or over %d bytes",
                     MP_MAX_HEADER);
            return -1;
        }
        size_t hlen = (size_t)(hend - (body + pos));
        if (parse_headers(body + pos, hlen, p, err, err_len) != 0) return -1;
        pos += hlen + 4;
        const char *end = memmem(body + pos, len - pos, delim, dlen);
        if (!end) {
            snprintf(err, err_len, "multipart: part '%s' is not terminated by the boundary", p->name);
            return -1;
        }
        p->data = body + pos;
        p->len = (size_t)(end - (body + pos));
        (*n_parts)++;
        pos = (size_t)(end - body) + dlen;
    }
}
