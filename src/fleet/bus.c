/*
 * bus.c - pipeline URL, connection, idempotent creation of the streams and
 * the key-value bucket, and the small publish/consume helpers every fleet
 * component uses (see bus.h for the names).
 */
#include "fleet/bus.h"

#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cdx_result fleet_nats_error(natsStatus s, const char *what)
{
    const char *detail = nats_GetLastError(NULL);
    return cdx_error(CDX_ERR_NETWORK, "%s: %s%s%s", what, natsStatus_GetText(s),
                     detail && *detail ? ": " : "", detail ? detail : "");
}

cdx_fleet_params cdx_fleet_default_params(void)
{
    cdx_fleet_params p;
    memset(&p, 0, sizeof p);
    p.timeout_ms = 5000;
    return p;
}

/* nats://HOST:PORT/NAME -> server "nats://HOST:PORT" and NAME. */
static cdx_result parse_url(const char *url, cdx_fleet *f)
{
    const char *pre = "nats://";
    if (strncmp(url, pre, strlen(pre)))
        return cdx_error(CDX_ERR_INVALID_ARG, "pipeline URL \"%.200s\" must start with nats://", url);
    const char *host = url + strlen(pre), *slash = strchr(host, '/');
    if (!slash || slash == host)
        return cdx_error(CDX_ERR_INVALID_ARG, "pipeline URL \"%.200s\": expected nats://HOST:PORT/NAME", url);
    size_t hl = (size_t)(slash - url);
    if (hl >= sizeof f->server) return cdx_error(CDX_ERR_INVALID_ARG, "pipeline URL too long");
    memcpy(f->server, url, hl);
    f->server[hl] = '\0';
    const char *name = slash + 1;
    size_t nl = strlen(name);
    if (nl == 0 || nl > 64)
        return cdx_error(CDX_ERR_INVALID_ARG, "pipeline name must have 1 to 64 characters");
    for (size_t i = 0; i < nl; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return cdx_error(CDX_ERR_INVALID_ARG, "pipeline name \"%.64s\": only a-z, 0-9, '_' and '-' "
                             "are allowed", name);
    }
    memcpy(f->name, name, nl + 1);
    char up[65];
    for (size_t i = 0; i <= nl; i++)
        up[i] = name[i] == '-' ? '_' : (name[i] >= 'a' && name[i] <= 'z') ? (char)(name[i] - 32) : name[i];
    snprintf(f->work_stream, sizeof f->work_stream, "CLIPDEX_%s_WORK", up);
    snprintf(f->results_stream, sizeof f->results_stream, "CLIPDEX_%s_RESULTS", up);
    snprintf(f->dead_stream, sizeof f->dead_stream, "CLIPDEX_%s_DEAD", up);
    snprintf(f->work_subj, sizeof f->work_subj, "clipdex.%s.work", name);
    snprintf(f->results_subj, sizeof f->results_subj, "clipdex.%s.results", name);
    snprintf(f->dead_subj, sizeof f->dead_subj, "clipdex.%s.dead", name);
    snprintf(f->bucket, sizeof f->bucket, "clipdex_%s", name);
    snprintf(f->deletions_stream, sizeof f->deletions_stream, "CLIPDEX_%s_DELETIONS", up);
    snprintf(f->deletions_subj, sizeof f->deletions_subj, "clipdex.%s.deletions", name);
    return CDX_OK;
}

/* Create the stream unless it exists (an existing one is used as it is). */
static cdx_result ensure_stream(cdx_fleet *f, const char *stream, const char *subj, jsRetentionPolicy ret)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, f->js, stream, NULL, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return CDX_OK;
    }
    if (s != NATS_NOT_FOUND) return fleet_nats_error(s, stream);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {subj};
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = ret;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = FLEET_DEDUP_NS;
    cfg.MaxMsgSize = (int32_t)FLEET_RECORD_MAX;
    s = js_AddStream(&si, f->js, &cfg, NULL, &jerr);
    if (s == NATS_OK) jsStreamInfo_Destroy(si);
    /* a concurrent creator won the race: fine if it exists now */
    else if (js_GetStreamInfo(&si, f->js, stream, NULL, &jerr) == NATS_OK) jsStreamInfo_Destroy(si);
    else return fleet_nats_error(s, stream);
    return CDX_OK;
}

cdx_result cdx_fleet_open(const char *url, const cdx_fleet_params *params, cdx_fleet **out)
{
    if (!url || !out) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_open: NULL argument");
    *out = NULL;
    cdx_fleet *f = calloc(1, sizeof *f);
    if (!f) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    f->params = params ? *params : cdx_fleet_default_params();
    if (f->params.timeout_ms <= 0) f->params.timeout_ms = 5000;
    cdx_result r = parse_url(url, f);
    natsOptions *o = NULL;
    natsStatus s = NATS_OK;
    if (!r) {
        s = natsOptions_Create(&o);
        if (s == NATS_OK) s = natsOptions_SetURL(o, f->server);
        if (s == NATS_OK) s = natsOptions_SetTimeout(o, f->params.timeout_ms);
        if (s == NATS_OK) s = natsOptions_SetName(o, "clipdex");
        if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);   /* ride out broker restarts */
        if (s == NATS_OK) s = natsConnection_Connect(&f->nc, o);
        if (s != NATS_OK) r = fleet_nats_error(s, f->server);
    }
    natsOptions_Destroy(o);
    if (!r) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = f->params.timeout_ms;
        s = natsConnection_JetStream(&f->js, f->nc, &jo);
        if (s != NATS_OK) r = fleet_nats_error(s, "JetStream");
    }
    if (!r) r = ensure_stream(f, f->work_stream, f->work_subj, js_WorkQueuePolicy);
    if (!r) r = ensure_stream(f, f->results_stream, f->results_subj, js_LimitsPolicy);
    if (!r) r = ensure_stream(f, f->dead_stream, f->dead_subj, js_LimitsPolicy);
    if (!r) r = ensure_stream(f, f->deletions_stream, f->deletions_subj, js_LimitsPolicy);
    if (r) {
        cdx_fleet_close(f);
        return r;
    }
    *out = f;
    return CDX_OK;
}

void cdx_fleet_close(cdx_fleet *f)
{
    if (!f) return;
    jsCtx_Destroy(f->js);
    if (f->nc) {
        natsConnection_FlushTimeout(f->nc, 2000);
        natsConnection_Destroy(f->nc);
    }
    free(f);
}

cdx_result fleet_publish(cdx_fleet *f, const char *subj, const char *data, size_t len,
                         const char *msg_id, int *duplicate)
{
    if (len > FLEET_RECORD_MAX)
        return cdx_error(CDX_ERR_TOO_LARGE, "record %s is %zu bytes (max %zu)", msg_id, len, FLEET_RECORD_MAX);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&pa, f->js, subj, data, (int)len, &po, &jerr);
    if (s != NATS_OK) return fleet_nats_error(s, subj);
    if (duplicate) *duplicate = pa->Duplicate;
    jsPubAck_Destroy(pa);
    return CDX_OK;
}

cdx_result fleet_stream_msgs(cdx_fleet *f, const char *stream, uint64_t *msgs)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, f->js, stream, NULL, &jerr);
    if (s != NATS_OK) return fleet_nats_error(s, stream);
    *msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return CDX_OK;
}

cdx_result fleet_pull(cdx_fleet *f, const char *stream, const char *subj, const char *durable,
                      int ack_wait_ms, int max_deliver, natsSubscription **sub)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, f->js, stream, durable, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        jsConsumerConfig cc;
        jsConsumerConfig_Init(&cc);
        cc.Durable = durable;
        cc.AckPolicy = js_AckExplicit;
        cc.AckWait = (int64_t)ack_wait_ms * 1000000;
        cc.MaxDeliver = max_deliver > 0 ? max_deliver : -1;
        cc.MaxAckPending = 20000;
        s = js_AddConsumer(&ci, f->js, stream, &cc, NULL, &jerr);
        if (s != NATS_OK && js_GetConsumerInfo(&ci, f->js, stream, durable, NULL, &jerr) == NATS_OK)
            s = NATS_OK;   /* created concurrently by another process */
    }
    if (s != NATS_OK) return fleet_nats_error(s, durable);
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = durable;
    so.ManualAck = true;
    s = js_PullSubscribe(sub, f->js, subj, durable, NULL, &so, &jerr);
    if (s != NATS_OK) return fleet_nats_error(s, durable);
    return CDX_OK;
}

void fleet_log(void (*log)(void *user, const char *line), void *user, const char *fmt, ...)
{
    if (!log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(user, line);
}
