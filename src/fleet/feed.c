/*
 * feed.c - producers: one work record per image of a folder or per URL of
 * a list, published to the pipeline's work subject with the record id as
 * message id, so feeding the same folder twice within the dedup window
 * publishes nothing new (and beyond it the library's commit is idempotent).
 *
 * Work record (JSON): {"id": "file:<32 hex>" | "url:<32 hex>",
 *   "path": ABS | "url": URL, "size": N, "mtime": S (files),
 *   "source": {"kind": "folder"|"urls", "root"|"list": ..., "line": N}}
 * Workload: up to millions of records per run, one publish round trip each.
 */
#include "fleet/bus.h"

#include "common/error.h"
#include "ingest/source.h"
#include "ingest/walk.h"

#include <jansson.h>
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

static cdx_result publish_record(cdx_fleet *f, json_t *rec, const char *id, cdx_feed_stats *st)
{
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!text) return cdx_error(CDX_ERR_FORMAT, "record %s: not representable as JSON (invalid UTF-8?)", id);
    int dup = 0;
    cdx_result r = fleet_publish(f, f->work_subj, text, strlen(text), id, &dup);
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

cdx_result cdx_fleet_feed_folder(cdx_fleet *f, const char *dir, cdx_feed_stats *stats)
{
    if (!f || !dir) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_feed_folder: NULL argument");
    cdx_feed_stats local;
    cdx_feed_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    char *root = walk_abspath(dir);
    if (!root) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    walk_list files = {NULL, 0, 0};
    cdx_result r = walk_path(root, NULL, &files, walk_err, NULL, NULL);
    for (size_t i = 0; i < files.n && !r; i++) {
        const walk_file *wf = &files.v[i];
        if (!source_image_name(wf->path)) {
            st->skipped++;
            continue;
        }
        char id[48];
        record_id("file", wf->path, id);
        json_t *rec = json_pack("{s:s,s:s,s:I,s:I,s:{s:s,s:s}}", "id", id, "path", wf->path,
                                "size", (json_int_t)wf->size, "mtime", (json_int_t)wf->mtime,
                                "source", "kind", "folder", "root", root);
        r = publish_record(f, rec, id, st);
    }
    walk_list_free(&files);
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
        r = publish_record(f, rec, id, st);
    }
    free(line);
    fclose(in);
    return r;
}
