/*
 * cmd_export.c - `clipdex export`: write every image's vector as a float32
 * .npy [N, D] and its catalog record as a JSON Lines file (same row order,
 * by id), ready for `clipdex import` into another library or for numpy.
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex export [--library DIR] --vectors OUT.npy --meta OUT.jsonl\n\n"
            "Write the library's vectors (float32 .npy, one row per image in id order)\n"
            "and one JSON line per image (id, path, sha256, size, width, height, format,\n"
            "mtime, taken, camera, added).  Each file is written under a temporary name\n"
            "and renamed when complete.\n");
}

int cmd_export(int argc, char **argv)
{
    const char *dir = NULL, *vectors = NULL, *meta = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && hv) dir = argv[++i];
        else if (!strcmp(a, "--vectors") && hv) vectors = argv[++i];
        else if (!strcmp(a, "--meta") && hv) meta = argv[++i];
        else return cli_usage_error("export", "unknown or incomplete argument '%s'", a);
    }
    if (!vectors || !meta) return cli_usage_error("export", "--vectors OUT.npy and --meta OUT.jsonl are required");
    cdx_library_params lp = cdx_library_default_params();
    lp.load_model = 0;
    cdx_library *lib;
    if (cli_open_library(dir, &lp, &lib)) return 1;
    uint64_t n = 0;
    cdx_result r = cdx_library_export(lib, vectors, meta, &n);
    cdx_library_close(lib);
    if (r) return cli_fail("export", r);
    printf("exported %llu images to %s and %s\n", (unsigned long long)n, vectors, meta);
    return fflush(stdout) ? 1 : 0;
}
