/*
 * walk.c - recursive, loop-safe file discovery (see walk.h).
 *
 * Hand-written rather than nftw(3): nftw either does not follow symlinks
 * (FTW_PHYS) or follows them without loop protection across links, and it
 * cannot skip the library folder or report per-entry errors and go on.
 */
#include "ingest/walk.h"

#include "common/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct dirkey {
    dev_t dev;
    ino_t ino;
} dirkey;

typedef struct walker {
    dirkey *seen;          /* open-addressing set, capacity power of two */
    size_t nseen, cap;
    const char *skip;
    walk_list *out;
    walk_error_fn err;
    void *user;
    cdx_cancel_flag *cancel;
} walker;

static size_t key_hash(dirkey k)
{
    uint64_t h = (uint64_t)k.dev * 0x9E3779B97F4A7C15ull ^ (uint64_t)k.ino * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

/* Insert; 1 if it was new, 0 if already there, -1 on allocation failure. */
static int seen_add(walker *w, dirkey k)
{
    if (2 * (w->nseen + 1) > w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 256;
        dirkey *nv = calloc(nc, sizeof *nv);
        if (!nv) return -1;
        for (size_t i = 0; i < w->cap; i++) {
            if (!w->seen[i].ino && !w->seen[i].dev) continue;
            size_t j = key_hash(w->seen[i]) & (nc - 1);
            while (nv[j].ino || nv[j].dev) j = (j + 1) & (nc - 1);
            nv[j] = w->seen[i];
        }
        free(w->seen);
        w->seen = nv;
        w->cap = nc;
    }
    if (!k.dev && !k.ino) k.ino = 1;   /* (0,0) marks empty; never a real dir */
    size_t j = key_hash(k) & (w->cap - 1);
    while (w->seen[j].ino || w->seen[j].dev) {
        if (w->seen[j].dev == k.dev && w->seen[j].ino == k.ino) return 0;
        j = (j + 1) & (w->cap - 1);
    }
    w->seen[j] = k;
    w->nseen++;
    return 1;
}

static cdx_result add_file(walker *w, const char *path, const struct stat *st)
{
    walk_list *l = w->out;
    if (l->n >= WALK_MAX_FILES)
        return cdx_error(CDX_ERR_TOO_LARGE, "more than %u files to index", WALK_MAX_FILES);
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 1024;
        walk_file *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        l->v = nv;
        l->cap = nc;
    }
    char *p = strdup(path);
    if (!p) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    l->v[l->n++] = (walk_file){p, (uint64_t)st->st_size, (int64_t)st->st_mtime};
    return CDX_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static cdx_result walk_dir(walker *w, const char *dir, int depth);

static cdx_result visit(walker *w, const char *path, int depth)
{
    struct stat st;
    if (w->cancel && atomic_load_explicit(w->cancel, memory_order_relaxed)) return CDX_OK;
    if (stat(path, &st) != 0) {
        int e = errno;
        struct stat lst;
        int is_link = lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode);
        w->err(w->user, path, is_link && (e == ENOENT || e == ELOOP)
                                  ? "dangling or looping symbolic link" : strerror(e));
        return CDX_OK;
    }
    if (S_ISREG(st.st_mode)) return add_file(w, path, &st);
    if (!S_ISDIR(st.st_mode)) return CDX_OK;   /* devices, fifos, sockets: not images */
    if (w->skip && !strcmp(path, w->skip)) return CDX_OK;
    int fresh = seen_add(w, (dirkey){st.st_dev, st.st_ino});
    if (fresh < 0) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!fresh) return CDX_OK;   /* already walked: a symlink loop or a second route */
    if (depth >= WALK_MAX_DEPTH) {
        w->err(w->user, path, "folders nested too deeply (skipped)");
        return CDX_OK;
    }
    return walk_dir(w, path, depth + 1);
}

static cdx_result walk_dir(walker *w, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) {
        w->err(w->user, dir, strerror(errno));
        return CDX_OK;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    cdx_result r = CDX_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;   /* ., .., hidden files and folders */
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(names, nc * sizeof *nv);
            if (!nv) { r = cdx_error(CDX_ERR_NOMEM, "out of memory"); break; }
            names = nv;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) { r = cdx_error(CDX_ERR_NOMEM, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (!r && n) qsort(names, n, sizeof *names, cmp_str);
    size_t dl = strlen(dir);
    for (size_t i = 0; i < n && !r; i++) {
        size_t len = dl + 1 + strlen(names[i]) + 1;
        char *p = malloc(len);
        if (!p) { r = cdx_error(CDX_ERR_NOMEM, "out of memory"); break; }
        snprintf(p, len, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", names[i]);
        r = visit(w, p, depth);
        free(p);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return r;
}

cdx_result walk_path(const char *root, const char *skip_dir, walk_list *out,
                     walk_error_fn err, void *user, cdx_cancel_flag *cancel)
{
    char *abs = walk_abspath(root);
    if (!abs) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    walker w = {.skip = skip_dir, .out = out, .err = err, .user = user, .cancel = cancel};
    cdx_result r = visit(&w, abs, 0);
    free(abs);
    free(w.seen);
    return r;
}

void walk_list_free(walk_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
    memset(l, 0, sizeof *l);
}

char *walk_abspath(const char *path)
{
    char *cwd = NULL;
    if (path[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (!cwd) return NULL;
    }
    size_t len = (cwd ? strlen(cwd) : 0) + strlen(path) + 3;
    char *buf = malloc(len), *out = malloc(len);
    if (!buf || !out) {
        free(cwd);
        free(buf);
        free(out);
        return NULL;
    }
    snprintf(buf, len, "%s/%s", cwd ? cwd : "", path);
    free(cwd);
    /* normalise: collapse "//", drop "/./", resolve "/../" lexically */
    size_t o = 0;
    const char *p = buf;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != '/') p++;
        size_t sl = (size_t)(p - s);
        if (sl == 1 && s[0] == '.') continue;
        if (sl == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, s, sl);
        o += sl;
    }
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    free(buf);
    return out;
}
