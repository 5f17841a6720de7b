/*
 * source.c - sniffing, capped reads, URL fetches and hashing for ingestion
 * (see source.h).  libcurl does HTTP; OpenSSL's EVP does sha256.
 */
#include "ingest/source.h"

#include "common/error.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *source_sniff(const void *head, size_t len)
{
    const uint8_t *b = head;
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "jpeg";
    if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "png";
    if (len >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "gif";
    if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "webp";
    if (len >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "tiff";
    if (len >= 2 && b[0] == 'B' && b[1] == 'M') return "bmp";
    if (len >= 12 && !memcmp(b + 4, "ftyp", 4)) {
        if (!memcmp(b + 8, "avif", 4) || !memcmp(b + 8, "avis", 4)) return "avif";
        static const char *heic[] = {"heic", "heix", "mif1", "msf1", "heim", "heis", "hevc"};
        for (size_t i = 0; i < sizeof heic / sizeof heic[0]; i++)
            if (!memcmp(b + 8, heic[i], 4)) return "heif";
    }
    return NULL;
}

int source_image_name(const char *path)
{
    static const char *const ext[] = {"jpg", "jpeg", "jpe", "jfif", "png", "apng", "gif", "webp",
                                      "tif", "tiff", "bmp", "dib", "avif", "heic", "heif", "jxl",
                                      "jp2", "j2k", "ppm", "pgm", "pbm", "pnm", "svg", "ico"};
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (!dot || !dot[1]) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

const char *source_ext(const char *format)
{
    return format && !strcmp(format, "jpeg") ? "jpg" : format ? format : "bin";
}

cdx_result source_read_file(const char *path, uint64_t max_bytes, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cdx_error(CDX_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    cdx_result r = CDX_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0) {
        r = cdx_error(CDX_ERR_IO, "cannot stat: %s", strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) { r = cdx_error(CDX_ERR_IO, "not a regular file"); goto done; }
    if (st.st_size == 0) { r = cdx_error(CDX_ERR_FORMAT, "empty file (0 bytes)"); goto done; }
    if ((uint64_t)st.st_size > max_bytes) {
        r = cdx_error(CDX_ERR_TOO_LARGE, "file has %lld bytes, more than the limit of %llu",
                      (long long)st.st_size, (unsigned long long)max_bytes);
        goto done;
    }
    uint8_t head[32];
    ssize_t hn = pread(fd, head, sizeof head, 0);
    if (hn < 0) { r = cdx_error(CDX_ERR_IO, "read error: %s", strerror(errno)); goto done; }
    if (!source_sniff(head, (size_t)hn)) {
        r = cdx_error(CDX_ERR_UNSUPPORTED, "not an image (content is no known image format)");
        goto done;
    }
    size_t n = (size_t)st.st_size;
    if (!(buf = malloc(n))) { r = cdx_error(CDX_ERR_NOMEM, "out of memory for %zu bytes", n); goto done; }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { r = cdx_error(CDX_ERR_IO, "read error: %s", strerror(errno)); goto done; }
        if (k == 0) break;   /* shrank while reading */
        got += (size_t)k;
    }
    if (got != n) { r = cdx_error(CDX_ERR_IO, "file changed while reading"); goto done; }
    *data = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return r;
}

/* ---- URLs ---------------------------------------------------------------- */

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct body {
    uint8_t *p;
    size_t len, cap;
    uint64_t max;
    int too_large;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    body *b = user;
    size_t n = size * nmemb;
    if (b->len + n > b->max) {
        b->too_large = 1;
        return 0;
    }
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 65536;
        while (nc < b->len + n) nc *= 2;
        if (nc > b->max) nc = (size_t)b->max;
        uint8_t *np = realloc(b->p, nc);
        if (!np) return 0;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
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

cdx_result source_http_get(const char *url, uint64_t max_bytes, long timeout_s, source_http_reply *out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    memset(out, 0, sizeof *out);
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return cdx_error(CDX_ERR_UNSUPPORTED, "only http:// and https:// URLs are supported");
    pthread_once(&once, curl_init_once);
    CURL *h = curl_easy_init();
    if (!h) return cdx_error(CDX_ERR_NOMEM, "curl_easy_init failed");
    body b = {.max = max_bytes};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s > 0 ? timeout_s : 60L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "clipdex/" CDX_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &out->retry_after_s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_off_t ft = -1;
    curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft);
    curl_easy_cleanup(h);
    cdx_result r = CDX_OK;
    if (b.too_large || rc == CURLE_FILESIZE_EXCEEDED)
        r = cdx_error(CDX_ERR_TOO_LARGE, "download exceeds the limit of %llu bytes",
                      (unsigned long long)max_bytes);
    else if (rc != CURLE_OK)
        r = cdx_error(CDX_ERR_NETWORK, "download failed: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (r) {
        free(b.p);
        return r;
    }
    out->data = b.p;
    out->len = b.len;
    out->mtime = ft > 0 ? (int64_t)ft : 0;
    return CDX_OK;
}

cdx_result source_fetch_url(const char *url, uint64_t max_bytes, long timeout_s,
                            void **data, size_t *len, int64_t *mtime)
{
    *data = NULL;
    *len = 0;
    *mtime = 0;
    source_http_reply rp;
    cdx_result r = source_http_get(url, max_bytes, timeout_s, &rp);
    if (r) return r;
    if (rp.status < 200 || rp.status > 299)
        r = cdx_error(CDX_ERR_NETWORK, "HTTP status %ld", rp.status);
    else if (rp.len == 0)
        r = cdx_error(CDX_ERR_FORMAT, "empty response (0 bytes)");
    else if (!source_sniff(rp.data, rp.len))
        r = cdx_error(CDX_ERR_FORMAT, "not an image (content is no known image format)");
    if (r) {
        free(rp.data);
        return r;
    }
    *data = rp.data;
    *len = rp.len;
    *mtime = rp.mtime;
    return CDX_OK;
}

void source_sha256(const void *data, size_t len, uint8_t raw[32], char hex[65])
{
    unsigned int n = 32;
    EVP_Digest(data, len, raw, &n, EVP_sha256(), NULL);
    cdx_hex(raw, 32, hex);
}

int source_unhex(const char *hex, uint8_t raw[32])
{
    for (int i = 0; i < 32; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = hex[2 * i + j];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = v * 16 + d;
        }
        raw[i] = (uint8_t)v;
    }
    return hex[64] == '\0' ? 0 : -1;
}
