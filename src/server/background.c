/*
 * background.c - the server's ingestion threads (see background.h).
 */
#include "background.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct srv_bg {
    srv_ctx *s;
    cdx_cancel_flag cancel;
    pthread_t watch_tid, ingest_tid, outbox_tid;
    int watching, ingesting, outboxing;
    char consumer[80];
    pthread_mutex_t mu;         /* guards the counters, the publisher and the error */
    cdx_watch_stats watch;      /* summed over passes */
    cdx_import_stats ingest;    /* of the current consumer run */
    uint64_t deleted;           /* replica: deletions applied (copied from deleting) */
    uint64_t deleting;          /* written by the consumer thread only */
    uint64_t published;         /* owner: outbox records published */
    uint64_t publishing;        /* written by the consumer thread only */
    char error[256];            /* last background error ("" = none) */
    char owner_url[600];        /* pipeline this server owns ("" = none) */
    cdx_fleet *publisher;       /* opened on the first change (no --ingest) */
    pthread_cond_t wake;        /* with mu: kicks the outbox thread */
    int kick;                   /* a change to publish now */
    int outbox_failing;         /* the last publication failed (logged once) */
};

static void set_error(struct srv_bg *bg, const char *what);

/* An owner without --ingest: publish its outbox (the changes of DELETE,
 * uploads and --watch passes, and those a killed predecessor left) from the
 * outbox thread; with --ingest the consumer thread does it after each
 * batch.  Nothing pending costs one count and no broker connection. */
static void publish_outbox(struct srv_bg *bg)
{
    uint64_t n = 0;
    if (cdx_library_outbox_pending(bg->s->lib, &n) != CDX_OK || !n) return;
    pthread_mutex_lock(&bg->mu);
    cdx_result r = CDX_OK;
    if (!bg->publisher) r = cdx_fleet_open(bg->owner_url, NULL, &bg->publisher);
    if (!r) r = cdx_fleet_publish_outbox(bg->publisher, bg->s->lib, &n);
    if (!r) bg->published += n;
    int first_failure = r && !bg->outbox_failing;
    bg->outbox_failing = r != CDX_OK;
    if (r) {   /* reconnect on the next try */
        cdx_fleet_close(bg->publisher);
        bg->publisher = NULL;
    }
    pthread_mutex_unlock(&bg->mu);
    if (first_failure) set_error(bg, "publishing the owner's changes (kept, retried every 2 s)");
}

/* Wake the outbox thread: a change was committed. */
static void kick_outbox(struct srv_bg *bg)
{
    pthread_mutex_lock(&bg->mu);
    bg->kick = 1;
    pthread_cond_signal(&bg->wake);
    pthread_mutex_unlock(&bg->mu);
}

/* The outbox thread: publishes at start (a predecessor killed before its
 * publication left changes behind), when kicked, and every 2 s while
 * changes are pending (a broker out of reach). */
static void *outbox_main(void *arg)
{
    struct srv_bg *bg = arg;
    while (!atomic_load(&bg->cancel)) {
        publish_outbox(bg);
        pthread_mutex_lock(&bg->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        while (!bg->kick && !atomic_load(&bg->cancel))
            if (pthread_cond_timedwait(&bg->wake, &bg->mu, &until) == ETIMEDOUT) break;
        bg->kick = 0;
        pthread_mutex_unlock(&bg->mu);
    }
    return NULL;
}

static void set_error(struct srv_bg *bg, const char *what)
{
    const char *msg = cdx_last_error();
    pthread_mutex_lock(&bg->mu);
    snprintf(bg->error, sizeof bg->error, "%s: %s", what, msg && *msg ? msg : "failed");
    pthread_mutex_unlock(&bg->mu);
    fprintf(stderr, "clipdex serve: %s: %s\n", what, msg && *msg ? msg : "failed");
}

/* Sleep up to ms, returning early when stopping. */
static void nap(struct srv_bg *bg, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&bg->cancel); t += 100) usleep(100 * 1000);
}

/* ---------------------------------------------------------------- --watch */

static void on_pass(void *user, const cdx_watch_pass *ps)
{
    struct srv_bg *bg = user;
    const cdx_index_stats *s = ps->stats;
    pthread_mutex_lock(&bg->mu);
    bg->watch.passes++;
    bg->watch.full_passes += ps->full;
    bg->watch.added += s->added;
    bg->watch.moved += s->moved;
    bg->watch.duplicates += s->duplicates;
    bg->watch.removed += s->removed;
    bg->watch.failed += s->failed;
    bg->watch.skipped += s->skipped;
    pthread_mutex_unlock(&bg->mu);
    if (bg->outboxing) kick_outbox(bg);
    if (s->added || s->moved || s->duplicates || s->removed || s->failed || ps->full)
        fprintf(stderr, "clipdex serve: watch %s: %llu added, %llu moved, %llu duplicates, %llu removed, %llu failed\n",
                ps->reason, (unsigned long long)s->added, (unsigned long long)s->moved,
                (unsigned long long)s->duplicates, (unsigned long long)s->removed, (unsigned long long)s->failed);
}

static void *watch_main(void *arg)
{
    struct srv_bg *bg = arg;
    cdx_watch_params wp = cdx_watch_default_params();
    wp.pass = on_pass;
    wp.user = bg;
    wp.cancel = &bg->cancel;
    while (!atomic_load(&bg->cancel)) {   /* an error (disk full, a folder gone): log, start over */
        cdx_watch_stats st;
        cdx_result r = cdx_library_watch(bg->s->lib, bg->s->cfg.watch_dirs, bg->s->cfg.n_watch, &wp, &st);
        pthread_mutex_lock(&bg->mu);
        bg->watch.overflows += st.overflows;
        pthread_mutex_unlock(&bg->mu);
        if (!r) break;
        set_error(bg, "watch (restarting in 5 s)");
        nap(bg, 5000);
    }
    return NULL;
}

/* ---------------------------------------------------------------- --ingest, --replica-of */

static void on_commit(void *user, const cdx_import_stats *st)
{
    struct srv_bg *bg = user;
    pthread_mutex_lock(&bg->mu);
    bg->ingest = *st;
    bg->deleted = bg->deleting;   /* same thread as the writer */
    bg->published = bg->publishing;
    pthread_mutex_unlock(&bg->mu);
}

static void *ingest_main(void *arg)
{
    struct srv_bg *bg = arg;
    const srv_config *cfg = &bg->s->cfg;
    int replica = cfg->replica_of != NULL;
    const char *url = replica ? cfg->replica_of : cfg->ingest_url;
    while (!atomic_load(&bg->cancel)) {
        cdx_fleet *f = NULL;
        cdx_result r = cdx_fleet_open(url, NULL, &f);
        if (!r) {
            cdx_fleet_index_params ip = cdx_fleet_index_default_params();
            ip.follow = 1;
            ip.consumer = bg->consumer;
            if (cfg->ack_wait_ms) ip.ack_wait_ms = cfg->ack_wait_ms;
            ip.replica = replica;
            ip.deleted = &bg->deleting;
            ip.published = &bg->publishing;
            ip.progress = on_commit;
            ip.user = bg;
            ip.cancel = &bg->cancel;
            r = cdx_fleet_index(f, bg->s->lib, &ip, NULL);
        }
        cdx_fleet_close(f);
        pthread_mutex_lock(&bg->mu);
        bg->deleted = bg->deleting;
        bg->published = bg->publishing;
        pthread_mutex_unlock(&bg->mu);
        if (!r) continue;   /* stopped (cancel) */
        set_error(bg, replica ? "replica consumer" : "ingest");
        if (r == CDX_ERR_MISMATCH) break;   /* another model's pipeline: retrying cannot help */
        nap(bg, 2000);
    }
    return NULL;
}

/* "replica-<host>-<FNV-1a of the library's absolute path>": stable across
 * restarts (the broker keeps the replica's position), distinct per copy. */
static void replica_name(const char *dir, char *out, size_t cap)
{
    char host[64] = "host", abs[PATH_MAX];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-')) *c = '_';
    host[24] = '\0';
    const char *p = realpath(dir, abs) ? abs : dir;
    uint32_t h = 2166136261u;
    for (; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    snprintf(out, cap, "replica-%s-%08x", host, h);
}

int srv_bg_start(srv_ctx *s, char *err, size_t err_len)
{
    const srv_config *cfg = &s->cfg;
    if (cfg->ingest_url && cfg->replica_of) {
        snprintf(err, err_len, "--ingest and --replica-of exclude each other");
        return -1;
    }
    if (cfg->ingest_url && cfg->read_only) {
        snprintf(err, err_len, "--ingest needs a writable library (not --read-only)");
        return -1;
    }
    struct srv_bg *bg = calloc(1, sizeof *bg);
    if (!bg) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    bg->s = s;
    pthread_mutex_init(&bg->mu, NULL);
    pthread_cond_init(&bg->wake, NULL);
    s->bg = bg;
    if (cfg->consumer) snprintf(bg->consumer, sizeof bg->consumer, "%s", cfg->consumer);
    else if (cfg->replica_of) replica_name(cfg->library_dir, bg->consumer, sizeof bg->consumer);
    else snprintf(bg->consumer, sizeof bg->consumer, "library");
    if (!cfg->read_only) {   /* an owner: --ingest records its pipeline, DELETE publishes */
        if (cfg->ingest_url && cdx_library_set_pipeline(s->lib, cfg->ingest_url) != CDX_OK) {
            snprintf(err, err_len, "recording the pipeline: %s", cdx_last_error());
            return -1;
        }
        if (cdx_library_get_pipeline(s->lib, bg->owner_url, sizeof bg->owner_url) != CDX_OK)
            bg->owner_url[0] = '\0';
    }
    if (cfg->n_watch > 0) {
        if (cfg->read_only) {
            snprintf(err, err_len, "--watch needs a writable library (not --read-only or --replica-of)");
            return -1;
        }
        if (pthread_create(&bg->watch_tid, NULL, watch_main, bg) != 0) {
            snprintf(err, err_len, "cannot start the watch thread");
            return -1;
        }
        bg->watching = 1;
    }
    if (cfg->ingest_url || cfg->replica_of) {
        if (pthread_create(&bg->ingest_tid, NULL, ingest_main, bg) != 0) {
            snprintf(err, err_len, "cannot start the ingest thread");
            return -1;
        }
        bg->ingesting = 1;
    }
    if (bg->owner_url[0] && !bg->ingesting) {
        if (pthread_create(&bg->outbox_tid, NULL, outbox_main, bg) != 0) {
            snprintf(err, err_len, "cannot start the outbox thread");
            return -1;
        }
        bg->outboxing = 1;
    }
    return 0;
}

void srv_bg_stop(srv_ctx *s)
{
    struct srv_bg *bg = s->bg;
    if (!bg) return;
    atomic_store(&bg->cancel, 1);
    if (bg->watching) pthread_join(bg->watch_tid, NULL);
    if (bg->ingesting) pthread_join(bg->ingest_tid, NULL);
    if (bg->outboxing) {
        kick_outbox(bg);
        pthread_join(bg->outbox_tid, NULL);
    }
    cdx_fleet_close(bg->publisher);
    pthread_cond_destroy(&bg->wake);
    pthread_mutex_destroy(&bg->mu);
    free(bg);
    s->bg = NULL;
}

void srv_bg_deleted(srv_ctx *s, const cdx_image_record *rec)
{
    (void)rec;   /* recorded in the library's outbox by the removal itself */
    if (s->bg && s->bg->outboxing) kick_outbox(s->bg);
}

json_t *srv_bg_stats(srv_ctx *s)
{
    struct srv_bg *bg = s->bg;
    if (!bg) return NULL;
    pthread_mutex_lock(&bg->mu);
    json_t *o = json_object();
    if (o && bg->watching)
        json_object_set_new(o, "watch", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "passes", (json_int_t)bg->watch.passes,
                                                  "full_passes", (json_int_t)bg->watch.full_passes,
                                                  "added", (json_int_t)bg->watch.added,
                                                  "moved", (json_int_t)bg->watch.moved,
                                                  "removed", (json_int_t)bg->watch.removed,
                                                  "failed", (json_int_t)bg->watch.failed));
    if (o && bg->ingesting)
        json_object_set_new(o, "ingest", json_pack("{s:s,s:b,s:s,s:I,s:I,s:I,s:I}",
                                                   "pipeline", s->cfg.replica_of ? s->cfg.replica_of : s->cfg.ingest_url,
                                                   "replica", s->cfg.replica_of != NULL, "consumer", bg->consumer,
                                                   "rows", (json_int_t)bg->ingest.rows,
                                                   "added", (json_int_t)bg->ingest.added,
                                                   "unchanged", (json_int_t)bg->ingest.unchanged,
                                                   "deleted", (json_int_t)bg->deleted));
    if (o && bg->owner_url[0])
        json_object_set_new(o, "deletions_published", json_integer((json_int_t)bg->published));
    if (o && bg->error[0]) json_object_set_new(o, "error", json_string(bg->error));
    pthread_mutex_unlock(&bg->mu);
    return o;
}
