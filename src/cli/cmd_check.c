/*
 * cmd_check.c - `clipdex check [--library DIR] [--json]`: verify every
 * vector checksum and every catalog reference; exit 0 only when consistent.
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex check [--library DIR] [--json]\n\n"
               "Verify the library: SQLite integrity, every vector record's checksums, and\n"
               "that every catalogued content has its vector.  Prints each problem; exit\n"
               "status 0 only when the library is consistent, 1 otherwise.  The approximate\n"
               "index (derived data) is verified too: when missing, stale or damaged it is\n"
               "rebuilt and reported, not counted as a problem (unless it cannot be rebuilt).\n");
}

static void on_problem(void *user, const char *line)
{
    int json = *(int *)user;
    if (json) {
        fputs("{\"problem\": ", stdout);
        cli_print_json_string(stdout, line);
        fputs("}\n", stdout);
    } else {
        printf("problem: %s\n", line);
    }
}

int cmd_check(int argc, char **argv)
{
    int json;
    cdx_library *lib;
    int rc = cli_open_library_args("check", argc, argv, usage, &lib, &json, NULL);
    if (rc >= 0) return rc;
    cdx_check_report rep;
    cdx_result r = cdx_library_check(lib, on_problem, &json, &rep);
    cdx_library_close(lib);
    if (r) return cli_fail("checking library", r);
    if (json)
        printf("{\"images\": %llu, \"vectors\": %llu, \"problems\": %llu, \"ok\": %s, "
               "\"ann_index\": \"%s\", \"ann_rebuilt\": %s, \"ann_rows\": %llu}\n",
               (unsigned long long)rep.images, (unsigned long long)rep.vectors,
               (unsigned long long)rep.problems, rep.problems ? "false" : "true",
               cdx_ann_state_str(rep.ann_state), rep.ann_rebuilt ? "true" : "false",
               (unsigned long long)rep.ann_rows);
    if (!json && rep.ann_state != CDX_ANN_UNUSED)
        printf("approximate index: %s%s (%llu vectors covered)\n", cdx_ann_state_str(rep.ann_state),
               rep.ann_rebuilt ? ", brought up to date" : "", (unsigned long long)rep.ann_rows);
    if (!json)
        printf("%s: %llu images, %llu vectors, %llu problems\n", rep.problems ? "DAMAGED" : "ok",
               (unsigned long long)rep.images, (unsigned long long)rep.vectors,
               (unsigned long long)rep.problems);
    return rep.problems ? 1 : 0;
}
