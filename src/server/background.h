/*
 * background.h - ingestion inside `clipdex serve` (docs/fleet.md): folder
 * watching (--watch, cdx_library_watch), the fleet's results consumer
 * (--ingest) and read replicas (--replica-of: results and deletions), each
 * on a thread of its own writing through the server's library handle, so
 * that searches keep being answered meanwhile and see each commit.  A
 * server that owns a fleet library (--ingest, or a library whose recorded
 * pipeline is set) publishes its library's outbox (every change: DELETE,
 * --watch passes, uploads) to the pipeline's deletions stream for its
 * replicas: the consumer thread after each batch with --ingest, else the
 * thread that made the change (DELETE, a watch pass).
 *
 * Invariants: threads stop (after committing their current batch or pass)
 * before the library is closed; a lost broker is retried every 2 s, a model
 * mismatch stops the consumer (logged).  Workload: one or two threads.
 */
#ifndef CDX_SERVER_BACKGROUND_H
#define CDX_SERVER_BACKGROUND_H

#include "server.h"

#include <jansson.h>

/* Start what s->cfg asks for; 0 ok, -1 with a message in err. */
int srv_bg_start(srv_ctx *s, char *err, size_t err_len);
/* Stop and join the threads (s->bg may be NULL). */
void srv_bg_stop(srv_ctx *s);
/* After DELETE removed rec: publish the library's outbox when this server
 * owns a fleet library and has no --ingest thread (a failure is logged;
 * the changes stay recorded for the next attempt). */
void srv_bg_deleted(srv_ctx *s, const cdx_image_record *rec);
/* {"watch": {...}, "ingest": {...}} for /api/stats, or NULL when idle. */
json_t *srv_bg_stats(srv_ctx *s);

#endif
