/*
 * http.c - libmicrohttpd glue: sockets, per-request state, body limits,
 * conversion of srv_response to MHD responses (headers, CORS, files),
 * access log, metrics and draining shutdown.  See http.h for the threading
 * model.
 */
#include "http.h"

#include "json_util.h"
#include "metrics.h"
#include "routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct srv_http {
    srv_ctx *s;
    struct MHD_Daemon *daemon;
    int listen_fd;
    atomic_int in_flight;
    FILE *log;
    int log_owned;
    pthread_mutex_t log_mu;
};

typedef struct req_state {
    double t0;
    char *body;
    size_t len, cap;
    int rejected;              /* a 413 was queued before the body was read */
    int no_memory;             /* the body could not be stored: 503 at its end */
    int status;
    uint64_t bytes;
    const char *error_code;
    size_t route;
    char method[16];
    char path[512];
    char remote[64];
} req_state;

/* The state of requests whose own state could not be allocated: a 503 was
 * queued, the body is skipped (rejected), on_completed leaves it alone.
 * Never written. */
static req_state g_no_memory = {.rejected = 1};

/* Inactivity allowed while a body is received or a handler works. */
#define BODY_TIMEOUT_S 30

double srv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double srv_round(double x, int decimals)
{
    double f = 1;
    while (decimals-- > 0) f *= 10;
    return round(x * f) / f;
}

int srv_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* ------------------------------------------------------------ responses */

static void add_cors(srv_http *h, struct MHD_Connection *c, struct MHD_Response *r, int preflight)
{
    const char *allowed = h->s->cfg.cors_origin;
    if (!allowed || !*allowed) return;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin) return;
    if (!strcmp(allowed, "*")) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    } else if (!strcmp(allowed, origin)) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Vary", "Origin");
    } else {
        return;
    }
    if (preflight) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "ETag, Location");
}

static enum MHD_Result send_response(srv_http *h, struct MHD_Connection *c, req_state *st,
                                     const char *method, srv_response *rs)
{
    struct MHD_Response *r;
    int empty = rs->status == 304 || rs->status == 204;
    uint64_t bytes = 0;
    if (rs->fd >= 0 && !empty) {
        r = MHD_create_response_from_fd64(rs->fd_size, rs->fd);  /* MHD closes fd */
        if (!r) close(rs->fd);
        rs->fd = -1;
        bytes = rs->fd_size;
    } else {
        if (rs->fd >= 0) close(rs->fd);
        rs->fd = -1;
        if (empty) {
            r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        } else if (rs->body_static) {
            r = MHD_create_response_from_buffer(rs->body_len, rs->body, MHD_RESPMEM_PERSISTENT);
        } else {
            r = MHD_create_response_from_buffer(rs->body_len, rs->body ? rs->body : (void *)"",
                                                rs->body ? MHD_RESPMEM_MUST_FREE
                                                         : MHD_RESPMEM_PERSISTENT);
            if (r) rs->body = NULL;  /* owned by MHD now */
        }
        bytes = empty ? 0 : rs->body_len;
    }
    srv_response_free(rs);
    if (!r) return MHD_NO;
    if (rs->content_type && !empty) MHD_add_response_header(r, "Content-Type", rs->content_type);
    if (rs->etag[0]) MHD_add_response_header(r, "ETag", rs->etag);
    if (rs->cache_control) MHD_add_response_header(r, "Cache-Control", rs->cache_control);
    else if (!rs->etag[0]) MHD_add_response_header(r, "Cache-Control", "no-store");
    if (rs->location[0]) MHD_add_response_header(r, "Location", rs->location);
    if (rs->allow[0]) MHD_add_response_header(r, "Allow", rs->allow);
    if (rs->www_authenticate) MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"clipdex\"");
    if (rs->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", rs->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    add_cors(h, c, r, !strcmp(method, "OPTIONS"));
    if (atomic_load(&h->s->draining)) MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    st->status = rs->status;
    st->bytes = bytes;
    st->error_code = rs->error_code;
    return ret;
}

static enum MHD_Result send_error(srv_http *h, struct MHD_Connection *c, req_state *st,
                                  const char *method, int status, const char *code, const char *msg)
{
    srv_response rs;
    srv_response_init(&rs);
    srv_error(&rs, status, code, "%s", msg);
    return send_response(h, c, st, method, &rs);
}

/* ------------------------------------------------------------ requests */

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    srv_request *rq = cls;
    if (rq->n_args >= SRV_MAX_ARGS) {
        rq->too_many_args = 1;
        return MHD_NO;
    }
    rq->args[rq->n_args].key = key;
    rq->args[rq->n_args].value = value ? value : "";
    rq->n_args++;
    return MHD_YES;
}

static void too_large_msg(srv_http *h, char *msg, size_t n)
{
    snprintf(msg, n, "the request body exceeds the limit of %zu bytes (--max-body)", h->s->cfg.max_body);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    srv_http *h = cls;
    req_state *st = *con_cls;
    size_t max = h->s->cfg.max_body;
    char msg[160];
    if (!st) {
        /* The header is complete: from here the body and the handler get
         * the ordinary inactivity timeout (the header had header_timeout_s). */
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)BODY_TIMEOUT_S);
        st = calloc(1, sizeof *st);
        if (!st) {   /* answer rather than drop the connection (found by e2e_faults) */
            req_state tmp = {.route = srv_n_routes};
            *con_cls = &g_no_memory;
            return send_error(h, c, &tmp, method, 503, SRV_E_UNAVAILABLE, "out of memory; retry shortly");
        }
        st->t0 = srv_now();
        st->route = srv_n_routes;
        snprintf(st->method, sizeof st->method, "%s", method);
        snprintf(st->path, sizeof st->path, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, st->remote, sizeof st->remote);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, st->remote, sizeof st->remote);
        }
        *con_cls = st;
        atomic_fetch_add(&h->in_flight, 1);
        srv_metrics_in_flight(h->s->metrics, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        long long n;
        if (cl && (srv_parse_ll(cl, 0, LLONG_MAX, &n) || (unsigned long long)n > max)) {
            /* Refused before reading: MHD sends no 100 Continue and closes
             * the connection after this response. */
            st->rejected = 1;
            too_large_msg(h, msg, sizeof msg);
            return send_error(h, c, st, method, 413, SRV_E_TOO_LARGE, msg);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (st->rejected) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        if (n > max - st->len) {
            /* A chunked body crossed the limit: answer if MHD still lets us,
             * else close the connection. */
            st->rejected = 1;
            st->status = 413;
            st->error_code = SRV_E_TOO_LARGE;
            too_large_msg(h, msg, sizeof msg);
            if (send_error(h, c, st, method, 413, SRV_E_TOO_LARGE, msg) != MHD_YES) return MHD_NO;
            *upload_data_size = 0;
            return MHD_YES;
        }
        if (!st->no_memory && st->len + n + 1 > st->cap) {
            size_t nc = st->cap ? st->cap : 16384;
            while (nc < st->len + n + 1) nc = nc > SIZE_MAX / 2 ? SIZE_MAX : nc * 2;
            if (nc > max + 1) nc = max + 1;
            char *nb = realloc(st->body, nc);
            if (!nb) {   /* skip the rest of the body, answer 503 at its end (e2e_faults) */
                st->no_memory = 1;
                free(st->body);
                st->body = NULL;
                st->len = st->cap = 0;
            } else {
                st->body = nb;
                st->cap = nc;
            }
        }
        if (st->no_memory) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        st->body[st->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->rejected) return MHD_YES;
    if (st->no_memory) return send_error(h, c, st, method, 503, SRV_E_UNAVAILABLE, "out of memory; retry shortly");

    srv_request rq;
    memset(&rq, 0, sizeof rq);
    rq.method = method;
    rq.path = url;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &rq);
    rq.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    rq.if_none_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    rq.origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    rq.body = st->body;
    rq.body_len = st->len;
    srv_response rs;
    srv_response_init(&rs);
    srv_dispatch(h->s, &rq, &rs, &st->route);
    return send_response(h, c, st, method, &rs);
}

static void log_request(srv_http *h, const req_state *st, double ms)
{
    if (!h->log) return;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:i,s:I,s:f}", "time", ts, "remote", st->remote,
                          "method", st->method, "path", srv_json_string_lossy(st->path),
                          "status", st->status ? st->status : 499, "bytes", (json_int_t)st->bytes,
                          "ms", srv_round(ms, 2));
    if (!o) return;
    if (st->route < srv_n_routes) json_object_set_new(o, "route", json_string(srv_route_names[st->route]));
    if (st->error_code) json_object_set_new(o, "error", json_string(st->error_code));
    char *line = json_dumps(o, SRV_JSON_FLAGS);
    json_decref(o);
    if (!line) return;
    pthread_mutex_lock(&h->log_mu);
    fprintf(h->log, "%s\n", line);
    fflush(h->log);
    pthread_mutex_unlock(&h->log_mu);
    free(line);
}

/* A new connection (or, from on_completed, a kept-alive one waiting for its
 * next request) must send a whole request header within header_timeout_s
 * of inactivity: slow or stalled senders are dropped in seconds, not the
 * 30 s a body or a handler may take. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)socket_context;
    srv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->s->cfg.header_timeout_s);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    srv_http *h = cls;
    if (c) MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, h->s->cfg.header_timeout_s);
    req_state *st = *con_cls;
    if (!st) return;
    *con_cls = NULL;
    if (st == &g_no_memory) return;
    double dt = srv_now() - st->t0;
    /* 499: the client went away before a response was queued. */
    srv_metrics_observe(h->s->metrics, st->route, st->method, st->status ? st->status : 499, dt);
    log_request(h, st, dt * 1000.0);
    free(st->body);
    free(st);
    srv_metrics_in_flight(h->s->metrics, -1);
    atomic_fetch_sub(&h->in_flight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = '\0';
    fprintf(stderr, "clipdex serve: libmicrohttpd: %s\n", buf);
}

/* ------------------------------------------------------------ start / stop */

static int bind_listen(const srv_config *cfg, int *fd_out, struct sockaddr_storage *bound,
                       char *err, size_t err_len)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int gr = getaddrinfo(cfg->host, port, &hints, &res);
    if (gr != 0) {
        snprintf(err, err_len, "cannot resolve host '%s': %s", cfg->host, gai_strerror(gr));
        return -1;
    }
    /* Checked before binding: no socket is ever opened on a public
     * address without a token. */
    if (!srv_addr_is_loopback(res->ai_addr) && !(cfg->token && *cfg->token)) {
        snprintf(err, err_len,
                 "refusing to listen on the non-loopback address '%s' without a token: "
                 "set --token or CLIPDEX_TOKEN (writes then need 'Authorization: Bearer TOKEN')",
                 cfg->host);
        freeaddrinfo(res);
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 256) != 0) {
        snprintf(err, err_len, "cannot listen on %s:%d: %s", cfg->host, cfg->port, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    socklen_t sl = sizeof *bound;
    if (getsockname(fd, (struct sockaddr *)bound, &sl) != 0) {
        snprintf(err, err_len, "getsockname: %s", strerror(errno));
        close(fd);
        return -1;
    }
    *fd_out = fd;
    return 0;
}

int srv_http_start(srv_ctx *s, srv_http **out, char *url, size_t url_len, char *err,
                   size_t err_len)
{
    *out = NULL;
    srv_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    h->s = s;
    h->listen_fd = -1;
    pthread_mutex_init(&h->log_mu, NULL);
    struct sockaddr_storage bound;
    if (bind_listen(&s->cfg, &h->listen_fd, &bound, err, err_len)) goto fail;
    const struct sockaddr *sa = (const struct sockaddr *)&bound;
    char host[INET6_ADDRSTRLEN + 2], port[16];
    if (getnameinfo(sa, sizeof bound, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(err, err_len, "getnameinfo failed");
        goto fail;
    }
    if (sa->sa_family == AF_INET6) snprintf(url, url_len, "http://[%s]:%s", host, port);
    else snprintf(url, url_len, "http://%s:%s", host, port);

    const char *log = s->cfg.access_log;
    if (!log) {
        h->log = stderr;
    } else if (!strcmp(log, "-")) {
        h->log = stdout;
    } else if (strcmp(log, "off") != 0) {
        h->log = fopen(log, "ae");
        if (!h->log) {
            snprintf(err, err_len, "cannot open the access log %s: %s", log, strerror(errno));
            goto fail;
        }
        h->log_owned = 1;
    }

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.max_per_client,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)BODY_TIMEOUT_S,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, err_len, "cannot start the HTTP daemon (libmicrohttpd)");
        goto fail;
    }
    *out = h;
    return 0;
fail:
    if (h->listen_fd >= 0) close(h->listen_fd);
    if (h->log_owned) fclose(h->log);
    pthread_mutex_destroy(&h->log_mu);
    free(h);
    return -1;
}

void srv_http_stop(srv_http *h, double drain_s)
{
    if (!h) return;
    atomic_store(&h->s->draining, 1);
    MHD_socket lfd = MHD_quiesce_daemon(h->daemon);
    double deadline = srv_now() + drain_s;
    while (atomic_load(&h->in_flight) > 0 && srv_now() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(h->daemon);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    if (h->log) fflush(h->log);
    if (h->log_owned) fclose(h->log);
    pthread_mutex_destroy(&h->log_mu);
    free(h);
}
