/*
 * cmd_init.c - `clipdex init --library DIR --model MODEL`: create a library
 * bound to a model (its fingerprint is recorded; other models are refused).
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex init [--library DIR] --model MODEL_DIR\n\n"
               "Create an image library (default $CLIPDEX_LIBRARY or ./clipdex-library) bound to\n"
               "MODEL_DIR.  Running it again with the same model is harmless; another model\n"
               "is refused.\n");
}

int cmd_init(int argc, char **argv)
{
    const char *dir = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(a, "--model") && i + 1 < argc) model = argv[++i];
        else return cli_usage_error("init", "unknown or incomplete argument '%s'", a);
    }
    if (!model) return cli_usage_error("init", "--model is required");
    cdx_library_params p = cdx_library_default_params();
    p.model_dir = model;
    p.create = 1;
    p.writable = 1;
    cdx_library *lib;
    if (cli_open_library(dir, &p, &lib)) return 1;
    cdx_library_info info;
    cdx_result r = cdx_library_get_info(lib, &info);
    if (r) {
        cdx_library_close(lib);
        return cli_fail("reading library", r);
    }
    printf("library %s: model %s (fingerprint %.16s..., dim %d), %llu images\n",
           dir ? dir : cdx_library_default_dir(), info.model_dir, info.model_fingerprint, info.dim,
           (unsigned long long)info.images);
    cdx_library_close(lib);
    return 0;
}
