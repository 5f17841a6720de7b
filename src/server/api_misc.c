/*
 * api_misc.c - health, stats and the Prometheus metrics endpoint.
 */
#include "background.h"
#include "jobqueue.h"
#include "json_util.h"
#include "metrics.h"
#include "thumbcache.h"

#include <stdio.h>
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
    if (o) {   /* the vectors' precision(s) and the one queries run at */
        json_object_set_new(o, "precision", json_string(info.precision));
        json_object_set_new(o, "query_precision", json_string(info.run_precision));
    }
    thumb_cache_stats tc;
    thumb_cache_get_stats(s->thumbs, &tc);
    if (o)
        json_object_set_new(o, "thumbnails",
                            json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "cached", s->thumbs != NULL,
                                      "entries", (json_int_t)tc.entries, "bytes", (json_int_t)tc.bytes,
                                      "max_bytes", (json_int_t)tc.max_bytes, "hits", (json_int_t)tc.hits,
                                      "misses", (json_int_t)tc.misses,
                                      "evictions", (json_int_t)tc.evictions));
    json_t *bg = srv_bg_stats(s);   /* --watch, --ingest, --replica-of */
    if (o && bg) json_object_set_new(o, "background", bg);
    else json_decref(bg);
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
    if (s->sched) {   /* the job queue (jobqueue.h): batching shows as jobs > calls */
        sched_stats st;
        sched_get_stats(s->sched, &st);
        static const char *const kinds[] = {NULL, "text", "image", "search"};
        char extra[1400];
        int n = snprintf(extra, sizeof extra,
                         "# HELP clipdex_queue_jobs_total Jobs run by the inference/search workers.\n"
                         "# TYPE clipdex_queue_jobs_total counter\n");
        for (int k = 1; k <= 3; k++)
            n += snprintf(extra + n, sizeof extra - (size_t)n, "clipdex_queue_jobs_total{kind=\"%s\"} %llu\n",
                          kinds[k], (unsigned long long)st.jobs[k]);
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "# HELP clipdex_queue_calls_total Library calls made for those jobs (batched).\n"
                      "# TYPE clipdex_queue_calls_total counter\n");
        for (int k = 1; k <= 3; k++)
            n += snprintf(extra + n, sizeof extra - (size_t)n, "clipdex_queue_calls_total{kind=\"%s\"} %llu\n",
                          kinds[k], (unsigned long long)st.calls[k]);
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "# HELP clipdex_queue_refused_total Jobs refused with 503 (queue full or waited too long).\n"
                      "# TYPE clipdex_queue_refused_total counter\n"
                      "clipdex_queue_refused_total %llu\n"
                      "# HELP clipdex_queue_depth Jobs waiting now.\n"
                      "# TYPE clipdex_queue_depth gauge\n"
                      "clipdex_queue_depth %d\n",
                      (unsigned long long)(st.refused + st.timed_out), st.queued);
        char *t2 = n > 0 && (size_t)n < sizeof extra ? realloc(text, len + (size_t)n + 1) : NULL;
        if (t2) {
            memcpy(t2 + len, extra, (size_t)n + 1);
            text = t2;
            len += (size_t)n;
        }
    }
    srv_response_free(rs);
    rs->body = text;
    rs->body_len = len;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    rs->cache_control = "no-store";
    rs->status = 200;
}
