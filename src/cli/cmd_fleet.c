/*
 * cmd_fleet.c - the fleet commands (docs/fleet.md): `clipdex feed folder|urls|watch|flickr`
 * (producers), `clipdex worker` (embedding), and `clipdex index --from`
 * (the library's consumer of results).  All take a pipeline URL
 * nats://HOST:PORT/NAME.  worker and `index --from --follow` run until
 * SIGINT/SIGTERM and finish the current batch first.
 *
 * `feed watch` also runs until SIGINT/SIGTERM.
 *
 * Exit status: 0 done, 1 error (broker unreachable, model mismatch, ...),
 * 2 usage, 130 interrupted (index --from only).
 */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cdx_cancel_flag *g_cancel;   /* set by SIGINT/SIGTERM (cli_cancel_on_signals) */

static void catch_signals(void)
{
    g_cancel = cli_cancel_on_signals();
}

static int open_fleet(const char *url, cdx_fleet **f)
{
    cdx_result r = cdx_fleet_open(url, NULL, f);
    return r ? cli_fail(url, r) : 0;
}

/* ---------------------------------------------------------------- feed */

static void feed_usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex feed folder DIR --nats nats://HOST:PORT/NAME [--json]\n"
            "       clipdex feed urls FILE --nats nats://HOST:PORT/NAME [--json]\n"
            "       clipdex feed watch DIR --nats nats://HOST:PORT/NAME [--json]\n"
            "       clipdex feed flickr --api-key KEY (--text T | --tags T,... | --user ID)\n"
            "                           [--since DATE] [--max N] [--rate CALLS_PER_HOUR]\n"
            "                           [--per-page N] --nats nats://HOST:PORT/NAME [--json]\n\n"
            "Publish one work record per image file under DIR (by name; paths must be\n"
            "readable by the workers) or per URL of FILE (one per line, '#' comments)\n"
            "to the pipeline's work stream.  A record's id is its message id: feeding\n"
            "the same images again within an hour publishes nothing new; a file whose\n"
            "size or mtime changed is published again.  'watch' feeds DIR, then keeps\n"
            "publishing files written or moved into it (inotify) until SIGINT/SIGTERM.\n"
            "'flickr' pages through flickr.photos.search and publishes one record per\n"
            "photo (image URL, title, tags, description, owner, licence, date taken,\n"
            "geo; id flickr:<photo id>), at most --rate API calls per hour (default\n"
            "3600), retrying failures with backoff.  The key may also come from\n"
            "$CLIPDEX_FLICKR_API_KEY; the endpoint from $CLIPDEX_FLICKR_ENDPOINT.\n"
            "--since takes YYYY-MM-DD (UTC) or unix seconds (upload date).\n");
}

static void print_feed_stats(const cdx_feed_stats *st, int json)
{
    if (json)
        printf("{\"published\": %llu, \"duplicates\": %llu, \"skipped\": %llu}\n", (unsigned long long)st->published,
               (unsigned long long)st->duplicates, (unsigned long long)st->skipped);
    else
        printf("%llu published, %llu duplicates, %llu skipped\n", (unsigned long long)st->published,
               (unsigned long long)st->duplicates, (unsigned long long)st->skipped);
}

/* YYYY-MM-DD (UTC midnight) or unix seconds; -1 when neither. */
static int64_t parse_since(const char *s)
{
    long v;
    if (!cli_parse_int(s, 0, 1L << 40, &v)) return v;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (!end || *end) return -1;
    time_t t = timegm(&tm);
    return t >= 0 ? (int64_t)t : -1;
}

static void flickr_log(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "clipdex: feed flickr: %s\n", line);
}

static int feed_flickr(int argc, char **argv)
{
    const char *url = NULL;
    int json = 0;
    cdx_flickr_params fp = cdx_flickr_default_params();
    fp.api_key = getenv("CLIPDEX_FLICKR_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { feed_usage(stdout); return 0; }
        if (!strcmp(a, "--nats") && hv) url = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--api-key") && hv) fp.api_key = argv[++i];
        else if (!strcmp(a, "--text") && hv) fp.text = argv[++i];
        else if (!strcmp(a, "--tags") && hv) fp.tags = argv[++i];
        else if (!strcmp(a, "--user") && hv) fp.user_id = argv[++i];
        else if (!strcmp(a, "--since") && hv && (fp.since = parse_since(argv[i + 1])) >= 0) i++;
        else if (!strcmp(a, "--max") && hv && !cli_parse_int(argv[i + 1], 1, 1L << 40, &v)) { fp.max = (uint64_t)v; i++; }
        else if (!strcmp(a, "--rate") && hv && !cli_parse_int(argv[i + 1], 1, 3600000, &v)) { fp.rate_per_hour = (double)v; i++; }
        else if (!strcmp(a, "--per-page") && hv && !cli_parse_int(argv[i + 1], 1, 500, &v)) { fp.per_page = (int)v; i++; }
        else if (!strcmp(a, "--retries") && hv && !cli_parse_int(argv[i + 1], 0, 100, &v)) { fp.max_retries = (int)v; i++; }
        else if (!strcmp(a, "--backoff") && hv && !cli_parse_int(argv[i + 1], 0, 600000, &v)) { fp.backoff_ms = (int)v; i++; }
        else return cli_usage_error("feed", "unknown, incomplete or invalid argument '%s'", a);
    }
    if (!url) return cli_usage_error("feed", "--nats URL is required");
    if (!fp.api_key || !*fp.api_key) return cli_usage_error("feed", "--api-key KEY (or $CLIPDEX_FLICKR_API_KEY) is required");
    if ((fp.text != NULL) + (fp.tags != NULL) + (fp.user_id != NULL) != 1)
        return cli_usage_error("feed", "give exactly one of --text, --tags, --user");
    cdx_fleet *f;
    if (open_fleet(url, &f)) return 1;
    catch_signals();
    fp.cancel = g_cancel;
    fp.log = flickr_log;
    cdx_feed_stats st;
    cdx_result r = cdx_fleet_feed_flickr(f, &fp, &st);
    cdx_fleet_close(f);
    if (r) {
        fprintf(stderr, "clipdex: feed flickr: stopped after %llu published, %llu duplicates\n",
                (unsigned long long)st.published, (unsigned long long)st.duplicates);
        return cli_fail("feed flickr", r);
    }
    print_feed_stats(&st, json);
    return atomic_load(g_cancel) ? 130 : 0;
}

int cmd_feed(int argc, char **argv)
{
    const char *kind = NULL, *arg = NULL, *url = NULL;
    int json = 0;
    if (argc > 1 && !strcmp(argv[1], "flickr")) return feed_flickr(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { feed_usage(stdout); return 0; }
        if (!strcmp(a, "--nats") && hv) url = argv[++i];
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strncmp(a, "--", 2)) return cli_usage_error("feed", "unknown or incomplete argument '%s'", a);
        else if (!kind) kind = a;
        else if (!arg) arg = a;
        else return cli_usage_error("feed", "unexpected argument '%s'", a);
    }
    if (!kind || !arg || !url) return cli_usage_error("feed", "expected folder DIR or urls FILE, and --nats URL");
    if (strcmp(kind, "folder") && strcmp(kind, "urls") && strcmp(kind, "watch"))
        return cli_usage_error("feed", "unknown source '%s' (folder, urls or watch)", kind);
    cdx_fleet *f;
    if (open_fleet(url, &f)) return 1;
    cdx_feed_stats st;
    cdx_result r;
    if (!strcmp(kind, "watch")) {
        catch_signals();
        r = cdx_fleet_feed_watch(f, arg, g_cancel, &st);
    } else {
        r = !strcmp(kind, "folder") ? cdx_fleet_feed_folder(f, arg, &st) : cdx_fleet_feed_urls(f, arg, &st);
    }
    cdx_fleet_close(f);
    if (r) return cli_fail("feed", r);
    print_feed_stats(&st, json);
    return 0;
}

/* ---------------------------------------------------------------- worker */

static void worker_usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex worker --nats nats://HOST:PORT/NAME --model DIR [--threads N]\n"
            "                      [--batch N] [--max-wait MS] [--ack-wait MS]\n"
            "                      [--max-deliver N] [--max-bytes N] [--precision P]\n\n"
            "Embed the pipeline's work items until SIGINT/SIGTERM: fetch a batch, read or\n"
            "download and decode it in parallel, embed it, publish the results, ack.\n"
            "The first worker records its model's fingerprint for the pipeline; a worker\n"
            "with another model is refused.\n\n"
            "  --threads N      decode and inference threads (default 1)\n"
            "  --batch N        items per fetch and embedding batch (default 32)\n"
            "  --max-wait MS    longest wait to fill a batch (default 1000)\n"
            "  --ack-wait MS    redelivery delay of unacked items (default 30000; applies\n"
            "                   when this worker creates the pipeline's work consumer)\n"
            "  --max-deliver N  deliveries before a missing file or failed download is\n"
            "                   dead-lettered (default 5; set with the consumer too)\n"
            "  --max-bytes N    larger images are dead-lettered (default 64 MiB)\n"
            "  --precision P    fp32 (default), int8, bf16 or auto (docs/engine.md); the\n"
            "                   first worker records it for the pipeline, a worker at\n"
            "                   another precision is refused; the library records it\n");
}

static void worker_log(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "clipdex: worker: %s\n", line);
}

int cmd_worker(int argc, char **argv)
{
    const char *url = NULL, *model_dir = NULL;
    cdx_worker_params wp = cdx_worker_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { worker_usage(stdout); return 0; }
        if (!strcmp(a, "--nats") && hv) url = argv[++i];
        else if (!strcmp(a, "--model") && hv) model_dir = argv[++i];
        else if (!strcmp(a, "--threads") && hv && !cli_parse_int(argv[i + 1], 1, 256, &v)) { wp.n_threads = (int)v; i++; }
        else if (!strcmp(a, "--batch") && hv && !cli_parse_int(argv[i + 1], 1, 1024, &v)) { wp.batch = (int)v; i++; }
        else if (!strcmp(a, "--max-wait") && hv && !cli_parse_int(argv[i + 1], 1, 600000, &v)) { wp.max_wait_ms = (int)v; i++; }
        else if (!strcmp(a, "--ack-wait") && hv && !cli_parse_int(argv[i + 1], 1000, 3600000, &v)) { wp.ack_wait_ms = (int)v; i++; }
        else if (!strcmp(a, "--max-deliver") && hv && !cli_parse_int(argv[i + 1], 1, 1000, &v)) { wp.max_deliver = (int)v; i++; }
        else if (!strcmp(a, "--max-bytes") && hv && !cli_parse_int(argv[i + 1], 1, 1L << 40, &v)) { wp.max_bytes = (uint64_t)v; i++; }
        else if (!strcmp(a, "--precision") && hv) {
            if (cli_parse_precision("worker", argv[++i], &wp.precision)) return 2;
        }
        else return cli_usage_error("worker", "unknown or incomplete argument '%s'", a);
    }
    if (!url || !model_dir) return cli_usage_error("worker", "--nats URL and --model DIR are required");
    char resolved[4096];   /* a registry reference (NAME@production) names one version */
    if (cli_resolve_model(model_dir, resolved, sizeof resolved, NULL, 0)) return 1;
    model_dir = resolved;
    cdx_model *model;
    cdx_model_params mp = cdx_model_default_params();
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    cdx_result r = cdx_model_load(model_dir, &mp, &model);
    if (r) return cli_fail(model_dir, r);
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    double load_s = (double)(ts1.tv_sec - ts0.tv_sec) + (double)(ts1.tv_nsec - ts0.tv_nsec) * 1e-9;
    cdx_fleet *f;
    if (open_fleet(url, &f)) { cdx_model_free(model); return 1; }
    catch_signals();
    wp.log = worker_log;
    wp.cancel = g_cancel;
    cdx_worker_stats st;
    r = cdx_fleet_work(f, model, &wp, &st);
    cdx_fleet_close(f);
    cdx_model_free(model);
    fprintf(stderr, "clipdex: worker: %llu fetched, %llu done, %llu dead-lettered, %llu retried\n",
            (unsigned long long)st.fetched, (unsigned long long)st.done, (unsigned long long)st.dead,
            (unsigned long long)st.retried);
    fprintf(stderr, "clipdex: worker: seconds: model %.2f, set-up %.2f, waiting %.2f, decode %.2f, embed %.2f, "
            "publish+ack %.2f\n", load_s, st.setup_s, st.wait_s, st.decode_s, st.embed_s, st.publish_s);
    return r ? cli_fail("worker", r) : 0;
}

/* ---------------------------------------------------------------- index --from */

static void index_progress(void *user, const cdx_import_stats *st)
{
    if (*(int *)user)
        printf("{\"event\": \"progress\", \"rows\": %llu, \"added\": %llu, \"unchanged\": %llu}\n",
               (unsigned long long)st->rows, (unsigned long long)st->added, (unsigned long long)st->unchanged);
    fflush(stdout);
}

int cli_index_from(const char *lib_dir, const char *model, const char *url, const char *consumer,
                   int ack_wait_ms, int follow, int batch, int json, int max_wait_ms)
{
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = model;
    lp.create = model != NULL;
    lp.writable = 1;
    lp.load_model = 0;
    cdx_library *lib;
    if (cli_open_library(lib_dir, &lp, &lib)) return 1;
    cdx_fleet *f;
    if (open_fleet(url, &f)) { cdx_library_close(lib); return 1; }
    if (cdx_library_set_pipeline(lib, url)) {   /* rm publishes removals to it */
        cdx_fleet_close(f);
        cdx_library_close(lib);
        return cli_fail("recording the pipeline", CDX_ERR_IO);
    }
    catch_signals();
    cdx_fleet_index_params ip = cdx_fleet_index_default_params();
    ip.follow = follow;
    ip.consumer = consumer;
    if (ack_wait_ms > 0) ip.ack_wait_ms = ack_wait_ms;
    if (batch > 0) ip.batch = batch;
    if (max_wait_ms > 0) ip.max_wait_ms = max_wait_ms;
    ip.progress = index_progress;
    ip.user = &json;
    ip.cancel = g_cancel;
    cdx_import_stats st;
    cdx_result r = cdx_fleet_index(f, lib, &ip, &st);
    cdx_fleet_close(f);
    cdx_library_close(lib);
    if (r) return cli_fail("index --from", r);
    if (json)
        printf("{\"event\": \"summary\", \"rows\": %llu, \"added\": %llu, \"updated\": %llu, \"unchanged\": %llu, "
               "\"duplicates\": %llu, \"interrupted\": %s}\n", (unsigned long long)st.rows,
               (unsigned long long)st.added, (unsigned long long)st.updated, (unsigned long long)st.unchanged,
               (unsigned long long)st.duplicates, atomic_load(g_cancel) ? "true" : "false");
    else
        printf("%s%llu results: %llu added, %llu updated, %llu unchanged, %llu duplicates\n",
               atomic_load(g_cancel) ? "interrupted: " : "", (unsigned long long)st.rows,
               (unsigned long long)st.added, (unsigned long long)st.updated, (unsigned long long)st.unchanged,
               (unsigned long long)st.duplicates);
    return atomic_load(g_cancel) ? 130 : 0;
}
