/*
 * cmd_reindex.c - `clipdex reindex`: move a library to another model
 * (embed every image again into a new vector set while the old one keeps
 * serving, then switch in one catalog transaction), roll back to the
 * previous set, or forget it.  The library does the work
 * (cdx_library_reindex / _rollback / _drop_previous); docs/models.md.
 * When a writable `clipdex serve` holds the library (DIR/serve.json names
 * it and it answers), the server is asked instead (POST /api/reindex) and
 * its progress followed: it runs the same steps under its writer lock.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The URL of a writable server of this library that answers, or 0. */
static int find_server(const char *library, char *url, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/serve.json", library);
    json_t *j = json_load_file(path, 0, NULL);
    const char *u = json_string_value(json_object_get(j, "url"));
    int ok = u && strlen(u) + 16 < cap && !strncmp(u, "http://", 7);
    if (ok) snprintf(url, cap, "%s/api/reindex", u);
    json_decref(j);
    if (!ok) return 0;
    cdx_http_params hp = cdx_http_default_params();
    hp.allow_private = 1;
    hp.any_status = 1;
    hp.connect_timeout_ms = 2000;
    hp.timeout_ms = 5000;
    cdx_http_response resp;
    ok = cdx_http_get(url, &hp, &resp) == CDX_OK && resp.status == 200;
    free(resp.data);
    return ok;
}

/* One call to the server: 0 and *out (owned) when the answer has a 2xx
 * status, else 1 with the server's message printed. */
static int ask_server(const char *url, const char *body, json_t **out)
{
    cdx_http_params hp = cdx_http_default_params();
    hp.allow_private = 1;
    hp.any_status = 1;
    hp.timeout_ms = 3600000;
    hp.post_json = body;
    const char *tok = getenv("CLIPDEX_TOKEN");
    hp.bearer = tok && *tok ? tok : NULL;
    cdx_http_response resp;
    if (cdx_http_get(url, &hp, &resp) != CDX_OK) {
        fprintf(stderr, "clipdex: error: asking the server %s: %s\n", url, cdx_last_error());
        return 1;
    }
    *out = json_loads(resp.data ? resp.data : "", 0, NULL);
    int good = resp.status >= 200 && resp.status < 300 && *out;
    if (!good) {
        const char *m = json_string_value(json_object_get(json_object_get(*out, "error"), "message"));
        fprintf(stderr, "clipdex: error: the server %s answered %ld: %s\n", url, resp.status,
                m ? m : resp.data ? resp.data : "");
        json_decref(*out);
        *out = NULL;
    }
    free(resp.data);
    return good ? 0 : 1;
}

/* Reindex through the server at url, following its progress. */
static int reindex_by_server(const char *url, const char *dir, const char *name, const cdx_reindex_params *p,
                             int json)
{
    json_t *req = json_pack("{s:s,s:b,s:i}", "model", dir, "drop_missing", p->drop_missing, "batch", p->batch_size);
    if (req && *name) json_object_set_new(req, "name", json_string(name));
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    json_t *st = NULL;
    int rc = body ? ask_server(url, body, &st) : 1;
    free(body);
    if (rc) return rc;
    fprintf(stderr, "clipdex reindex: the library is served writable at %.*s: the server reindexes it\n",
            (int)(strlen(url) - strlen("/api/reindex")), url);
    cdx_http_params hp = cdx_http_default_params();
    hp.allow_private = 1;
    double last = 0;
    while (!strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running")) {
        uint64_t total = (uint64_t)json_integer_value(json_object_get(st, "total"));
        if (total) progress(&last, (uint64_t)json_integer_value(json_object_get(st, "done")), total);
        usleep(200000);
        cdx_http_response resp;
        json_decref(st);
        st = NULL;
        if (cdx_http_get(url, &hp, &resp) != CDX_OK) {
            fprintf(stderr, "clipdex: error: following the server's reindex: %s\n", cdx_last_error());
            return 1;
        }
        st = json_loads(resp.data, 0, NULL);
        free(resp.data);
    }
    const char *state = json_string_value(json_object_get(st, "state")) ?: "?";
    if (strcmp(state, "switched")) {
        fprintf(stderr, "clipdex: error: reindex: %s\n", json_string_value(json_object_get(st, "error")) ?: state);
        json_decref(st);
        return 1;
    }
    unsigned long long contents = (unsigned long long)json_integer_value(json_object_get(st, "contents")),
                       embedded = (unsigned long long)json_integer_value(json_object_get(st, "embedded")),
                       resumed = (unsigned long long)json_integer_value(json_object_get(st, "resumed"));
    if (json)
        printf("{\"switched\": true, \"contents\": %llu, \"resumed\": %llu, \"embedded\": %llu, "
               "\"seconds\": %.3f, \"server\": true}\n", contents, resumed, embedded,
               json_real_value(json_object_get(st, "seconds")));
    else
        printf("switched (by the server): %llu contents, %llu embedded now, %llu from an earlier run\n",
               contents, embedded, resumed);
    json_decref(st);
    return 0;
}

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
        "  --json            print the report as JSON\n\n"
        "When a writable `clipdex serve` holds the library (DIR/serve.json), the server\n"
        "is asked to do it (POST /api/reindex; token from $CLIPDEX_TOKEN) and its\n"
        "progress followed; its queries move to the new model at the switch.\n");
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
    char url[4200];
    if (find_server(library, url, sizeof url)) {   /* a writable server holds the library */
        if (p.no_switch) return cli_usage_error("reindex", "--no-switch: the library is served writable; stop the server or leave --no-switch out");
        if (rollback || drop_prev) {
            json_t *st = NULL;
            char body[64];
            snprintf(body, sizeof body, rollback ? "{\"rollback\": true, \"force\": %s}" : "{\"drop_previous\": true}",
                     force ? "true" : "false");
            if (ask_server(url, body, &st)) return 1;
            uint64_t removed = (uint64_t)json_integer_value(json_object_get(st, "removed"));
            json_decref(st);
            if (json) printf(rollback ? "{\"rolled_back\": true, \"removed\": %llu, \"server\": true}\n" : "{\"dropped\": true, \"server\": true}\n",
                             (unsigned long long)removed);
            else printf(rollback ? "rolled back (by the server)%s\n" : "previous set dropped (by the server)\n",
                        removed ? " (images added since the switch removed)" : "");
            return 0;
        }
        char mdir[4096], mname[160];
        if (cli_resolve_model(model, mdir, sizeof mdir, mname, sizeof mname)) return 1;
        return reindex_by_server(url, mdir, mname, &p, json);
    }
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
