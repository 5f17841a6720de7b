/*
 * worker.c - the fleet worker: a pull subscriber of the durable "workers"
 * consumer of the work stream.  Per batch: fetch up to `batch` records,
 * read or download and decode them in parallel (n_threads), embed the
 * decoded ones in one micro-batch, publish one result per item (message id
 * = record id + "@" + content sha256, so a re-run after a crash is
 * deduplicated and a changed file is not), then ack.
 *
 * Failures per item: not an image, undecodable, too large, malformed
 * record -> dead-lettered at once (a retry cannot help); I/O and network
 * errors (missing file, 404, timeout) are handed back (nak, 500 ms delay)
 * and dead-lettered with the reason at the max_deliver-th delivery.  A
 * dead-letter record is published before the work item is acked; when
 * publishing fails (broker restarting) the item is handed back (nak) and
 * the worker carries on.
 * URL items also get a 256 px JPEG thumbnail in their result (the library
 * keeps no bytes of a URL; /thumb serves it).
 * While a batch is in progress a ticker thread tells the server every
 * ack_wait/3 that its items are in progress, so slow downloads are not
 * redelivered; a killed worker's items come back after ack_wait.
 *
 * The pipeline records the first worker's model fingerprint and precision
 * (resolved: auto becomes this CPU's); a worker with another model or
 * another precision is refused (CDX_ERR_MISMATCH), so the vectors of one
 * pipeline are comparable.  Results carry both; the consumer records the
 * precision in the library (consume.c).
 *
 * Workload: batches of 8..256 items, one model, n_threads cores.
 */
#include "fleet/bus.h"

#include "common/error.h"
#include "common/util.h"
#include "image/decode.h"
#include "ingest/source.h"

#include <glib.h>

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WORKER_BATCH_MAX 1024
#define KV_MODEL_KEY "model"
#define KV_PRECISION_KEY "precision"
#define WORKER_THUMB 256          /* px, longer side; URL items only */

cdx_worker_params cdx_worker_default_params(void)
{
    cdx_worker_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 1;
    p.batch = 32;
    p.max_wait_ms = 1000;
    p.ack_wait_ms = 30000;
    p.max_deliver = 5;
    p.max_bytes = (uint64_t)64 << 20;
    p.url_timeout_s = 60;
    return p;
}

enum { ITEM_OK, ITEM_DEAD, ITEM_RETRY };

typedef struct item {
    natsMsg *msg;
    json_t *rec;              /* the parsed work record, NULL if malformed */
    const char *id, *path, *url;
    uint64_t delivered;
    int state;
    char reason[512];
    char sha[65];
    uint64_t size;
    int64_t mtime;
    cdx_image_meta meta;
    void *thumb;              /* URL items: a WORKER_THUMB px JPEG */
    size_t thumb_len;
    cdx_image_exif *exif;     /* date, camera and the embedded text for the
                                 full-text index (NULL when none was read) */
} item;

/* The pipeline's value of `key`: record ours if none is recorded yet, else
 * compare (CDX_ERR_MISMATCH with a message saying `what` differs). */
static cdx_result check_kv(cdx_fleet *f, kvStore *kv, const char *key, const char *ours, const char *what)
{
    uint64_t rev = 0;
    cdx_result r = CDX_OK;
    if (kvStore_Create(&rev, kv, key, ours, (int)strlen(ours)) != NATS_OK) {
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, kv, key);
        if (s != NATS_OK) {
            r = fleet_nats_error(s, "reading the pipeline's record");
        } else {
            int len = kvEntry_ValueLen(e);
            if (len != (int)strlen(ours) || memcmp(kvEntry_Value(e), ours, (size_t)len))
                r = cdx_error(CDX_ERR_MISMATCH, "pipeline %s embeds with %s %.*s, this worker with %s", f->name,
                              what, len > 64 ? 64 : len, (const char *)kvEntry_Value(e), ours);
            kvEntry_Destroy(e);
        }
    }
    return r;
}

/* The pipeline's model and precision: record ours if none is recorded yet,
 * else compare.  (A pipeline older than the precision record has none: its
 * first worker since records it.) */
static cdx_result check_model(cdx_fleet *f, const char *fp, cdx_precision prec)
{
    kvStore *kv = NULL;
    natsStatus s = js_KeyValue(&kv, f->js, f->bucket);
    if (s == NATS_NOT_FOUND) {
        kvConfig cfg;
        kvConfig_Init(&cfg);
        cfg.Bucket = f->bucket;
        cfg.History = 1;
        cfg.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&kv, f->js, &cfg);
        if (s != NATS_OK) s = js_KeyValue(&kv, f->js, f->bucket);   /* created concurrently */
    }
    if (s != NATS_OK) return fleet_nats_error(s, f->bucket);
    cdx_result r = check_kv(f, kv, KV_MODEL_KEY, fp, "model");
    if (!r) r = check_kv(f, kv, KV_PRECISION_KEY, cdx_precision_name(prec), "precision");
    kvStore_Destroy(kv);
    return r;
}

/* Parse message i; a malformed record becomes a dead letter. */
static void item_parse(item *it, natsMsg *m)
{
    memset(it, 0, sizeof *it);
    it->msg = m;
    jsMsgMetaData *md = NULL;
    if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
        it->delivered = md->NumDelivered;
        jsMsgMetaData_Destroy(md);
    }
    json_error_t je;
    it->rec = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), JSON_REJECT_DUPLICATES, &je);
    if (it->rec) {
        it->id = json_string_value(json_object_get(it->rec, "id"));
        it->path = json_string_value(json_object_get(it->rec, "path"));
        it->url = json_string_value(json_object_get(it->rec, "url"));
    }
    if (!it->id || !*it->id || strlen(it->id) > 256 || (!it->path) == (!it->url)) {
        it->state = ITEM_DEAD;
        snprintf(it->reason, sizeof it->reason, "malformed work record (needs id and one of path, url)");
    }
}

/* Read or download, hash and preprocess one item into px. */
static void item_load(item *it, const cdx_model *model, const cdx_worker_params *p, float *px)
{
    void *data = NULL;
    size_t len = 0;
    cdx_result r;
    if (it->path) {
        struct stat st;
        it->mtime = stat(it->path, &st) == 0 ? (int64_t)st.st_mtime : 0;
        r = source_read_file(it->path, p->max_bytes, &data, &len);
    } else {
        r = source_fetch_url(it->url, p->max_bytes, p->url_timeout_s, &data, &len, &it->mtime);
    }
    if (!r) {
        uint8_t raw[32];
        source_sha256(data, len, raw, it->sha);
        it->size = len;
        cdx_image_params ip = cdx_image_default_params();
        r = cdx_preprocess_buffer(model, data, len, &ip, px, &it->meta);
        /* the library keeps no bytes of a URL: its thumbnail travels along
         * (a failure only costs the thumbnail) */
        if (!r && it->url && cdx_image_thumbnail_jpeg(data, len, WORKER_THUMB, &it->thumb, &it->thumb_len))
            it->thumb = NULL;
        /* what `index` reads from the file too: EXIF date and camera, and
         * the EXIF/IPTC/XMP text the library's full-text index keeps (a
         * failure only loses them) */
        if (!r && (it->exif = malloc(sizeof *it->exif)) && cdx_image_read_exif(data, len, it->exif)) {
            free(it->exif);
            it->exif = NULL;
        }
    }
    free(data);
    if (r) {
        it->state = (r == CDX_ERR_IO || r == CDX_ERR_NETWORK) ? ITEM_RETRY : ITEM_DEAD;
        snprintf(it->reason, sizeof it->reason, "%s: %s", cdx_result_str(r), cdx_last_error());
    }
}

/* ---- in-progress ticker */

typedef struct ticker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    item *items;
    int n;
    int period_ms;
} ticker;

static void *ticker_main(void *arg)
{
    ticker *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += t->period_ms / 1000;
        ts.tv_nsec += (long)(t->period_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        if (pthread_cond_timedwait(&t->cv, &t->mu, &ts) != 0 && !t->stop)
            for (int i = 0; i < t->n; i++) natsMsg_InProgress(t->items[i].msg, NULL);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

#define say(p, ...) fleet_log((p)->log, (p)->user, __VA_ARGS__)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static cdx_result publish_json(cdx_fleet *f, const char *subj, json_t *o, const char *id)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return cdx_error(CDX_ERR_NOMEM, "record %s: cannot serialise", id);
    cdx_result r = fleet_publish(f, subj, text, strlen(text), id, NULL);
    free(text);
    return r;
}

static json_t *result_record(const item *it, const float *v, int dim, const char *fp, cdx_precision prec)
{
    json_t *vec = json_array();
    for (int d = 0; vec && d < dim; d++) json_array_append_new(vec, json_real(v[d]));
    json_t *src = json_object_get(it->rec, "source");
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i,s:s,s:s,s:o,s:O?}", "id", it->id, "path",
                          it->path ? it->path : it->url, "sha256", it->sha, "size", (json_int_t)it->size,
                          "mtime", (json_int_t)it->mtime, "width", it->meta.width, "height", it->meta.height,
                          "format", it->meta.format, "model", fp, "vector", vec, "source", src);
    if (o) json_object_set_new(o, "precision", json_string(cdx_precision_name(prec)));
    const cdx_image_exif *ex = it->exif;
    if (o && ex) {
        if (ex->taken > 0) json_object_set_new(o, "taken", json_integer((json_int_t)ex->taken));
        if (ex->camera[0]) json_object_set_new(o, "camera", json_string(ex->camera));
        if (ex->text[0] || ex->keywords[0])
            json_object_set_new(o, "embedded", json_pack("{s:s,s:s}", "text", ex->text, "keywords", ex->keywords));
    }
    if (o && it->thumb) {
        gchar *b64 = g_base64_encode(it->thumb, it->thumb_len);
        if (b64) json_object_set_new(o, "thumbnail", json_string(b64));
        g_free(b64);
    }
    return o;
}

/* Settle every item of a fetched batch: results, dead letters, naks. */
static cdx_result settle(cdx_fleet *f, item *items, int n, const float *emb, int dim, const char *fp,
                         const cdx_worker_params *p, cdx_worker_stats *st)
{
    int k = 0;   /* index into emb (decoded items in order) */
    for (int i = 0; i < n; i++) {
        item *it = &items[i];
        cdx_result r = CDX_OK;
        if (it->state == ITEM_RETRY && p->max_deliver > 0 && it->delivered >= (uint64_t)p->max_deliver)
            it->state = ITEM_DEAD;
        if (it->state == ITEM_OK) {
            char msgid[300];   /* a changed content is a new result */
            snprintf(msgid, sizeof msgid, "%s@%.32s", it->id, it->sha);
            r = publish_json(f, f->results_subj, result_record(it, emb + (size_t)k * (size_t)dim, dim, fp, p->precision),
                             msgid);
            k++;
            if (!r) st->done++;
        } else if (it->state == ITEM_DEAD) {
            const char *id = it->id ? it->id : "";
            char msgid[300];
            snprintf(msgid, sizeof msgid, "dead:%s:%llu", id, (unsigned long long)natsMsg_GetSequence(it->msg));
            json_t *o = json_pack("{s:s,s:s?,s:s?,s:s,s:I,s:O?}", "id", id, "path", it->path, "url", it->url,
                                  "reason", it->reason, "deliveries", (json_int_t)it->delivered,
                                  "record", it->rec);
            r = publish_json(f, f->dead_subj, o, msgid);
            if (!r) st->dead++;
            say(p, "dead letter %s %s: %s", id, it->path ? it->path : it->url ? it->url : "?", it->reason);
        } else {
            st->retried++;
            say(p, "retry %s %s (delivery %llu): %s", it->id, it->path ? it->path : it->url,
                (unsigned long long)it->delivered, it->reason);
            natsMsg_NakWithDelay(it->msg, 500, NULL);
            continue;
        }
        if (r) {   /* broker unreachable or refusing: hand the item back, keep going */
            say(p, "publish failed for %s (handed back): %s", it->id ? it->id : "?", cdx_last_error());
            natsMsg_NakWithDelay(it->msg, 1000, NULL);
            continue;
        }
        /* a lost ack only means a redelivery, deduplicated by message id */
        if (natsMsg_Ack(it->msg, NULL) != NATS_OK) say(p, "ack failed for %s", it->id ? it->id : "?");
    }
    return CDX_OK;
}

cdx_result cdx_fleet_work(cdx_fleet *f, const cdx_model *model, const cdx_worker_params *params,
                          cdx_worker_stats *stats)
{
    if (!f || !model) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_work: NULL argument");
    cdx_worker_params p = params ? *params : cdx_worker_default_params();
    if (p.batch < 1 || p.batch > WORKER_BATCH_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "batch must be 1..%d", WORKER_BATCH_MAX);
    if (p.n_threads < 1) p.n_threads = 1;
    if (p.max_wait_ms < 1) p.max_wait_ms = 1;
    if (p.ack_wait_ms < 1000) return cdx_error(CDX_ERR_INVALID_ARG, "ack wait must be at least 1000 ms");
    cdx_worker_stats local;
    cdx_worker_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    double t = now_s(), t0 = t;
    cdx_model_info mi;
    cdx_model_get_info(model, &mi);
    cdx_result r = cdx_precision_resolve(p.precision, &p.precision);   /* auto: this CPU's */
    if (!r) r = check_model(f, mi.fingerprint, p.precision);
    if (r) return r;
    natsSubscription *sub = NULL;
    if ((r = fleet_pull(f, f->work_stream, f->work_subj, "workers", p.ack_wait_ms, p.max_deliver, &sub)))
        return r;
    cdx_ctx *ctx = NULL;
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.n_threads = p.n_threads;
    cp.max_batch = p.batch;
    cp.precision = p.precision;
    r = cdx_ctx_new(model, &cp, &ctx);
    size_t px_len = (size_t)3 * (size_t)mi.image_size * (size_t)mi.image_size;
    float *px = r ? NULL : malloc((size_t)p.batch * px_len * sizeof *px);
    float *emb = r ? NULL : malloc((size_t)p.batch * (size_t)mi.embed_dim * sizeof *emb);
    item *items = r ? NULL : calloc((size_t)p.batch, sizeof *items);
    if (!r && (!px || !emb || !items)) r = cdx_error(CDX_ERR_NOMEM, "out of memory for a batch of %d", p.batch);
    st->setup_s = now_s() - t0;
    t = now_s();
    while (!r && !(p.cancel && atomic_load(p.cancel))) {
        natsMsgList list = {NULL, 0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, p.batch, p.max_wait_ms, &jerr);
        double t1 = now_s();
        st->wait_s += t1 - t;
        t = t1;
        if (list.Count == 0) {
            natsMsgList_Destroy(&list);
            if (s == NATS_OK || s == NATS_TIMEOUT) continue;
            if (s == NATS_CONNECTION_CLOSED) { r = fleet_nats_error(s, "fetch"); break; }
            nats_Sleep(200);   /* broker restarting: the client reconnects */
            continue;
        }
        int n = list.Count;
        for (int i = 0; i < n; i++) item_parse(&items[i], list.Msgs[i]);
        st->fetched += (uint64_t)n;
        ticker tk = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, items, n, p.ack_wait_ms / 3};
        pthread_t th;
        int have_ticker = pthread_create(&th, NULL, ticker_main, &tk) == 0;
        #pragma omp parallel for num_threads(p.n_threads) schedule(dynamic, 1)
        for (int i = 0; i < n; i++)
            if (items[i].state == ITEM_OK) item_load(&items[i], model, &p, px + (size_t)i * px_len);
        int m = 0;   /* compact the decoded items' pixels to the front */
        for (int i = 0; i < n; i++) {
            if (items[i].state != ITEM_OK) continue;
            if (m != i) memmove(px + (size_t)m * px_len, px + (size_t)i * px_len, px_len * sizeof *px);
            m++;
        }
        t1 = now_s();
        st->decode_s += t1 - t;
        t = t1;
        if (m) r = cdx_encode_images(ctx, px, m, emb, 1);
        t1 = now_s();
        st->embed_s += t1 - t;
        t = t1;
        if (have_ticker) {
            pthread_mutex_lock(&tk.mu);
            tk.stop = 1;
            pthread_cond_signal(&tk.cv);
            pthread_mutex_unlock(&tk.mu);
            pthread_join(th, NULL);
        }
        if (!r) r = settle(f, items, n, emb, mi.embed_dim, mi.fingerprint, &p, st);
        for (int i = 0; i < n; i++) {
            json_decref(items[i].rec);
            free(items[i].thumb);
            free(items[i].exif);
        }
        natsMsgList_Destroy(&list);
        t1 = now_s();
        st->publish_s += t1 - t;
        t = t1;
    }
    natsSubscription_Destroy(sub);
    cdx_ctx_free(ctx);
    free(px);
    free(emb);
    free(items);
    return r;
}
