/*
 * main.c - entry point of the clipdex CLI: dispatches to command files and
 * holds the small helpers they share (errors, number parsing, JSON output).
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"tokenize", cmd_tokenize, "print CLIP token ids of texts"},
    {"preprocess", cmd_preprocess, "write an image's model input tensor (float32)"},
    {"embed", cmd_embed, "print embeddings of texts and images"},
    {"model", cmd_model, "manage models (fetch from the Hugging Face hub)"},
    {"init", cmd_init, "create an image library bound to a model"},
    {"index", cmd_index, "add folders, files and URLs to the library"},
    {"search", cmd_search, "search the library by text, image or example"},
    {"info", cmd_info, "show what a library holds"},
    {"rm", cmd_rm, "remove images from the library"},
    {"check", cmd_check, "verify the catalog and vectors agree"},
    {"compact", cmd_compact, "free the space of removed images' vectors"},
    {"dupes", cmd_dupes, "group near-duplicate images (resized, re-encoded, cropped copies)"},
    {"import", cmd_import, "load embeddings computed elsewhere (.npy + CSV/JSONL)"},
    {"export", cmd_export, "write the library's vectors (.npy) and records (JSONL)"},
    {"serve", cmd_serve, "serve a library over HTTP (JSON API and web interface)"},
    {"feed", cmd_feed, "publish folders or URL lists to a fleet pipeline (NATS)"},
    {"worker", cmd_worker, "embed a fleet pipeline's work items (NATS)"},
    {"eval", cmd_eval, "measure retrieval quality (queries, zero-shot, captions)"},
    {"tune", cmd_tune, "fine-tune a model on (image, caption) pairs"},
    {"reindex", cmd_reindex, "move a library to another model; roll back"},
    {"tune-step", cmd_tune_step, "low-level fine-tuning: N contrastive steps on one batch"},
    {"ocr", cmd_ocr, "read text in the library's images into the full-text index"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: clipdex <command> [options]\n\n"
               "clipdex " CDX_VERSION_STRING " - semantic image search with CLIP\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'clipdex <command> --help' for a command's options.\n");
}

static cdx_cancel_flag g_cancel;   /* lock-free: safe to set from a signal handler */

static void on_cancel_signal(int sig)
{
    (void)sig;
    atomic_store(&g_cancel, 1);
}

cdx_cancel_flag *cli_cancel_on_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_cancel_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return &g_cancel;
}

int cli_fail(const char *what, cdx_result r)
{
    const char *msg = cdx_last_error();
    fprintf(stderr, "clipdex: error: %s: %s\n", what,
            msg && *msg ? msg : cdx_result_str(r));
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "clipdex %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'clipdex %s --help'.\n", cmd);
    return 2;
}

int cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

void cli_print_floats(FILE *f, const float *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%.9g" : "%.9g", (double)v[i]);
    fputc(']', f);
}

void cli_print_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("clipdex %s\n", CDX_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "clipdex: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}
