/*
 * cache.c - the on-disk model cache (see cache.h): name validation, path
 * building, completeness, and the public lookup/listing calls.
 *
 * Every repo id and revision is hostile until checked: they come from the
 * command line and from directory names, and they become path components.
 */
#include "fetch/cache.h"
#include "common/error.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MB (1024ull * 1024ull)

/* Text files are small (vocab.json of ViT-L is 1 MB): 64 MB is generous.
 * Weights of the largest CLIPs (ViT-bigG, F32) are about 10 GB.  config.json
 * comes first (a wrong repo or revision fails at once), the weights second
 * (a repository without safetensors fails before anything else is fetched). */
const cdx_cache_file cdx_cache_files[] = {
    {"config.json", 1, 64 * MB},
    {CDX_CACHE_WEIGHTS, 1, 16384 * MB},
    {"preprocessor_config.json", 1, 64 * MB},
    {"vocab.json", 1, 64 * MB},
    {"merges.txt", 1, 64 * MB},
    {"tokenizer_config.json", 0, 64 * MB},
    {"special_tokens_map.json", 0, 64 * MB},
};
const int cdx_cache_n_files = (int)(sizeof cdx_cache_files / sizeof cdx_cache_files[0]);

#define REPO_PART_MAX 96
#define REVISION_MAX 255

const char *cdx_cache_printable(const char *s, char *buf, size_t n)
{
    size_t k = 0;
    for (; s[k] && k + 1 < n; k++)
        buf[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? s[k] : '?';
    buf[k] = '\0';
    if (s[k] && n >= 4) memcpy(buf + n - 4, "...", 4);
    return buf;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int word_char(char c) { return name_char(c) && c != '.' && c != '-'; }

/* One part of a repo id: s[0..n). */
static int repo_part_ok(const char *s, size_t n)
{
    if (n == 0 || n > REPO_PART_MAX || !word_char(s[0]) || !word_char(s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_char(s[i])) return 0;
        if (i > 0 && (s[i] == '.' || s[i] == '-') && s[i - 1] == s[i]) return 0;
    }
    return 1;
}

cdx_result cdx_cache_check_repo_id(const char *repo_id)
{
    char shown[128];
    if (!repo_id || !*repo_id)
        return cdx_error(CDX_ERR_INVALID_ARG, "empty repository id (expected OWNER/NAME, "
                         "e.g. openai/clip-vit-base-patch32)");
    const char *slash = strchr(repo_id, '/');
    if (!slash || !repo_part_ok(repo_id, (size_t)(slash - repo_id)) ||
        !repo_part_ok(slash + 1, strlen(slash + 1)))
        return cdx_error(CDX_ERR_INVALID_ARG,
                         "invalid repository id '%s': expected OWNER/NAME (e.g. "
                         "openai/clip-vit-base-patch32), each part 1-%d letters, digits, "
                         "'.', '_' or '-', starting and ending with a letter, digit or '_', "
                         "without '..' or '--'",
                         cdx_cache_printable(repo_id, shown, sizeof shown), REPO_PART_MAX);
    return CDX_OK;
}

cdx_result cdx_cache_check_revision(const char *rev)
{
    char shown[128];
    const char *why = NULL;
    size_t n = rev ? strlen(rev) : 0;
    if (n == 0) why = "it is empty";
    else if (n > REVISION_MAX) why = "it is longer than 255 characters";
    else if (strstr(rev, "..")) why = "it contains '..'";
    for (size_t i = 0; !why && i < n; i++) {
        int starts_part = (i == 0 || rev[i - 1] == '/');
        if (!name_char(rev[i]) && rev[i] != '/')
            why = "only letters, digits, '.', '_', '-' and '/' are allowed";
        else if (starts_part && (rev[i] == '/' || rev[i] == '.' || rev[i] == '-'))
            why = "a '/'-separated part is empty or starts with '.' or '-'";
    }
    if (!why && rev[n - 1] == '/') why = "it ends with '/'";
    if (why)
        return cdx_error(CDX_ERR_INVALID_ARG, "invalid revision '%s': %s",
                         rev ? cdx_cache_printable(rev, shown, sizeof shown) : "", why);
    return CDX_OK;
}

const char *cdx_cache_revision(const cdx_fetch_params *params)
{
    return params && params->revision && *params->revision ? params->revision : "main";
}

char *cdx_cache_encode_revision(const char *rev)
{
    size_t n = strlen(rev), slashes = 0;
    for (size_t i = 0; i < n; i++) slashes += rev[i] == '/';
    char *out = malloc(n + 2 * slashes + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (rev[i] == '/') {
            memcpy(o, "%2F", 3);
            o += 3;
        } else {
            *o++ = rev[i];
        }
    }
    *o = '\0';
    return out;
}

char *cdx_cache_decode_revision(const char *enc)
{
    size_t n = strlen(enc);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (enc[i] == '%') {
            if (strncmp(enc + i, "%2F", 3) != 0) goto bad;
            *o++ = '/';
            i += 2;
        } else if (enc[i] == '/') {
            goto bad;
        } else {
            *o++ = enc[i];
        }
    }
    *o = '\0';
    if (cdx_cache_check_revision(out) != CDX_OK) goto bad;
    cdx_error_clear();
    return out;
bad:
    free(out);
    return NULL;
}

char *cdx_cache_encode_repo_id(const char *repo_id)
{
    const char *slash = strchr(repo_id, '/');
    if (!slash) return NULL;
    size_t a = (size_t)(slash - repo_id), b = strlen(slash + 1);
    char *out = malloc(a + b + 3);
    if (!out) return NULL;
    memcpy(out, repo_id, a);
    memcpy(out + a, "--", 2);
    memcpy(out + a + 2, slash + 1, b + 1);
    return out;
}

char *cdx_cache_decode_repo_id(const char *dirname)
{
    const char *sep = strstr(dirname, "--");
    if (!sep) return NULL;
    size_t a = (size_t)(sep - dirname), b = strlen(sep + 2);
    char *out = malloc(a + b + 2);
    if (!out) return NULL;
    memcpy(out, dirname, a);
    out[a] = '/';
    memcpy(out + a + 1, sep + 2, b + 1);
    if (cdx_cache_check_repo_id(out) != CDX_OK) {
        cdx_error_clear();
        free(out);
        return NULL;
    }
    return out;
}

cdx_result cdx_cache_model_dir(const char *root, const char *repo_id,
                               const char *revision, char **out)
{
    *out = NULL;
    cdx_result r = cdx_cache_check_repo_id(repo_id);
    if (r == CDX_OK) r = cdx_cache_check_revision(revision);
    if (r != CDX_OK) return r;
    char *repo = cdx_cache_encode_repo_id(repo_id);
    char *rev = cdx_cache_encode_revision(revision);
    char *parent = repo ? cdx_path_join(root, repo) : NULL;
    *out = parent && rev ? cdx_path_join(parent, rev) : NULL;
    free(repo);
    free(rev);
    free(parent);
    return *out ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
}

static int is_regular(const char *dir, const char *name)
{
    char *p = cdx_path_join(dir, name);
    struct stat st;
    int ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

int cdx_cache_dir_complete(const char *dir)
{
    if (!is_regular(dir, CDX_CACHE_MARKER)) return 0;
    for (int i = 0; i < cdx_cache_n_files; i++)
        if (cdx_cache_files[i].required && !is_regular(dir, cdx_cache_files[i].name))
            return 0;
    return 1;
}

cdx_result cdx_cache_mkdirs(const char *path)
{
    char *p = strdup(path);
    if (!p) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            cdx_result r = cdx_error(CDX_ERR_IO, "cannot create directory %s: %s", p,
                                     strerror(errno));
            free(p);
            return r;
        }
        *s = c;
        if (c == '\0') break;
    }
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return ok ? CDX_OK : cdx_error(CDX_ERR_IO, "%s: not a directory", path);
}

/* ------------------------------------------------------------ public calls */

static cdx_result join_owned(const char *a, const char *b, char **out)
{
    *out = cdx_path_join(a, b);
    return *out ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
}

cdx_result cdx_model_cache_root(const cdx_fetch_params *params, char **out)
{
    *out = NULL;
    const char *dir = params ? params->cache_dir : NULL;
    if (dir && *dir) {
        *out = strdup(dir);
        return *out ? CDX_OK : cdx_error(CDX_ERR_NOMEM, "out of memory");
    }
    const char *home = getenv("CLIPDEX_HOME");
    if (home && *home) return join_owned(home, "models", out);
    /* The XDG spec says relative values are invalid and must be ignored. */
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && xdg[0] == '/') return join_owned(xdg, "clipdex/models", out);
    home = getenv("HOME");
    if (home && *home) return join_owned(home, ".local/share/clipdex/models", out);
    return cdx_error(CDX_ERR_NOT_FOUND, "cannot locate the model cache: HOME is not set; "
                     "set CLIPDEX_HOME or pass a cache directory");
}

cdx_result cdx_model_cache_dir(const char *repo_id, const cdx_fetch_params *params,
                               char **out_dir, int *complete)
{
    *out_dir = NULL;
    if (complete) *complete = 0;
    const char *rev = cdx_cache_revision(params);
    cdx_result r = cdx_cache_check_repo_id(repo_id);
    if (r == CDX_OK) r = cdx_cache_check_revision(rev);
    if (r != CDX_OK) return r;
    char *root;
    if ((r = cdx_model_cache_root(params, &root)) != CDX_OK) return r;
    r = cdx_cache_model_dir(root, repo_id, rev, out_dir);
    free(root);
    if (r == CDX_OK && complete) *complete = cdx_cache_dir_complete(*out_dir);
    return r;
}

/* Sum of the sizes of the regular files in dir, markers excluded. */
static uint64_t dir_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

static int no_dot(const struct dirent *e) { return e->d_name[0] != '.'; }

/* Visits the revisions of one repo directory; returns fn's non-zero value. */
static int list_repo(const char *repo_dir, const char *repo_id,
                     int (*fn)(const cdx_cache_entry *, void *), void *user)
{
    struct dirent **revs;
    int n = scandir(repo_dir, &revs, no_dot, alphasort), stop = 0;
    for (int j = 0; j < n; j++) {
        char *rev = stop ? NULL : cdx_cache_decode_revision(revs[j]->d_name);
        char *dir = rev ? cdx_path_join(repo_dir, revs[j]->d_name) : NULL;
        struct stat st;
        if (dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
            cdx_cache_entry e = {repo_id, rev, dir, dir_bytes(dir),
                                 cdx_cache_dir_complete(dir)};
            stop = fn(&e, user);
        }
        free(dir);
        free(rev);
        free(revs[j]);
    }
    if (n >= 0) free(revs);
    return stop;
}

cdx_result cdx_model_cache_list(const cdx_fetch_params *params,
                                int (*fn)(const cdx_cache_entry *e, void *user),
                                void *user)
{
    char *root;
    cdx_result r = cdx_model_cache_root(params, &root);
    if (r != CDX_OK) return r;
    struct dirent **repos;
    int n = scandir(root, &repos, no_dot, alphasort);
    if (n < 0) {
        int e = errno;
        r = e == ENOENT ? CDX_OK : cdx_error(CDX_ERR_IO, "%s: %s", root, strerror(e));
        free(root);
        return r;
    }
    int stop = 0;
    for (int i = 0; i < n; i++) {
        char *repo_id = stop ? NULL : cdx_cache_decode_repo_id(repos[i]->d_name);
        char *repo_dir = repo_id ? cdx_path_join(root, repos[i]->d_name) : NULL;
        if (repo_dir) stop = list_repo(repo_dir, repo_id, fn, user);
        free(repo_dir);
        free(repo_id);
        free(repos[i]);
    }
    free(repos);
    free(root);
    return CDX_OK;
}
