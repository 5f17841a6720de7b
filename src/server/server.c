/*
 * server.c - configuration defaults and the lifetime of the server's shared
 * state (library handle, metrics, thumbnail cache directory).
 */
#include "server.h"

#include "api_reindex.h"
#include "metrics.h"
#include "routes.h"
#include "jobqueue.h"
#include "thumbcache.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

void srv_config_defaults(srv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->max_body = 32u << 20;
    cfg->max_connections = 256;
    cfg->fetch_timeout_s = 20;
    cfg->fetch_connect_timeout_s = 5;
    cfg->fetch_max_redirects = 3;
    cfg->thumb_cache_bytes = (uint64_t)512 << 20;
    cfg->max_per_client = 64;
    cfg->header_timeout_s = 5;
    cfg->queue_limit = 64;
}

int srv_ctx_open(srv_ctx *s, const srv_config *cfg, char *err, size_t err_len)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->started = srv_now();
#ifdef __GLIBC__
    /* One thread per connection: glibc would give up to 8 x cores threads
     * an arena each and keep their freed memory; under bench/soak.sh the
     * RSS grew ~4 MB/min that way (no leak: LeakSanitizer found none), and
     * by 5 MB in 2 minutes instead of 22 with 2 arenas.  Set before any
     * connection thread exists. */
    mallopt(M_ARENA_MAX, 2);
#endif
    if (VIPS_INIT("clipdex") != 0) {
        snprintf(err, err_len, "cannot initialise libvips");
        return -1;
    }
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = !cfg->read_only || cfg->replica_of;   /* a replica writes what it follows */
    lp.load_model = 1;
    /* Threading policy: `workers` calls at a time, each with `threads`
     * OpenMP threads (default 1: batching, not OpenMP teams, uses the cores;
     * on a busy machine a 2-thread team was 4x slower than one thread in
     * docs/server.md's measurements), so that workers x threads <= cores. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int workers = cfg->workers > 0 ? cfg->workers : (int)(cores / 2 > 1 ? cores / 2 : 1);
    s->cfg.workers = workers;
    lp.n_threads = cfg->threads > 0 ? cfg->threads : 1;
    s->cfg.threads = lp.n_threads;
    lp.precision = cfg->precision;
    cdx_result r = cdx_library_open(cfg->library_dir, &lp, &s->lib);
    if (r) {
        snprintf(err, err_len, "cannot open the library %s: %s%s", cfg->library_dir,
                 cdx_last_error(),
                 cfg->read_only || r == CDX_ERR_UNSUPPORTED ? "" : " (another process writing? try --read-only)");
        return -1;
    }
    cdx_library_info info;
    r = cdx_library_get_info(s->lib, &info);
    if (r) {
        snprintf(err, err_len, "cannot read the library %s: %s", cfg->library_dir, cdx_last_error());
        srv_ctx_close(s);
        return -1;
    }
    s->dim = info.dim;
    if (!cfg->read_only && !(s->reindex = srv_reindex_new(s->lib))) {   /* /api/reindex */
        snprintf(err, err_len, "out of memory");
        srv_ctx_close(s);
        return -1;
    }
    sched_params sp = sched_default_params();
    sp.workers = workers;
    sp.queue_limit = cfg->queue_limit > 0 ? cfg->queue_limit : 64;
    if (sched_new(s->lib, s->dim, &sp, &s->sched)) {
        snprintf(err, err_len, "cannot start %d worker threads", workers);
        srv_ctx_close(s);
        return -1;
    }
    s->metrics = srv_metrics_new(srv_route_names, srv_n_routes);
    if (!s->metrics) {
        snprintf(err, err_len, "out of memory");
        srv_ctx_close(s);
        return -1;
    }
    /* Thumbnail cache: best effort (a read-only library directory has none). */
    char thumbs[4200];
    snprintf(thumbs, sizeof thumbs, "%s/thumbs", cfg->library_dir);
    s->thumbs = thumb_cache_open(thumbs, cfg->thumb_cache_bytes);
    return 0;
}

void srv_ctx_close(srv_ctx *s)
{
    srv_reindex_stop(s->reindex);   /* cancels and joins a running job */
    s->reindex = NULL;
    sched_free(s->sched);   /* before the library it uses */
    s->sched = NULL;
    cdx_library_close(s->lib);
    s->lib = NULL;
    srv_metrics_free(s->metrics);
    s->metrics = NULL;
    thumb_cache_close(s->thumbs);
    s->thumbs = NULL;
}
