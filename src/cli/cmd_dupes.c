/*
 * cmd_dupes.c - `clipdex dupes [--threshold T] [--max-distance D] [--json]`:
 * groups of near-duplicate images (cdx_library_dupes), each with a
 * suggested keeper and, per other member, the pair that joined it.  Takes
 * the writer lock to store the hashes it computes for images that have
 * none; with --read-only it uses what is stored.
 */
#include "cli.h"

#include "server/api_dupes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex dupes [--library DIR] [--threshold T] [--max-distance D]\n"
               "                     [--neighbours K] [--scan f32|int8] [--rehash] [--read-only] [--json]\n\n"
               "Group near-duplicate images (resized, re-encoded, lightly cropped or edited\n"
               "copies): candidates are each image's K nearest images by embedding\n"
               "similarity (>= T), confirmed by their perceptual hashes (<= D bits apart of\n"
               "64) so that look-alike but different photos are not merged.  Each group\n"
               "names a suggested keeper (most pixels, then oldest) and, per other image,\n"
               "the pair that joined it.  Remove the extras with 'clipdex rm'.\n\n"
               "  --threshold T     cosine similarity of candidates, 0 < T <= 1 (default 0.9)\n"
               "  --max-distance D  perceptual hash bits, 0..32 (default 12)\n"
               "  --neighbours K    candidates per image, 1..100 (default 8)\n"
               "  --scan S          candidate scan: f32 (default: a batch of images per\n"
               "                    pass over the vectors) or int8 (one image per pass)\n"
               "  --rehash          recompute every image's hash from its file (images\n"
               "                    without one are always hashed first)\n"
               "  --read-only       no writer lock: images without a hash stay ungrouped\n"
               "  --json            one JSON object on stdout (the GET /api/dupes document)\n");
}

static void on_progress(void *user, const char *stage, uint64_t done, uint64_t total)
{
    double *last = user;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    if (done != total && now - *last < 0.5) return;
    *last = now;
    if (isatty(2))
        fprintf(stderr, "\r%s: %llu / %llu%s", stage, (unsigned long long)done, (unsigned long long)total,
                done == total ? "\n" : "");
    else if (done == total)
        fprintf(stderr, "%s: %llu / %llu\n", stage, (unsigned long long)done, (unsigned long long)total);
}

static void print_text(cdx_library *lib, const cdx_dupes *d)
{
    cdx_image_record *rec = malloc(sizeof *rec);
    for (size_t g = 0; rec && g < d->n_groups; g++) {
        printf("group %zu (%zu images)\n", g + 1, d->groups[g].count);
        for (size_t m = d->groups[g].first; m < d->groups[g].first + d->groups[g].count; m++) {
            const cdx_dupe *e = &d->members[m];
            int known = cdx_library_get_image(lib, e->id, rec) == CDX_OK;
            printf("  %s %lld %s", e->keeper ? "keep  " : "extra ", (long long)e->id, known ? rec->path : "?");
            if (known) printf(" (%dx%d)", rec->width, rec->height);
            if (e->via && e->distance < 0)
                printf("  [same content as %lld]", (long long)e->via);
            else if (e->via)
                printf("  [similarity %.3f, hash distance %d to %lld]", (double)e->similarity, e->distance,
                       (long long)e->via);
            printf("\n");
        }
    }
    free(rec);
    size_t extras = d->n_members - d->n_groups;
    printf("%zu group%s, %zu extra image%s of %llu; %llu candidate pairs, %llu rejected by the hashes; "
           "%llu without a hash; %.2f s\n",
           d->n_groups, d->n_groups == 1 ? "" : "s", extras, extras == 1 ? "" : "s",
           (unsigned long long)d->images, (unsigned long long)d->candidates, (unsigned long long)d->rejected,
           (unsigned long long)d->unhashed, d->seconds);
}

int cmd_dupes(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0, read_only = 0;
    cdx_dupes_params dp = cdx_dupes_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(a, "--threshold") && i + 1 < argc) {
            char *end = NULL;
            double t = strtod(argv[++i], &end);
            if (!end || end == argv[i] || *end || !(t > 0 && t <= 1))
                return cli_usage_error("dupes", "--threshold '%s' is out of range: a cosine similarity "
                                       "above 0 and at most 1 (e.g. 0.9)", argv[i]);
            dp.threshold = (float)t;
        } else if (!strcmp(a, "--max-distance") && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 0, 32, &v))
                return cli_usage_error("dupes", "--max-distance '%s' must be 0..32", argv[i]);
            dp.max_distance = (int)v;
        } else if (!strcmp(a, "--neighbours") && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 1, CDX_DUPES_MAX_NEIGHBOURS, &v))
                return cli_usage_error("dupes", "--neighbours '%s' must be 1..%d", argv[i],
                                       CDX_DUPES_MAX_NEIGHBOURS);
            dp.neighbours = (size_t)v;
        } else if (!strcmp(a, "--scan") && i + 1 < argc) {
            const char *sc = argv[++i];
            if (!strcmp(sc, "f32")) dp.scan = CDX_SCAN_F32;
            else if (!strcmp(sc, "int8")) dp.scan = CDX_SCAN_INT8;
            else return cli_usage_error("dupes", "--scan '%s' must be f32 or int8", sc);
        } else if (!strcmp(a, "--rehash")) {
            dp.rehash = 2;
        } else if (!strcmp(a, "--read-only")) {
            read_only = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            return cli_usage_error("dupes", "unknown or incomplete argument '%s'", a);
        }
    }
    if (read_only && dp.rehash == 2) return cli_usage_error("dupes", "--rehash needs the writer lock, not --read-only");
    cdx_library_params p = cdx_library_default_params();
    p.load_model = 0;
    p.writable = !read_only;
    cdx_library *lib;
    if (cli_open_library(dir, &p, &lib)) return 1;
    double last = -1;
    dp.progress = on_progress;
    dp.user = &last;
    dp.cancel = cli_cancel_on_signals();
    cdx_dupes *d = NULL;
    cdx_result r = cdx_library_dupes(lib, &dp, &d);
    if (r) {
        cdx_library_close(lib);
        return cli_fail("finding duplicates", r);
    }
    int status = 0;
    if (json) {
        json_t *o = srv_dupes_json(lib, d, &dp);
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        if (text) printf("%s\n", text);
        else status = cli_fail("writing JSON", CDX_ERR_NOMEM);
        free(text);
        json_decref(o);
    } else {
        print_text(lib, d);
    }
    if (d->cancelled) fprintf(stderr, "clipdex: dupes: interrupted; the groups cover the images searched\n");
    cdx_dupes_free(d);
    cdx_library_close(lib);
    return status;
}
