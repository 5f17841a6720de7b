/*
 * cmd_ocr.c - `clipdex ocr [--library DIR] [--ocr-lang L] [--force]
 * [--threads N] [--json]`: read the text in the images of an existing
 * library (those not read with L yet) into its full-text index.  Progress
 * on stderr on a terminal; SIGINT/SIGTERM stop after committing what was
 * read, and running it again resumes.  Exit status: 0 done, 130
 * interrupted, 1 error (an unknown language before any work), 2 usage.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex ocr [--library DIR] [--ocr-lang L] [--force] [--threads N] [--json]\n\n"
               "Read text in the library's images with Tesseract and add it to the\n"
               "full-text index (keyword and hybrid search; docs/search.md).  Images are\n"
               "read from their files (URLs are not fetched again); a file whose bytes\n"
               "changed since indexing is left for 'clipdex index'.  Images without\n"
               "text-like regions are skipped cheaply.  Interrupted runs resume.\n\n"
               "  --library DIR  library (default $CLIPDEX_LIBRARY or ./clipdex-library)\n"
               "  --ocr-lang L   Tesseract languages, e.g. eng+deu (default eng); images\n"
               "                 read with other languages are read again\n"
               "  --force        read again images already read with L\n"
               "  --threads N    reading threads, one Tesseract each (default all cores)\n"
               "  --json         one JSON summary on stdout\n");
}

static void on_progress(void *user, const cdx_ocr_stats *s)
{
    if (!*(int *)user) return;
    uint64_t done = s->read + s->skipped + s->failed;
    fprintf(stderr, "\r\033[K%llu/%llu  read %llu (%llu with text)  skipped %llu  failed %llu  %.1f img/s",
            (unsigned long long)done, (unsigned long long)s->todo, (unsigned long long)s->read,
            (unsigned long long)s->with_text, (unsigned long long)s->skipped,
            (unsigned long long)s->failed, s->seconds > 0 ? (double)done / s->seconds : 0.0);
}

int cmd_ocr(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    long threads = 0;
    cdx_ocr_params op = cdx_ocr_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--library") && hv) dir = argv[++i];
        else if (!strcmp(a, "--ocr-lang") && hv) op.lang = argv[++i];
        else if (!strcmp(a, "--force")) op.force = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--threads") && hv && !cli_parse_int(argv[i + 1], 1, 64, &threads)) i++;
        else return cli_usage_error("ocr", "unknown or incomplete argument '%s'", a);
    }
    cdx_result r = cdx_ocr_check_langs(op.lang);   /* before opening anything */
    if (r) return cli_fail("--ocr-lang", r);
    cdx_library_params lp = cdx_library_default_params();
    lp.load_model = 0;
    lp.writable = 1;
    cdx_library *lib;
    if (cli_open_library(dir, &lp, &lib)) return 1;
    int tty = !json && isatty(2);
    op.n_threads = (int)threads;
    op.progress = on_progress;
    op.user = &tty;
    op.cancel = cli_cancel_on_signals();
    cdx_ocr_stats st;
    r = cdx_library_ocr(lib, &op, &st);
    cdx_library_close(lib);
    if (tty) fputs("\r\033[K", stderr);
    if (r) return cli_fail("reading text", r);
    int stopped = atomic_load(op.cancel) != 0;
    if (json)
        printf("{\"todo\": %llu, \"read\": %llu, \"with_text\": %llu, \"skipped\": %llu, "
               "\"failed\": %llu, \"seconds\": %.3f, \"interrupted\": %s}\n",
               (unsigned long long)st.todo, (unsigned long long)st.read,
               (unsigned long long)st.with_text, (unsigned long long)st.skipped,
               (unsigned long long)st.failed, st.seconds, stopped ? "true" : "false");
    else
        printf("%s%llu read (%llu with text), %llu skipped (no text-like regions), %llu failed "
               "of %llu in %.1f s\n", stopped ? "interrupted: " : "",
               (unsigned long long)st.read, (unsigned long long)st.with_text,
               (unsigned long long)st.skipped, (unsigned long long)st.failed,
               (unsigned long long)st.todo, st.seconds);
    fflush(stdout);
    return stopped ? 130 : 0;
}
