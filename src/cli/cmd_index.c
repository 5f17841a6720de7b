/*
 * cmd_index.c - `clipdex index`: add folders, files and URL lists to a
 * library.  Progress goes to stderr on a terminal (count, rate, ETA); with
 * --json, JSON lines on stdout: one per event and a final summary.  Bad
 * files are reported and counted, never fatal; files that are not images by
 * name nor by content (README.md, a CSV) are counted as skipped and listed
 * only with --verbose or --json.  SIGINT/SIGTERM stop the run
 * after committing what is complete.
 *
 * Exit status: 0 when the run completed (even with failed files), 3 when
 * there were candidates and every one failed, 1 on a fatal error (library,
 * I/O), 130 when interrupted, 2 on usage errors.
 */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cdx_cancel_flag *g_cancel;   /* set by SIGINT/SIGTERM (cli_cancel_on_signals) */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex index [--library DIR] [--model DIR] [--urls FILE] [--prune]\n"
            "                     [--json] [--verbose] [--fast] [--batch N] [--threads N]\n"
            "                     [--ocr] [--ocr-lang eng+deu] PATH...\n"
            "       clipdex index [--library DIR] [--model DIR] --from nats://HOST:PORT/NAME\n"
            "                     [--follow] [--consumer NAME] [--ack-wait MS] [--max-wait MS]\n"
            "                     [--batch N] [--json]\n"
            "       clipdex index [--library DIR] [--model DIR] --watch [--json] DIR...\n\n"
            "Index image files and folders (recursively; symlink loops are safe) and the\n"
            "URLs listed in FILE (one per line, '#' comments).  Unchanged files (same\n"
            "size and mtime) are skipped; moved/renamed files are recognised by content.\n\n"
            "  --library DIR  library (default $CLIPDEX_LIBRARY or ./clipdex-library)\n"
            "  --model DIR    model; creates the library when new, else must match it\n"
            "  --urls FILE    also index the URLs listed in FILE\n"
            "  --prune        remove entries under the given folders whose files are gone\n"
            "  --json         JSON lines on stdout (events, then a summary)\n"
            "  --verbose      also list skipped files (not images by name nor content,\n"
            "                 e.g. README.md); they are counted, never 'failed'\n"
            "  --fast         decode large JPEGs at reduced size (faster, not bit-exact)\n"
            "  --batch N      images per embedding batch (default 32)\n"
            "  --threads N    inference threads (default all cores)\n"
            "  --precision P  fp32 (default), int8, bf16 or auto; recorded in the library\n"
            "  --ocr          read text in new images (Tesseract) into the full-text index;\n"
            "                 images without text-like regions are skipped (docs/search.md)\n"
            "  --ocr-lang L   Tesseract languages, e.g. eng+deu (default eng; implies --ocr)\n"
            "  --codes K      also build companion codes for compressed search: int8, bit,\n"
            "                 pca8 or all (existing ones are always brought up to date)\n"
            "  --from nats://HOST:PORT/NAME  commit the results of a fleet pipeline\n"
            "                 instead of indexing paths (docs/fleet.md); exits when its\n"
            "                 work and results streams are drained, unless --follow;\n"
            "                 --consumer NAME: the broker-side cursor (default library;\n"
            "                 give each library fed from one pipeline its own);\n"
            "                 --ack-wait MS: when a killed run's last batch comes back\n"
            "                 (default 30000; set when the consumer is created)\n"
            "                 --max-wait MS: longest wait to fill a commit (default 1000)\n"
            "  --watch        index the folders, then keep the library in step with them\n"
            "                 (new, changed, moved, deleted files; inotify) until\n"
            "                 SIGINT/SIGTERM; SIGHUP forces a full rescan\n\n"
            "Exit status: 0 done (failed files are reported, not fatal), 3 every candidate\n"
            "failed, 130 interrupted, 1 error.\n");
}

typedef struct ui {
    int json, tty, verbose;
    int progress_shown;
    int watch;           /* index --watch: no progress lines per pass */
} ui;

static const char *kind_name(cdx_index_event_kind k)
{
    switch (k) {
    case CDX_INDEX_EVENT_ADDED: return "added";
    case CDX_INDEX_EVENT_MOVED: return "moved";
    case CDX_INDEX_EVENT_DUPLICATE: return "duplicate";
    case CDX_INDEX_EVENT_FAILED: return "failed";
    case CDX_INDEX_EVENT_REMOVED: return "removed";
    case CDX_INDEX_EVENT_SKIPPED: return "skipped";
    default: return "progress";
    }
}

static void print_stats_json(const cdx_index_stats *s)
{
    printf("\"found\": %llu, \"added\": %llu, \"unchanged\": %llu, \"moved\": %llu, "
           "\"duplicates\": %llu, \"failed\": %llu, \"skipped\": %llu, \"removed\": %llu, "
           "\"seconds\": %.3f, \"images_per_s\": %.2f",
           (unsigned long long)s->found, (unsigned long long)s->added,
           (unsigned long long)s->unchanged, (unsigned long long)s->moved,
           (unsigned long long)s->duplicates, (unsigned long long)s->failed,
           (unsigned long long)s->skipped, (unsigned long long)s->removed, s->seconds,
           s->images_per_s);
}

static void on_event(void *user, const cdx_index_event *ev)
{
    ui *u = user;
    const cdx_index_stats *s = ev->stats;
    if (u->watch && ev->kind == CDX_INDEX_EVENT_PROGRESS) return;
    if (u->json) {
        printf("{\"event\": \"%s\"", kind_name(ev->kind));
        if (ev->path) {
            fputs(", \"path\": ", stdout);
            cli_print_json_string(stdout, ev->path);
        }
        if (ev->kind == CDX_INDEX_EVENT_FAILED || ev->kind == CDX_INDEX_EVENT_SKIPPED) {
            fputs(", \"reason\": ", stdout);
            cli_print_json_string(stdout, ev->reason ? ev->reason : "");
        } else if (ev->kind != CDX_INDEX_EVENT_PROGRESS) {
            printf(", \"id\": %lld", (long long)ev->id);
        } else {
            fputs(", ", stdout);
            print_stats_json(s);
        }
        fputs("}\n", stdout);
        fflush(stdout);
        return;
    }
    if (ev->kind == CDX_INDEX_EVENT_FAILED ||
        (ev->kind == CDX_INDEX_EVENT_SKIPPED && u->verbose)) {
        if (u->progress_shown) fputs("\r\033[K", stderr);
        fprintf(stderr, "clipdex: %s %s: %s\n",
                ev->kind == CDX_INDEX_EVENT_FAILED ? "failed" : "skipped",
                ev->path ? ev->path : "?", ev->reason ? ev->reason : "");
    }
    if (ev->kind == CDX_INDEX_EVENT_PROGRESS && u->tty) {
        uint64_t done = s->added + s->unchanged + s->moved + s->duplicates + s->failed + s->skipped;
        double rate = s->seconds > 0 ? (double)(s->added + s->moved + s->duplicates) / s->seconds : 0;
        uint64_t left = s->found > done ? s->found - done : 0;
        char eta[32] = "--:--";
        if (rate > 0 && left) {
            long sec = (long)((double)left / rate);
            snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", sec / 3600, sec / 60 % 60, sec % 60);
        } else if (!left) {
            snprintf(eta, sizeof eta, "0:00:00");
        }
        fprintf(stderr, "\r\033[K%llu/%llu  added %llu  unchanged %llu  failed %llu  %.1f img/s  ETA %s",
                (unsigned long long)done, (unsigned long long)s->found,
                (unsigned long long)s->added, (unsigned long long)s->unchanged,
                (unsigned long long)s->failed, rate, eta);
        u->progress_shown = 1;
    }
}

int cmd_index(int argc, char **argv)
{
    const char *dir = NULL, *model = NULL;
    cdx_index_params ip = cdx_index_default_params();
    ui u = {0, 0, 0, 0, 0};
    long threads = 0;
    cdx_precision prec = CDX_PRECISION_FP32;
    const char *from = NULL;
    int follow = 0, watch = 0;
    const char *consumer = NULL;
    long batch_opt = 0, ack_wait = 0, max_wait = 0;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    if (!paths) return cli_fail("out of memory", CDX_ERR_NOMEM);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); free(paths); return 0; }
        if (!strcmp(a, "--library") && hv) dir = argv[++i];
        else if (!strcmp(a, "--model") && hv) model = argv[++i];
        else if (!strcmp(a, "--urls") && hv) ip.urls_file = argv[++i];
        else if (!strcmp(a, "--prune")) ip.prune = 1;
        else if (!strcmp(a, "--from") && hv) from = argv[++i];
        else if (!strcmp(a, "--follow")) follow = 1;
        else if (!strcmp(a, "--watch")) watch = 1;
        else if (!strcmp(a, "--consumer") && hv) consumer = argv[++i];
        else if (!strcmp(a, "--ack-wait") && hv && !cli_parse_int(argv[i + 1], 1000, 3600000, &ack_wait)) i++;
        else if (!strcmp(a, "--max-wait") && hv && !cli_parse_int(argv[i + 1], 1, 600000, &max_wait)) i++;
        else if (!strcmp(a, "--json")) u.json = 1;
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) u.verbose = 1;
        else if (!strcmp(a, "--fast")) ip.image.fast_shrink = 1;
        else if (!strcmp(a, "--ocr")) ip.ocr = 1;
        else if (!strcmp(a, "--ocr-lang") && hv) { ip.ocr = 1; ip.ocr_lang = argv[++i]; }
        else if (!strcmp(a, "--codes") && hv) {
            const char *k = argv[++i];
            int s = cdx_scan_parse(k);
            if (!strcmp(k, "all")) ip.codes = (1 << CDX_SCAN_INT8) | (1 << CDX_SCAN_BIT) | (1 << CDX_SCAN_PCA8);
            else if (s >= CDX_SCAN_INT8 && s <= CDX_SCAN_LAST) ip.codes = 1 << s;
            else { free(paths); return cli_usage_error("index", "--codes: expected int8, bit, pca8 or all, got '%s'", k); }
        }
        else if (!strcmp(a, "--batch") && hv && !cli_parse_int(argv[i + 1], 1, 1024, &v)) { ip.batch_size = (int)v; batch_opt = v; i++; }
        else if (!strcmp(a, "--threads") && hv && !cli_parse_int(argv[i + 1], 1, 1024, &threads)) i++;
        else if (!strcmp(a, "--precision") && hv) {
            if (cli_parse_precision("index", argv[++i], &prec)) { free(paths); return 2; }
        }
        else if (!strcmp(a, "--")) { while (++i < argc) paths[n++] = argv[i]; }
        else if (!strncmp(a, "--", 2)) { free(paths); return cli_usage_error("index", "unknown or incomplete argument '%s'", a); }
        else paths[n++] = a;
    }
    if (from && watch) { free(paths); return cli_usage_error("index", "--from and --watch exclude each other"); }
    if (watch) {
        if (ip.urls_file || ip.prune) { free(paths); return cli_usage_error("index", "--watch takes folders only (it prunes itself)"); }
        ip.callback = on_event;
        ip.user = &u;
        u.watch = 1;
        int rc = cli_index_watch(dir, model, (int)threads, paths, n, &ip, u.json);
        free(paths);
        return rc;
    }
    if (from) {
        free(paths);
        if (n || ip.urls_file || ip.prune) return cli_usage_error("index", "--from takes no paths, --urls or --prune");
        if (ip.ocr) return cli_usage_error("index", "--ocr reads files while indexing them; for a library fed by --from, run 'clipdex ocr' afterwards");
        return cli_index_from(dir, model, from, consumer, (int)ack_wait, follow, (int)batch_opt, u.json, (int)max_wait);
    }
    if (follow || consumer || ack_wait || max_wait) { free(paths); return cli_usage_error("index", "--follow, --consumer, --ack-wait and --max-wait need --from"); }
    if (!n && !ip.urls_file) { free(paths); return cli_usage_error("index", "nothing to index (give folders, files or --urls FILE)"); }
    cdx_result lr = ip.ocr ? cdx_ocr_check_langs(ip.ocr_lang) : CDX_OK;   /* before any work */
    if (lr) { free(paths); return cli_fail("--ocr-lang", lr); }
    u.tty = !u.json && isatty(2);
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = model;
    lp.create = model != NULL;
    lp.writable = 1;
    lp.n_threads = (int)threads;
    lp.precision = prec;
    cdx_library *lib;
    if (cli_open_library(dir, &lp, &lib)) { free(paths); return 1; }
    g_cancel = cli_cancel_on_signals();
    ip.callback = on_event;
    ip.user = &u;
    ip.cancel = g_cancel;
    cdx_index_stats st;
    cdx_result r = cdx_library_index(lib, paths, n, &ip, &st);
    cdx_fleet *fleet = NULL;   /* an owner's additions and --prune removals, to its replicas */
    cli_publish_outbox(lib, &fleet);
    cdx_fleet_close(fleet);
    cdx_library_close(lib);
    free(paths);
    if (u.progress_shown) fputs("\r\033[K", stderr);
    if (r) return cli_fail("indexing", r);
    if (u.json) {
        fputs("{\"event\": \"summary\", ", stdout);
        print_stats_json(&st);
        if (ip.ocr)
            printf(", \"ocr_read\": %llu, \"ocr_skipped\": %llu", (unsigned long long)st.ocr_read,
                   (unsigned long long)st.ocr_skipped);
        printf(", \"interrupted\": %s}\n", atomic_load(g_cancel) ? "true" : "false");
    } else {
        printf("%s%llu added, %llu unchanged, %llu moved, %llu duplicates, %llu failed, "
               "%llu skipped, %llu removed in %.1f s (%.1f images/s)\n",
               atomic_load(g_cancel) ? "interrupted: " : "",
               (unsigned long long)st.added, (unsigned long long)st.unchanged,
               (unsigned long long)st.moved, (unsigned long long)st.duplicates,
               (unsigned long long)st.failed, (unsigned long long)st.skipped,
               (unsigned long long)st.removed, st.seconds, st.images_per_s);
        if (ip.ocr)
            printf("OCR: %llu read, %llu skipped (no text-like regions)\n",
                   (unsigned long long)st.ocr_read, (unsigned long long)st.ocr_skipped);
    }
    fflush(stdout);
    if (atomic_load(g_cancel)) return 130;
    uint64_t ok = st.added + st.unchanged + st.moved + st.duplicates;
    return st.failed && !ok ? 3 : 0;
}
