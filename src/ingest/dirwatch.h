/*
 * dirwatch.h - inotify over folder trees, shared by `feed watch` (fleet)
 * and `index --watch` / `serve --watch` (library): one watch per folder,
 * folders created or moved in later are watched as they appear, and raw
 * kernel events are turned into four kinds a caller acts on.
 *
 * Invariants: the path recorded for a watch descriptor is the folder's
 * current path (a folder moved within the tree is re-registered under its
 * new name; one moved out or deleted loses its watches with everything
 * below it); a path handed to the callback is absolute and joined from
 * that record.  The kernel's queue overflowing (IN_Q_OVERFLOW: events were
 * lost) is reported as DIRWATCH_OVERFLOW, after which a caller must
 * rescan.  Not thread-safe: one thread polls a dirwatch.
 *
 * Workload: up to DIRWATCH_MAX_DIRS folders; bursts of thousands of events
 * (a copy of a photo folder), read 64 KiB at a time.
 */
#ifndef CDX_INGEST_DIRWATCH_H
#define CDX_INGEST_DIRWATCH_H

#include "clipdex.h"

#include <stddef.h>

#define DIRWATCH_MAX_DIRS 1000000

typedef enum dirwatch_kind {
    DIRWATCH_CHANGED = 0,   /* a file closed after writing, or moved in */
    DIRWATCH_GONE,          /* a file or folder deleted or moved away */
    DIRWATCH_NEW_DIR,       /* a folder created or moved in (now watched,
                               with its subfolders): scan it */
    DIRWATCH_OVERFLOW       /* events were lost (path NULL): rescan */
} dirwatch_kind;

typedef cdx_result (*dirwatch_fn)(void *user, dirwatch_kind kind, const char *path);

typedef struct dirwatch dirwatch;

cdx_result dirwatch_open(dirwatch **out);
void dirwatch_close(dirwatch *w);

/* Watch dir and every folder below it (hidden ones included). */
cdx_result dirwatch_add_tree(dirwatch *w, const char *dir);

/* Wait up to timeout_ms for events and pass each to fn (an error it
 * returns stops the dispatch and is returned).  0 events is not an error. */
cdx_result dirwatch_poll(dirwatch *w, int timeout_ms, dirwatch_fn fn, void *user);

/* Dispatch a buffer of raw inotify events (what read() returned); the
 * part of dirwatch_poll after the read, exposed for tests. */
cdx_result dirwatch_dispatch(dirwatch *w, const char *buf, size_t len, dirwatch_fn fn, void *user);

#endif
