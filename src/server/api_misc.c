/*
 * api_misc.c - health, stats and the Prometheus metrics endpoint.
 */
#include "json_util.h"
#include "metrics.h"
#include "thumbcache.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const no_args[] = {NULL};

void api_health(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    srv_json_reply(rs, 200, json_pack("{s:s,s:s,s:f}", "status", "ok", "version", CDX_VERSION_STRING,
                                      "uptime_s", srv_round(srv_now() - s->started, 1)));
}

void api_stats(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(s->lib, &info);
    if (r) {
        srv_error_cdx(rs, r, SRV_E_INTERNAL, "library info");
        return;
    }
    /* The model directory is the server's business: only its last
     * component is reported. */
    const char *model = strrchr(info.model_dir, '/');
    model = model && model[1] ? model + 1 : info.model_dir;
    json_t *o = json_pack("{s:I,s:I,s:I,s:i,s:s,s:o,s:{s:f,s:b,s:b,s:I}}",
                          "images", (json_int_t)info.images, "vectors", (json_int_t)info.vectors,
                          "bytes", (json_int_t)info.bytes, "dim", info.dim,
                          "model_fingerprint", info.model_fingerprint,
                          "model", srv_json_string_lossy(model),
                          "server", "uptime_s", srv_round(srv_now() - s->started, 1),
                          "read_only", s->cfg.read_only, "auth_required",
                          s->cfg.token && *s->cfg.token, "max_body", (json_int_t)s->cfg.max_body);
    thumb_cache_stats tc;
    thumb_cache_get_stats(s->thumbs, &tc);
    if (o)
        json_object_set_new(o, "thumbnails",
                            json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "cached", s->thumbs != NULL,
                                      "entries", (json_int_t)tc.entries, "bytes", (json_int_t)tc.bytes,
                                      "max_bytes", (json_int_t)tc.max_bytes, "hits", (json_int_t)tc.hits,
                                      "misses", (json_int_t)tc.misses,
                                      "evictions", (json_int_t)tc.evictions));
    srv_json_reply(rs, 200, o);
}

void api_metrics(srv_ctx *s, const srv_request *rq, srv_response *rs)
{
    if (srv_check_args(rq, no_args, rs)) return;
    srv_library_gauges g = {0};
    cdx_library_info info;
    if (cdx_library_get_info(s->lib, &info) == CDX_OK) {
        g.valid = 1;
        g.images = info.images;
        g.vectors = info.vectors;
        g.bytes = info.bytes;
    }
    size_t len = 0;
    char *text = srv_metrics_render(s->metrics, &g, &len);
    if (!text) {
        srv_error(rs, 503, SRV_E_UNAVAILABLE, "out of memory");
        return;
    }
    srv_response_free(rs);
    rs->body = text;
    rs->body_len = len;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    rs->cache_control = "no-store";
    rs->status = 200;
}
