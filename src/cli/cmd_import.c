/*
 * cmd_import.c - `clipdex import`: load embeddings computed elsewhere (a
 * float32/float16 .npy [N, D] plus a CSV or JSON Lines file with one row per
 * vector) into a library.  The input is validated completely first (a bad
 * file imports nothing), then committed in batches; running the same
 * command again after an interruption resumes (rows already imported are
 * skipped).  Progress goes to stderr on a terminal; --json prints one JSON
 * line per committed batch ({"event": "progress", "rows": ...}, printed only
 * after the commit: reported rows are durable) and a final
 * {"event": "summary", ...}.  SIGINT/SIGTERM stop after the current batch.
 *
 * Exit status: 0 done, 1 error, 2 usage, 130 interrupted.
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
            "usage: clipdex import [--library DIR] [--model DIR] --vectors FILE.npy --meta FILE\n"
            "                      [--meta-format csv|jsonl] [--fingerprint HEX] [--base DIR]\n"
            "                      [--batch N] [--json]\n\n"
            "Import embeddings computed elsewhere (e.g. by clip-retrieval).\n\n"
            "  --vectors FILE  .npy of float32 or float16, shape (N, D); D must be the\n"
            "                  library model's embedding dimension\n"
            "  --meta FILE     one row per vector: CSV with a header line, or JSON Lines;\n"
            "                  'path' (or 'image_path') or 'url' is required, optional\n"
            "                  width, height, format, mtime, taken, camera, size; other\n"
            "                  columns are ignored\n"
            "  --meta-format F csv or jsonl (default: from the extension)\n"
            "  --fingerprint H the model fingerprint the vectors were made with; refused\n"
            "                  unless it equals the library's\n"
            "  --base DIR      relative paths are under DIR (default: current directory)\n"
            "  --model DIR     create the library with this model when it does not exist\n"
            "  --batch N       rows per committed batch (default 4096, max 65536)\n"
            "  --json          JSON lines on stdout: one per committed batch, then a summary\n\n"
            "Both files are checked completely before anything is written.  A path already\n"
            "in the library with the same vector is skipped, so re-running an interrupted\n"
            "import resumes it.  Exit status: 0 done, 130 interrupted, 1 error.\n");
}

typedef struct ui {
    int json, tty;
} ui;

static void print_stats_json(const char *event, const cdx_import_stats *st, int interrupted)
{
    printf("{\"event\": \"%s\", \"rows\": %llu, \"total_rows\": %llu, \"added\": %llu, "
           "\"updated\": %llu, \"unchanged\": %llu, \"duplicates\": %llu, \"seconds\": %.3f, "
           "\"interrupted\": %s}\n", event,
           (unsigned long long)st->rows, (unsigned long long)st->total_rows,
           (unsigned long long)st->added, (unsigned long long)st->updated,
           (unsigned long long)st->unchanged, (unsigned long long)st->duplicates, st->seconds,
           interrupted ? "true" : "false");
    fflush(stdout);
}

static void on_progress(void *user, const cdx_import_stats *st)
{
    const ui *u = user;
    if (u->json) print_stats_json("progress", st, 0);
    else if (u->tty)
        fprintf(stderr, "\rimport: %llu / %llu rows (%llu added, %llu unchanged)  %.1f s",
                (unsigned long long)st->rows, (unsigned long long)st->total_rows,
                (unsigned long long)st->added, (unsigned long long)st->unchanged, st->seconds);
}

int cmd_import(int argc, char **argv)
{
    const char *dir = NULL, *model = NULL, *vectors = NULL, *meta = NULL;
    cdx_import_params ip = cdx_import_default_params();
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && hv) dir = argv[++i];
        else if (!strcmp(a, "--model") && hv) model = argv[++i];
        else if (!strcmp(a, "--vectors") && hv) vectors = argv[++i];
        else if (!strcmp(a, "--meta") && hv) meta = argv[++i];
        else if (!strcmp(a, "--meta-format") && hv) {
            ip.meta_format = argv[++i];
            if (strcmp(ip.meta_format, "csv") && strcmp(ip.meta_format, "jsonl"))
                return cli_usage_error("import", "--meta-format: expected csv or jsonl, got '%s'", argv[i]);
        } else if (!strcmp(a, "--fingerprint") && hv) ip.model_fingerprint = argv[++i];
        else if (!strcmp(a, "--base") && hv) ip.base_dir = argv[++i];
        else if (!strcmp(a, "--batch") && hv) {
            if (cli_parse_int(argv[++i], 1, 65536, &v))
                return cli_usage_error("import", "--batch: expected 1..65536, got '%s'", argv[i]);
            ip.batch_size = (size_t)v;
        } else if (!strcmp(a, "--json")) json = 1;
        else return cli_usage_error("import", "unknown or incomplete argument '%s'", a);
    }
    if (!vectors || !meta) return cli_usage_error("import", "--vectors FILE and --meta FILE are required");
    cdx_library_params lp = cdx_library_default_params();
    lp.writable = 1;
    lp.load_model = model != NULL;
    lp.model_dir = model;
    lp.create = model != NULL;
    cdx_library *lib;
    if (cli_open_library(dir, &lp, &lib)) return 1;
    ui u = {json, isatty(2) && !json};
    ip.progress = on_progress;
    ip.user = &u;
    g_cancel = cli_cancel_on_signals();
    ip.cancel = g_cancel;
    cdx_import_stats st;
    memset(&st, 0, sizeof st);
    cdx_result r = cdx_library_import(lib, vectors, meta, &ip, &st);
    if (u.tty) fputc('\n', stderr);
    cdx_library_close(lib);
    if (r) return cli_fail("import", r);
    int interrupted = atomic_load(g_cancel) && st.rows < st.total_rows;
    if (json)
        print_stats_json("summary", &st, interrupted);
    else
        printf("imported %llu of %llu rows: %llu added, %llu updated, %llu unchanged, "
               "%llu sharing a stored vector (%.1f s)%s\n",
               (unsigned long long)st.rows, (unsigned long long)st.total_rows,
               (unsigned long long)st.added, (unsigned long long)st.updated,
               (unsigned long long)st.unchanged, (unsigned long long)st.duplicates, st.seconds,
               interrupted ? "; interrupted: run the same command again to resume" : "");
    if (fflush(stdout)) return 1;
    return interrupted ? 130 : 0;
}
