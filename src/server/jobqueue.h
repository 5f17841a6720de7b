/*
 * jobqueue.h - the server's threading policy: a bounded queue of inference and
 * search jobs served by a fixed set of worker threads.
 *
 * Connection threads (libmicrohttpd) do only I/O and parsing: they submit a
 * job and wait for its result.  Each worker takes the oldest job plus every
 * queued job it can serve in the same call:
 *   text jobs    -> one batched text-tower call (cdx_library_embed_texts),
 *   search jobs  -> one shared scan (cdx_library_search_vectors) for all
 *                   queued searches with the same parameters,
 *   image jobs   -> decoded one by one, then one batched image-tower call
 *                   (cdx_library_embed_image_buffers).
 * The library's threads per call are set by the caller so that
 * workers x threads <= cores (srv_ctx_open).
 *
 * Invariants: at most queue_limit jobs wait (a full queue refuses at once:
 * SCHED_FULL, answered 503 + Retry-After); a job taken by a worker always
 * completes; a job still queued after wait_s is withdrawn (SCHED_TIMEOUT);
 * sched_stop() fails every queued job with SCHED_SHUTDOWN, finishes the
 * batches in hand and joins the workers (no waiter is left blocked).
 */
#ifndef CDX_SERVER_JOBQUEUE_H
#define CDX_SERVER_JOBQUEUE_H

#include "clipdex.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sched sched;

typedef struct sched_params {
    int workers;       /* worker threads (>= 1) */
    int queue_limit;   /* jobs allowed to wait (>= 1) */
    int batch_max;     /* jobs served by one call (>= 1, <= 256) */
    double wait_s;     /* longest wait in the queue (0 = no limit) */
} sched_params;

sched_params sched_default_params(void);

typedef enum sched_kind { SCHED_TEXT = 1, SCHED_IMAGE, SCHED_SEARCH } sched_kind;

/* Outcome of sched_run (besides the job's own cdx_result). */
enum { SCHED_DONE = 0, SCHED_FULL = 1, SCHED_TIMEOUT = 2, SCHED_SHUTDOWN = 3 };

/* One job; lives on the submitter's stack for the duration of sched_run. */
typedef struct sched_job {
    sched_kind kind;
    const char *text;               /* SCHED_TEXT */
    const void *data;               /* SCHED_IMAGE: encoded image bytes */
    size_t len;
    const float *query;             /* SCHED_SEARCH: normalised, dim floats */
    cdx_search_params params;
    cdx_hit *hits;                  /* room for params.k */
    float *vec;                     /* TEXT/IMAGE output: dim floats */
    size_t n_hits;                  /* SEARCH outputs */
    uint64_t total;
    cdx_result result;              /* the library's result */
    char error[512];                /* its message when result != CDX_OK */
    cdx_library_pin *pin;           /* TEXT/IMAGE: embed with this model
                                       generation (NULL: the current one);
                                       jobs share a call only with the same pin */
    /* private */
    int state;
    struct sched_job *next;
} sched_job;

/* Counters (for metrics and tests). */
typedef struct sched_stats {
    uint64_t jobs[4], calls[4];     /* indexed by sched_kind */
    uint64_t refused, timed_out;
    int queued;                     /* now */
} sched_stats;

int sched_new(cdx_library *lib, int dim, const sched_params *p, sched **out);
/* Enqueue and wait.  SCHED_DONE (see job->result) or SCHED_FULL /
 * SCHED_TIMEOUT / SCHED_SHUTDOWN (job not run). */
int sched_run(sched *s, sched_job *job);
void sched_get_stats(sched *s, sched_stats *st);
/* Test hook: while held, workers take no job (queued jobs accumulate). */
void sched_hold(sched *s, int on);
/* Refuse new jobs, fail the queued ones (SCHED_SHUTDOWN), finish the
 * batches in hand, join the workers.  Safe while sched_run calls wait. */
void sched_stop(sched *s);
/* sched_stop, then release; no sched_run may be in flight. */
void sched_free(sched *s);

#endif
