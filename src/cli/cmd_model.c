/*
 * cmd_model.c - `clipdex model fetch|list|path|verify|register|show|tag|untag|rm`:
 * the model cache and the model registry from the command line.  The work is
 * in the library (src/fetch/, src/clip/); this file parses
 * options and prints.  stdout carries only the machine-usable result (a
 * directory, or the listing), so `--model "$(clipdex model fetch X)"` works.
 * See docs/model-cache.md.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    "  register DIR --name NAME [--alias A]... [--lineage FILE]\n"
    "                  add a model to the registry (version = its fingerprint)\n"
    "  show REF        a registered model: version, directory, aliases, lineage,\n"
    "                  evaluations (REF: NAME, NAME@ALIAS, NAME@VERSION, @VERSION)\n"
    "  tag REF ALIAS   point NAME@ALIAS (e.g. production) at the version REF names\n"
    "  untag NAME ALIAS\n"
    "  rm REF          forget a registered version (NAME@VERSION or NAME@ALIAS)\n"
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
    "the download is complete, and directory; then the registered models: name,\n"
    "version, aliases and directory.\n"
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

static int print_registered(const cdx_registry_model *m, void *user)
{
    int *count = user;
    if ((*count)++ == 0) printf("\n%-40s %-14s %-24s %s\n", "REGISTERED NAME", "VERSION", "ALIASES", "PATH");
    printf("%-40s %-14.12s %-24s %s\n", m->name, m->version, m->aliases[0] ? m->aliases : "-", m->dir);
    return 0;
}

static int model_list(int argc, char **argv)
{
    model_opts o;
    int rc = parse("model list", help_list, 0, argc, argv, &o);
    if (rc >= 0) return rc;
    int count = 0, registered = 0;
    cdx_result r = cdx_model_cache_list(&o.fp, print_entry, &count);
    if (r != CDX_OK) return fail("model list", r);
    char *root = NULL, *db = NULL;
    if (cdx_model_cache_root(&o.fp, &root) == CDX_OK && (db = malloc(strlen(root) + 16))) {
        snprintf(db, strlen(root) + 16, "%s/registry.db", root);
        cdx_registry *g;
        if (access(db, F_OK) == 0 && cdx_registry_open(db, NULL, &g) == CDX_OK) {
            r = cdx_registry_list(g, print_registered, &registered);
            cdx_registry_close(g);
            if (r != CDX_OK) {
                free(db);
                free(root);
                return fail("model list", r);
            }
        }
    }
    if (count + registered == 0 && root) fprintf(stderr, "clipdex: no models in %s\n", root);
    free(db);
    free(root);
    return 0;
}

/* ---------------------------------------------------------------- registry */

static const char help_registry[] =
    "usage: clipdex model register DIR --name NAME [--alias A]... [--lineage FILE] [--json]\n"
    "       clipdex model show REF [--json]\n"
    "       clipdex model tag REF ALIAS\n"
    "       clipdex model untag NAME ALIAS\n"
    "       clipdex model rm NAME@VERSION|NAME@ALIAS\n"
    "       (each also takes --cache-dir DIR)\n"
    "\n"
    "The model registry (docs/models.md): every model has an immutable version,\n"
    "its content fingerprint, a name, aliases (production, candidate, ...), its\n"
    "lineage (a JSON object: base model, training data, hyperparameters; read\n"
    "from --lineage FILE, else DIR/training.json when present) and evaluation\n"
    "results.  REF is NAME (its latest version), NAME@ALIAS, NAME@VERSION-PREFIX\n"
    "(>= 8 hex digits) or @VERSION-PREFIX.  Stored in <cache root>/registry.db;\n"
    "safe for concurrent use by several processes.\n";

typedef struct reg_opts {
    const char *pos[2];
    int n_pos;
    const char *name, *lineage_file;
    const char *aliases[16];
    int n_aliases;
    int json;
    cdx_fetch_params fp;
} reg_opts;

/* Returns -1 to continue, else the exit status. */
static int reg_parse(const char *cmd, int want_pos, int argc, char **argv, reg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->fp = cdx_fetch_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help_registry, stdout);
            return 0;
        } else if ((v = opt_value("--cache-dir", argc, argv, &i, &missing)) || missing) {
            if (missing || !*v) return cli_usage_error(cmd, "--cache-dir needs a value");
            o->fp.cache_dir = v;
        } else if ((v = opt_value("--name", argc, argv, &i, &missing)) || missing) {
            if (missing) return cli_usage_error(cmd, "--name needs a value");
            o->name = v;
        } else if ((v = opt_value("--lineage", argc, argv, &i, &missing)) || missing) {
            if (missing) return cli_usage_error(cmd, "--lineage needs a file");
            o->lineage_file = v;
        } else if ((v = opt_value("--alias", argc, argv, &i, &missing)) || missing) {
            if (missing) return cli_usage_error(cmd, "--alias needs a value");
            if (o->n_aliases == 16) return cli_usage_error(cmd, "at most 16 aliases");
            o->aliases[o->n_aliases++] = v;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            if (o->n_pos == want_pos) return cli_usage_error(cmd, "unexpected argument '%s'", a);
            o->pos[o->n_pos++] = a;
        }
    }
    if (o->n_pos != want_pos) return cli_usage_error(cmd, "missing argument (see --help)");
    return -1;
}

static void print_model(const cdx_registry_model *m, const char *evals, int json)
{
    if (!json) {
        printf("name:        %s\nversion:     %s\ndirectory:   %s\naliases:     %s\n"
               "registered:  %lld (clipdex %s)\nlineage:     %s\n", m->name, m->version, m->dir,
               m->aliases[0] ? m->aliases : "-", (long long)m->registered, m->clipdex_version,
               m->lineage);
        if (evals) printf("evaluations: %s\n", evals);
        return;
    }
    fputs("{\"name\": ", stdout);
    cli_print_json_string(stdout, m->name);
    printf(", \"version\": \"%s\", \"dir\": ", m->version);
    cli_print_json_string(stdout, m->dir);
    printf(", \"registered\": %lld, \"clipdex_version\": ", (long long)m->registered);
    cli_print_json_string(stdout, m->clipdex_version);
    fputs(", \"aliases\": [", stdout);
    for (const char *p = m->aliases; *p;) {
        size_t n = strcspn(p, ",");
        printf("%s\"%.*s\"", p == m->aliases ? "" : ", ", (int)n, p);
        p += n + (p[n] == ',');
    }
    printf("], \"lineage\": %s, \"evaluations\": %s}\n", m->lineage[0] ? m->lineage : "{}",
           evals ? evals : "[]");
}

/* The lineage text: --lineage FILE, else DIR/training.json if present, else
 * NULL.  -1 (message printed) when a named file cannot be read. */
static int read_lineage(const char *file, const char *dir, char **out)
{
    *out = NULL;
    char path[4200];
    if (!file) {
        snprintf(path, sizeof path, "%s/training.json", dir);
        if (access(path, F_OK) != 0) return 0;
        file = path;
    }
    FILE *f = fopen(file, "rb");
    char *buf = calloc(1, (1 << 20) + 1);
    size_t n = f && buf ? fread(buf, 1, (size_t)1 << 20, f) : 0;
    int too_big = f && fgetc(f) != EOF;
    int bad = !f || !buf || ferror(f) || too_big;
    if (f) fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "clipdex: error: cannot read the lineage file %s (%s)\n", file,
                too_big ? "larger than 1 MiB" : "missing or unreadable");
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int model_registry(const char *cmd, int argc, char **argv)
{
    int want = !strcmp(cmd, "tag") || !strcmp(cmd, "untag") ? 2 : 1;
    char label[32];
    snprintf(label, sizeof label, "model %s", cmd);
    reg_opts o;
    int rc = reg_parse(label, want, argc, argv, &o);
    if (rc >= 0) return rc;
    if (!strcmp(cmd, "register") && !o.name) return cli_usage_error(label, "--name NAME is required");
    char *lineage = NULL, *evals = NULL;
    if (!strcmp(cmd, "register") && read_lineage(o.lineage_file, o.pos[0], &lineage) != 0) return 1;
    cdx_registry *g = NULL;
    cdx_registry_model *m = malloc(sizeof *m);
    cdx_result r = m ? cdx_registry_open(NULL, &o.fp, &g) : CDX_ERR_NOMEM;
    if (r) {
    } else if (!strcmp(cmd, "register")) {
        r = cdx_registry_register(g, o.pos[0], o.name, lineage, m);
        char ref[80];
        snprintf(ref, sizeof ref, "@%s", m->version);
        for (int i = 0; !r && i < o.n_aliases; i++) r = cdx_registry_tag(g, ref, o.aliases[i]);
        if (!r && o.n_aliases) r = cdx_registry_resolve(g, ref, m);
        if (!r) print_model(m, NULL, o.json);
    } else if (!strcmp(cmd, "show")) {
        r = cdx_registry_resolve(g, o.pos[0], m);
        if (!r) r = cdx_registry_evals(g, m->version, &evals);
        if (!r) print_model(m, evals, o.json);
    } else if (!strcmp(cmd, "tag")) {
        r = cdx_registry_tag(g, o.pos[0], o.pos[1]);
    } else if (!strcmp(cmd, "untag")) {
        r = cdx_registry_untag(g, o.pos[0], o.pos[1]);
    } else {
        r = cdx_registry_remove(g, o.pos[0]);
    }
    cdx_registry_close(g);
    free(m);
    free(evals);
    free(lineage);
    return r ? fail(label, r) : 0;
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
    if (!strcmp(sub, "register") || !strcmp(sub, "show") || !strcmp(sub, "tag") ||
        !strcmp(sub, "untag") || !strcmp(sub, "rm"))
        return model_registry(sub, argc - 1, argv + 1);
    return cli_usage_error("model", "unknown subcommand '%s' (fetch, list, path, verify, register, "
                           "show, tag, untag, rm)", sub);
}
