/*
 * cmd_info.c - `clipdex info [--library DIR] [--json]`: counts, model and
 * size of a library (reads only; does not load the model).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex info [--library DIR] [--json]\n\n"
               "Show the library: images (catalogued paths and URLs), vectors (distinct\n"
               "embedded contents), model, dimension, bytes on disk, the vector\n"
               "file's dead rows and the bytes 'clipdex compact' would free, and the\n"
               "companion code files of compressed search (bytes per image resident\n"
               "while scanning), and the images with OCR text (clipdex ocr).\n");
}

int cmd_info(int argc, char **argv)
{
    int json;
    const char *d;
    cdx_library *lib;
    int rc = cli_open_library_args("info", argc, argv, usage, &lib, &json, &d);
    if (rc >= 0) return rc;
    cdx_library_info info;
    cdx_codes_info ci[CDX_SCAN_LAST];
    const int nc = CDX_SCAN_LAST;   /* companions: scans 1..LAST */
    cdx_result r = cdx_library_get_info(lib, &info);
    for (int s = 0; !r && s < nc; s++) r = cdx_library_codes_info(lib, CDX_SCAN_INT8 + s, 0, &ci[s]);
    char mname[160] = "";   /* the registry name recorded by reindex */
    if (!r) r = cdx_library_model_name(lib, mname, sizeof mname);
    cdx_library_close(lib);
    if (r) return cli_fail("reading library", r);
    if (!*mname) {   /* not recorded: the registry may know the version */
        cdx_registry *g = NULL;
        cdx_registry_model *m = malloc(sizeof *m);
        char ref[80];
        snprintf(ref, sizeof ref, "@%s", info.model_fingerprint);
        if (m && cdx_registry_open(NULL, NULL, &g) == CDX_OK && cdx_registry_resolve(g, ref, m) == CDX_OK)
            snprintf(mname, sizeof mname, "%s", m->name);
        cdx_registry_close(g);
        free(m);
    }
    if (json) {
        fputs("{\"library\": ", stdout);
        cli_print_json_string(stdout, d);
        printf(", \"images\": %llu, \"vectors\": %llu, \"bytes\": %llu, \"dim\": %d, \"model\": ",
               (unsigned long long)info.images, (unsigned long long)info.vectors,
               (unsigned long long)info.bytes, info.dim);
        cli_print_json_string(stdout, info.model_dir);
        fputs(", \"model_name\": ", stdout);
        cli_print_json_string(stdout, mname);
        printf(", \"model_fingerprint\": \"%s\", \"precision\": \"%s\", \"vector_rows\": %llu, \"dead_rows\": %llu, "
               "\"reclaimable_bytes\": %llu", info.model_fingerprint, info.precision,
               (unsigned long long)info.vector_rows, (unsigned long long)info.dead_rows,
               (unsigned long long)info.reclaimable_bytes);
        printf(", \"ocr_images\": %llu, \"ocr_read\": %llu, \"ocr_skipped\": %llu, \"codes\": [",
               (unsigned long long)info.ocr_images, (unsigned long long)info.ocr_read,
               (unsigned long long)info.ocr_skipped);
        for (int s = 0; s < nc; s++)
            printf("%s{\"scan\": \"%s\", \"present\": %s, \"fresh\": %s, \"rows\": %llu, "
                   "\"file_bytes\": %llu, \"bytes_per_image\": %llu}", s ? ", " : "",
                   cdx_scan_name(ci[s].scan), ci[s].present ? "true" : "false", ci[s].fresh ? "true" : "false",
                   (unsigned long long)ci[s].rows, (unsigned long long)ci[s].file_bytes,
                   (unsigned long long)ci[s].bytes_per_image);
        printf("], \"f32_bytes_per_image\": %llu}\n", (unsigned long long)info.dim * 4);
    } else {
        printf("library:     %s\nimages:      %llu\nvectors:     %llu\nmodel:       %s\n"
               "fingerprint: %s\ndim:         %d\nbytes:       %llu\n",
               d, (unsigned long long)info.images, (unsigned long long)info.vectors,
               info.model_dir, info.model_fingerprint, info.dim, (unsigned long long)info.bytes);
        printf("version:     %s@%s\n", *mname ? mname : "", info.model_fingerprint);
        printf("precision:   %s (of the vectors)\n", info.precision);
        printf("dead rows:   %llu of %llu vector rows (%llu bytes reclaimable by 'clipdex compact')\n",
               (unsigned long long)info.dead_rows, (unsigned long long)info.vector_rows,
               (unsigned long long)info.reclaimable_bytes);
        printf("ocr:         %llu images with text (%llu contents read, %llu skipped: no "
               "text-like regions)\n", (unsigned long long)info.ocr_images,
               (unsigned long long)info.ocr_read, (unsigned long long)info.ocr_skipped);
        printf("f32 scan:    %llu bytes/image\n", (unsigned long long)info.dim * 4);
        for (int s = 0; s < nc; s++) {
            const cdx_codes_info *c = &ci[s];
            if (!c->present) printf("%-4s codes:  none%s\n", cdx_scan_name(c->scan), c->damaged ? " (damaged file)" : "");
            else printf("%-4s codes:  %llu bytes/image, %llu rows, %llu bytes%s\n", cdx_scan_name(c->scan),
                        (unsigned long long)c->bytes_per_image, (unsigned long long)c->rows,
                        (unsigned long long)c->file_bytes, c->fresh ? "" : " (stale: updated on next use)");
        }
    }
    return 0;
}
