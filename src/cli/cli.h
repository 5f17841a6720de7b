/*
 * cli.h - the clipdex command-line tool: one file per command group, all
 * using only the public API (clipdex.h).
 *
 * Every command: returns the process exit status (0 ok, 1 failure, 2 usage
 * error), prints machine output on stdout and diagnostics on stderr as
 * "clipdex: error: ...", and supports --help.
 */
#ifndef CDX_CLI_H
#define CDX_CLI_H

#include "clipdex.h"
#include <stdio.h>

int cmd_tokenize(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_compact(int argc, char **argv);
int cmd_ocr(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_dupes(int argc, char **argv);    /* cmd_dupes.c */

/* Library commands' shared helpers (cli_lib.c). */
/* Parse "YYYY-MM-DD" or ISO 8601 "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM|-HH:MM]"
 * (no zone = UTC) to unix seconds; 0 on success. */
int cli_parse_date(const char *s, int64_t *out);
/* Open the library for a command: prints the error and returns 1 on
 * failure, 0 on success. */
int cli_open_library(const char *dir, const cdx_library_params *p, cdx_library **lib);
/* For commands taking only [--library DIR] [--json] (info, check): parse
 * them and open the library without its model.  Returns -1 with *lib open
 * and *dir_out (may be NULL) its directory, or the exit status to return
 * (0 after --help, 1 open failed, 2 usage). */
int cli_open_library_args(const char *cmd, int argc, char **argv,
                          void (*usage)(FILE *), cdx_library **lib, int *json,
                          const char **dir_out);
int cmd_serve(int argc, char **argv);
int cmd_tune_step(int argc, char **argv);   /* cmd_tune.c */
int cmd_tune(int argc, char **argv);        /* cmd_tune_run.c */
/* Fleet (cmd_fleet.c): producers, workers, and `index --from`. */
int cmd_feed(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cli_index_from(const char *lib_dir, const char *model, const char *url, const char *consumer,
                   int ack_wait_ms, int follow, int batch, int json, int max_wait_ms);
/* `index --watch` (cmd_watch.c): ip holds the pass options and callback. */
int cli_index_watch(const char *lib_dir, const char *model, int threads, const char *const *dirs, int n,
                    const cdx_index_params *ip, int json);

/* Print "clipdex: error: <what>: <cdx_last_error()>" and return 1. */
int cli_fail(const char *what, cdx_result r);
/* An owning library (one fed from a pipeline, docs/fleet.md): publish the
 * changes its outbox recorded to the pipeline's replicas, opening *fleet
 * on first use (kept for the next call; the caller closes it).  A broker
 * out of reach keeps them for a later run: warning, returns 1. */
int cli_publish_outbox(cdx_library *lib, cdx_fleet **fleet);
/* SIGINT and SIGTERM set the returned flag (for the cancel fields of long
 * calls: they stop after committing what is complete). */
cdx_cancel_flag *cli_cancel_on_signals(void);
/* Print "clipdex: <fmt>" usage error plus a --help hint; return 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Parse a strictly positive/non-negative int option; 0 on success. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
/* --precision VALUE of command cmd: 0 and *out set, or the usage error's
 * exit code (2) after printing it. */
int cli_parse_precision(const char *cmd, const char *s, cdx_precision *out);
#define CLI_PRECISION_HELP \
    "  --precision P          fp32 (default), int8, bf16 or auto (the fastest this CPU runs\n" \
    "                         natively; see docs/engine.md \"Precision\")\n"
/* Print a float array as a JSON array with enough digits to round-trip. */
void cli_print_floats(FILE *f, const float *v, int n);
/* Print s as a JSON string literal (escaped, UTF-8 passed through). */
void cli_print_json_string(FILE *f, const char *s);

/* --model of reindex and eval compare: a model directory or a registry
 * reference; dir receives the directory, name the registered name ("" for
 * a plain directory).  Prints the error and returns 1 on failure. */
int cli_resolve_model(const char *ref, char *dir, size_t dir_cap, char *name, size_t name_cap);
int cmd_reindex(int argc, char **argv);     /* cmd_reindex.c */

#endif
