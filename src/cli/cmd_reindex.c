/*
 * cmd_reindex.c - `clipdex reindex`: move a library to another model
 * (embed every image again into a new vector set while the old one keeps
 * serving, then switch in one catalog transaction), roll back to the
 * previous set, or forget it.  The library does the work
 * (cdx_library_reindex / _rollback / _drop_previous); docs/models.md.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clipdex reindex [--library DIR] --model NAME[@ALIAS]|DIR [--drop-missing]\n"
        "                       [--no-switch] [--batch N] [--threads N] [--json]\n"
        "       clipdex reindex [--library DIR] --rollback [--force]\n"
        "       clipdex reindex [--library DIR] --drop-previous\n\n"
        "Embed every image of the library again with another model into a new vector\n"
        "set (searches keep using the current one meanwhile; an interrupted run\n"
        "resumes), then switch library, model version and dimension at once.\n\n"
        "  --model REF       a registered model (NAME, NAME@ALIAS, NAME@VERSION, @VERSION)\n"
        "                    or a model directory\n"
        "  --drop-missing    images whose file is gone, changed or unreadable are removed\n"
        "                    from the library at the switch (default: the switch is\n"
        "                    refused while there are any; embedded rows are kept)\n"
        "  --no-switch       embed only; a later run resumes and switches\n"
        "  --rollback        switch back to the previous set (kept until the next reindex\n"
        "                    or --drop-previous); a second rollback switches forward again\n"
        "  --force           with --rollback: remove images added since the switch (they\n"
        "                    have no vector in the previous set) instead of refusing\n"
        "  --drop-previous   delete the previous set's vector file\n"
        "  --json            print the report as JSON\n");
}

static void progress(void *user, uint64_t done, uint64_t total)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double *last = user, now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (now - *last < 1.0 && done < total) return;
    *last = now;
    fprintf(stderr, "clipdex reindex: %llu/%llu embedded\n", (unsigned long long)done,
            (unsigned long long)total);
}

int cmd_reindex(int argc, char **argv)
{
    const char *library = cdx_library_default_dir(), *model = NULL;
    int json = 0, rollback = 0, force = 0, drop_prev = 0;
    cdx_reindex_params p = cdx_reindex_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
#define NEEDV() do { if (!v) return cli_usage_error("reindex", "%s needs a value", a); i++; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--rollback")) rollback = 1;
        else if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(a, "--drop-previous")) drop_prev = 1;
        else if (!strcmp(a, "--drop-missing")) p.drop_missing = 1;
        else if (!strcmp(a, "--no-switch")) p.no_switch = 1;
        else if (!strcmp(a, "--library")) { NEEDV(); library = v; }
        else if (!strcmp(a, "--model")) { NEEDV(); model = v; }
        else if (!strcmp(a, "--batch")) {
            NEEDV();
            if (cli_parse_int(v, 1, 256, &n)) return cli_usage_error("reindex", "bad --batch '%s' (1..256)", v);
            p.batch_size = (int)n;
        } else if (!strcmp(a, "--threads")) {
            NEEDV();
            if (cli_parse_int(v, 0, 1024, &n)) return cli_usage_error("reindex", "bad --threads '%s'", v);
            p.n_threads = (int)n;
        } else {
            return cli_usage_error("reindex", "unknown option '%s'", a);
        }
#undef NEEDV
    }
    if (rollback + drop_prev + !!model != 1)
        return cli_usage_error("reindex", "give exactly one of --model REF, --rollback, --drop-previous");
    if (force && !rollback) return cli_usage_error("reindex", "--force goes with --rollback");
    if (!model && (p.drop_missing || p.no_switch || p.batch_size != 16 || p.n_threads))
        return cli_usage_error("reindex", "--drop-missing, --no-switch, --batch, --threads go with --model");
    if (rollback) {
        uint64_t removed = 0;
        cdx_result r = cdx_library_rollback(library, force, &removed);
        if (r) return cli_fail("rollback", r);
        if (json) printf("{\"rolled_back\": true, \"removed\": %llu}\n", (unsigned long long)removed);
        else printf("rolled back%s\n", removed ? " (images added since the switch removed)" : "");
        return 0;
    }
    if (drop_prev) {
        cdx_result r = cdx_library_drop_previous(library);
        if (r) return cli_fail("drop previous", r);
        if (json) printf("{\"dropped\": true}\n");
        else printf("previous set dropped\n");
        return 0;
    }
    char dir[4096], name[160];
    if (cli_resolve_model(model, dir, sizeof dir, name, sizeof name)) return 1;
    double last = 0;
    p.model_dir = dir;
    p.model_name = *name ? name : NULL;
    p.progress = progress;
    p.user = &last;
    p.cancel = cli_cancel_on_signals();
    cdx_reindex_report rep;
    cdx_result r = cdx_library_reindex(library, &p, &rep);
    if (r) return cli_fail("reindex", r);
    if (json) {
        printf("{\"switched\": %s, \"contents\": %llu, \"resumed\": %llu, \"embedded\": %llu, "
               "\"dropped\": %llu, \"seconds\": %.3f, \"model\": ", rep.switched ? "true" : "false",
               (unsigned long long)rep.contents, (unsigned long long)rep.resumed,
               (unsigned long long)rep.embedded, (unsigned long long)(rep.switched ? rep.missing : 0),
               rep.seconds);
        cli_print_json_string(stdout, *name ? name : dir);
        printf("}\n");
    } else {
        printf("%s: %llu contents, %llu embedded now, %llu from an earlier run%s%s\n",
               rep.switched ? "switched" : "embedded (not switched)", (unsigned long long)rep.contents,
               (unsigned long long)rep.embedded, (unsigned long long)rep.resumed,
               rep.switched && rep.missing ? ", unreadable images removed: " : "",
               rep.switched && rep.missing ? rep.first_missing : "");
    }
    return 0;
}
