/*
 * cli_lib.c - helpers shared by the library commands (init, index, search,
 * info, rm, check): opening a library with a clear error, parsing dates.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cli_open_library(const char *dir, const cdx_library_params *p, cdx_library **lib)
{
    cdx_result r = cdx_library_open(dir ? dir : cdx_library_default_dir(), p, lib);
    if (r != CDX_OK) return cli_fail("opening library", r);
    return 0;
}

int cli_open_library_args(const char *cmd, int argc, char **argv,
                          void (*usage)(FILE *), cdx_library **lib, int *json,
                          const char **dir_out)
{
    const char *dir = NULL;
    *json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(a, "--json")) *json = 1;
        else return cli_usage_error(cmd, "unknown or incomplete argument '%s'", a);
    }
    cdx_library_params p = cdx_library_default_params();
    p.load_model = 0;
    if (cli_open_library(dir, &p, lib)) return 1;
    if (dir_out) *dir_out = dir ? dir : cdx_library_default_dir();
    return -1;
}

static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (**s < '0' || **s > '9') return -1;
        v = v * 10 + (**s - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

int cli_parse_date(const char *s, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, se = 0;
    if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' || digits(&s, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return -1;
    int64_t off = 0;
    if (*s == 'T' || *s == ' ') {
        s++;
        if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi)) return -1;
        if (*s == ':') {
            s++;
            if (digits(&s, 2, &se)) return -1;
            if (*s == '.') { s++; while (*s >= '0' && *s <= '9') s++; }
        }
        if (h > 23 || mi > 59 || se > 60) return -1;
        if (*s == 'Z') s++;
        else if (*s == '+' || *s == '-') {
            int sign = *s++ == '-' ? -1 : 1, oh, om = 0;
            if (digits(&s, 2, &oh)) return -1;
            if (*s == ':') s++;
            if (*s && digits(&s, 2, &om)) return -1;
            off = sign * (int64_t)(oh * 3600 + om * 60);
        }
    }
    if (*s) return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    return 0;
}

/* A model given as a directory (holding config.json) or a registry
 * reference (NAME, NAME@ALIAS, NAME@VERSION-PREFIX, @VERSION-PREFIX). */
int cli_resolve_model(const char *ref, char *dir, size_t dir_cap, char *name, size_t name_cap)
{
    if (name_cap) name[0] = 0;
    if (cdx_registry_resolve_dir(ref, dir, dir_cap, name, name_cap) != CDX_OK) {
        fprintf(stderr, "clipdex: error: model '%s' is neither a model directory nor a registered "
                "model: %s\n", ref, cdx_last_error());
        return 1;
    }
    return 0;
}

int cli_parse_precision(const char *cmd, const char *s, cdx_precision *out)
{
    if (s && cdx_precision_parse(s, out)) return 0;
    return cli_usage_error(cmd, "--precision: expected fp32, bf16, int8 or auto, got '%s'", s ? s : "");
}

/* ---- an owner's changes to its replicas (cli.h) */

int cli_publish_outbox(cdx_library *lib, cdx_fleet **fleet)
{
    uint64_t pending = 0;
    if (cdx_library_outbox_pending(lib, &pending) != CDX_OK || !pending) return 0;
    char url[600];
    if (cdx_library_get_pipeline(lib, url, sizeof url) != CDX_OK || !url[0]) return 0;
    cdx_result r = *fleet ? CDX_OK : cdx_fleet_open(url, NULL, fleet);
    if (!r) r = cdx_fleet_publish_outbox(*fleet, lib, NULL);
    if (!r) return 0;
    cdx_library_outbox_pending(lib, &pending);
    fprintf(stderr, "clipdex: warning: %llu change(s) kept for the replicas of %s (published by the next "
            "rm, index or serve of this library): %s\n", (unsigned long long)pending, url, cdx_last_error());
    return 1;
}
