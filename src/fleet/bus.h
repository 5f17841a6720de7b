/*
 * bus.h - a clipdex pipeline on NATS JetStream: the URL, the connection and
 * the named streams, consumers and key-value bucket (see docs/fleet.md).
 *
 * A pipeline URL is nats://HOST:PORT/NAME; NAME is 1..64 of [a-z0-9_-].
 * For NAME the objects are (created idempotently on first use):
 *   stream CLIPDEX_<NAME>_WORK     subject clipdex.<name>.work     work queue
 *   stream CLIPDEX_<NAME>_RESULTS  subject clipdex.<name>.results  limits
 *   stream CLIPDEX_<NAME>_DEAD     subject clipdex.<name>.dead     limits
 *   consumer "workers" on WORK (durable pull, explicit ack) shared by every
 *   worker; consumer "library" on RESULTS used by `index --from`;
 *   KV bucket clipdex_<name>, key "model" = the pipeline's model fingerprint.
 *   stream CLIPDEX_<NAME>_DELETIONS subject clipdex.<name>.deletions (limits):
 *   removals from the owning library, followed by read replicas.
 * (<NAME> is NAME upper-cased with '-' as '_'.)
 *
 * Invariants: every published record carries a message id derived from
 * its record id (files: + "@size.mtime"; results: + "@" content sha256),
 * deduplicated over FLEET_DEDUP_NS; a cdx_fleet handle is used by one
 * thread at a time (its connection is shared with the worker's ticker
 * thread, which the NATS client allows).
 */
#ifndef CDX_FLEET_BUS_H
#define CDX_FLEET_BUS_H

#include "clipdex.h"

#include <nats/nats.h>

#define FLEET_DEDUP_NS ((int64_t)3600 * 1000000000LL)   /* one hour */
#define FLEET_RECORD_MAX ((size_t)1 << 20)              /* bytes per message */

struct cdx_fleet {
    natsConnection *nc;
    jsCtx *js;
    cdx_fleet_params params;
    char name[65];
    char server[512];         /* nats://HOST:PORT */
    char work_stream[96], results_stream[96], dead_stream[96];
    char work_subj[96], results_subj[96], dead_subj[96];
    char bucket[96];
    char deletions_stream[96], deletions_subj[96];   /* removals the owning library publishes */
};

/* CDX_ERR_NETWORK "what: <nats text>" from a natsStatus. */
cdx_result fleet_nats_error(natsStatus s, const char *what);

/* Format one line (at most 1 KiB) for a params struct's optional log
 * callback: nothing when log is NULL.  The producers and workers report
 * retries, skips and dead letters through it. */
void fleet_log(void (*log)(void *user, const char *line), void *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Publish data to subj with message id msg_id (dedup); *duplicate (may be
 * NULL) = the server had it already. */
cdx_result fleet_publish(cdx_fleet *f, const char *subj, const char *data, size_t len,
                         const char *msg_id, int *duplicate);

/* Messages in a stream (work queue: not yet acked). */
cdx_result fleet_stream_msgs(cdx_fleet *f, const char *stream, uint64_t *msgs);

/* Bind a pull subscription to the durable consumer `durable` of stream,
 * creating it (explicit ack, ack_wait_ms, max_deliver; 0 = unlimited)
 * when it does not exist yet. */
cdx_result fleet_pull(cdx_fleet *f, const char *stream, const char *subj, const char *durable,
                      int ack_wait_ms, int max_deliver, natsSubscription **sub);

#endif
