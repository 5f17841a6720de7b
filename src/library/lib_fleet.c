/*
 * lib_fleet.c - the fleet pipeline a library is fed from, recorded in
 * DIR/pipeline (one line, nats://HOST:PORT/NAME, written atomically) by
 * `index --from` and `serve --ingest`.  Such an owning library records
 * every change of its images in its outbox (catalog.h "fleet outbox",
 * installed by every writable open and by cdx_library_set_pipeline), which
 * cdx_fleet_publish_outbox publishes to the pipeline's replicas.
 */
#include "library/lib_fleet.h"
#include "library/lib_watch.h"

#include "common/error.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPELINE_URL_MAX 600

static char *pipeline_file(cdx_library *lib)
{
    const char *dir = lib_watch_dir(lib);
    return dir ? cdx_path_join(dir, "pipeline") : NULL;
}

cdx_result cdx_library_set_pipeline(cdx_library *lib, const char *url)
{
    if (!lib || !url || strncmp(url, "nats://", 7) || strlen(url) >= PIPELINE_URL_MAX || strchr(url, '\n'))
        return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_set_pipeline: expected a nats:// URL");
    char *path = pipeline_file(lib);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = cdx_write_file_atomic(path, url, strlen(url));
    free(path);
    return r ? r : lib_fleet_attach(lib);
}

cdx_result cdx_library_get_pipeline(cdx_library *lib, char *url, size_t cap)
{
    if (!lib || !url || cap < PIPELINE_URL_MAX) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_get_pipeline: bad arguments");
    url[0] = '\0';
    char *path = pipeline_file(lib);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    FILE *f = fopen(path, "r");
    free(path);
    if (!f) return CDX_OK;   /* not fed from a pipeline */
    size_t n = fread(url, 1, cap - 1, f);
    fclose(f);
    url[n] = '\0';
    url[strcspn(url, "\r\n")] = '\0';
    if (strncmp(url, "nats://", 7)) {
        url[0] = '\0';
        return cdx_error(CDX_ERR_FORMAT, "the library's pipeline file holds no nats:// URL");
    }
    return CDX_OK;
}

/* ---- the outbox (lib_fleet.h) */

static _Thread_local int outbox_muted;

static int outbox_active(void) { return !outbox_muted; }

void cdx_library_outbox_mute(int on) { outbox_muted = on != 0; }

cdx_result lib_fleet_attach(cdx_library *lib)
{
    char url[PIPELINE_URL_MAX];
    cdx_result r = cdx_library_get_pipeline(lib, url, sizeof url);
    if (r == CDX_ERR_FORMAT) {   /* a damaged pipeline file: record changes anyway */
        cdx_error_clear();
        r = CDX_OK;
        url[0] = 'x';
    }
    if (r || !url[0]) return r;
    catalog *c = lib_fleet_writer_lock(lib);
    if (!c) return CDX_OK;
    r = catalog_outbox_attach(c, outbox_active);
    lib_fleet_writer_unlock(lib);
    return r;
}

cdx_result cdx_library_outbox_pending(cdx_library *lib, uint64_t *n)
{
    if (!lib || !n) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_outbox_pending: NULL argument");
    *n = 0;
    catalog *c = lib_fleet_writer_lock(lib);
    if (!c) return CDX_OK;
    cdx_result r = catalog_outbox_count(c, n);
    lib_fleet_writer_unlock(lib);
    return r;
}
