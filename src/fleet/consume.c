/*
 * consume.c - `index --from`: the library's consumer of the results stream
 * (durable pull consumer "library", or one named per library).  Per batch: fetch up to `batch`
 * results, validate each (a malformed one is reported and acked: a retry
 * cannot fix it), commit the valid ones in one library transaction
 * (vectors fsynced first), and only then ack the batch.  A kill before the
 * ack redelivers the batch; the commit of a path already catalogued with
 * the same sha256 changes nothing, so each record lands exactly once.
 *
 * Without follow the run ends when the workers' consumer has nothing
 * pending or unacked (every item settled by a worker, which publishes its
 * result first) and then neither has this one (see drained()).
 * Workload: batches of ~256 results, one library.
 */
#include "fleet/bus.h"

#include "common/error.h"
#include "ingest/source.h"

#include <glib.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define INDEX_BATCH_MAX 4096
#define INDEX_DURABLE "library"
#define SOURCE_TAGS_MAX 256
#define THUMB_B64_MAX ((size_t)1400 * 1024)

cdx_fleet_index_params cdx_fleet_index_default_params(void)
{
    cdx_fleet_index_params p;
    memset(&p, 0, sizeof p);
    p.batch = 256;
    p.max_wait_ms = 1000;
    p.ack_wait_ms = 30000;
    return p;
}

/* One result record into rec + vec; a message on failure. */
static cdx_result parse_result_doc(json_t *o, int dim, const char *fp, cdx_image_record *rec, float *vec,
                                   json_t **doc);

static cdx_result parse_result(natsMsg *m, int dim, const char *fp, cdx_image_record *rec, float *vec,
                               json_t **doc)
{
    *doc = NULL;
    json_error_t je;
    json_t *o = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), JSON_REJECT_DUPLICATES, &je);
    if (!o) return cdx_error(CDX_ERR_FORMAT, "result is not JSON: %s", je.text);
    return parse_result_doc(o, dim, fp, rec, vec, doc);
}

/* parse_result of a loaded record o (taken: kept in *doc or freed). */
static cdx_result parse_result_doc(json_t *o, int dim, const char *fp, cdx_image_record *rec, float *vec,
                                   json_t **doc)
{
    *doc = NULL;
    cdx_result r = CDX_OK;
    const char *path = json_string_value(json_object_get(o, "path"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    const char *model = json_string_value(json_object_get(o, "model"));
    const char *format = json_string_value(json_object_get(o, "format"));
    json_t *v = json_object_get(o, "vector");
    const char *prec = json_string_value(json_object_get(o, "precision"));
    cdx_precision pv = CDX_PRECISION_FP32;
    memset(rec, 0, sizeof *rec);
    if (!path || !*path || strlen(path) >= sizeof rec->path || !sha || strlen(sha) != 64)
        r = cdx_error(CDX_ERR_FORMAT, "result without a valid path and sha256");
    else if (!model || strcmp(model, fp))
        r = cdx_error(CDX_ERR_MISMATCH, "result %s was embedded by model %.16s..., the library uses %.16s...",
                      path, model ? model : "(none)", fp);
    else if (!json_is_array(v) || json_array_size(v) != (size_t)dim)
        r = cdx_error(CDX_ERR_FORMAT, "result %s: vector must have %d numbers", path, dim);
    else if (prec && (!cdx_precision_parse(prec, &pv) || pv == CDX_PRECISION_AUTO))
        r = cdx_error(CDX_ERR_FORMAT, "result %s: unknown precision '%.16s'", path, prec);
    for (int d = 0; !r && d < dim; d++) {
        json_t *x = json_array_get(v, (size_t)d);
        if (!json_is_number(x)) r = cdx_error(CDX_ERR_FORMAT, "result %s: vector[%d] is not a number", path, d);
        else vec[d] = (float)json_number_value(x);
    }
    if (!r) {
        snprintf(rec->path, sizeof rec->path, "%s", path);
        snprintf(rec->sha256, sizeof rec->sha256, "%s", sha);
        snprintf(rec->format, sizeof rec->format, "%s", format ? format : "");
        json_int_t size = json_integer_value(json_object_get(o, "size"));
        rec->size = size > 0 ? (uint64_t)size : 0;
        rec->mtime = (int64_t)json_integer_value(json_object_get(o, "mtime"));
        rec->width = (int)json_integer_value(json_object_get(o, "width"));
        rec->height = (int)json_integer_value(json_object_get(o, "height"));
        json_int_t taken = json_integer_value(json_object_get(json_object_get(o, "source"), "taken"));
        if (taken <= 0) taken = json_integer_value(json_object_get(o, "taken"));   /* the file's EXIF date */
        rec->taken = taken > 0 ? (int64_t)taken : 0;   /* a source's date taken (feed flickr) first */
        const char *camera = json_string_value(json_object_get(o, "camera"));
        snprintf(rec->camera, sizeof rec->camera, "%s", camera ? camera : "");
        *doc = o;
        return CDX_OK;
    }
    json_decref(o);
    return r;
}

/* ---- source metadata and thumbnails of committed results
 * A result whose "source" has a title, description, tags or page (feed
 * flickr), that carries a "thumbnail" (URLs) or the file's "embedded"
 * EXIF/IPTC/XMP text (any image), gets them stored after the
 * batch's commit and before its ack (a kill in between redelivers the
 * batch, which stores them again). */

typedef struct source_buf {
    cdx_source_record rec;
    const char *tags[SOURCE_TAGS_MAX];
    char *json;
    guchar *thumb;
} source_buf;

/* 1 when doc has something to store; fills sb (free with source_buf_free). */
static int source_from(json_t *doc, const char *path, source_buf *sb)
{
    memset(sb, 0, sizeof *sb);
    json_t *src = json_object_get(doc, "source");
    const char *b64 = json_string_value(json_object_get(doc, "thumbnail"));
    json_t *emb = json_object_get(doc, "embedded");
    const char *etext = json_string_value(json_object_get(emb, "text"));
    const char *ekw = json_string_value(json_object_get(emb, "keywords"));
    int has_text = json_is_object(src) && (json_object_get(src, "title") || json_object_get(src, "description") ||
                                           json_object_get(src, "tags") || json_object_get(src, "page"));
    if (!has_text && !b64 && !etext && !ekw) return 0;
    sb->rec.path = path;
    sb->rec.embedded_text = etext;
    sb->rec.embedded_keywords = ekw;
    if (has_text) {
        sb->rec.meta.title = json_string_value(json_object_get(src, "title"));
        sb->rec.meta.description = json_string_value(json_object_get(src, "description"));
        json_t *tags = json_object_get(src, "tags");
        for (size_t i = 0; i < json_array_size(tags) && sb->rec.meta.n_tags < SOURCE_TAGS_MAX; i++) {
            const char *t = json_string_value(json_array_get(tags, i));
            if (t && *t) sb->tags[sb->rec.meta.n_tags++] = t;
        }
        sb->rec.meta.tags = sb->tags;
        sb->rec.source_json = sb->json = json_dumps(src, JSON_COMPACT);
    }
    if (b64 && strlen(b64) <= THUMB_B64_MAX) {
        gsize n = 0;
        sb->thumb = g_base64_decode(b64, &n);
        sb->rec.thumbnail = sb->thumb;
        sb->rec.thumbnail_len = n;
    }
    return 1;
}

static void source_buf_free(source_buf *sb)
{
    free(sb->json);
    g_free(sb->thumb);
}

/* Store the sources of the batch; a record the library refuses (bad text,
 * not a JPEG) is reported and left out, the others are stored. */
static cdx_result store_sources(cdx_library *lib, json_t **docs, const cdx_image_record *recs, size_t n)
{
    source_buf *sb = calloc(n ? n : 1, sizeof *sb);
    cdx_source_record *sr = calloc(n ? n : 1, sizeof *sr);
    cdx_result r = sb && sr ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n && !r; i++)
        if (source_from(docs[i], recs[i].path, &sb[m])) sr[m] = sb[m].rec, m++;
    if (!r && m) r = cdx_library_set_sources(lib, sr, m, NULL);
    if (r == CDX_ERR_INVALID_ARG) {   /* one by one: keep the good ones */
        r = CDX_OK;
        for (size_t i = 0; i < m && !r; i++) {
            cdx_result e = cdx_library_set_sources(lib, &sr[i], 1, NULL);
            if (e == CDX_ERR_INVALID_ARG) fprintf(stderr, "clipdex: warning: source skipped: %s\n", cdx_last_error());
            else r = e;
        }
    }
    for (size_t i = 0; sb && i < m; i++) source_buf_free(&sb[i]);
    free(sb);
    free(sr);
    return r;
}

/* Nothing pending or unacked for a consumer; *exists = 0 when it is absent. */
static cdx_result consumer_idle(cdx_fleet *f, const char *stream, const char *durable, int *idle, int *exists)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, f->js, stream, durable, NULL, &jerr);
    *exists = s != NATS_NOT_FOUND;
    *idle = 0;
    if (s == NATS_NOT_FOUND) return CDX_OK;
    if (s != NATS_OK) return fleet_nats_error(s, durable);
    *idle = ci->NumPending == 0 && ci->NumAckPending == 0;
    jsConsumerInfo_Destroy(ci);
    return CDX_OK;
}

/* Drained: the workers' consumer has nothing pending or unacked (every
 * item settled by a worker, which publishes its result first; without
 * that consumer: the work stream is empty), and then neither has ours.
 * The consumer's view, not the work stream's message count, decides: after
 * a hard broker crash the stream may keep items its consumer has acked. */
static cdx_result drained(cdx_fleet *f, const char *durable, int *yes)
{
    int idle = 0, exists = 0;
    *yes = 0;
    cdx_result r = consumer_idle(f, f->work_stream, "workers", &idle, &exists);
    if (!r && !exists) {
        uint64_t work = 0;
        r = fleet_stream_msgs(f, f->work_stream, &work);
        idle = work == 0;
    }
    if (r || !idle) return r;
    if ((r = consumer_idle(f, f->results_stream, durable, &idle, &exists))) return r;
    *yes = idle;
    return CDX_OK;
}

/* The owner's change log must be applied in order (a move is an "add" of
 * the new path, then a "del" of the old one).  A replica killed with a
 * fetched batch unacknowledged gets those records again only after the ack
 * wait, and the broker would hand out the records after them first: so
 * before its first fetch, a consumer with unacknowledged records waits out
 * the ack wait, after which the broker redelivers them ahead of newer
 * ones. */
static cdx_result await_redeliveries(cdx_fleet *f, const char *durable, cdx_cancel_flag *cancel)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, f->js, f->deletions_stream, durable, NULL, &jerr);
    if (s != NATS_OK) return fleet_nats_error(s, durable);
    int64_t pending = ci->NumAckPending;
    int64_t wait_ms = ci->Config ? ci->Config->AckWait / 1000000 : 30000;
    jsConsumerInfo_Destroy(ci);
    if (pending <= 0) return CDX_OK;
    fprintf(stderr, "clipdex: %lld owner change(s) left unacknowledged by a previous run: waiting %.1f s "
            "for their redelivery, so that they are applied in order\n", (long long)pending, wait_ms / 1000.0);
    for (int64_t t = 0; t < wait_ms + 500 && !(cancel && atomic_load(cancel)); t += 100) usleep(100 * 1000);
    return CDX_OK;
}

/* One consumer run: the subscriptions and the batch buffers. */
typedef struct index_run {
    cdx_fleet *f;
    cdx_library *lib;
    const cdx_fleet_index_params *p;
    const char *durable;
    cdx_library_info li;
    natsSubscription *sub, *dsub;   /* results; deletions (replicas) */
    cdx_image_record *recs;
    float *vecs;
    json_t **docs;                  /* source metadata of each result (or NULL) */
    cdx_import_stats *st;
} index_run;

/* Fetch one batch of results (waiting up to wait_ms), commit, ack;
 * *got = messages fetched. */
/* Record in the library the precision(s) the batch's results were embedded
 * at (a result without one is from a worker older than the record: fp32). */
static cdx_result note_precisions(cdx_library *lib, json_t *const *docs, size_t n, uint64_t added)
{
    int seen = 0;   /* bit per cdx_precision */
    for (size_t i = 0; i < n; i++) {
        cdx_precision p = CDX_PRECISION_FP32;
        const char *s = json_string_value(json_object_get(docs[i], "precision"));
        if (s && !cdx_precision_parse(s, &p)) p = CDX_PRECISION_FP32;   /* checked by parse_result */
        seen |= 1 << p;
    }
    cdx_result r = CDX_OK;
    for (int p = 0; p < 4 && !r; p++)
        if (seen & (1 << p)) r = cdx_library_note_precision(lib, (cdx_precision)p, added);
    return r;
}

static cdx_result results_step(index_run *x, int wait_ms, int *got)
{
    natsMsgList list = {NULL, 0};
    jsErrCode jerr = 0;
    cdx_result r = CDX_OK;
    *got = 0;
    natsStatus s = natsSubscription_Fetch(&list, x->sub, x->p->batch, wait_ms, &jerr);
    if (list.Count == 0) {
        natsMsgList_Destroy(&list);
        if (s == NATS_CONNECTION_CLOSED) return fleet_nats_error(s, "fetch");
        if (s != NATS_OK && s != NATS_TIMEOUT) nats_Sleep(200);
        return CDX_OK;
    }
    *got = list.Count;
    size_t n = 0;
    int dim = x->li.dim;
    for (int i = 0; i < list.Count && !r; i++) {
        cdx_result e = parse_result(list.Msgs[i], dim, x->li.model_fingerprint, &x->recs[n],
                                    x->vecs + n * (size_t)dim, &x->docs[n]);
        if (e == CDX_ERR_MISMATCH) r = e;   /* another model's pipeline: stop, ack nothing */
        else if (e) fprintf(stderr, "clipdex: warning: result skipped: %s\n", cdx_last_error());
        else n++;
    }
    uint64_t added = x->st->added;
    cdx_library_outbox_mute(1);   /* replicas read these results themselves */
    if (!r) r = cdx_library_add_vectors(x->lib, x->recs, x->vecs, n, x->li.model_fingerprint, x->st);
    if (!r) r = note_precisions(x->lib, x->docs, n, x->st->added - added);
    if (!r) r = store_sources(x->lib, x->docs, x->recs, n);
    cdx_library_outbox_mute(0);
    for (size_t i = 0; i < n; i++) {
        json_decref(x->docs[i]);
        x->docs[i] = NULL;
    }
    /* one round trip per batch: the server handles a connection's acks in
     * order, so the answer to the last one covers the others (a lost ack
     * only redelivers a result, which then changes nothing) */
    for (int i = 0; i < list.Count && !r; i++) {
        s = i + 1 < list.Count ? natsMsg_Ack(list.Msgs[i], NULL) : natsMsg_AckSync(list.Msgs[i], NULL, &jerr);
        if (s != NATS_OK) r = fleet_nats_error(s, "ack");
    }
    natsMsgList_Destroy(&list);
    if (!r && x->p->progress) x->p->progress(x->p->user, x->st);
    return r;
}

/* Commit the owner's additions gathered so far (x->recs[0..*n)). */
static cdx_result flush_adds(index_run *x, size_t *n)
{
    cdx_result r = *n ? cdx_library_add_vectors(x->lib, x->recs, x->vecs, *n, x->li.model_fingerprint, x->st)
                      : CDX_OK;
    for (size_t i = 0; i < *n; i++) {
        json_decref(x->docs[i]);
        x->docs[i] = NULL;
    }
    *n = 0;
    return r;
}

/* One record of the owner's change log (outbox.c): an "add" joins the
 * pending additions (*n of them), anything else is a deletion, applied
 * after them. */
static cdx_result apply_deletion(index_run *x, natsMsg *m, size_t *n)
{
    json_t *o = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    const char *op = json_string_value(json_object_get(o, "op"));
    if (op && !strcmp(op, "add")) {
        json_t *res = json_incref(json_object_get(o, "result"));
        json_decref(o);
        cdx_result e = res ? parse_result_doc(res, x->li.dim, x->li.model_fingerprint, &x->recs[*n],
                                              x->vecs + *n * (size_t)x->li.dim, &x->docs[*n])
                           : cdx_error(CDX_ERR_FORMAT, "an add without a result");
        if (e == CDX_ERR_MISMATCH) return e;
        if (e) fprintf(stderr, "clipdex: warning: owner's addition skipped: %s\n", cdx_last_error());
        else if (++*n == (size_t)x->p->batch) return flush_adds(x, n);
        return CDX_OK;
    }
    cdx_result fr = flush_adds(x, n);
    if (fr) {
        json_decref(o);
        return fr;
    }
    const char *path = json_string_value(json_object_get(o, "path"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    cdx_result r = CDX_OK;
    int64_t id = 0;
    cdx_image_record *rec = malloc(sizeof *rec);
    if (!rec) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    else if (!path || !sha || strlen(sha) != 64 || (path[0] != '/' && strncmp(path, "http", 4)))
        fprintf(stderr, "clipdex: warning: malformed deletion skipped\n");
    else if (cdx_library_find(x->lib, path, &id) == CDX_OK && cdx_library_get_image(x->lib, id, rec) == CDX_OK &&
             !strcmp(rec->sha256, sha)) {
        r = cdx_library_remove(x->lib, id);
        if (r == CDX_ERR_NOT_FOUND) r = CDX_OK;
        else if (!r && x->p->deleted) (*x->p->deleted)++;
    }
    cdx_error_clear();
    free(rec);
    json_decref(o);
    return r;
}

/* Replicas: take the pending deletions, then commit every result the
 * broker had by then (a deletion always follows the result it removes, so
 * it must not overtake it), then apply them and ack. */
static cdx_result deletions_step(index_run *x)
{
    natsMsgList list = {NULL, 0};
    jsErrCode jerr = 0;
    natsStatus s = natsSubscription_Fetch(&list, x->dsub, x->p->batch, 10, &jerr);
    cdx_result r = CDX_OK;
    if (list.Count == 0) {
        natsMsgList_Destroy(&list);
        return s == NATS_CONNECTION_CLOSED ? fleet_nats_error(s, "fetch deletions") : CDX_OK;
    }
    for (int idle = 0, exists = 0, got = 0; !r && !idle && !(x->p->cancel && atomic_load(x->p->cancel));) {
        r = results_step(x, 50, &got);
        if (!r && !got && !(r = consumer_idle(x->f, x->f->results_stream, x->durable, &idle, &exists)) && !exists)
            idle = 1;   /* the consumer vanished (broker reset): nothing to wait for */
    }
    size_t adds = 0;
    for (int i = 0; i < list.Count && !r; i++) r = apply_deletion(x, list.Msgs[i], &adds);
    if (!r) r = flush_adds(x, &adds);
    for (size_t i = 0; i < adds; i++) json_decref(x->docs[i]), x->docs[i] = NULL;
    for (int i = 0; i < list.Count && !r; i++) {
        s = natsMsg_AckSync(list.Msgs[i], NULL, &jerr);
        if (s != NATS_OK) r = fleet_nats_error(s, "ack");
    }
    natsMsgList_Destroy(&list);   /* unacked ones come back after the ack wait */
    if (!r && x->p->progress) x->p->progress(x->p->user, x->st);
    return r;
}

cdx_result cdx_fleet_index(cdx_fleet *f, cdx_library *lib, const cdx_fleet_index_params *params,
                           cdx_import_stats *stats)
{
    if (!f || !lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_index: NULL argument");
    cdx_fleet_index_params p = params ? *params : cdx_fleet_index_default_params();
    if (p.batch < 1 || p.batch > INDEX_BATCH_MAX)
        return cdx_error(CDX_ERR_INVALID_ARG, "batch must be 1..%d", INDEX_BATCH_MAX);
    if (p.max_wait_ms < 1) p.max_wait_ms = 1;
    if (p.ack_wait_ms < 1000) return cdx_error(CDX_ERR_INVALID_ARG, "ack wait must be at least 1000 ms");
    const char *durable = p.consumer ? p.consumer : INDEX_DURABLE;
    size_t dl = strlen(durable);
    if (!dl || dl > 64 || strspn(durable, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != dl)
        return cdx_error(CDX_ERR_INVALID_ARG, "consumer name \"%.64s\": 1 to 64 of A-Z a-z 0-9 _ -", durable);
    index_run x;
    memset(&x, 0, sizeof x);
    x.f = f;
    x.lib = lib;
    x.p = &p;
    x.durable = durable;
    cdx_import_stats local;
    x.st = stats ? stats : &local;
    memset(x.st, 0, sizeof *x.st);
    cdx_result r = cdx_library_get_info(lib, &x.li);
    if (r) return r;
    if ((r = fleet_pull(f, f->results_stream, f->results_subj, durable, p.ack_wait_ms, 0, &x.sub))) return r;
    if (p.replica) r = fleet_pull(f, f->deletions_stream, f->deletions_subj, durable, p.ack_wait_ms, 0, &x.dsub);
    if (p.replica && !r) r = await_redeliveries(f, durable, p.cancel);
    x.recs = calloc((size_t)p.batch, sizeof *x.recs);
    x.vecs = malloc((size_t)p.batch * (size_t)x.li.dim * sizeof *x.vecs);
    x.docs = calloc((size_t)p.batch, sizeof *x.docs);
    if (!r && (!x.recs || !x.vecs || !x.docs)) r = cdx_error(CDX_ERR_NOMEM, "out of memory for a batch of %d", p.batch);
    while (!r && !(p.cancel && atomic_load(p.cancel))) {
        int got = 0;
        r = results_step(&x, p.max_wait_ms, &got);
        if (!r && x.dsub) r = deletions_step(&x);
        if (!r && !p.replica) r = cdx_fleet_publish_outbox(f, lib, p.published);   /* the owner's changes */
        if (r || got) continue;
        int done = 0;
        if (!p.follow && (r = drained(f, durable, &done)) == CDX_OK && done) break;
    }
    natsSubscription_Destroy(x.sub);
    natsSubscription_Destroy(x.dsub);
    free(x.recs);
    free(x.vecs);
    free(x.docs);
    return r;
}

cdx_result cdx_fleet_publish_deletion(cdx_fleet *f, const char *path, const char *sha256)
{
    if (!f || !path || !sha256 || strlen(sha256) != 64)
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_publish_deletion: bad arguments");
    json_t *o = json_pack("{s:s,s:s,s:I}", "path", path, "sha256", sha256, "at", (json_int_t)time(NULL));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return cdx_error(CDX_ERR_FORMAT, "deletion of a path that is not valid UTF-8");
    uint8_t raw[32];
    char hex[65], msg_id[128];
    source_sha256(path, strlen(path), raw, hex);
    snprintf(msg_id, sizeof msg_id, "del:%.32s@%.32s", hex, sha256);
    cdx_result r = fleet_publish(f, f->deletions_subj, text, strlen(text), msg_id, NULL);
    free(text);
    return r;
}
