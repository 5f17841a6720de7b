/*
 * cmd_rm.c - `clipdex rm [--library DIR] ID|PATH...`: remove catalogued
 * images (a content's vector is dropped from search when no path refers to
 * it).  Files on disk are never touched.
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex rm [--library DIR] [--no-publish] ID|PATH|URL...\n\n"
               "Remove images from the library by id or by path/URL (files are not deleted).\n"
               "A library fed from a fleet pipeline (index --from, serve --ingest) records\n"
               "the removals in its outbox and publishes them to the pipeline's deletions,\n"
               "which its read replicas follow; with the broker out of reach they are kept\n"
               "and published by the next rm, index or serve of the library (warning, exit\n"
               "status 0).  --no-publish: remove here only (the replicas keep the images).\n");
}

int cmd_rm(int argc, char **argv)
{
    const char *dir = NULL;
    int n = 0, publish = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && i + 1 < argc) { dir = argv[++i]; continue; }
        if (!strcmp(a, "--no-publish")) { publish = 0; continue; }
        if (!strncmp(a, "--", 2)) return cli_usage_error("rm", "unknown argument '%s'", a);
        n++;
    }
    if (!n) return cli_usage_error("rm", "nothing to remove (give ids or paths)");
    cdx_library_params p = cdx_library_default_params();
    p.load_model = 0;
    p.writable = 1;
    cdx_library *lib;
    if (cli_open_library(dir, &p, &lib)) return 1;
    int rc = 0;
    cdx_library_outbox_mute(!publish);   /* the outbox records a removal unless muted */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--library")) { i++; continue; }
        if (!strcmp(a, "--no-publish")) continue;
        long v;
        int64_t id;
        cdx_result r;
        if (cli_parse_int(a, 1, 0x7fffffffffffffffL, &v) == 0) id = v;
        else if ((r = cdx_library_find(lib, a, &id)) != CDX_OK) { rc = cli_fail(a, r); continue; }
        cdx_image_record rec;
        int have = cdx_library_get_image(lib, id, &rec) == CDX_OK;
        if ((r = cdx_library_remove(lib, id)) != CDX_OK) { rc = cli_fail(a, r); continue; }
        printf("removed %lld %s\n", (long long)id, have ? rec.path : "");
    }
    cdx_library_outbox_mute(0);
    cdx_fleet *fleet = NULL;
    cli_publish_outbox(lib, &fleet);   /* these removals and any kept from before */
    cdx_fleet_close(fleet);
    cdx_library_close(lib);
    return rc;
}
