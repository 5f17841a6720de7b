/*
 * jobqueue.c - bounded job queue + fixed worker threads (see jobqueue.h).
 *
 * One mutex guards the queue (a singly linked FIFO) and every job's state;
 * workers wait on `work`, submitters on `done` (broadcast: a batch ends many
 * jobs at once).  A worker unlinks its batch under the lock, runs it without
 * the lock, then marks the jobs done.
 *
 * Workload: a few hundred submissions per second at most; the lock is held
 * only to link/unlink a few pointers.
 */
#include "jobqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHED_BATCH_LIMIT 256

enum { ST_QUEUED = 1, ST_RUNNING, ST_DONE };

struct sched {
    cdx_library *lib;
    int dim;
    sched_params p;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    sched_job *head, *tail;
    int queued, held, stopping;
    sched_stats st;
    pthread_t *threads;
    int n_threads;
    /* per worker scratch is allocated in the worker */
};

sched_params sched_default_params(void)
{
    sched_params p = {1, 64, 32, 30.0};
    return p;
}

static int same_str(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return !strcmp(a, b);
}

static int same_params(const cdx_search_params *a, const cdx_search_params *b)
{
    return a->k == b->k && a->offset == b->offset && a->min_score == b->min_score &&
           a->after == b->after && a->before == b->before && same_str(a->path_prefix, b->path_prefix) &&
           same_str(a->format, b->format) && same_str(a->tag, b->tag) && a->scan == b->scan &&
           a->rescore == b->rescore && a->exact == b->exact && a->probes == b->probes &&
           same_str(a->model_fingerprint, b->model_fingerprint);
}

/* Unlink the oldest job and every later queued job that can share its call.
 * Called with the lock held and a non-empty queue. */
static int take_batch(sched *s, sched_job **batch)
{
    sched_job *first = s->head;
    int n = 0, max = s->p.batch_max;
    sched_job **link = &s->head, *prev = NULL;
    while (*link && n < max) {
        sched_job *j = *link;
        int fits = j->kind == first->kind && j->pin == first->pin &&
                   (j->kind != SCHED_SEARCH || same_params(&j->params, &first->params));
        if (fits) {
            *link = j->next;
            if (s->tail == j) s->tail = prev;
            j->next = NULL;
            j->state = ST_RUNNING;
            batch[n++] = j;
        } else {
            prev = j;
            link = &j->next;
        }
    }
    s->queued -= n;
    s->st.jobs[first->kind] += (uint64_t)n;
    s->st.calls[first->kind]++;
    return n;
}

static void set_error(sched_job *j, cdx_result r)
{
    j->result = r;
    if (r) {
        const char *m = cdx_last_error();
        snprintf(j->error, sizeof j->error, "%s", m && *m ? m : cdx_result_str(r));
    }
}

static void run_texts(sched *s, sched_job **b, int n, float *vecs, const char **texts)
{
    for (int i = 0; i < n; i++) texts[i] = b[i]->text;
    cdx_library_pin *pin = b[0]->pin;   /* take_batch: one pin per batch */
    cdx_result r = pin ? cdx_library_pin_embed_texts(pin, texts, (size_t)n, vecs)
                       : cdx_library_embed_texts(s->lib, texts, (size_t)n, vecs);
    if (!r) {
        for (int i = 0; i < n; i++) {
            memcpy(b[i]->vec, vecs + (size_t)i * s->dim, (size_t)s->dim * sizeof(float));
            b[i]->result = CDX_OK;
        }
        return;
    }
    /* Batch failed: each on its own, so every job gets its own verdict. */
    for (int i = 0; i < n; i++)
        set_error(b[i], pin ? cdx_library_pin_embed_texts(pin, &b[i]->text, 1, b[i]->vec)
                            : cdx_library_embed_text(s->lib, b[i]->text, b[i]->vec));
}

static void run_images(sched *s, sched_job **b, int n, float *vecs, const void **datas, size_t *lens,
                       cdx_result *res)
{
    for (int i = 0; i < n; i++) {
        datas[i] = b[i]->data;
        lens[i] = b[i]->len;
    }
    cdx_library_pin *pin = b[0]->pin;
    cdx_result r = pin ? cdx_library_pin_embed_image_buffers(pin, datas, lens, (size_t)n, vecs, res)
                       : cdx_library_embed_image_buffers(s->lib, datas, lens, (size_t)n, vecs, res);
    for (int i = 0; i < n; i++) {
        if (!r && !res[i]) {
            memcpy(b[i]->vec, vecs + (size_t)i * s->dim, (size_t)s->dim * sizeof(float));
            b[i]->result = CDX_OK;
        } else if (pin) {   /* again on its own, for its own error message */
            cdx_result one = CDX_OK, rr = cdx_library_pin_embed_image_buffers(pin, &b[i]->data, &b[i]->len, 1,
                                                                             b[i]->vec, &one);
            set_error(b[i], rr ? rr : one);
        } else {
            set_error(b[i], cdx_library_embed_image_buffer(s->lib, b[i]->data, b[i]->len, b[i]->vec));
        }
    }
}

static void run_searches(sched *s, sched_job **b, int n, float *queries, size_t *nh, uint64_t *tot)
{
    const cdx_search_params *p = &b[0]->params;
    cdx_hit *hits = p->k ? malloc((size_t)n * p->k * sizeof *hits) : NULL;
    cdx_result r = p->k && !hits ? CDX_ERR_NOMEM : CDX_OK;
    if (!r) {
        for (int i = 0; i < n; i++)
            memcpy(queries + (size_t)i * s->dim, b[i]->query, (size_t)s->dim * sizeof(float));
        r = cdx_library_search_vectors(s->lib, queries, (size_t)n, p, hits, nh, tot);
    }
    if (!r) {
        for (int i = 0; i < n; i++) {
            if (nh[i]) memcpy(b[i]->hits, hits + (size_t)i * p->k, nh[i] * sizeof *hits);
            b[i]->n_hits = nh[i];
            b[i]->total = tot[i];
            b[i]->result = CDX_OK;
            if (i && b[i]->params.info && p->info) *b[i]->params.info = *p->info;   /* one call for all */
        }
    } else {
        for (int i = 0; i < n; i++)
            set_error(b[i], cdx_library_search_vector(s->lib, b[i]->query, &b[i]->params, b[i]->hits,
                                                      &b[i]->n_hits, &b[i]->total));
    }
    free(hits);
}

static void *worker(void *arg)
{
    sched *s = arg;
    int bm = s->p.batch_max;
    sched_job **batch = calloc((size_t)bm, sizeof *batch);
    float *vecs = malloc((size_t)bm * s->dim * sizeof *vecs);
    const char **texts = calloc((size_t)bm, sizeof *texts);
    size_t *nh = calloc((size_t)bm, sizeof *nh);
    uint64_t *tot = calloc((size_t)bm, sizeof *tot);
    const void **datas = calloc((size_t)bm, sizeof *datas);
    size_t *lens = calloc((size_t)bm, sizeof *lens);
    cdx_result *res = calloc((size_t)bm, sizeof *res);
    int ok = batch && vecs && texts && nh && tot && datas && lens && res;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && (s->held || !s->head)) pthread_cond_wait(&s->work, &s->mu);
        if (s->stopping) break;
        int n = take_batch(s, batch);
        pthread_mutex_unlock(&s->mu);
        if (!ok) {
            for (int i = 0; i < n; i++) {
                batch[i]->result = CDX_ERR_NOMEM;
                snprintf(batch[i]->error, sizeof batch[i]->error, "out of memory");
            }
        } else if (batch[0]->kind == SCHED_TEXT) {
            run_texts(s, batch, n, vecs, texts);
        } else if (batch[0]->kind == SCHED_SEARCH) {
            run_searches(s, batch, n, vecs, nh, tot);
        } else {
            run_images(s, batch, n, vecs, datas, lens, res);
        }
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < n; i++) batch[i]->state = ST_DONE;
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    free(batch);
    free(vecs);
    free(texts);
    free(nh);
    free(tot);
    free(datas);
    free(lens);
    free(res);
    return NULL;
}

int sched_new(cdx_library *lib, int dim, const sched_params *p, sched **out)
{
    *out = NULL;
    sched_params d = sched_default_params();
    if (!p) p = &d;
    if (!lib || dim < 1 || p->workers < 1 || p->workers > 256 || p->queue_limit < 1 ||
        p->batch_max < 1 || p->batch_max > SCHED_BATCH_LIMIT || !(p->wait_s >= 0))
        return -1;
    sched *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->lib = lib;
    s->dim = dim;
    s->p = *p;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->done, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->work, NULL);
    s->threads = calloc((size_t)p->workers, sizeof *s->threads);
    if (!s->threads) {
        sched_free(s);
        return -1;
    }
    for (int i = 0; i < p->workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker, s)) {
            sched_free(s);
            return -1;
        }
        s->n_threads++;
    }
    *out = s;
    return 0;
}

/* Remove a still-queued job (timeout).  Lock held. */
static void unlink_job(sched *s, sched_job *job)
{
    sched_job **link = &s->head, *prev = NULL;
    while (*link && *link != job) {
        prev = *link;
        link = &(*link)->next;
    }
    if (!*link) return;
    *link = job->next;
    if (s->tail == job) s->tail = prev;
    s->queued--;
}

int sched_run(sched *s, sched_job *job)
{
    job->result = CDX_OK;
    job->error[0] = '\0';
    job->n_hits = 0;
    job->total = 0;
    job->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return SCHED_SHUTDOWN;
    }
    if (s->queued >= s->p.queue_limit) {
        s->st.refused++;
        pthread_mutex_unlock(&s->mu);
        return SCHED_FULL;
    }
    job->state = ST_QUEUED;
    if (s->tail) s->tail->next = job;
    else s->head = job;
    s->tail = job;
    s->queued++;
    pthread_cond_signal(&s->work);
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (s->p.wait_s > 0) {
        double w = s->p.wait_s;
        dl.tv_sec += (time_t)w;
        dl.tv_nsec += (long)((w - (double)(time_t)w) * 1e9);
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    int rc = SCHED_DONE;
    while (job->state != ST_DONE) {
        if (job->state == ST_QUEUED && s->stopping) {
            rc = SCHED_SHUTDOWN;   /* sched_free unlinked it */
            break;
        }
        if (job->state == ST_QUEUED && s->p.wait_s > 0) {
            if (pthread_cond_timedwait(&s->done, &s->mu, &dl) == ETIMEDOUT && job->state == ST_QUEUED) {
                unlink_job(s, job);
                s->st.timed_out++;
                rc = SCHED_TIMEOUT;
                break;
            }
        } else {
            pthread_cond_wait(&s->done, &s->mu);   /* running: it completes */
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sched_get_stats(sched *s, sched_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->queued = s->queued;
    pthread_mutex_unlock(&s->mu);
}

void sched_hold(sched *s, int on)
{
    pthread_mutex_lock(&s->mu);
    s->held = on;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_stop(sched *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    int joined = s->stopping;
    s->stopping = 1;
    s->head = s->tail = NULL;   /* queued jobs: their waiters see stopping */
    s->queued = 0;
    pthread_cond_broadcast(&s->work);
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
    if (joined) return;
    for (int i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
}

void sched_free(sched *s)
{
    if (!s) return;
    sched_stop(s);
    free(s->threads);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
