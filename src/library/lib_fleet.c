/*
 * lib_fleet.c - the fleet pipeline a library is fed from, recorded in
 * DIR/pipeline (one line, nats://HOST:PORT/NAME, written atomically) by
 * `index --from` and `serve --ingest`.  `clipdex rm` and the server's
 * DELETE read it to publish removals to the pipeline's replicas.
 */
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
    return r;
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
