/*
 * source.c - sniffing, capped reads, URL fetches and hashing for ingestion
 * (see source.h).  cdx_http_get (fetch/http.c) does HTTP; OpenSSL's EVP does sha256.
 */
#include "ingest/source.h"

#include "common/error.h"
#include "common/util.h"

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

cdx_result source_http_get(const char *url, uint64_t max_bytes, long timeout_s, source_http_reply *out)
{
    memset(out, 0, sizeof *out);
    cdx_http_params p = cdx_http_default_params();
    p.max_bytes = max_bytes;
    p.timeout_ms = (timeout_s > 0 ? timeout_s : 60L) * 1000;
    p.allow_private = 1;   /* the operator's own endpoints (feeds, URL lists) */
    p.any_status = 1;
    cdx_http_response resp;
    cdx_result r = cdx_http_get(url, &p, &resp);
    if (r) return r;
    out->data = resp.data;
    out->len = resp.len;
    out->status = resp.status;
    out->mtime = resp.mtime;
    out->retry_after_s = resp.retry_after_s;
    return CDX_OK;
}

cdx_result source_fetch_url(const char *url, uint64_t max_bytes, long timeout_s,
                            void **data, size_t *len, int64_t *mtime)
{
    *data = NULL;
    *len = 0;
    *mtime = 0;
    /* URLs to index come from the operator (a list file, a fleet feed), not
     * from an anonymous client: private addresses are allowed. */
    cdx_http_params p = cdx_http_default_params();
    p.max_bytes = max_bytes;
    p.timeout_ms = (timeout_s > 0 ? timeout_s : 60L) * 1000;
    p.allow_private = 1;
    cdx_http_response resp;
    cdx_result r = cdx_http_get(url, &p, &resp);
    if (r) return r;
    if (!source_sniff(resp.data, resp.len)) {
        free(resp.data);
        return cdx_error(CDX_ERR_FORMAT, "not an image (content is no known image format)");
    }
    *data = resp.data;
    *len = resp.len;
    *mtime = resp.mtime;
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
