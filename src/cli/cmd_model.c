/*
 * cmd_model.c - `clipdex model fetch|list|path|verify`: the model cache from the
 * command line.  The work is in the library (src/fetch/); this file parses
 * options and prints.  stdout carries only the machine-usable result (a
 * directory, or the listing), so `--model "$(clipdex model fetch X)"` works.
 * See docs/model-cache.md.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct model_opts {
    const char *repo_id;
    cdx_fetch_params fp;
} model_opts;

enum { TAKES_REPO = 1, TAKES_REVISION = 2, TAKES_QUIET = 4 };

static const char help_model[] =
    "usage: clipdex model <subcommand> [options]\n"
    "\n"
    "Manage CLIP models in the local cache (see docs/model-cache.md).\n"
    "\n"
    "subcommands:\n"
    "  fetch REPO_ID   download a model from the Hugging Face hub; print its directory\n"
    "  list            list the cached models with their sizes and completeness\n"
    "  path REPO_ID    print the directory of a completely downloaded model\n"
    "  verify MODEL    re-hash a model (DIR or REPO_ID), refresh its cached fingerprint,\n"
    "                  check its prepared weights\n"
    "\n"
    "Run 'clipdex model <subcommand> --help' for its options.\n";

static const char help_fetch[] =
    "usage: clipdex model fetch REPO_ID [--revision R] [--cache-dir DIR] [--quiet]\n"
    "\n"
    "Download the CLIP model REPO_ID (e.g. openai/clip-vit-base-patch32) from the\n"
    "Hugging Face hub into the cache and print its directory on stdout, for use\n"
    "as --model DIR.  An interrupted download resumes on the next call; a model\n"
    "already in the cache is not downloaded again (no network access).\n"
    "\n"
    "options:\n"
    "  --revision R     branch, tag or commit (default main)\n"
    "  --cache-dir DIR  cache root (default $CLIPDEX_HOME/models)\n"
    "  -q, --quiet      no progress on stderr\n"
    "\n"
    "environment:\n"
    "  CLIPDEX_HOME         data directory (default $XDG_DATA_HOME/clipdex or\n"
    "                       ~/.local/share/clipdex)\n"
    "  CLIPDEX_HF_ENDPOINT  hub or mirror URL (default https://huggingface.co)\n"
    "  HF_TOKEN             access token for private and gated models\n"
    "\n"
    "Exit status: 0 ok, 1 download failed, 2 usage error.\n";

static const char help_list[] =
    "usage: clipdex model list [--cache-dir DIR]\n"
    "\n"
    "List the models in the cache: repository, revision, size on disk, whether\n"
    "the download is complete, and directory.\n"
    "\n"
    "options:\n"
    "  --cache-dir DIR  cache root (default $CLIPDEX_HOME/models)\n";

static const char help_path[] =
    "usage: clipdex model path REPO_ID [--revision R] [--cache-dir DIR]\n"
    "\n"
    "Print the cache directory of REPO_ID if it is completely downloaded;\n"
    "otherwise exit with status 1.  Never uses the network.\n"
    "\n"
    "options:\n"
    "  --revision R     branch, tag or commit (default main)\n"
    "  --cache-dir DIR  cache root (default $CLIPDEX_HOME/models)\n";

/* Value of option `name` at argv[*i] ("--name V" or "--name=V"); NULL if
 * argv[*i] is another option. *missing is set when the value is absent. */
static const char *opt_value(const char *name, int argc, char **argv, int *i, int *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* Returns -1 to continue, else the exit status (help printed or usage error). */
static int parse(const char *cmd, const char *help, int flags, int argc, char **argv,
                 model_opts *o)
{
    memset(o, 0, sizeof *o);
    o->fp = cdx_fetch_default_params();
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (only_args || a[0] != '-' || a[1] == '\0') {
            if (!(flags & TAKES_REPO) || o->repo_id)
                return cli_usage_error(cmd, "unexpected argument '%s'", a);
            o->repo_id = a;
        } else if (!strcmp(a, "--")) {
            only_args = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if ((flags & TAKES_QUIET) && (!strcmp(a, "--quiet") || !strcmp(a, "-q"))) {
            o->fp.quiet = 1;
        } else if ((flags & TAKES_REVISION) &&
                   ((v = opt_value("--revision", argc, argv, &i, &missing)) || missing)) {
            if (missing || !*v) return cli_usage_error(cmd, "--revision needs a value");
            o->fp.revision = v;
        } else if ((v = opt_value("--cache-dir", argc, argv, &i, &missing)) || missing) {
            if (missing || !*v) return cli_usage_error(cmd, "--cache-dir needs a value");
            o->fp.cache_dir = v;
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        }
    }
    if ((flags & TAKES_REPO) && !o->repo_id)
        return cli_usage_error(cmd, "missing REPO_ID (e.g. openai/clip-vit-base-patch32)");
    return -1;
}

/* Error exit for a library failure: 2 for a malformed argument, else 1. */
static int fail(const char *cmd, cdx_result r)
{
    fprintf(stderr, "clipdex: error: %s\n", *cdx_last_error() ? cdx_last_error()
                                                              : cdx_result_str(r));
    if (r != CDX_ERR_INVALID_ARG) return 1;
    fprintf(stderr, "Try 'clipdex %s --help'.\n", cmd);
    return 2;
}

static int model_fetch(int argc, char **argv)
{
    model_opts o;
    int rc = parse("model fetch", help_fetch, TAKES_REPO | TAKES_REVISION | TAKES_QUIET,
                   argc, argv, &o);
    if (rc >= 0) return rc;
    char *dir = NULL;
    cdx_result r = cdx_model_fetch(o.repo_id, &o.fp, &dir);
    if (r != CDX_OK) return fail("model fetch", r);
    printf("%s\n", dir);
    free(dir);
    return 0;
}

static const char help_verify[] =
    "usage: clipdex model verify (DIR | REPO_ID [--revision R] [--cache-dir DIR])\n"
    "\n"
    "Recompute the fingerprint of a model from every byte of its files (loads\n"
    "take it from the fingerprint cache while the weight file's identity -\n"
    "device, inode, size, mtime, ctime - is unchanged), store it in the cache,\n"
    "and validate the model's prepared weights in the engine cache, deleting\n"
    "damaged ones (they are rebuilt on next use).  See docs/model-cache.md.\n"
    "\n"
    "Prints the fingerprint on stdout; notes on stderr.\n"
    "Exit status: 0 ok, 1 the cached fingerprint was wrong (now fixed) or the\n"
    "model cannot be read, 2 usage error.\n";

static int model_verify(int argc, char **argv)
{
    model_opts o;
    int rc = parse("model verify", help_verify, TAKES_REPO | TAKES_REVISION, argc, argv, &o);
    if (rc >= 0) return rc;
    struct stat st;
    char *dir = NULL;
    cdx_result r = CDX_OK;
    if (stat(o.repo_id, &st) == 0 && S_ISDIR(st.st_mode)) dir = strdup(o.repo_id);
    else r = cdx_model_cache_dir(o.repo_id, &o.fp, &dir, NULL);
    if (r != CDX_OK) return fail("model verify", r);
    if (!dir) return cli_fail("model verify", CDX_ERR_NOMEM);
    cdx_model_verify_report rep;
    r = cdx_model_verify(dir, NULL, &rep);
    free(dir);
    if (r != CDX_OK) return fail("model verify", r);
    printf("%s\n", rep.fingerprint);
    if (rep.cache_was_wrong)
        fprintf(stderr, "clipdex: the fingerprint cache held %s for these unchanged files; "
                "corrected\n", rep.cached);
    fprintf(stderr, "clipdex: fingerprint %s; prepared weights: %d valid, %d damaged (removed)\n",
            rep.cache_was_wrong ? "differed from the cache" : rep.cached[0] ? "matches the cache"
                                                                      : "computed (was not cached)",
            rep.prepared_ok, rep.prepared_removed);
    return rep.cache_was_wrong ? 1 : 0;
}

static int model_path(int argc, char **argv)
{
    model_opts o;
    int rc = parse("model path", help_path, TAKES_REPO | TAKES_REVISION, argc, argv, &o);
    if (rc >= 0) return rc;
    char *dir = NULL;
    int complete = 0;
    cdx_result r = cdx_model_cache_dir(o.repo_id, &o.fp, &dir, &complete);
    if (r != CDX_OK) return fail("model path", r);
    if (complete)
        printf("%s\n", dir);
    else
        fprintf(stderr, "clipdex: error: %s (revision %s) is not completely downloaded in %s; "
                "run 'clipdex model fetch %s%s%s'\n", o.repo_id,
                o.fp.revision, dir, o.repo_id, strcmp(o.fp.revision, "main") ? " --revision " : "",
                strcmp(o.fp.revision, "main") ? o.fp.revision : "");
    free(dir);
    return complete ? 0 : 1;
}

static int print_entry(const cdx_cache_entry *e, void *user)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    int *count = user, u = 0;
    double size = (double)e->bytes;
    while (size >= 1000 && u < 4) {
        size /= 1000;
        u++;
    }
    if ((*count)++ == 0)
        printf("%-44s %-12s %9s  %-8s  %s\n", "REPO_ID", "REVISION", "SIZE", "STATUS", "PATH");
    printf("%-44s %-12s %6.*f %-2s  %-8s  %s\n", e->repo_id, e->revision, u ? 1 : 0, size,
           unit[u], e->complete ? "complete" : "partial", e->dir);
    return 0;
}

static int model_list(int argc, char **argv)
{
    model_opts o;
    int rc = parse("model list", help_list, 0, argc, argv, &o);
    if (rc >= 0) return rc;
    int count = 0;
    cdx_result r = cdx_model_cache_list(&o.fp, print_entry, &count);
    if (r != CDX_OK) return fail("model list", r);
    if (count == 0) {
        char *root = NULL;
        if (cdx_model_cache_root(&o.fp, &root) == CDX_OK)
            fprintf(stderr, "clipdex: no models in %s\n", root);
        free(root);
    }
    return 0;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        fputs(help_model, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(help_model, stdout);
        return 0;
    }
    if (!strcmp(sub, "fetch")) return model_fetch(argc - 1, argv + 1);
    if (!strcmp(sub, "list")) return model_list(argc - 1, argv + 1);
    if (!strcmp(sub, "path")) return model_path(argc - 1, argv + 1);
    if (!strcmp(sub, "verify")) return model_verify(argc - 1, argv + 1);
    return cli_usage_error("model", "unknown subcommand '%s' (fetch, list, path or verify)", sub);
}
