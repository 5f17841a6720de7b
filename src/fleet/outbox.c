/*
 * outbox.c - an owning library's changes to its read replicas.
 *
 * The owner's catalog records every change of its images in its outbox
 * (catalog.h "fleet outbox"), inside the transaction that makes it:
 * index, --prune, the watchers' passes (moves too), rm, DELETE, uploads.
 * cdx_fleet_publish_outbox sends the recorded rows in seq order to the
 * pipeline's deletions stream (the owner's change log), waits for the
 * broker's acknowledgement of each, and only then forgets them; a crash
 * in between republishes them under the same message ids, which the
 * broker deduplicates.  Two kinds of record:
 *   {"op": "del", "path", "sha256", "at"}  (as cdx_fleet_publish_deletion)
 *   {"op": "add", "at", "result": {a result record, vector included}}
 * An "add" is published with the path's content at publication time: when
 * the path is gone or holds another content by then, a later row of the
 * outbox covers it and the add is skipped.  Records of the same row keep
 * their message id ("add:"/"del:" + path hash + "@" + content + "#" seq).
 * The owner's own consumer never reads the deletions stream; replicas
 * apply its records in order, after the results the broker held (see
 * consume.c).
 * Workload: a few rows per watcher pass, up to a full prune at once.
 */
#include "fleet/bus.h"

#include "common/error.h"
#include "ingest/source.h"
#include "library/lib_fleet.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_CHUNK 64

/* The result record of path (content sha) as the owner holds it now;
 * NULL (no error) when it no longer does. */
static cdx_result add_record(cdx_library *lib, const cdx_library_info *li, const catalog_outbox_row *row,
                             cdx_image_record *rec, float *vec, json_t **out)
{
    *out = NULL;
    int64_t id = 0;
    if (cdx_library_find(lib, row->path, &id) != CDX_OK || cdx_library_get_image(lib, id, rec) != CDX_OK ||
        strcmp(rec->sha256, row->sha256) || cdx_library_get_vector(lib, id, vec) != CDX_OK) {
        cdx_error_clear();
        return CDX_OK;
    }
    uint8_t raw[32];
    char hex[65], rid[80];
    source_sha256(row->path, strlen(row->path), raw, hex);
    snprintf(rid, sizeof rid, "%s:%.32s", row->path[0] == '/' ? "file" : "url", hex);
    json_t *v = json_array();
    for (int d = 0; v && d < li->dim; d++) json_array_append_new(v, json_real(vec[d]));
    json_t *r = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i,s:s,s:s,s:o}", "id", rid, "path", rec->path, "sha256",
                          rec->sha256, "size", (json_int_t)rec->size, "mtime", (json_int_t)rec->mtime, "width",
                          rec->width, "height", rec->height, "format", rec->format, "model",
                          li->model_fingerprint, "vector", v);
    if (r && rec->taken > 0) json_object_set_new(r, "taken", json_integer((json_int_t)rec->taken));
    if (r && rec->camera[0]) json_object_set_new(r, "camera", json_string(rec->camera));
    *out = r ? json_pack("{s:s,s:I,s:o}", "op", "add", "at", (json_int_t)row->at, "result", r) : NULL;
    if (!*out) return cdx_error(CDX_ERR_FORMAT, "%s: cannot make its record (not UTF-8?)", row->path);
    return CDX_OK;
}

static cdx_result publish_row(cdx_fleet *f, cdx_library *lib, const cdx_library_info *li,
                              const catalog_outbox_row *row, cdx_image_record *rec, float *vec, int *sent)
{
    *sent = 0;
    json_t *o = NULL;
    cdx_result r = CDX_OK;
    if (row->add) r = add_record(lib, li, row, rec, vec, &o);
    else o = json_pack("{s:s,s:s,s:s,s:I}", "op", "del", "path", row->path, "sha256", row->sha256, "at",
                       (json_int_t)row->at);
    if (r) return r;
    if (!o) {
        if (!row->add) fprintf(stderr, "clipdex: warning: outbox row %lld (not UTF-8) skipped\n", (long long)row->seq);
        return CDX_OK;   /* an add the owner no longer holds */
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    uint8_t raw[32];
    char hex[65], msg_id[160];
    source_sha256(row->path, strlen(row->path), raw, hex);
    snprintf(msg_id, sizeof msg_id, "%s:%.32s@%.32s#%lld", row->add ? "add" : "del", hex, row->sha256,
             (long long)row->seq);
    r = fleet_publish(f, f->deletions_subj, text, strlen(text), msg_id, NULL);
    free(text);
    if (!r) *sent = 1;
    return r;
}

cdx_result cdx_fleet_publish_outbox(cdx_fleet *f, cdx_library *lib, uint64_t *published)
{
    if (!f || !lib) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_fleet_publish_outbox: NULL argument");
    uint64_t local = 0, pending = 0;
    if (!published) published = &local;
    /* the consumers call this after every batch: nothing to do must cost
     * one count, not the library's info */
    cdx_result r = cdx_library_outbox_pending(lib, &pending);
    if (r || !pending) return r;
    cdx_library_info li;
    if ((r = cdx_library_get_info(lib, &li))) return r;
    catalog_outbox_row *rows = malloc(OUTBOX_CHUNK * sizeof *rows);
    cdx_image_record *rec = malloc(sizeof *rec);
    float *vec = malloc((size_t)(li.dim > 0 ? li.dim : 1) * sizeof *vec);
    if (!rows || !rec || !vec) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (int n = OUTBOX_CHUNK; !r && n == OUTBOX_CHUNK;) {
        catalog *c = lib_fleet_writer_lock(lib);
        if (!c) break;   /* read-only: nothing of ours to publish */
        r = catalog_outbox_rows(c, 0, OUTBOX_CHUNK, rows, &n);
        lib_fleet_writer_unlock(lib);
        if (r || !n) break;
        int done = 0;   /* rows published, in order; the broker has them */
        for (; done < n && !r; done++) {
            int sent = 0;
            r = publish_row(f, lib, &li, &rows[done], rec, vec, &sent);
            if (r) break;
            *published += (uint64_t)sent;
        }
        if (done) {
            c = lib_fleet_writer_lock(lib);
            cdx_result e = catalog_outbox_done(c, rows[done - 1].seq);
            lib_fleet_writer_unlock(lib);
            if (!r) r = e;
        }
    }
    free(rows);
    free(rec);
    free(vec);
    return r;
}
