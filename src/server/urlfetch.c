/*
 * urlfetch.c - libcurl fetch with SSRF protection, limits and a content
 * check (see urlfetch.h).  One easy handle per fetch (fetches are rare next
 * to searches; no connection reuse across requests is wanted anyway, as
 * every connection must pass the address check).
 */
#include "urlfetch.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>

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

int srv_addr_is_public(const struct sockaddr *sa)
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

typedef struct fetch_state {
    const srv_fetch_params *p;
    CURL *curl;
    char *buf;
    size_t len, cap;
    int refused, too_large, not_image, bad_status;
    long status;
    char content_type[128];
} fetch_state;

static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
    fetch_state *st = user;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (!st->p->allow_private && !srv_addr_is_public(&addr->addr)) {
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
    fetch_state *st = user;
    size_t n = size * nmemb;
    if (st->len == 0 && st->cap == 0) {
        /* First bytes of the final response: check status and type once. */
        curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &st->status);
        if (st->status != 200) { st->bad_status = 1; return 0; }
        char *ct = NULL;
        curl_easy_getinfo(st->curl, CURLINFO_CONTENT_TYPE, &ct);
        if (ct) snprintf(st->content_type, sizeof st->content_type, "%s", ct);
        if (!content_type_ok(ct)) { st->not_image = 1; return 0; }
    }
    if (n > st->p->max_bytes - st->len) { st->too_large = 1; return 0; }
    if (st->len + n + 1 > st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 65536;
        while (nc < st->len + n + 1) nc *= 2;
        if (nc > st->p->max_bytes + 1) nc = st->p->max_bytes + 1;
        char *nb = realloc(st->buf, nc);
        if (!nb) return 0;
        st->buf = nb;
        st->cap = nc;
    }
    memcpy(st->buf + st->len, ptr, n);
    st->len += n;
    st->buf[st->len] = 0;
    return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

srv_fetch_status srv_fetch_url(const char *url, const srv_fetch_params *p, char **data,
                               size_t *len, char *err, size_t err_len)
{
    *data = NULL;
    *len = 0;
    if (strlen(url) > 4096 || (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))) {
        snprintf(err, err_len, "only http:// and https:// URLs (up to 4096 bytes) are accepted");
        return SRV_FETCH_BAD_URL;
    }
    pthread_once(&curl_once, curl_init_once);
    fetch_state st = {.p = p};
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, err_len, "cannot initialise libcurl");
        return SRV_FETCH_FAILED;
    }
    st.curl = c;
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, p->max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, p->max_redirects);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, p->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)p->max_bytes);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &st);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "clipdex-server/0.1");
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);

    srv_fetch_status result = SRV_FETCH_OK;
    if (st.refused && rc != CURLE_OK) {
        snprintf(err, err_len, "refused: the URL resolves to a private, loopback, link-local or "
                               "otherwise non-public address (see --allow-private-urls)");
        result = SRV_FETCH_REFUSED;
    } else if (st.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, err_len, "the image at the URL exceeds the limit of %zu bytes", p->max_bytes);
        result = SRV_FETCH_TOO_LARGE;
    } else if (st.bad_status || (rc == CURLE_OK && status != 200)) {
        snprintf(err, err_len, "the URL answered HTTP %ld", st.status ? st.status : status);
        result = SRV_FETCH_HTTP_STATUS;
    } else if (st.not_image) {
        snprintf(err, err_len, "the URL's Content-Type '%s' is not an image", st.content_type);
        result = SRV_FETCH_NOT_IMAGE;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, err_len, "fetching the URL timed out");
        result = SRV_FETCH_TIMEOUT;
    } else if (rc == CURLE_TOO_MANY_REDIRECTS || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        snprintf(err, err_len, "%s", rc == CURLE_TOO_MANY_REDIRECTS
                                         ? "too many redirects"
                                         : "redirect to a protocol other than http/https");
        result = SRV_FETCH_REDIRECTS;
    } else if (rc == CURLE_URL_MALFORMAT) {
        snprintf(err, err_len, "malformed URL");
        result = SRV_FETCH_BAD_URL;
    } else if (rc != CURLE_OK) {
        snprintf(err, err_len, "fetch failed: %s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
        result = SRV_FETCH_FAILED;
    } else if (st.len == 0) {
        snprintf(err, err_len, "the URL returned no data");
        result = SRV_FETCH_NOT_IMAGE;
    }
    if (result != SRV_FETCH_OK) {
        free(st.buf);
        return result;
    }
    *data = st.buf;
    *len = st.len;
    return SRV_FETCH_OK;
}
