/*
 * json_util.c - JSON responses, structured errors and strict field
 * validation (see json_util.h).  jansson does the parsing; this file only
 * adds the rules: objects only, no duplicate keys, no unknown fields, typed
 * fields with ranges, and an error body naming what was wrong.
 */
#include "json_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void srv_response_init(srv_response *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->fd = -1;
}

void srv_response_free(srv_response *rs)
{
    if (!rs->body_static) free(rs->body);
    rs->body = NULL;
    rs->body_len = 0;
    rs->body_static = 0;
}

static void set_body(srv_response *rs, char *body, size_t len, const char *type)
{
    srv_response_free(rs);
    rs->body = body;
    rs->body_len = len;
    rs->content_type = type;
}

/* Serialise obj (consumed) as the response body with one trailing newline
 * (it makes curl output and logs readable); 0 on success, -1 when it cannot
 * be serialised (rs untouched). */
static int set_json_body(srv_response *rs, json_t *obj)
{
    char *text = obj ? json_dumps(obj, SRV_JSON_FLAGS) : NULL;
    json_decref(obj);
    if (!text) return -1;
    size_t n = strlen(text);
    char *with_nl = realloc(text, n + 2);
    if (with_nl) {
        with_nl[n++] = '\n';
        with_nl[n] = '\0';
        text = with_nl;
    }
    set_body(rs, text, n, "application/json");
    return 0;
}

void srv_json_reply(srv_response *rs, int status, json_t *obj)
{
    if (set_json_body(rs, obj) != 0) {
        srv_error(rs, 500, SRV_E_INTERNAL, "cannot serialise the response");
        return;
    }
    rs->status = status;
}

void srv_error(srv_response *rs, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages may quote request input: keep them valid UTF-8 for jansson. */
    if (!srv_utf8_valid(msg, strlen(msg))) snprintf(msg, sizeof msg, "%s", "invalid input");
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    if (set_json_body(rs, o) != 0) {
        static const char fallback[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
        set_body(rs, (char *)fallback, sizeof fallback - 1, "application/json");
        rs->body_static = 1;
        rs->status = 500;
        rs->error_code = SRV_E_INTERNAL;
        return;
    }
    rs->status = status;
    rs->error_code = code;
}

void srv_error_cdx(srv_response *rs, cdx_result r, const char *invalid_code,
                   const char *what)
{
    const char *msg = cdx_last_error();
    if (!msg || !*msg) msg = cdx_result_str(r);
    switch (r) {
    case CDX_ERR_FORMAT:
    case CDX_ERR_UNSUPPORTED:
    case CDX_ERR_INVALID_ARG:
        srv_error(rs, 400, invalid_code, "%s: %s", what, msg);
        break;
    case CDX_ERR_TOO_LARGE:
        srv_error(rs, 413, SRV_E_TOO_LARGE, "%s: %s", what, msg);
        break;
    case CDX_ERR_NOT_FOUND:
        srv_error(rs, 404, SRV_E_NOT_FOUND, "%s: %s", what, msg);
        break;
    case CDX_ERR_NOMEM:
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "%s: %s", what, msg);
        break;
    default:
        srv_error(rs, 500, SRV_E_INTERNAL, "%s: %s", what, msg);
        break;
    }
}

/* "application/json; charset=utf-8" -> matches "application/json". */
static int media_type_is(const char *ct, const char *type)
{
    if (!ct) return 0;
    size_t n = strlen(type);
    while (*ct == ' ') ct++;
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

int srv_parse_body_object(const srv_request *rq, srv_response *rs, json_t **out)
{
    *out = NULL;
    if (!media_type_is(rq->content_type, "application/json")) {
        srv_error(rs, 415, SRV_E_MEDIA_TYPE, "expected Content-Type application/json, got %s",
                  rq->content_type ? rq->content_type : "none");
        return -1;
    }
    json_error_t err;
    json_t *j = json_loadb(rq->body ? rq->body : "", rq->body_len,
                           JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        srv_error(rs, 400, SRV_E_INVALID_JSON, "malformed JSON at line %d column %d: %s",
                  err.line, err.column, err.text);
        return -1;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_error(rs, 400, SRV_E_INVALID_JSON, "the request body must be a JSON object");
        return -1;
    }
    *out = j;
    return 0;
}

int srv_check_fields(json_t *obj, const char *const *allowed, const char *where,
                     srv_response *rs)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key)) { ok = 1; break; }
        if (!ok) {
            char list[512] = "";
            size_t used = 0;
            for (const char *const *a = allowed; *a && used < sizeof list; a++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s", a == allowed ? "" : ", ", *a);
                if (w < 0) break;
                used += (size_t)w;
            }
            srv_error(rs, 400, SRV_E_UNKNOWN_FIELD, "unknown field '%.100s' in %s (allowed: %s)",
                      key, where, list);
            return -1;
        }
    }
    return 0;
}

int srv_get_string(json_t *obj, const char *key, const char **out, srv_response *rs)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_string(v)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' must be a string", key);
        return -1;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' contains a NUL character", key);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

int srv_get_int(json_t *obj, const char *key, long long lo, long long hi,
                long long *out, srv_response *rs)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' must be an integer", key);
        return -1;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' must be between %lld and %lld (got %lld)",
                  key, lo, hi, x);
        return -1;
    }
    *out = x;
    return 1;
}

int srv_get_number(json_t *obj, const char *key, double lo, double hi,
                   double *out, srv_response *rs)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_number(v)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' must be a number", key);
        return -1;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        srv_error(rs, 400, SRV_E_INVALID_FIELD, "field '%s' must be between %g and %g", key, lo, hi);
        return -1;
    }
    *out = x;
    return 1;
}

int srv_parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s || *s == ' ' || *s == '+') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int srv_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || *s == ' ') return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v) || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* Exactly n decimal digits at s. */
static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int srv_parse_time(const char *s, int64_t *out)
{
    long long secs;
    if (srv_parse_ll(s, 0, 253402300799LL, &secs) == 0) {
        *out = secs;
        return 0;
    }
    int y, mo, d, h = 0, mi = 0, se = 0;
    size_t n = strlen(s);
    if (n < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d))
        return -1;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        if (strlen(p) < 9 || digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &mi) ||
            p[6] != ':' || digits(p + 7, 2, &se))
            return -1;
        p += 9;
    }
    if (*p == 'Z') p++;
    if (*p) return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return -1;
    *out = (int64_t)t;
    return 0;
}

int srv_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return 0;
        if (len - i < n + 1) return 0;   /* truncated sequence */
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

int srv_etag_match(const char *inm, const char *etag)
{
    if (!inm || !etag || !*etag) return 0;
    size_t n = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        if (*p == '*' ) return 1;
        if (!strncmp(p, "W/", 2)) p += 2;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        const char *cmp = etag;
        size_t cn = n;
        if (!strncmp(cmp, "W/", 2)) { cmp += 2; cn -= 2; }
        if ((size_t)(t - p) == cn && !memcmp(p, cmp, cn)) return 1;
        p = e;
    }
    return 0;
}

json_t *srv_json_string_lossy(const char *s)
{
    size_t len = strlen(s);
    if (srv_utf8_valid(s, len)) return json_stringn(s, len);
    /* Re-encode byte by byte: valid sequences copied, others -> U+FFFD. */
    size_t cap = len * 3 + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    while (i < len) {
        size_t n = 1;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) n = 3;
        else if (c >= 0xF0 && c <= 0xF4) n = 4;
        if (n <= len - i && srv_utf8_valid(s + i, n)) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn(out, o);
    free(out);
    return j;
}

int srv_check_args(const srv_request *rq, const char *const *allowed, srv_response *rs)
{
    for (size_t i = 0; i < rq->n_args; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, rq->args[i].key)) { ok = 1; break; }
        if (!ok) {
            srv_error(rs, 400, SRV_E_UNKNOWN_FIELD, "unknown query parameter '%.100s'", rq->args[i].key);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(rq->args[j].key, rq->args[i].key)) {
                srv_error(rs, 400, SRV_E_BAD_REQUEST, "query parameter '%.100s' given twice",
                          rq->args[i].key);
                return -1;
            }
    }
    return 0;
}
