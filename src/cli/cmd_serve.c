/*
 * cmd_serve.c - `clipdex serve`: the HTTP API server over a library (see
 * docs/server.md).  Parses options, opens the library, starts the daemon,
 * prints "listening on URL" as the first line of stdout, then waits for
 * SIGTERM/SIGINT and drains in-flight requests before exiting.
 */
#include "cli.h"

#include "server/background.h"
#include "server/http.h"
#include "server/server.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex serve [options]\n\n"
            "Serve a library over HTTP: a JSON search API and the web interface.\n\n"
            "options:\n"
            "  --library DIR          library directory (default $CLIPDEX_LIBRARY or ./clipdex-library)\n"
            "  --host HOST            address to bind (default 127.0.0.1)\n"
            "  --port N               port (default 8080; 0 = any free port)\n"
            "  --token T              bearer token required for writes (default $CLIPDEX_TOKEN);\n"
            "                         mandatory when HOST is not a loopback address\n"
            "  --allow-private-urls   let image URLs reach private/loopback/link-local addresses\n"
            "  --cors-origin ORIGIN   allow cross-origin requests from ORIGIN (or *); default off\n"
            "  --max-body BYTES       largest request body (default 33554432 = 32 MiB)\n"
            "  --threads N            threads per inference or search call (default 1)\n"
            CLI_PRECISION_HELP
            "  --workers N            inference/search workers; queued text queries and\n"
            "                         equal searches are batched (default: cores / 2, >= 1)\n"
            "  --queue-limit N        queued search jobs before answering 503 + Retry-After\n"
            "                         (default 64)\n"
            "  --max-connections N    simultaneous connections (default 256)\n"
            "  --max-per-client N     simultaneous connections from one address (default 64;\n"
            "                         0 = no limit)\n"
            "  --header-timeout S     a request header must arrive without a pause of S\n"
            "                         seconds (also the keep-alive idle time; default 5)\n"
            "  --fetch-timeout S      total time for fetching an image URL (default 20)\n"
            "  --access-log FILE|-|off  one JSON line per request (default stderr; - = stdout)\n"
            "  --thumb-cache-mb N     cap of the thumbnail cache in DIR/thumbs, least recently\n"
            "                         used removed first (default 512; 0 = do not cache)\n"
            "  --read-only            refuse uploads and deletions (403)\n"
            "  --watch DIR            keep the library in step with DIR (repeatable): indexed\n"
            "                         on start, then new, changed, moved and deleted files\n"
            "  --ingest nats://HOST:PORT/NAME  commit the fleet pipeline's results as they come\n"
            "                         (like index --from --follow; DELETE publishes removals)\n"
            "  --replica-of nats://HOST:PORT/NAME  a read replica: follow the pipeline's results\n"
            "                         and deletions into this library; the API is read-only\n"
            "  --consumer NAME        broker-side cursor of --ingest (default library) or of\n"
            "                         --replica-of (default replica-<host>-<hash of DIR>)\n"
            "  --ack-wait MS          when creating that cursor: how soon a batch of a killed\n"
            "                         server comes back (default 30000)\n"
            "  --help                 this help\n\n"
            "The first line on stdout is 'listening on http://HOST:PORT'.\n"
            "SIGTERM or SIGINT: stop accepting, finish in-flight requests (up to 30 s), exit 0.\n");
}

static void *warm_text_tower(void *pin)
{
    /* the pin keeps the model alive should a reindex switch meanwhile */
    if (cdx_model_prepare(cdx_library_pin_model(pin), CDX_TOWER_TEXT) != CDX_OK)   /* searches report it */
        fprintf(stderr, "clipdex serve: warning: %s\n", cdx_last_error());
    cdx_library_pin_release(pin);
    return NULL;
}

/* DIR/serve.json names a writable server's URL and pid: `clipdex reindex`
 * asks that server to reindex (it holds the writer lock).  Written by
 * rename; left behind by a kill -9, harmless (the URL does not answer). */
static void serve_file_write(const char *dir, const char *url, char *path, size_t cap)
{
    char tmp[4300];
    snprintf(path, cap, "%s/serve.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "{\"url\": \"%s\", \"pid\": %ld}\n", url, (long)getpid()) > 0;
    if (f) ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "clipdex serve: warning: cannot write %s (clipdex reindex will not find this server)\n", path);
        unlink(tmp);
        path[0] = 0;
    }
}

int cmd_serve(int argc, char **argv)
{
    srv_config cfg;
    srv_config_defaults(&cfg);
    cfg.library_dir = cdx_library_default_dir();
    const char *env_token = getenv("CLIPDEX_TOKEN");
    cfg.token = env_token && *env_token ? env_token : NULL;
    const char *watch[64];   /* --watch folders */
    cfg.watch_dirs = watch;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (v && !strcmp(a, "--watch")) {
            if (cfg.n_watch == (int)(sizeof watch / sizeof *watch)) return cli_usage_error("serve", "more than 64 --watch folders");
            watch[cfg.n_watch++] = v;
            i++;
            continue;
        }
        if (v && !strcmp(a, "--ingest")) { cfg.ingest_url = v; i++; continue; }
        if (v && !strcmp(a, "--replica-of")) { cfg.replica_of = v; cfg.read_only = 1; i++; continue; }
        if (v && !strcmp(a, "--consumer")) { cfg.consumer = v; i++; continue; }
        if (v && !strcmp(a, "--ack-wait")) {   /* fleet consumers (docs/fleet.md) */
            if (cli_parse_int(v, 1000, 3600000, &n)) return cli_usage_error("serve", "--ack-wait: 1000..3600000 ms");
            cfg.ack_wait_ms = (int)n;
            i++;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            serve_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--allow-private-urls")) {
            cfg.allow_private_urls = 1;
        } else if (!strcmp(a, "--read-only")) {
            cfg.read_only = 1;
        } else if (!v) {
            return cli_usage_error("serve", "unknown option or missing value: %s", a);
        } else if (!strcmp(a, "--library")) {
            cfg.library_dir = v;
            i++;
        } else if (!strcmp(a, "--host")) {
            cfg.host = v;
            i++;
        } else if (!strcmp(a, "--port")) {
            if (cli_parse_int(v, 0, 65535, &n)) return cli_usage_error("serve", "bad --port: %s", v);
            cfg.port = (int)n;
            i++;
        } else if (!strcmp(a, "--token")) {
            cfg.token = *v ? v : NULL;
            i++;
        } else if (!strcmp(a, "--cors-origin")) {
            cfg.cors_origin = v;
            i++;
        } else if (!strcmp(a, "--max-body")) {
            if (cli_parse_int(v, 1024, 1L << 32, &n))
                return cli_usage_error("serve", "bad --max-body (1024..4294967296): %s", v);
            cfg.max_body = (size_t)n;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(v, 0, 1024, &n)) return cli_usage_error("serve", "bad --threads: %s", v);
            cfg.threads = (int)n;
            i++;
        } else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision("serve", v, &cfg.precision)) return 2;
            i++;
        } else if (!strcmp(a, "--workers")) {
            if (cli_parse_int(v, 1, 256, &n)) return cli_usage_error("serve", "bad --workers (1..256): %s", v);
            cfg.workers = (int)n;
            i++;
        } else if (!strcmp(a, "--queue-limit")) {
            if (cli_parse_int(v, 1, 100000, &n)) return cli_usage_error("serve", "bad --queue-limit (1..100000): %s", v);
            cfg.queue_limit = (int)n;
            i++;
        } else if (!strcmp(a, "--max-connections")) {
            if (cli_parse_int(v, 1, 100000, &n))
                return cli_usage_error("serve", "bad --max-connections: %s", v);
            cfg.max_connections = (unsigned)n;
            i++;
        } else if (!strcmp(a, "--max-per-client")) {
            if (cli_parse_int(v, 0, 100000, &n)) return cli_usage_error("serve", "bad --max-per-client (0..100000): %s", v);
            cfg.max_per_client = (unsigned)n;
            i++;
        } else if (!strcmp(a, "--header-timeout")) {
            if (cli_parse_int(v, 1, 3600, &n)) return cli_usage_error("serve", "bad --header-timeout (1..3600): %s", v);
            cfg.header_timeout_s = (unsigned)n;
            i++;
        } else if (!strcmp(a, "--fetch-timeout")) {
            if (cli_parse_int(v, 1, 3600, &n)) return cli_usage_error("serve", "bad --fetch-timeout: %s", v);
            cfg.fetch_timeout_s = n;
            i++;
        } else if (!strcmp(a, "--access-log")) {
            cfg.access_log = v;
            i++;
        } else if (!strcmp(a, "--thumb-cache-mb")) {
            if (cli_parse_int(v, 0, 1048576, &n)) return cli_usage_error("serve", "bad --thumb-cache-mb (0..1048576): %s", v);
            cfg.thumb_cache_bytes = (uint64_t)n << 20;
            i++;
        } else {
            return cli_usage_error("serve", "unknown option: %s", a);
        }
    }

    /* Signals are taken synchronously by this thread; every other thread
     * (MHD's, the library's) inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    srv_ctx s;
    char err[1024], url[128];
    if (srv_ctx_open(&s, &cfg, err, sizeof err)) {
        fprintf(stderr, "clipdex: error: %s\n", err);
        return 1;
    }
    srv_http *h;
    if (srv_http_start(&s, &h, url, sizeof url, err, sizeof err)) {
        fprintf(stderr, "clipdex: error: %s\n", err);
        srv_ctx_close(&s);
        return 1;
    }
    if (srv_bg_start(&s, err, sizeof err)) {
        fprintf(stderr, "clipdex: error: %s\n", err);
        srv_http_stop(h, 1.0);
        srv_bg_stop(&s);
        srv_ctx_close(&s);
        return 1;
    }
    printf("listening on %s\n", url);
    fflush(stdout);
    char serve_json[4200] = "";   /* a writable server: where `clipdex reindex` finds it */
    if (!cfg.read_only) serve_file_write(cfg.library_dir, url, serve_json, sizeof serve_json);
    /* Prepare the text tower now, in the background, so the first text
     * search does not wait for it (towers load lazily; a search arriving
     * meanwhile waits on the model's lock, no longer than it would have). */
    pthread_t warm;
    cdx_library_pin *pin = NULL;
    int warming = cdx_library_pin_take(s.lib, &pin) == CDX_OK;
    if (warming && pthread_create(&warm, NULL, warm_text_tower, pin) != 0) {
        cdx_library_pin_release(pin);
        warming = 0;
    }
    fprintf(stderr, "clipdex serve: library %s, %s%s\n", cfg.library_dir,
            cfg.read_only ? "read-only" : "writable",
            cfg.token ? ", writes need the bearer token" : "");
    fprintf(stderr, "clipdex serve: %d worker(s) x %d thread(s), queue limit %d\n", s.cfg.workers,
            s.cfg.threads, s.cfg.queue_limit);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "clipdex serve: %s received, draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    srv_http_stop(h, 30.0);   /* requests (DELETE publishes through s.bg) first */
    srv_bg_stop(&s);          /* the current pass or batch commits first */
    if (warming) pthread_join(warm, NULL);   /* before the model is freed */
    if (*serve_json) unlink(serve_json);
    srv_ctx_close(&s);
    fprintf(stderr, "clipdex serve: stopped\n");
    return 0;
}
