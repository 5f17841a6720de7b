/*
 * serve_testutil.h - helpers for the HTTP server tests: a libcurl client, a
 * tiny in-process "upstream" web server on 127.0.0.1 (libmicrohttpd) that
 * plays the remote side of image URL fetches (images, redirects, slow,
 * oversized and non-image answers), and starting/stopping a real
 * `clipdex serve` child process with a bounded lifetime.
 *
 * All traffic stays on 127.0.0.1.  Children get PR_SET_PDEATHSIG(SIGKILL)
 * so they never outlive the test, and are killed at exit.
 */
#ifndef CDX_SERVE_TESTUTIL_H
#define CDX_SERVE_TESTUTIL_H

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <strings.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ client */

typedef struct http_resp {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
    CURLcode rc;
} http_resp;

static inline size_t hr_body(char *p, size_t sz, size_t n, void *u)
{
    http_resp *r = u;
    size_t k = sz * n;
    char *nb = realloc(r->body, r->len + k + 1);
    if (!nb) return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = 0;
    return k;
}

static inline size_t hr_header(char *p, size_t sz, size_t n, void *u)
{
    http_resp *r = u;
    size_t k = sz * n;
    if (r->hlen + k < sizeof r->headers) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = 0;
    }
    return k;
}

static inline void http_free(http_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* A response header value (case-insensitive name) copied to out; 1 if found. */
static inline int http_header(const http_resp *r, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    const char *p = r->headers;
    while (p && *p) {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= out_len) n = out_len - 1;
            memcpy(out, v, n);
            out[n] = 0;
            return 1;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

/* One request.  headers: NULL-terminated list of "Name: value".  form:
 * a curl_mime (multipart) or NULL.  chunked: send body with
 * Transfer-Encoding: chunked (no Content-Length). */
static inline http_resp http_do_full(const char *method, const char *url, const char *const *headers,
                              const char *body, size_t body_len, curl_mime *(*form)(CURL *, void *),
                              void *form_arg, int chunked)
{
    http_resp r;
    memset(&r, 0, sizeof r);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    for (const char *const *h = headers; h && *h; h++) hl = curl_slist_append(hl, *h);
    if (chunked) hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hr_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hr_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_mime *mime = NULL;
    if (form) {
        mime = form(c, form_arg);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (!chunked) curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    r.rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_mime_free(mime);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return r;
}

static inline http_resp http_get(const char *url, const char *const *headers)
{
    return http_do_full("GET", url, headers, NULL, 0, NULL, NULL, 0);
}

static inline http_resp http_json(const char *method, const char *url, const char *json, const char *const *extra)
{
    const char *h[8] = {"Content-Type: application/json"};
    size_t n = 1;
    for (const char *const *e = extra; e && *e && n < 7; e++) h[n++] = *e;
    h[n] = NULL;
    return http_do_full(method, url, h, json, strlen(json), NULL, NULL, 0);
}

/* The JSON body (owned by caller) or NULL. */
static json_t *http_body_json(const http_resp *r)
{
    if (!r->body) return NULL;
    return json_loadb(r->body, r->len, 0, NULL);
}

/* error.code of an error response, "" if not one. */
static inline const char *http_error_code(const http_resp *r, char *buf, size_t n)
{
    buf[0] = 0;
    json_t *j = http_body_json(r);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (c && m) snprintf(buf, n, "%s", c);
    json_decref(j);
    return buf;
}

/* ------------------------------------------------------------ child server */

typedef struct child {
    pid_t pid;
    char url[128];
} child;

static child *g_children[8];

static inline void kill_children(void)
{
    for (int i = 0; i < 8; i++)
        if (g_children[i] && g_children[i]->pid > 0) {
            kill(g_children[i]->pid, SIGKILL);
            waitpid(g_children[i]->pid, NULL, 0);
            g_children[i]->pid = 0;
        }
}

/* Start `clipdex serve ARGS --port 0` and read "listening on URL".  Returns
 * 0 on success; on failure the child's exit status is in *exit_status. */
static inline int child_start(child *ch, const char *const *args, int *exit_status, char *first_line, size_t fl)
{
    const char *bin = getenv("CLIPDEX_BIN");
    if (!bin) {
        fprintf(stderr, "CLIPDEX_BIN not set\n");
        exit(1);
    }
    int pfd[2];
    if (pipe(pfd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        const char *argv[40] = {bin, "serve", "--port", "0"};
        int n = 4;
        for (const char *const *a = args; *a && n < 38; a++) argv[n++] = *a;
        argv[n] = NULL;
        alarm(600);  /* bounded lifetime, whatever happens */
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    ch->pid = pid;
    for (int i = 0; i < 8; i++)
        if (!g_children[i]) { g_children[i] = ch; break; }
    char line[256];
    size_t n = 0;
    char c;
    while (n + 1 < sizeof line && read(pfd[0], &c, 1) == 1 && c != '\n') line[n++] = c;
    line[n] = 0;
    close(pfd[0]);
    if (first_line) snprintf(first_line, fl, "%s", line);
    if (strncmp(line, "listening on ", 13) != 0) {
        int st = 0;
        waitpid(pid, &st, 0);
        ch->pid = 0;
        if (exit_status) *exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return -1;
    }
    snprintf(ch->url, sizeof ch->url, "%s", line + 13);
    return 0;
}

/* SIGTERM and wait (up to timeout_s); returns the exit status or -1. */
static inline int child_stop(child *ch, double timeout_s)
{
    if (ch->pid <= 0) return -1;
    kill(ch->pid, SIGTERM);
    for (double t = 0; t < timeout_s; t += 0.05) {
        int st;
        pid_t r = waitpid(ch->pid, &st, WNOHANG);
        if (r == ch->pid) {
            ch->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, NULL, 0);
    ch->pid = 0;
    return -1;
}

/* ------------------------------------------------------------ upstream */

/* Routes: /img (the image bytes, image/png), /img-octet (octet-stream),
 * /text (text/html), /big (bytes larger than any limit used in tests),
 * /slow?ms=N (image after N ms), /redir/N (N more redirects, then /img),
 * /redir-ftp, /missing (404). */
typedef struct upstream {
    struct MHD_Daemon *d;
    int port;
    const char *img;
    size_t img_len;
    char base[64];
} upstream;

static inline enum MHD_Result up_send(struct MHD_Connection *c, unsigned status, const char *type,
                               const void *data, size_t len, const char *location)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (type) MHD_add_response_header(r, "Content-Type", type);
    if (location) MHD_add_response_header(r, "Location", location);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static inline enum MHD_Result up_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)method; (void)version; (void)upload; (void)upload_size; (void)con_cls;
    upstream *u = cls;
    if (!strcmp(url, "/img")) return up_send(c, 200, "image/png", u->img, u->img_len, NULL);
    if (!strcmp(url, "/img-octet"))
        return up_send(c, 200, "application/octet-stream", u->img, u->img_len, NULL);
    if (!strcmp(url, "/text")) return up_send(c, 200, "text/html", "<html>hi</html>", 15, NULL);
    if (!strcmp(url, "/big")) {
        size_t n = 3u << 20;
        char *b = calloc(1, n);
        enum MHD_Result r = up_send(c, 200, "image/png", b, n, NULL);
        free(b);
        return r;
    }
    if (!strcmp(url, "/slow")) {
        const char *ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
        long v = ms ? strtol(ms, NULL, 10) : 1000;
        struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return up_send(c, 200, "image/png", u->img, u->img_len, NULL);
    }
    if (!strncmp(url, "/redir/", 7)) {
        long n = strtol(url + 7, NULL, 10);
        char loc[128];
        if (n <= 0) snprintf(loc, sizeof loc, "%s/img", u->base);
        else snprintf(loc, sizeof loc, "%s/redir/%ld", u->base, n - 1);
        return up_send(c, 302, "text/plain", "", 0, loc);
    }
    if (!strcmp(url, "/redir-ftp")) return up_send(c, 302, "text/plain", "", 0, "ftp://127.0.0.1/x.png");
    if (!strcmp(url, "/redir-file")) return up_send(c, 302, "text/plain", "", 0, "file:///etc/passwd");
    return up_send(c, 404, "text/plain", "no", 2, NULL);
}

static inline int upstream_start(upstream *u, const char *img, size_t img_len)
{
    memset(u, 0, sizeof *u);
    u->img = img;
    u->img_len = img_len;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    u->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
                            0, NULL, NULL, up_access, u, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_END);
    if (!u->d) return -1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(u->d, MHD_DAEMON_INFO_BIND_PORT);
    u->port = di ? di->port : 0;
    snprintf(u->base, sizeof u->base, "http://127.0.0.1:%d", u->port);
    return u->port ? 0 : -1;
}

static inline void upstream_stop(upstream *u)
{
    if (u->d) MHD_stop_daemon(u->d);
    u->d = NULL;
}

#endif
