/*
 * cmd_info.c - `clipdex info [--library DIR] [--json]`: counts, model and
 * size of a library (reads only; does not load the model).
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex info [--library DIR] [--json]\n\n"
               "Show the library: images (catalogued paths and URLs), vectors (distinct\n"
               "embedded contents), model, dimension, bytes on disk, and the vector\n"
               "file's dead rows and the bytes 'clipdex compact' would free.\n");
}

int cmd_info(int argc, char **argv)
{
    int json;
    const char *d;
    cdx_library *lib;
    int rc = cli_open_library_args("info", argc, argv, usage, &lib, &json, &d);
    if (rc >= 0) return rc;
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    cdx_library_close(lib);
    if (r) return cli_fail("reading library", r);
    if (json) {
        fputs("{\"library\": ", stdout);
        cli_print_json_string(stdout, d);
        printf(", \"images\": %llu, \"vectors\": %llu, \"bytes\": %llu, \"dim\": %d, \"model\": ",
               (unsigned long long)info.images, (unsigned long long)info.vectors,
               (unsigned long long)info.bytes, info.dim);
        cli_print_json_string(stdout, info.model_dir);
        printf(", \"model_fingerprint\": \"%s\", \"vector_rows\": %llu, \"dead_rows\": %llu, "
               "\"reclaimable_bytes\": %llu}\n", info.model_fingerprint,
               (unsigned long long)info.vector_rows, (unsigned long long)info.dead_rows,
               (unsigned long long)info.reclaimable_bytes);
    } else {
        printf("library:     %s\nimages:      %llu\nvectors:     %llu\nmodel:       %s\n"
               "fingerprint: %s\ndim:         %d\nbytes:       %llu\n",
               d, (unsigned long long)info.images, (unsigned long long)info.vectors,
               info.model_dir, info.model_fingerprint, info.dim, (unsigned long long)info.bytes);
        printf("dead rows:   %llu of %llu vector rows (%llu bytes reclaimable by 'clipdex compact')\n",
               (unsigned long long)info.dead_rows, (unsigned long long)info.vector_rows,
               (unsigned long long)info.reclaimable_bytes);
    }
    return 0;
}
