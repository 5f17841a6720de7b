/*
 * cache.h - the on-disk model cache: where a downloaded model lives, which
 * names are acceptable, and when a directory counts as complete.
 *
 * Layout:  <root>/<owner>--<name>/<revision>/<files>
 *   root      params->cache_dir | $CLIPDEX_HOME/models |
 *             $XDG_DATA_HOME/clipdex/models | $HOME/.local/share/clipdex/models
 *   revision  the revision with every '/' written as "%2F" (refs/pr/3 ->
 *             refs%2Fpr%2F3), the same form the URL uses.
 *   .complete marker written last by a successful fetch; .lock serialises
 *             concurrent fetches; <file>.part is a download in progress.
 *
 * Invariants: every name that reaches a path passed cdx_cache_check_repo_id()
 * or cdx_cache_check_revision(), so a path built here never leaves <root>
 * (no '/', "..", or leading '.' in a component); the mapping repo id ->
 * directory name is one-to-one (ids may not contain "--").
 *
 * Workload: a handful of stat() calls per command; listing walks two
 * directory levels.
 */
#ifndef CDX_FETCH_CACHE_H
#define CDX_FETCH_CACHE_H

#include "clipdex.h"

#include <stdint.h>

#define CDX_CACHE_MARKER ".complete"
#define CDX_CACHE_LOCK ".lock"
#define CDX_CACHE_PART_SUFFIX ".part"

/* One file of a model repository. */
typedef struct cdx_cache_file {
    const char *name;
    int required;        /* 0: a 404 is fine (file is skipped) */
    uint64_t max_bytes;  /* larger downloads are refused */
} cdx_cache_file;

/* The files a model directory holds, in download order. */
extern const cdx_cache_file cdx_cache_files[];
extern const int cdx_cache_n_files;
#define CDX_CACHE_WEIGHTS "model.safetensors"

/* "owner/name", each part 1..96 of [A-Za-z0-9._-], starting and ending with
 * a letter, digit or '_', without ".." or "--" (the Hugging Face rules). */
cdx_result cdx_cache_check_repo_id(const char *repo_id);

/* A branch, tag or commit: 1..255 of [A-Za-z0-9._-/], '/'-separated parts
 * that are non-empty and start with neither '.' nor '-', no "..". */
cdx_result cdx_cache_check_revision(const char *revision);

/* The revision with '/' as "%2F" (URL path segment and directory name);
 * malloc'd, NULL on allocation failure.  Input must have passed the check. */
char *cdx_cache_encode_revision(const char *revision);
/* Inverse of the above, validated; NULL when enc is not such a name. */
char *cdx_cache_decode_revision(const char *enc);

/* "owner--name" <-> "owner/name"; decode returns NULL when the name is not
 * a valid encoded repo id.  malloc'd. */
char *cdx_cache_encode_repo_id(const char *repo_id);
char *cdx_cache_decode_repo_id(const char *dirname);

/* params->revision, or "main" when params or the field is NULL or "". */
const char *cdx_cache_revision(const cdx_fetch_params *params);

/* "<root>/<owner>--<name>/<encoded revision>", validating both names. */
cdx_result cdx_cache_model_dir(const char *root, const char *repo_id,
                               const char *revision, char **out);

/* 1 when dir has the marker and every required file (regular files). */
int cdx_cache_dir_complete(const char *dir);

/* mkdir -p with mode 0755. */
cdx_result cdx_cache_mkdirs(const char *path);

/* Copy s into buf (size n) for an error message: at most n-1 bytes, bytes
 * outside printable ASCII replaced by '?', "..." appended when cut. */
const char *cdx_cache_printable(const char *s, char *buf, size_t n);

#endif
