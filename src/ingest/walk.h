/*
 * walk.h - find candidate files under the paths given to `clipdex index`.
 *
 * Folders are walked recursively in name order; symbolic links are
 * followed (to files and folders), and every folder is entered at most once
 * per walk, identified by (st_dev, st_ino), so symlink loops and bind-mount
 * cycles terminate.  Paths are made absolute (not canonicalised: a file
 * reached through a symlinked folder keeps that path).  Hidden entries
 * (names starting with '.') are skipped, and so is the library directory
 * itself.  Unreadable folders and dangling links are reported through the
 * error callback and the walk continues.
 *
 * Caps: WALK_MAX_DEPTH nested folders, WALK_MAX_FILES candidates.
 * Workload: one walk per index run, up to ~10^6 files; the (dev, ino) set
 * and the output list grow geometrically.
 */
#ifndef CDX_INGEST_WALK_H
#define CDX_INGEST_WALK_H

#include "clipdex.h"

#include <stdint.h>
#include <stddef.h>

#define WALK_MAX_DEPTH 256
#define WALK_MAX_FILES 50000000u

typedef struct walk_file {
    char *path;        /* absolute, malloc'd */
    uint64_t size;
    int64_t mtime;     /* seconds */
} walk_file;

typedef struct walk_list {
    walk_file *v;
    size_t n, cap;
} walk_list;

/* Called for a path that could not be walked (with the reason). */
typedef void (*walk_error_fn)(void *user, const char *path, const char *reason);

/* Append the candidate files under root (a file or a folder) to out.
 * skip_dir (may be NULL): absolute path of a folder never entered.
 * cancel (may be NULL) stops the walk early.  Fails only on out-of-memory
 * or a cap; per-path problems go to err. */
cdx_result walk_path(const char *root, const char *skip_dir, walk_list *out,
                     walk_error_fn err, void *user, cdx_cancel_flag *cancel);

void walk_list_free(walk_list *l);

/* Make path absolute against the working directory and drop "." segments
 * and duplicate or trailing slashes (no symlink resolution).  malloc'd. */
char *walk_abspath(const char *path);

#endif
