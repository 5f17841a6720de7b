/*
 * http.c - the one HTTP GET of clipdex (cdx_http_get, see clipdex.h).
 *
 * Server-side request forgery is the risk when a URL comes from a client:
 * it could make clipdex read internal services.  Defences when
 * allow_private is 0:
 *  - the address check runs in CURLOPT_OPENSOCKETFUNCTION, i.e. on the very
 *    address curl is about to connect to, after DNS: a DNS-rebinding name
 *    cannot pass the check with one answer and connect with another; every
 *    redirect hop goes through it too.  Refused: loopback, RFC 1918
 *    private, CGNAT, link-local, multicast, unspecified, broadcast/reserved,
 *    "this network", IPv6 ULA/link-local/site-local, v4-mapped/compatible,
 *    NAT64 and 6to4 forms of those;
 *  - proxies from the environment are ignored (the check must see the real
 *    peer).
 * Always: http:// and https:// only (also on redirects), at most
 * max_redirects redirects, connect and total timeouts, a size cap
 * (Content-Length checked by curl first, then enforced while receiving),
 * a 2xx final status (unless any_status: an API client such as the Flickr
 * feed judges the status and reads Retry-After itself) and, with
 * require_image, an image Content-Type (the decoder still checks the
 * bytes).
 *
 * One easy handle per call: fetches are rare next to searches, and no
 * connection may be reused across calls when each must pass the check.
 */
#include "fetch/http.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/error.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc = CURLE_FAILED_INIT;
static void init_curl(void) { init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

cdx_result http_global_init(void)
{
    pthread_once(&init_once, init_curl);
    if (init_rc != CURLE_OK)
        return cdx_error(CDX_ERR_INTERNAL, "cannot initialise libcurl: %s", curl_easy_strerror(init_rc));
    return CDX_OK;
}

void http_easy_defaults(CURL *c)
{
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "clipdex/" CDX_VERSION_STRING);
}

cdx_http_params cdx_http_default_params(void)
{
    return (cdx_http_params){
        .connect_timeout_ms = 15000,
        .timeout_ms = 60000,
        .max_bytes = 64ull << 20,
        .max_redirects = 5,
        .allow_private = 0,
        .require_image = 0,
    };
}

/* ------------------------------------------------------------ address check */

static int v4_is_public(uint32_t a)  /* host byte order */
{
    uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16);
    if (b0 == 0) return 0;                            /* 0/8 this network */
    if (b0 == 10) return 0;                           /* 10/8 */
    if (b0 == 100 && (b1 & 0xC0) == 64) return 0;    /* 100.64/10 CGNAT */
    if (b0 == 127) return 0;                          /* loopback */
    if (b0 == 169 && b1 == 254) return 0;             /* link-local */
    if (b0 == 172 && (b1 & 0xF0) == 16) return 0;    /* 172.16/12 */
    if (b0 == 192 && b1 == 168) return 0;             /* 192.168/16 */
    if (b0 == 192 && b1 == 0 && (uint8_t)(a >> 8) == 0) return 0;  /* 192.0.0/24 IETF */
    if (b0 == 198 && (b1 & 0xFE) == 18) return 0;    /* 198.18/15 benchmarking */
    if (b0 >= 224) return 0;                          /* multicast, reserved, broadcast */
    return 1;
}

int cdx_http_addr_is_public(const struct sockaddr *sa)
{
    if (!sa) return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_is_public(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6) return 0;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero10[10] = {0};
    uint32_t embedded = ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) |
                        ((uint32_t)b[14] << 8) | b[15];
    if (!memcmp(b, zero10, 10)) {
        if (b[10] == 0xff && b[11] == 0xff) return v4_is_public(embedded);  /* ::ffff:a.b.c.d */
        if (b[10] == 0 && b[11] == 0) {
            /* ::, ::1 and the deprecated v4-compatible ::a.b.c.d */
            if (embedded <= 1) return 0;
            return v4_is_public(embedded);
        }
    }
    /* 64:ff9b::/96 NAT64 well-known prefix */
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!memcmp(b, nat64, 12)) return v4_is_public(embedded);
    if (b[0] == 0x20 && b[1] == 0x02) {  /* 2002::/16 6to4 embeds a v4 address */
        uint32_t v4 = ((uint32_t)b[2] << 24) | ((uint32_t)b[3] << 16) | ((uint32_t)b[4] << 8) | b[5];
        return v4_is_public(v4);
    }
    if (b[0] == 0xff) return 0;                        /* multicast */
    if ((b[0] & 0xfe) == 0xfc) return 0;               /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return 0;  /* fe80::/10 link-local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return 0;  /* fec0::/10 site-local */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return 0;  /* documentation */
    if ((b[0] & 0xe0) != 0x20) return 0;               /* only 2000::/3 is global unicast */
    return 1;
}

/* ------------------------------------------------------------ one transfer */

typedef struct get_state {
    const cdx_http_params *p;
    CURL *curl;
    char *buf;
    size_t len, cap;
    int started, refused, too_large, not_image, bad_status, nomem;
    long status;
    char content_type[128];
} get_state;

static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
    get_state *st = user;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (!st->p->allow_private && !cdx_http_addr_is_public(&addr->addr)) {
        st->refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static int content_type_ok(const char *ct)
{
    if (!ct) return 1;  /* absent: let the decoder judge the bytes */
    while (*ct == ' ') ct++;
    return !strncasecmp(ct, "image/", 6) || !strncasecmp(ct, "application/octet-stream", 24);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    get_state *st = user;
    size_t n = size * nmemb;
    if (!st->started) {
        /* First bytes of the final response: check status and type once. */
        st->started = 1;
        curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &st->status);
        if (!st->p->any_status && (st->status < 200 || st->status > 299)) {
            st->bad_status = 1;
            return 0;
        }
        char *ct = NULL;
        curl_easy_getinfo(st->curl, CURLINFO_CONTENT_TYPE, &ct);
        if (ct) snprintf(st->content_type, sizeof st->content_type, "%s", ct);
        if (st->p->require_image && !content_type_ok(ct)) {
            st->not_image = 1;
            return 0;
        }
    }
    if (n > st->p->max_bytes - st->len) {
        st->too_large = 1;
        return 0;
    }
    if (st->len + n + 1 > st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 65536;
        while (nc < st->len + n + 1) nc *= 2;
        if (nc > st->p->max_bytes + 1) nc = (size_t)st->p->max_bytes + 1;
        char *nb = realloc(st->buf, nc);
        if (!nb) {
            st->nomem = 1;
            return 0;
        }
        st->buf = nb;
        st->cap = nc;
    }
    memcpy(st->buf + st->len, ptr, n);
    st->len += n;
    st->buf[st->len] = 0;
    return n;
}

/* Retry-After in whole seconds (the HTTP-date form is ignored). */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && !strncasecmp(ptr, name, sizeof name - 1)) {
        long v = 0;
        size_t k = sizeof name - 1;
        while (k < n && ptr[k] == ' ') k++;
        for (; k < n && ptr[k] >= '0' && ptr[k] <= '9' && v < 86400; k++) v = v * 10 + (ptr[k] - '0');
        *(long *)user = v;
    }
    return n;
}

static cdx_result fail(cdx_http_response *out, cdx_http_failure f, cdx_result code,
                       const char *url, const char *what)
{
    out->failure = f;
    return cdx_error(code, "%s: %s", url, what);
}

cdx_result cdx_http_get(const char *url, const cdx_http_params *params, cdx_http_response *out)
{
    if (!out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_http_get: NULL argument");
    memset(out, 0, sizeof *out);
    cdx_http_params def = cdx_http_default_params();
    const cdx_http_params *p = params ? params : &def;
    if (!url) return fail(out, CDX_HTTP_BAD_URL, CDX_ERR_INVALID_ARG, "(null)", "no URL");
    if (strlen(url) > 4096 || (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)))
        return fail(out, CDX_HTTP_BAD_URL, CDX_ERR_INVALID_ARG, url,
                    "only http:// and https:// URLs (up to 4096 bytes) are accepted");
    cdx_result r = http_global_init();
    if (r) return fail(out, CDX_HTTP_FAILED, r, url, cdx_last_error());
    CURL *c = curl_easy_init();
    if (!c) return fail(out, CDX_HTTP_FAILED, CDX_ERR_NOMEM, url, "cannot start a libcurl transfer");
    get_state st = {.p = p, .curl = c};
    char curl_err[CURL_ERROR_SIZE] = "";
    http_easy_defaults(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, p->max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, p->max_redirects);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, p->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)p->max_bytes);
    curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->retry_after_s);
    struct curl_slist *hdrs = NULL;   /* a JSON POST (clipdex reindex asking a server) */
    if (p->post_json) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, p->post_json);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    }
    char auth[600];
    if (p->bearer && strlen(p->bearer) < 500) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", p->bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (!p->allow_private) {
        curl_easy_setopt(c, CURLOPT_PROXY, "");
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &st);
        curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t ft = -1;
    curl_easy_getinfo(c, CURLINFO_FILETIME_T, &ft);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    out->status = st.status ? st.status : status;

    char msg[CURL_ERROR_SIZE + 128];
    if (st.refused && rc != CURLE_OK) {
        r = fail(out, CDX_HTTP_REFUSED, CDX_ERR_NETWORK, url,
                 "refused: the URL resolves to a private, loopback, link-local or otherwise "
                 "non-public address");
    } else if (st.nomem) {
        r = fail(out, CDX_HTTP_FAILED, CDX_ERR_NOMEM, url, "out of memory");
    } else if (st.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(msg, sizeof msg, "the body exceeds the limit of %llu bytes",
                 (unsigned long long)p->max_bytes);
        r = fail(out, CDX_HTTP_TOO_LARGE, CDX_ERR_TOO_LARGE, url, msg);
    } else if (st.bad_status ||
               (rc == CURLE_OK && !p->any_status && (out->status < 200 || out->status > 299))) {
        snprintf(msg, sizeof msg, "HTTP status %ld", out->status);
        r = fail(out, CDX_HTTP_STATUS, CDX_ERR_NETWORK, url, msg);
    } else if (st.not_image) {
        snprintf(msg, sizeof msg, "the Content-Type '%s' is not an image", st.content_type);
        r = fail(out, CDX_HTTP_NOT_IMAGE, CDX_ERR_FORMAT, url, msg);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        r = fail(out, CDX_HTTP_TIMEOUT, CDX_ERR_NETWORK, url, "timed out");
    } else if (rc == CURLE_TOO_MANY_REDIRECTS || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        r = fail(out, CDX_HTTP_REDIRECTS, CDX_ERR_NETWORK, url,
                 rc == CURLE_TOO_MANY_REDIRECTS ? "too many redirects"
                                                : "redirect to a protocol other than http/https");
    } else if (rc == CURLE_URL_MALFORMAT) {
        r = fail(out, CDX_HTTP_BAD_URL, CDX_ERR_INVALID_ARG, url, "malformed URL");
    } else if (rc != CURLE_OK) {
        snprintf(msg, sizeof msg, "download failed: %s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
        r = fail(out, CDX_HTTP_FAILED, CDX_ERR_NETWORK, url, msg);
    } else if (st.len == 0 && !p->any_status) {
        r = fail(out, CDX_HTTP_FAILED, CDX_ERR_FORMAT, url, "empty response (0 bytes)");
    }
    if (r) {
        free(st.buf);
        return r;
    }
    out->data = st.buf;
    out->len = st.len;
    out->mtime = ft > 0 ? (int64_t)ft : 0;
    return CDX_OK;
}
