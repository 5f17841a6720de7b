/*
 * feed.c - producers: one work record per image of a folder or per URL of
 * a list, published to the pipeline's work subject with the record id as
 * message id, so feeding the same folder twice within the dedup window
 * publishes nothing new (and beyond it the library's commit is idempotent).
 *
 * Files carry message id "<record id>@<size>.<mtime>": an unchanged file
 * is deduplicated, a changed one is published again.  `feed watch` adds
 * inotify (see the watch section below).
 *
 * Work record (JSON): {"id": "file:<32 hex>" | "url:<32 hex>",
 *   "path": ABS | "url": URL, "size": N, "mtime": S (files),
 *   "source": {"kind": "folder"|"urls", "root"|"list": ..., "line": N}}
 * Workload: up to millions of records per run, one publish round trip each.
 */
#include "fleet/bus.h"

#include "common/error.h"
#include "ingest/dirwatch.h"
#include "ingest/source.h"
#include "ingest/walk.h"

#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_URL_MAX 4000

/* "<prefix>:" + the first 32 hex digits of sha256(text). */
static void record_id(const char *prefix, const char *text, char out[48])
{
    uint8_t raw[32];
    char hex[65];
    source_sha256(text, strlen(text), raw, hex);
    snprintf(out, 48, "%s:%.32s", prefix, hex);
}

static cdx_result publish_record(cdx_fleet *f, json_t *rec, const char *id, const char *msg_id,
                                 cdx_feed_stats *st)
{
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!text) {   /* e.g. a file name that is not UTF-8: skipped, not fatal */
        fprintf(stderr, "clipdex: warning: record %s skipped: its path is not valid UTF-8\n", id);
        st->skipped++;
        return CDX_OK;
    }
    int dup = 0;
    cdx_result r = fleet_publish(f, f->work_subj, text, strlen(text), msg_id, &dup);
    free(text);
    if (!r) {
        if (dup) st->duplicates++;
        else st->published++;
    }
    return r;
}

static void walk_err(void *user, const char *path, const char *reason)
{
    (void)user;
    fprintf(stderr, "clipdex: warning: %s: %s\n", path, reason);
}

/* One file: its record id names the path; the message id adds size and
 * mtime, so an unchanged file is deduplicated and a changed one is not. */
static cdx_result feed_file(cdx_fleet *f, const char *root, const char *kind, const walk_file *wf,
                            cdx_feed_stats *st)
{
    if (!source_image_name(wf->path)) {
        st->skipped++;
        return CDX_OK;
    }
    char id[48], msg_id[96];
    record_id("file", wf->path, id);
    snprintf(msg_id, sizeof msg_id, "%s@%llu.%lld", id, (unsigned long long)wf->size, (long long)wf->mtime);
    json_t *rec = json_pack("{s:s,s:s,s:I,s:I,s:{s:s,s:s}}", "id", id, "path", wf->path,
                            "size", (json_int_t)wf->size, "mtime", (json_int_t)wf->mtime,
                            "source", "kind", kind, "root", root);
    return publish_record(f, rec, id, msg_id, st);
}

static cdx_result feed_tree(cdx_fleet *f, const char *root, const char *dir, const char *kind,
                            cdx_cancel_flag *cancel, cdx_feed_stats *st)
{
    walk_list files = {NULL, 0, 0};
    cdx_result r = walk_path(dir, NULL, &files, walk_err, NULL, cancel);
    for (size_t i = 0; i < files.n && !r; i++) r = feed_file(f, root, kind, &files.v[i], st);
    walk_list_free(&files);
    return r;
}

cdx_result cdx_fleet_feed_folder(cdx_fleet *f, const char *dir, cdx_feed_stats *stats)
{
    if (!f || !dir) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_feed_folder: NULL argument");
    cdx_feed_stats local;
    cdx_feed_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    char *root = walk_abspath(dir);
    if (!root) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = feed_tree(f, root, root, "folder", NULL, st);
    free(root);
    return r;
}

cdx_result cdx_fleet_feed_urls(cdx_fleet *f, const char *file, cdx_feed_stats *stats)
{
    if (!f || !file) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_feed_urls: NULL argument");
    cdx_feed_stats local;
    cdx_feed_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    FILE *in = fopen(file, "r");
    if (!in) return cdx_error(CDX_ERR_IO, "%s: cannot open", file);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    cdx_result r = CDX_OK;
    while (!r && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = '\0';
        char *u = line;
        while (*u == ' ' || *u == '\t') u++;
        if (!*u || *u == '#') continue;
        if ((size_t)n > FEED_URL_MAX || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))) {
            r = cdx_error(CDX_ERR_FORMAT, "%s line %llu: not an http(s) URL of at most %d bytes", file,
                          (unsigned long long)lineno, FEED_URL_MAX);
            break;
        }
        char id[48];
        record_id("url", u, id);
        json_t *rec = json_pack("{s:s,s:s,s:{s:s,s:s,s:I}}", "id", id, "url", u, "source", "kind", "urls",
                                "list", file, "line", (json_int_t)lineno);
        r = publish_record(f, rec, id, id, st);
    }
    free(line);
    fclose(in);
    return r;
}

/* ---------------------------------------------------------------- watch
 * inotify on every folder under root (ingest/dirwatch.c; new folders are
 * watched as they appear and scanned).  A file is published when it is
 * closed after writing or moved in; a queue overflow triggers a full
 * rescan (unchanged files are deduplicated by their message ids). */

typedef struct feed_watch {
    cdx_fleet *f;
    const char *root;
    cdx_cancel_flag *cancel;
    cdx_feed_stats *st;
} feed_watch;

static cdx_result feed_watch_event(void *user, dirwatch_kind kind, const char *path)
{
    feed_watch *fw = user;
    struct stat sb;
    switch (kind) {
    case DIRWATCH_OVERFLOW: return feed_tree(fw->f, fw->root, fw->root, "watch", fw->cancel, fw->st);
    case DIRWATCH_NEW_DIR: return feed_tree(fw->f, fw->root, path, "watch", fw->cancel, fw->st);
    case DIRWATCH_CHANGED:
        if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            walk_file wf = {(char *)path, (uint64_t)sb.st_size, (int64_t)sb.st_mtime};
            return feed_file(fw->f, fw->root, "watch", &wf, fw->st);
        }
        return CDX_OK;
    default: return CDX_OK;   /* deletions are not propagated through the work stream */
    }
}

cdx_result cdx_fleet_feed_watch(cdx_fleet *f, const char *dir, cdx_cancel_flag *cancel, cdx_feed_stats *stats)
{
    if (!f || !dir) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_feed_watch: NULL argument");
    cdx_feed_stats local;
    cdx_feed_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    char *root = walk_abspath(dir);
    if (!root) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    dirwatch *w = NULL;
    cdx_result r = dirwatch_open(&w);
    /* watches first, then the scan: nothing written meanwhile is missed */
    if (!r) r = dirwatch_add_tree(w, root);
    if (!r) r = feed_tree(f, root, root, "watch", cancel, st);
    feed_watch fw = {f, root, cancel, st};
    while (!r && !(cancel && atomic_load(cancel))) r = dirwatch_poll(w, 300, feed_watch_event, &fw);
    dirwatch_close(w);
    free(root);
    return r;
}
