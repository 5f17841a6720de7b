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
               "embedded contents), model, dimension and bytes on disk.\n");
}

int cmd_info(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else return cli_usage_error("info", "unknown or incomplete argument '%s'", a);
    }
    cdx_library_params p = cdx_library_default_params();
    p.load_model = 0;
    cdx_library *lib;
    if (cli_open_library(dir, &p, &lib)) return 1;
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    cdx_library_close(lib);
    if (r) return cli_fail("reading library", r);
    const char *d = dir ? dir : cdx_library_default_dir();
    if (json) {
        fputs("{\"library\": ", stdout);
        cli_print_json_string(stdout, d);
        printf(", \"images\": %llu, \"vectors\": %llu, \"bytes\": %llu, \"dim\": %d, \"model\": ",
               (unsigned long long)info.images, (unsigned long long)info.vectors,
               (unsigned long long)info.bytes, info.dim);
        cli_print_json_string(stdout, info.model_dir);
        printf(", \"model_fingerprint\": \"%s\"}\n", info.model_fingerprint);
    } else {
        printf("library:     %s\nimages:      %llu\nvectors:     %llu\nmodel:       %s\n"
               "fingerprint: %s\ndim:         %d\nbytes:       %llu\n",
               d, (unsigned long long)info.images, (unsigned long long)info.vectors,
               info.model_dir, info.model_fingerprint, info.dim, (unsigned long long)info.bytes);
    }
    return 0;
}
