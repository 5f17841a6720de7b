/*
 * server.h - shared types of the HTTP API server (`clipdex serve`).
 *
 * The server is layered so that everything but the socket glue can be unit
 * tested without a network:
 *   http.c      libmicrohttpd daemon: reads a request (body capped), builds a
 *               srv_request, calls srv_dispatch(), sends the srv_response,
 *               writes the access log and metrics, drains on shutdown.
 *   routes.c    the route table, matching (404/405), auth, CORS, read-only.
 *   api_*.c     handlers: pure functions srv_request -> srv_response that use
 *               only the public library API (clipdex.h), libvips for
 *               thumbnails and the helpers below.
 *   json_util.c base64.c multipart.c metrics.c web.c: helpers.
 *
 * Invariants: handlers never build a filesystem path from request input
 * (files are served by catalog id only); every error response is JSON
 * {"error": {"code", "message"}}; bad input is a 4xx, never a 5xx.
 *
 * Workload: a few to a few hundred concurrent connections on a small
 * machine; the CPU-heavy part (embedding, scans) runs on a fixed set of
 * workers behind a bounded queue (jobqueue.c), the rest is I/O and SQLite
 * lookups in the connection threads.
 */
#ifndef CDX_SERVER_SERVER_H
#define CDX_SERVER_SERVER_H

#include "clipdex.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct srv_metrics;

/* Options of `clipdex serve` (see docs/server.md). */
typedef struct srv_config {
    const char *library_dir;
    const char *host;          /* default "127.0.0.1" */
    int port;                  /* 0 = pick a free port */
    const char *token;         /* NULL/"" = writes open (loopback only) */
    int allow_private_urls;
    const char *cors_origin;   /* NULL = CORS off; "*" or one origin */
    size_t max_body;           /* default 32 MiB */
    int threads;               /* OpenMP threads per inference/scan call (0 = 1) */
    const char *access_log;    /* NULL = stderr, "-" = stdout, "off", FILE */
    int read_only;
    unsigned max_connections;  /* default 256 */
    unsigned max_per_client;   /* connections per client address (default 64; 0 = no limit) */
    unsigned header_timeout_s; /* inactivity allowed before a request header is
                                  complete, also between kept-alive requests (default 5) */
    long fetch_timeout_s;      /* total time per URL fetch (default 20) */
    long fetch_connect_timeout_s; /* default 5 */
    long fetch_max_redirects;  /* default 3 */
    uint64_t thumb_cache_bytes; /* thumbnail cache cap (default 512 MiB; 0 = no cache) */
    int workers;               /* inference/search workers (0 = 1 per 2 cores, at least 1) */
    int queue_limit;           /* queued search jobs before 503 (default 64) */
    cdx_precision precision;   /* of the towers (default fp32) */
    /* Background ingestion (background.c; docs/fleet.md): */
    const char *const *watch_dirs;  /* --watch: folders kept in step */
    int n_watch;
    const char *ingest_url;    /* --ingest nats://...: commit the pipeline's results */
    const char *replica_of;    /* --replica-of nats://...: follow results and
                                  deletions; the API is read-only, the library
                                  is opened writable for the consumer */
    const char *consumer;      /* durable consumer (default "library", replicas
                                  "replica-<host>-<hash of the library path>") */
    int ack_wait_ms;           /* when creating that consumer: how soon a killed
                                  run's batch comes back (0 = 30000) */
} srv_config;

void srv_config_defaults(srv_config *cfg);

/* Shared state of a running server; one per process. */
typedef struct srv_ctx {
    srv_config cfg;
    cdx_library *lib;
    int dim;
    struct thumb_cache *thumbs; /* NULL = thumbnails are not cached */
    struct srv_metrics *metrics;
    struct sched *sched;       /* search/embedding jobs (jobqueue.h); NULL = direct calls */
    double started;            /* cdx-independent monotonic seconds */
    atomic_int draining;       /* set on SIGTERM: responses say Connection: close */
    struct srv_bg *bg;         /* background ingestion threads (background.h) */
    struct srv_reindex *reindex; /* /api/reindex job (api_reindex.h); NULL when read-only */
} srv_ctx;

/* Open the library (writable unless cfg->read_only), create the thumbnail
 * cache directory when possible, set up metrics.  0 ok, -1 with a message
 * in err (the library's error included). */
int srv_ctx_open(srv_ctx *s, const srv_config *cfg, char *err, size_t err_len);
void srv_ctx_close(srv_ctx *s);

/* A decoded query-string argument. */
typedef struct srv_kv {
    const char *key, *value;
} srv_kv;

#define SRV_MAX_ARGS 32

/* One request, as handlers see it.  Pointers stay valid until the response
 * is sent. */
typedef struct srv_request {
    const char *method;        /* "GET", "POST", ... ("HEAD" is routed as GET) */
    const char *path;          /* decoded path without the query string */
    srv_kv args[SRV_MAX_ARGS];
    size_t n_args;
    int too_many_args;         /* more than SRV_MAX_ARGS were given */
    const char *content_type, *authorization, *if_none_match, *origin;
    const char *body;          /* NUL-terminated copy (may contain NULs) */
    size_t body_len;
    int64_t id;                /* the {id} path segment, when the route has one */
    const char *tail;          /* the {asset} remainder for the web route */
} srv_request;

/* What a handler produces; http.c turns it into an MHD response. */
typedef struct srv_response {
    int status;                /* 0 = not set yet */
    const char *content_type;  /* static string */
    char *body;                /* owned unless body_static */
    size_t body_len;
    int body_static;
    int fd;                    /* >= 0: send this file (closed by the sender) */
    uint64_t fd_size;
    char etag[96];
    const char *cache_control; /* static string */
    char location[160];
    char allow[64];            /* Allow header (405, OPTIONS) */
    int www_authenticate;
    int retry_after;           /* > 0: Retry-After header (seconds) */
    const char *error_code;    /* for the access log */
} srv_response;

void srv_response_init(srv_response *rs);
void srv_response_free(srv_response *rs);

/* Route handlers (api_search.c, api_images.c, api_misc.c). */
typedef void (*srv_handler)(srv_ctx *s, const srv_request *rq, srv_response *rs);

void api_search_get(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_search_post(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_text_search_get(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_text_search_post(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_search_post(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_search_images_post(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_list(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_get(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_file(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_thumb(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_add(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_image_delete(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_health(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_stats(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_metrics(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_reindex_get(srv_ctx *s, const srv_request *rq, srv_response *rs);    /* api_reindex.c */
void api_reindex_post(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_openapi(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_web(srv_ctx *s, const srv_request *rq, srv_response *rs);
void api_dupes_get(srv_ctx *s, const srv_request *rq, srv_response *rs);   /* api_dupes.c */

/* Monotonic seconds (CLOCK_MONOTONIC). */
double srv_now(void);

/* x rounded to `decimals` places, for timings in JSON (with the serialiser's
 * 9 significant digits, 12.3456789 ms prints as 12.35, not 12.345678901). */
double srv_round(double x, int decimals);

/* Significant digits of every JSON real we print: enough to round-trip a
 * float32 score, no more. */
#define SRV_JSON_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9))

/* True when an If-None-Match header value matches etag (quoted, as sent). */
int srv_etag_match(const char *if_none_match, const char *etag);

#endif
