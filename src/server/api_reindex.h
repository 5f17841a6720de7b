/*
 * api_reindex.h - /api/reindex (api_reindex.c): the reindex job of a
 * writable server.
 */
#ifndef CDX_SERVER_API_REINDEX_H
#define CDX_SERVER_API_REINDEX_H

#include "server.h"

typedef struct srv_reindex srv_reindex;

/* The job state of a writable server's library (NULL on OOM). */
srv_reindex *srv_reindex_new(cdx_library *lib);
/* Cancel a running job, wait for it, free (NULL is fine). */
void srv_reindex_stop(srv_reindex *x);

#endif
