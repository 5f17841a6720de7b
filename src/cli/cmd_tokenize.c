/*
 * cmd_tokenize.c - `clipdex tokenize --model DIR [--] TEXT...`: print the
 * CLIP token ids of each text as one JSON array per line, in order.
 *
 * Loads only the tokenizer of the model directory (cdx_tokenizer_load_dir),
 * not the weights, so it is fast and works with any directory holding
 * vocab.json + merges.txt (or OpenAI's bpe_simple_vocab_16e6.txt.gz).  The
 * context length is text_config.max_position_embeddings from DIR/config.json
 * when that file exists, else 77 (CLIP's).  Workload: a handful of texts.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_CONTEXT 77
#define CONTEXT_MAX 65536
#define CONFIG_MAX_BYTES (1 << 20)

static void help(FILE *f)
{
    fprintf(f,
            "usage: clipdex tokenize --model DIR [--] TEXT...\n\n"
            "Print the CLIP token ids of each TEXT (one JSON array per line, in\n"
            "order), exactly as OpenAI's clip.tokenize(text, truncate=True): start\n"
            "token, BPE ids, end token, zero padding to the context length.\n\n"
            "options:\n"
            "  --model DIR   model directory with vocab.json + merges.txt (or\n"
            "                bpe_simple_vocab_16e6.txt.gz); the context length is read\n"
            "                from DIR/config.json (text_config.max_position_embeddings,\n"
            "                default 77)\n"
            "  --            every later argument is a text, even if it starts with '-'\n"
            "  -h, --help    show this help\n\n"
            "An empty argument is the empty text.  Invalid UTF-8 is read as U+FFFD.\n");
}

/* Context length from DIR/config.json; 0 on success, 1 after printing an
 * error.  A missing file or field means the default. */
static int read_context_length(const char *dir, int *ctx)
{
    *ctx = DEFAULT_CONTEXT;
    size_t dl = strlen(dir);
    char *path = malloc(dl + sizeof "/config.json");
    if (!path) {
        fprintf(stderr, "clipdex: error: out of memory\n");
        return 1;
    }
    memcpy(path, dir, dl);
    memcpy(path + dl, "/config.json", sizeof "/config.json");
    struct stat st;
    int rc = 0;
    if (stat(path, &st) != 0) goto done;   /* no config: CLIP's 77 */
    if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_BYTES) {
        fprintf(stderr, "clipdex: error: %s: not a regular file of at most %d bytes\n", path,
                CONFIG_MAX_BYTES);
        rc = 1;
        goto done;
    }
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        fprintf(stderr, "clipdex: error: %s: line %d: %s\n", path, err.line, err.text);
        rc = 1;
        goto done;
    }
    json_t *v = json_object_get(json_object_get(root, "text_config"), "max_position_embeddings");
    if (v) {
        json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
        if (n < 1 || n > CONTEXT_MAX) {
            fprintf(stderr, "clipdex: error: %s: text_config.max_position_embeddings must be "
                    "an integer in [1, %d]\n", path, CONTEXT_MAX);
            rc = 1;
        } else {
            *ctx = (int)n;
        }
    }
    json_decref(root);
done:
    free(path);
    return rc;
}

static void print_ids(const int32_t *ids, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
    fputs("]\n", stdout);
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    char **texts = malloc((size_t)(argc > 0 ? argc : 1) * sizeof *texts);
    int n_texts = 0, only_texts = 0;
    if (!texts) {
        fprintf(stderr, "clipdex: error: out of memory\n");
        return 1;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_texts || a[0] != '-' || a[1] == '\0') {
            texts[n_texts++] = argv[i];
        } else if (!strcmp(a, "--")) {
            only_texts = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            goto out;
        } else if (!strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                rc = cli_usage_error("tokenize", "--model needs a directory");
                goto out;
            }
            model = argv[++i];
        } else if (!strncmp(a, "--model=", 8)) {
            model = a + 8;
        } else {
            rc = cli_usage_error("tokenize", "unknown option '%s' (use -- before texts "
                                 "starting with '-')", a);
            goto out;
        }
    }
    if (!model) {
        rc = cli_usage_error("tokenize", "--model DIR is required");
        goto out;
    }
    if (n_texts == 0) {
        rc = cli_usage_error("tokenize", "no texts given");
        goto out;
    }
    int ctx;
    if (read_context_length(model, &ctx)) {
        rc = 1;
        goto out;
    }
    cdx_tokenizer *tok = NULL;
    cdx_result r = cdx_tokenizer_load_dir(model, &tok);
    if (r != CDX_OK) {
        rc = cli_fail("loading the tokenizer", r);
        goto out;
    }
    int32_t *ids = malloc((size_t)ctx * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "clipdex: error: out of memory\n");
        rc = 1;
    }
    for (int t = 0; ids && t < n_texts; t++) {
        r = cdx_tokenizer_encode(tok, texts[t], strlen(texts[t]), ctx, ids, NULL);
        if (r != CDX_OK) {
            char what[64];
            snprintf(what, sizeof what, "text %d", t + 1);
            rc = cli_fail(what, r);
            break;
        }
        print_ids(ids, ctx);
    }
    free(ids);
    cdx_tokenizer_free(tok);
out:
    free(texts);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "clipdex: error: writing the output failed\n");
        rc = 1;
    }
    return rc;
}
