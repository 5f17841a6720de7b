/*
 * fetch.c - download a model repository from the Hugging Face hub into the
 * model cache (cdx_model_fetch), with libcurl.
 *
 * Per file (cache.c lists them):
 *  - the final name exists: done.  Files only get their final name by a
 *    rename after a complete, size-checked, fsync'ed download, so presence
 *    means complete and a second fetch makes no request at all.
 *  - else download into <file>.part, continuing an existing .part with a
 *    Range request (CURLOPT_RESUME_FROM_LARGE):
 *      206  the server continues where the .part ends: append;
 *      200  with Range asked: libcurl refuses (CURLE_RANGE_ERROR) unless the
 *           length equals the .part (then it is whole): restart from 0 once;
 *      416  the .part is whole if its size is N of "Content-Range: bytes
 *           * /N", otherwise restart from 0 once.
 *    The result must have the announced length and, for files the hub
 *    stores in LFS (the weights), the sha256 it announces in X-Linked-Etag;
 *    then fsync, rename, fsync the directory.
 * When every file is in place the .complete marker is written; until then
 * the directory is not a model (cdx_model_cache_dir() says incomplete) and
 * the next fetch resumes.  A flock on .lock serialises fetches of one
 * directory.  Broken connections, stalls, 429 and 5xx are retried (with
 * resume) up to FETCH_ATTEMPTS times per file; unreachable hosts are not.
 *
 * Authorization (HF_TOKEN) is a custom header, which libcurl sends only to
 * the host of the original URL: the hub redirects weights to a CDN that
 * must not see the token (CURLOPT_UNRESTRICTED_AUTH stays off).
 *
 * Workload: about 7 requests per model; the weights (0.1-16 GB) stream to
 * disk in 256 KB writes with constant memory.
 */
#include "fetch/fetch.h"
#include "fetch/cache.h"
#include "fetch/http.h"
#include "common/error.h"
#include "common/util.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FETCH_ATTEMPTS 4             /* per file, for transient failures */
#define FETCH_MAX_REDIRS 10
#define FETCH_LOW_SPEED_BYTES 1024   /* abort below 1 KB/s ... */
#define FETCH_LOW_SPEED_SECONDS 60   /* ... sustained for 60 s */
#define FETCH_ENDPOINT_MAX 2048
#define FETCH_TOKEN_MAX 4096
#define FETCH_BUFFER (256 * 1024)
#define FETCH_PROGRESS_PERIOD 0.1    /* seconds between progress redraws */

static const char offline_hint[] =
    "download the model elsewhere and pass its directory with --model, or set "
    "CLIPDEX_HF_ENDPOINT to a mirror";

cdx_fetch_params cdx_fetch_default_params(void)
{
    cdx_fetch_params p;
    memset(&p, 0, sizeof p);
    p.revision = "main";
    p.connect_timeout_s = 15;
    return p;
}

/* ------------------------------------------------------------ settings */

static int url_char_ok(char c)
{
    return c > 0x20 && c < 0x7f && c != '?' && c != '#' && c != '"' && c != '\\';
}

cdx_result cdx_fetch_endpoint(const cdx_fetch_params *params, char **out)
{
    *out = NULL;
    const char *e = params && params->endpoint && *params->endpoint ? params->endpoint
                                                                    : getenv("CLIPDEX_HF_ENDPOINT");
    if (!e || !*e) e = CDX_FETCH_DEFAULT_ENDPOINT;
    size_t n = strlen(e), scheme = !strncmp(e, "https://", 8) ? 8
                                 : !strncmp(e, "http://", 7) ? 7 : 0;
    while (n > scheme && e[n - 1] == '/') n--;
    int ok = scheme && n > scheme && e[scheme] != '/' && n <= FETCH_ENDPOINT_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = url_char_ok(e[i]);
    if (!ok) {
        char shown[128];
        return cdx_error(CDX_ERR_INVALID_ARG,
                         "invalid hub endpoint '%s' (from %s): expected http://HOST[:PORT][/PATH] "
                         "or https://..., without spaces, '?' or '#'",
                         cdx_cache_printable(e, shown, sizeof shown),
                         params && params->endpoint && *params->endpoint ? "the options"
                                                                         : "CLIPDEX_HF_ENDPOINT");
    }
    *out = strndup(e, n);
    return *out ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
}

cdx_result cdx_fetch_token(const cdx_fetch_params *params, const char **out)
{
    const char *t = params && params->token ? params->token : getenv("HF_TOKEN");
    *out = NULL;
    if (!t || !*t) return CDX_OK;
    size_t n = strnlen(t, FETCH_TOKEN_MAX + 1);
    if (n > FETCH_TOKEN_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "HF_TOKEN is longer than %d bytes", FETCH_TOKEN_MAX);
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return cdx_error(CDX_ERR_INVALID_ARG, "HF_TOKEN contains a space or a control "
                             "or non-ASCII character at byte %zu", i);
    *out = t;
    return CDX_OK;
}

cdx_result cdx_fetch_file_url(const char *endpoint, const char *repo_id,
                              const char *revision, const char *file, char **out)
{
    *out = NULL;
    cdx_result r = cdx_cache_check_repo_id(repo_id);
    if (r == CDX_OK) r = cdx_cache_check_revision(revision);
    if (r != CDX_OK) return r;
    char *rev = cdx_cache_encode_revision(revision);
    if (!rev || asprintf(out, "%s/%s/resolve/%s/%s", endpoint, repo_id, rev, file) < 0) {
        *out = NULL;
        free(rev);
        return cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    free(rev);
    return CDX_OK;
}

/* Digits at *p into *v (no sign, no overflow); advances *p; 0 if none. */
static int parse_u63(const char **p, int64_t *v)
{
    const char *s = *p;
    int64_t x = 0;
    if (*s < '0' || *s > '9') return 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (x > (INT64_MAX - 9) / 10) return 0;
        x = x * 10 + (*s - '0');
    }
    *p = s;
    *v = x;
    return 1;
}

void cdx_fetch_etag_sha256(const char *etag, char out[65])
{
    out[0] = '\0';
    if (!strncmp(etag, "W/", 2)) etag += 2;
    size_t n = strlen(etag);
    if (n == 66 && etag[0] == '"' && etag[65] == '"') {
        etag++;
        n = 64;
    }
    if (n != 64) return;
    for (size_t i = 0; i < 64; i++) {
        char c = etag[i];
        if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            out[0] = '\0';
            return;
        }
        out[i] = c;
    }
    out[64] = '\0';
}

int64_t cdx_fetch_content_range_total(const char *v)
{
    int64_t a, b, total;
    while (*v == ' ' || *v == '\t') v++;
    if (strncasecmp(v, "bytes", 5) != 0) return -1;
    v += 5;
    while (*v == ' ' || *v == '\t') v++;
    if (*v == '*') {
        v++;
    } else {
        if (!parse_u63(&v, &a) || *v++ != '-' || !parse_u63(&v, &b) || b < a) return -1;
    }
    if (*v++ != '/' || !parse_u63(&v, &total)) return -1;
    while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') v++;
    return *v ? -1 : total;
}

/* ------------------------------------------------------------ one transfer */

typedef struct session {
    CURL *curl;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    const char *endpoint, *repo_id, *revision;
    int have_token, quiet, tty;
    /* sha256 the hub announces for the current file (X-Linked-Etag of an LFS
     * file, lower-case hex; "" if none) and the verified one of the weights */
    char expect_sha[65], weights_sha[65];
    int weights_fetched;   /* the weights were (re)downloaded by this run */
} session;

/* State of one HTTP request writing into a .part file. */
typedef struct xfer {
    session *s;
    const cdx_cache_file *file;
    int fd;
    int64_t offset;          /* .part length when the request started */
    int64_t received;        /* body bytes appended by this request */
    int too_large, write_errno;
    /* from the headers of the latest response */
    int64_t content_length, range_total;
    char err_code[64], err_msg[200];
    /* progress */
    double t_start, t_last;
    int line_open;
} xfer;

static void fmt_bytes(double b, char *buf, size_t n)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        i++;
    }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, unit[i]);
}

static void progress_draw(xfer *x)
{
    char now[16], total[16], rate[16];
    double dt = cdx_now() - x->t_start;
    int64_t have = x->offset + x->received;
    int64_t all = x->content_length >= 0 ? x->offset + x->content_length : -1;
    fmt_bytes((double)have, now, sizeof now);
    fmt_bytes(dt > 0 ? (double)x->received / dt : 0, rate, sizeof rate);
    if (all > 0) {
        fmt_bytes((double)all, total, sizeof total);
        fprintf(stderr, "\r  %-26s %10s / %-10s %3d%%  %10s/s\033[K", x->file->name, now,
                total, (int)(100.0 * (double)have / (double)all), rate);
    } else {
        fprintf(stderr, "\r  %-26s %10s  %10s/s\033[K", x->file->name, now, rate);
    }
    x->line_open = 1;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    xfer *x = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    double t = cdx_now();
    if (x->s->quiet || !x->s->tty || x->received == 0 || t - x->t_last < FETCH_PROGRESS_PERIOD)
        return 0;
    x->t_last = t;
    progress_draw(x);
    return 0;
}

/* Copies the value of header `name` from a raw header line; 1 if it matched. */
static int header_value(const char *line, size_t len, const char *name, char *out,
                        size_t cap)
{
    size_t k = strlen(name);
    if (len <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return 0;
    const char *v = line + k + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t m = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    for (size_t i = 0; i < m; i++) out[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
    out[m] = '\0';
    return 1;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    char v[128];
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new response (e.g. after a redirect): forget the previous one. */
        x->content_length = x->range_total = -1;
        x->err_code[0] = x->err_msg[0] = '\0';
    } else if (header_value(buf, len, "Content-Length", v, sizeof v)) {
        const char *p = v;
        int64_t cl;
        x->content_length = parse_u63(&p, &cl) && !*p ? cl : -1;
    } else if (header_value(buf, len, "Content-Range", v, sizeof v)) {
        x->range_total = cdx_fetch_content_range_total(v);
    } else if (header_value(buf, len, "X-Linked-Etag", v, sizeof v)) {
        /* Kept across redirects: the hub's reply carries it, the CDN's not. */
        cdx_fetch_etag_sha256(v, x->s->expect_sha);
    } else if (!header_value(buf, len, "X-Error-Code", x->err_code, sizeof x->err_code)) {
        header_value(buf, len, "X-Error-Message", x->err_msg, sizeof x->err_msg);
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(x->s->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 && code != 206) return len; /* an error page: not file data */
    if (code == 200 && x->offset > 0 && x->received == 0) {
        /* Whole file although a range was asked: start the .part again. */
        if (ftruncate(x->fd, 0) != 0) {
            x->write_errno = errno;
            return 0;
        }
        x->offset = 0;
    }
    if ((uint64_t)x->offset + (uint64_t)x->received + len > x->file->max_bytes) {
        x->too_large = 1;
        return 0;
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = write(x->fd, buf + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            x->write_errno = w < 0 ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    x->received += (int64_t)len;
    return len;
}

/* "scheme://host[:port]" of the URL libcurl last tried, into buf. */
static const char *origin_of(session *s, char *buf, size_t n)
{
    const char *url = NULL;
    curl_easy_getinfo(s->curl, CURLINFO_EFFECTIVE_URL, &url);
    if (!url) url = s->endpoint;
    const char *p = strstr(url, "://");
    size_t len = p ? (size_t)(strchrnul(p + 3, '/') - url) : strlen(url);
    if (len >= n) len = n - 1;
    memcpy(buf, url, len);
    buf[len] = '\0';
    return buf;
}

static int transfer_connected(session *s)
{
    long code = 0;
    curl_off_t t = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(s->curl, CURLINFO_CONNECT_TIME_T, &t);
    return code != 0 || t > 0;
}

/* Sets the error for a failed curl_easy_perform; returns 1 when retrying
 * (with resume) may help. */
static int curl_failure(xfer *x, CURLcode rc, cdx_result *res)
{
    session *s = x->s;
    char where[256];
    const char *detail = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);
    const char *name = x->file->name;
    origin_of(s, where, sizeof where);
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        *res = cdx_error(CDX_ERR_NETWORK, "cannot reach %s (%s). You appear to be offline; %s.",
                         where, detail, offline_hint);
        return 0;
    case CURLE_COULDNT_CONNECT:
        *res = cdx_error(CDX_ERR_NETWORK, "cannot reach %s (%s). You appear to be offline or "
                         "the server is down; %s.", where, detail, offline_hint);
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        if (!transfer_connected(s)) {
            *res = cdx_error(CDX_ERR_NETWORK, "cannot reach %s (%s). You appear to be offline "
                             "or behind a firewall; %s.", where, detail, offline_hint);
            return 0;
        }
        *res = cdx_error(CDX_ERR_NETWORK, "download of %s from %s stalled (less than %d bytes/s "
                         "for %d s): %s. Run the command again to resume.", name, where,
                         FETCH_LOW_SPEED_BYTES, FETCH_LOW_SPEED_SECONDS, detail);
        return 1;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        *res = cdx_error(CDX_ERR_NETWORK, "connection to %s broken while downloading %s (%s). "
                         "Run the command again to resume.", where, name, detail);
        return 1;
    case CURLE_FILESIZE_EXCEEDED:
        *res = cdx_error(CDX_ERR_TOO_LARGE, "%s from %s is larger than the limit of %llu bytes",
                         name, where, (unsigned long long)x->file->max_bytes);
        return 0;
    case CURLE_WRITE_ERROR:
        if (x->too_large)
            *res = cdx_error(CDX_ERR_TOO_LARGE, "%s from %s is larger than the limit of %llu "
                             "bytes", name, where, (unsigned long long)x->file->max_bytes);
        else
            *res = cdx_error(CDX_ERR_IO, "cannot write %s%s into the cache: %s", name,
                             CDX_CACHE_PART_SUFFIX, strerror(x->write_errno ? x->write_errno : EIO));
        return 0;
    case CURLE_TOO_MANY_REDIRECTS:
        *res = cdx_error(CDX_ERR_NETWORK, "%s: more than %d redirects (%s)", name,
                         FETCH_MAX_REDIRS, detail);
        return 0;
    default:
        *res = cdx_error(CDX_ERR_NETWORK, "downloading %s from %s failed: %s", name, where, detail);
        return 0;
    }
}

/* Sets the error for an HTTP error status; returns 1 when retrying may help. */
static int http_failure(xfer *x, long code, cdx_result *res)
{
    session *s = x->s;
    char where[256], said[240] = "";
    const char *name = x->file->name;
    origin_of(s, where, sizeof where);
    if (x->err_msg[0]) snprintf(said, sizeof said, " (server: %s)", x->err_msg);
    if (code == 401 || code == 403) {
        *res = cdx_error(CDX_ERR_NETWORK,
                         "access to %s denied (HTTP %ld for %s)%s: the repository is private "
                         "or gated, or does not exist. %s",
                         s->repo_id, code, name, said,
                         s->have_token ? "The token in HF_TOKEN was sent but does not grant "
                                         "access: check it, and for a gated model accept its "
                                         "terms on its hub page."
                                       : "If it exists, set HF_TOKEN to a Hugging Face access "
                                         "token (https://huggingface.co/settings/tokens) and, "
                                         "for a gated model, accept its terms on its hub page.");
        return 0;
    }
    if (code == 404) {
        if (!strcmp(x->err_code, "RepoNotFound"))
            *res = cdx_error(CDX_ERR_NOT_FOUND, "repository %s not found at %s (HTTP 404)%s",
                             s->repo_id, s->endpoint, said);
        else if (!strcmp(x->err_code, "RevisionNotFound"))
            *res = cdx_error(CDX_ERR_NOT_FOUND, "revision '%s' not found in %s (HTTP 404)%s",
                             s->revision, s->repo_id, said);
        else if (!strcmp(name, CDX_CACHE_WEIGHTS))
            *res = cdx_error(CDX_ERR_UNSUPPORTED,
                             "%s (revision %s) has no %s (HTTP 404): clipdex supports only "
                             "safetensors checkpoints; pytorch_model.bin (a Python pickle) is "
                             "not supported. Choose a repository that has model.safetensors "
                             "(a conversion pull request works: --revision refs/pr/N).",
                             s->repo_id, s->revision, name);
        else
            *res = cdx_error(CDX_ERR_NOT_FOUND, "%s not found in %s at revision '%s' on %s "
                             "(HTTP 404)%s: check the repository id and revision, and that it "
                             "is a CLIP model in the Hugging Face layout",
                             name, s->repo_id, s->revision, s->endpoint, said);
        return 0;
    }
    int transient = code == 429 || code >= 500;
    *res = cdx_error(CDX_ERR_NETWORK, "HTTP %ld from %s for %s%s%s", code, where, name, said,
                     transient ? ". Try again later; the download will resume." : "");
    return transient;
}

typedef enum xfer_outcome {
    XFER_DONE,     /* the .part holds the whole file */
    XFER_ABSENT,   /* 404 for an optional file */
    XFER_RESTART,  /* the .part cannot be continued: truncate and retry */
    XFER_RETRY,    /* transient failure: retry (resuming), error is set */
    XFER_FAIL      /* error is set */
} xfer_outcome;

/* One request for x->file appending to x->fd from x->offset. */
static xfer_outcome transfer(xfer *x, const char *url, cdx_result *res)
{
    session *s = x->s;
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->offset);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->file->max_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    s->errbuf[0] = '\0';
    x->t_start = x->t_last = cdx_now();
    CURLcode rc = curl_easy_perform(c);
    if (x->line_open || (rc == CURLE_OK && x->received > 0 && s->tty && !s->quiet)) {
        progress_draw(x); /* final state of the line, kept on screen */
        fputc('\n', stderr);
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_RANGE_ERROR) return XFER_RESTART;
    if (rc != CURLE_OK) return curl_failure(x, rc, res) ? XFER_RETRY : XFER_FAIL;

    struct stat st;
    if (fstat(x->fd, &st) != 0) {
        *res = cdx_error(CDX_ERR_IO, "%s%s: %s", x->file->name, CDX_CACHE_PART_SUFFIX,
                         strerror(errno));
        return XFER_FAIL;
    }
    if (code == 416 && x->offset > 0)
        return x->range_total == (int64_t)st.st_size ? XFER_DONE : XFER_RESTART;
    if (code == 200 || code == 206) {
        int64_t want = code == 206 ? x->range_total : x->content_length;
        if (code == 206 && want < 0 && x->content_length >= 0)
            want = x->offset + x->content_length;
        if (want < 0 || want == (int64_t)st.st_size) return XFER_DONE;
        *res = cdx_error(CDX_ERR_NETWORK, "%s: got %lld bytes, the server announced %lld",
                         x->file->name, (long long)st.st_size, (long long)want);
        return XFER_RETRY;
    }
    if (code == 404 && !x->file->required && strcmp(x->err_code, "RepoNotFound") != 0 &&
        strcmp(x->err_code, "RevisionNotFound") != 0)
        return XFER_ABSENT;
    return http_failure(x, code, res) ? XFER_RETRY : XFER_FAIL;
}

/* ------------------------------------------------------------ one file */

static cdx_result sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return cdx_error(CDX_ERR_IO, "%s: %s", dir, strerror(e));
    }
    close(fd);
    return CDX_OK;
}

/* Hex sha256 of the file at path into out. */
static cdx_result sha256_file(const char *path, char out[65])
{
    enum { CHUNK = 1 << 20 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char *buf = malloc(CHUNK), md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    cdx_result r = CDX_OK;
    if (fd < 0) r = cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno));
    else if (!buf || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
        r = cdx_error(CDX_ERR_NOMEM, "cannot start sha256");
    while (r == CDX_OK) {
        ssize_t got = read(fd, buf, CHUNK);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) r = cdx_error(CDX_ERR_IO, "%s: %s", path, strerror(errno));
        if (got <= 0) break;
        if (!EVP_DigestUpdate(ctx, buf, (size_t)got)) r = cdx_error(CDX_ERR_INTERNAL, "sha256 failed");
    }
    if (r == CDX_OK && (!EVP_DigestFinal_ex(ctx, md, &md_len) || md_len != 32))
        r = cdx_error(CDX_ERR_INTERNAL, "sha256 failed");
    if (r == CDX_OK) cdx_hex(md, 32, out);
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (fd >= 0) close(fd);
    return r;
}

/* Checks a finished .part against the sha256 the hub announced, if any.  A
 * mismatch (a corrupted or stale .part, or a file that changed on the hub
 * between two runs) deletes the .part so the next run starts afresh. */
static cdx_result verify_part(session *s, const cdx_cache_file *f, const char *part)
{
    if (!s->expect_sha[0]) return CDX_OK;
    char got[65];
    if (!s->quiet) fprintf(stderr, "clipdex: verifying the sha256 of %s\n", f->name);
    cdx_result r = sha256_file(part, got);
    if (r != CDX_OK) return r;
    if (strcmp(got, s->expect_sha) != 0) {
        unlink(part);
        return cdx_error(CDX_ERR_NETWORK, "%s is corrupted: its sha256 is %s but the hub "
                         "announced %s. The partial download was deleted; run the command "
                         "again to download it afresh.", f->name, got, s->expect_sha);
    }
    if (!strcmp(f->name, CDX_CACHE_WEIGHTS)) memcpy(s->weights_sha, got, sizeof got);
    return CDX_OK;
}

/* Appends the .part of file f from its current end until complete. */
static cdx_result download_part(session *s, const cdx_cache_file *f, const char *url,
                                int fd, int *absent)
{
    int restarted = 0;
    for (int attempt = 1;;) {
        struct stat st;
        if (fstat(fd, &st) != 0)
            return cdx_error(CDX_ERR_IO, "%s%s: %s", f->name, CDX_CACHE_PART_SUFFIX,
                             strerror(errno));
        xfer x;
        memset(&x, 0, sizeof x);
        x.s = s;
        x.file = f;
        x.fd = fd;
        x.offset = (uint64_t)st.st_size > f->max_bytes ? -1 : st.st_size;
        x.content_length = x.range_total = -1;
        cdx_result r = CDX_OK;
        xfer_outcome o = x.offset < 0 ? XFER_RESTART : transfer(&x, url, &r);
        switch (o) {
        case XFER_DONE:
            return CDX_OK;
        case XFER_ABSENT:
            *absent = 1;
            return CDX_OK;
        case XFER_RESTART:
            if (restarted++)
                return cdx_error(CDX_ERR_NETWORK, "%s: the server does not honour range "
                                 "requests consistently", f->name);
            if (ftruncate(fd, 0) != 0)
                return cdx_error(CDX_ERR_IO, "%s%s: %s", f->name, CDX_CACHE_PART_SUFFIX,
                                 strerror(errno));
            continue;
        case XFER_RETRY:
            if (attempt >= FETCH_ATTEMPTS) return r;
            if (!s->quiet)
                fprintf(stderr, "clipdex: %s\nclipdex: retrying in %d s (attempt %d of %d)\n",
                        cdx_last_error(), 1 << (attempt - 1), attempt + 1, FETCH_ATTEMPTS);
            sleep(1u << (attempt - 1));
            attempt++;
            continue;
        case XFER_FAIL:
            return r;
        }
    }
}

/* Makes dir/<f->name> present: nothing if it is, else download + rename. */
static cdx_result fetch_file(session *s, const char *dir, const cdx_cache_file *f,
                             int *present)
{
    char *final = cdx_path_join(dir, f->name), *part = NULL, *url = NULL;
    cdx_result r = CDX_OK;
    int fd = -1, absent = 0;
    struct stat st;
    *present = 1;
    if (!final || asprintf(&part, "%s%s", final, CDX_CACHE_PART_SUFFIX) < 0) {
        part = NULL;
        r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (stat(final, &st) == 0 && S_ISREG(st.st_mode)) {
        unlink(part); /* stale: the final file won */
        goto out;
    }
    if ((r = cdx_fetch_file_url(s->endpoint, s->repo_id, s->revision, f->name, &url)) != CDX_OK)
        goto out;
    fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || fstat(fd, &st) != 0) {
        r = cdx_error(CDX_ERR_IO, "%s: %s", part, strerror(errno));
        goto out;
    }
    int64_t resumed_at = st.st_size;
    double t0 = cdx_now();
    s->expect_sha[0] = '\0';
    if ((r = download_part(s, f, url, fd, &absent)) != CDX_OK) goto out;
    if (absent) {
        *present = 0;
        unlink(part);
        goto out;
    }
    int synced = fsync(fd) == 0 && fstat(fd, &st) == 0;
    int e = errno;
    if (close(fd) != 0 && synced) {
        synced = 0;
        e = errno;
    }
    fd = -1;
    if (!synced) {
        r = cdx_error(CDX_ERR_IO, "%s: %s", part, strerror(e));
        goto out;
    }
    if ((r = verify_part(s, f, part)) != CDX_OK) goto out;
    if (!strcmp(f->name, CDX_CACHE_WEIGHTS)) s->weights_fetched = 1;
    if (rename(part, final) != 0) {
        r = cdx_error(CDX_ERR_IO, "cannot rename %s: %s", part, strerror(errno));
        goto out;
    }
    if ((r = sync_dir(dir)) != CDX_OK) goto out;
    if (!s->quiet && !s->tty) {
        char size[16], rate[16];
        double dt = cdx_now() - t0;
        fmt_bytes((double)st.st_size, size, sizeof size);
        fmt_bytes(dt > 0 ? (double)(st.st_size - resumed_at) / dt : 0, rate, sizeof rate);
        fprintf(stderr, "clipdex: %s: %s in %.1f s (%s/s)%s\n", f->name, size, dt, rate,
                resumed_at > 0 ? ", resumed" : "");
    }
out:
    if (fd >= 0) close(fd);
    free(url);
    free(part);
    free(final);
    return r;
}

/* ------------------------------------------------------------ the model */

static cdx_result session_open(session *s, const cdx_fetch_params *p, const char *token)
{
    /* The one HTTP set-up of clipdex (http.c); this session adds resuming,
     * a bearer token, progress and stall detection, which plain GETs lack. */
    cdx_result ir = http_global_init();
    if (ir) return ir;
    if (!(s->curl = curl_easy_init())) return cdx_error(CDX_ERR_INTERNAL, "cannot initialise libcurl");
    if (token) {
        char *h;
        if (asprintf(&h, "Authorization: Bearer %s", token) < 0)
            return cdx_error(CDX_ERR_NOMEM, "out of memory");
        s->headers = curl_slist_append(NULL, h);
        free(h);
        if (!s->headers) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        s->have_token = 1;
    }
    CURL *c = s->curl;
    int https_only = !strncmp(s->endpoint, "https://", 8);
    http_easy_defaults(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->errbuf);
    /* Never downgrade: a redirect from an https hub must stay on https. */
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https_only ? "https" : "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)FETCH_MAX_REDIRS);
    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, p->connect_timeout_s > 0 ? p->connect_timeout_s : 15L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)FETCH_LOW_SPEED_BYTES);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)FETCH_LOW_SPEED_SECONDS);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)FETCH_BUFFER);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    return CDX_OK;
}

static void session_close(session *s)
{
    if (s->curl) curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->headers);
}

/* Creates dir and takes the flock of dir/.lock, waiting (with a note) while
 * another process holds it.  A failed fetch may remove an empty directory
 * and its lock (tidy_dir), so after waiting the lock is taken again unless
 * dir/.lock is still the file we locked. */
static cdx_result lock_dir(const char *dir, int quiet, int *out_fd)
{
    char *path = cdx_path_join(dir, CDX_CACHE_LOCK);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = CDX_OK;
    for (int said = quiet;;) {
        if ((r = cdx_cache_mkdirs(dir)) != CDX_OK) break;
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644), rc = -1;
        if (fd >= 0 && (rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK) {
            if (!said++)
                fprintf(stderr, "clipdex: waiting for another clipdex process fetching into %s\n",
                        dir);
            while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {}
        }
        if (rc != 0) {
            r = cdx_error(CDX_ERR_IO, "cannot lock %s: %s", path, strerror(errno));
            if (fd >= 0) close(fd);
            break;
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev) {
            *out_fd = fd;
            break;
        }
        close(fd);
    }
    free(path);
    return r;
}

/* After a failure: removes dir (and its repo directory) if the fetch left
 * nothing worth resuming, so `model list` shows no empty entries.  Called
 * with the lock held. */
static void tidy_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    int keep = 0;
    while (!keep && (e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strcmp(e->d_name, CDX_CACHE_LOCK))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_size == 0 && strlen(e->d_name) > strlen(CDX_CACHE_PART_SUFFIX) &&
            !strcmp(e->d_name + strlen(e->d_name) - strlen(CDX_CACHE_PART_SUFFIX),
                    CDX_CACHE_PART_SUFFIX)) {
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        keep = 1;
    }
    closedir(d);
    char *lock = cdx_path_join(dir, CDX_CACHE_LOCK), *parent = strdup(dir);
    if (!keep && lock && parent && unlink(lock) == 0 && rmdir(dir) == 0) {
        char *slash = strrchr(parent, '/');
        if (slash) {
            *slash = '\0';
            rmdir(parent); /* fails harmlessly while other revisions exist */
        }
    }
    free(lock);
    free(parent);
}

/* The verified weights sha256 an earlier marker in dir recorded, into out. */
static void previous_weights_sha(const char *dir, char out[65])
{
    char *path = cdx_path_join(dir, CDX_CACHE_MARKER), *text = NULL;
    out[0] = '\0';
    if (path && cdx_read_file(path, 64 * 1024, &text, NULL) == CDX_OK) {
        json_t *doc = json_loads(text, 0, NULL);
        const char *v = json_string_value(json_object_get(doc, "model.safetensors.sha256"));
        if (v) cdx_fetch_etag_sha256(v, out);
        json_decref(doc);
    }
    cdx_error_clear();
    free(text);
    free(path);
}

static cdx_result write_marker(session *s, const char *dir, const char **present, int n)
{
    json_t *files = json_array(), *doc;
    if (!s->weights_fetched) previous_weights_sha(dir, s->weights_sha);
    for (int i = 0; files && i < n; i++) json_array_append_new(files, json_string(present[i]));
    doc = json_pack("{s:s, s:s, s:s, s:o, s:I}", "repo_id", s->repo_id, "revision",
                    s->revision, "endpoint", s->endpoint, "files", files, "fetched_at",
                    (json_int_t)time(NULL));
    if (doc && s->weights_sha[0])
        json_object_set_new(doc, "model.safetensors.sha256", json_string(s->weights_sha));
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    char *path = cdx_path_join(dir, CDX_CACHE_MARKER);
    cdx_result r = path ? cdx_write_file_atomic(path, text, strlen(text))
                        : cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (r == CDX_OK) r = sync_dir(dir);
    free(path);
    free(text);
    return r;
}

/* Fetches every file of s->repo_id into dir (which exists and is locked). */
static cdx_result fetch_all(session *s, const char *dir)
{
    const char *present[16];
    int n = 0;
    for (int i = 0; i < cdx_cache_n_files; i++) {
        int here = 0;
        cdx_result r = fetch_file(s, dir, &cdx_cache_files[i], &here);
        if (r != CDX_OK) return r;
        if (here && n < (int)(sizeof present / sizeof present[0]))
            present[n++] = cdx_cache_files[i].name;
    }
    return write_marker(s, dir, present, n);
}

cdx_result cdx_model_fetch(const char *repo_id, const cdx_fetch_params *params,
                           char **out_dir)
{
    *out_dir = NULL;
    cdx_fetch_params p = params ? *params : cdx_fetch_default_params();
    session s;
    memset(&s, 0, sizeof s);
    s.repo_id = repo_id;
    s.revision = cdx_cache_revision(&p);
    s.quiet = p.quiet;
    s.tty = isatty(STDERR_FILENO);
    char *endpoint = NULL, *dir = NULL;
    const char *token = NULL;
    int lock_fd = -1;
    cdx_result r = cdx_cache_check_repo_id(repo_id);
    if (r == CDX_OK) r = cdx_cache_check_revision(s.revision);
    if (r == CDX_OK) r = cdx_fetch_endpoint(&p, &endpoint);
    if (r == CDX_OK) r = cdx_fetch_token(&p, &token);
    if (r == CDX_OK) r = cdx_model_cache_dir(repo_id, &p, &dir, NULL);
    if (r != CDX_OK) goto out;
    s.endpoint = endpoint;
    if (cdx_cache_dir_complete(dir)) goto out; /* already there: no network at all */
    if ((r = lock_dir(dir, s.quiet, &lock_fd)) != CDX_OK) goto out;
    if (cdx_cache_dir_complete(dir)) goto out; /* another process finished it */
    if (!s.quiet)
        fprintf(stderr, "clipdex: fetching %s (revision %s) from %s into %s\n", repo_id,
                s.revision, endpoint, dir);
    if ((r = session_open(&s, &p, token)) == CDX_OK) r = fetch_all(&s, dir);
    session_close(&s);
    if (r != CDX_OK) tidy_dir(dir);
out:
    if (lock_fd >= 0) close(lock_fd);
    free(endpoint);
    if (r == CDX_OK)
        *out_dir = dir;
    else
        free(dir);
    return r;
}
