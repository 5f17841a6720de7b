/*
 * cmd_compact.c - `clipdex compact [--library DIR] [--if-needed] [--json]`:
 * rewrite the vector file without the rows no image refers to (removed or
 * replaced images, orphans of interrupted runs).  Takes the writer lock;
 * searches (also `clipdex serve` in another process) keep working.
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex compact [--library DIR] [--if-needed] [--json]\n\n"
               "Rewrite the vector file without its dead rows (vectors no image refers to\n"
               "any more) and report the rows and bytes before and after.  Crash-safe:\n"
               "an interrupted compaction leaves the library as it was.  Searches keep\n"
               "working meanwhile.  Needs free disk space for a copy of the live rows.\n\n"
               "  --if-needed  only when the automatic threshold is reached (at least\n"
               "               1024 dead rows and 25%% of all rows)\n"
               "  --json       one JSON object on stdout\n");
}

int cmd_compact(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    cdx_compact_params cp = cdx_compact_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--if-needed")) cp.only_if_needed = 1;
        else return cli_usage_error("compact", "unknown or incomplete argument '%s'", a);
    }
    cdx_library_params p = cdx_library_default_params();
    p.load_model = 0;
    p.writable = 1;
    p.compact.dead_fraction = 0;    /* no automatic pass: this command decides */
    cdx_library *lib;
    if (cli_open_library(dir, &p, &lib)) return 1;
    cdx_compact_report rep;
    cdx_result r = cdx_library_compact(lib, &cp, &rep);
    cdx_library_close(lib);
    if (r) return cli_fail("compacting", r);
    if (json) {
        printf("{\"compacted\": %s, \"rows_before\": %llu, \"rows_after\": %llu, \"bytes_before\": %llu, "
               "\"bytes_after\": %llu, \"bytes_freed\": %llu, \"seconds\": %.3f}\n",
               rep.compacted ? "true" : "false", (unsigned long long)rep.rows_before,
               (unsigned long long)rep.rows_after, (unsigned long long)rep.bytes_before,
               (unsigned long long)rep.bytes_after, (unsigned long long)rep.bytes_freed, rep.seconds);
    } else if (rep.compacted) {
        printf("compacted: %llu -> %llu vector rows, %llu -> %llu bytes (%llu freed) in %.2f s\n",
               (unsigned long long)rep.rows_before, (unsigned long long)rep.rows_after,
               (unsigned long long)rep.bytes_before, (unsigned long long)rep.bytes_after,
               (unsigned long long)rep.bytes_freed, rep.seconds);
    } else {
        printf("nothing to compact: %llu vector rows, %s\n", (unsigned long long)rep.rows_before,
               cp.only_if_needed ? "below the threshold" : "none dead");
    }
    return 0;
}
