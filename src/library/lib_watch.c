/*
 * lib_watch.c - cdx_library_watch: keep a library in step with folders
 * (`clipdex index --watch`, `clipdex serve --watch`).
 *
 * Loop: inotify (ingest/dirwatch.c) -> a pending set of changed paths ->
 * after debounce_ms without events (or max_delay_ms after the first one)
 * one index pass over the pending paths with prune and gone_ok: a path
 * that exists is indexed (unchanged files skipped by size + mtime, moved
 * ones recognised by content: the entry keeps its id), one that is gone
 * loses its entries (a folder: every entry below it).  Because the new and
 * the old name of a move land in the same pass, a move is never
 * re-embedded.  A full pass (index + prune of every folder) runs at start,
 * after IN_Q_OVERFLOW, on request (*rescan), and instead of a pending set
 * grown beyond WATCH_PENDING_MAX paths.
 *
 * Invariants: watches are set up before the start pass scans, and a new
 * folder is watched before it is scanned, so no file written meanwhile is
 * missed; every pass commits through cdx_library_index (crash-safe, and
 * searches on the same handle keep running); events under the library's
 * own folder and hidden names (editors' and rsync's temporary files) are
 * ignored.  Workload: one thread; bursts of thousands of events.
 */
#include "library/lib_watch.h"

#include "common/error.h"
#include "common/util.h"
#include "ingest/dirwatch.h"
#include "ingest/walk.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#define WATCH_PENDING_MAX 100000

cdx_watch_params cdx_watch_default_params(void)
{
    cdx_watch_params p;
    memset(&p, 0, sizeof p);
    p.index = cdx_index_default_params();
    p.debounce_ms = 500;
    p.max_delay_ms = 5000;
    return p;
}

typedef struct watch_run {
    cdx_library *lib;
    const cdx_watch_params *p;
    char **roots;
    int n_roots;
    const char *skip;         /* the library folder (absolute) */
    char **pending;
    size_t n, cap;
    double first, last;       /* cdx_now() of the first and last pending event */
    const char *full;         /* a full pass is due: its reason, else NULL */
    cdx_watch_stats *st;
} watch_run;

static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '/' || !path[n]);
}

static int hidden(const char *path)
{
    const char *b = strrchr(path, '/');
    return (b ? b[1] : path[0]) == '.';
}

static cdx_result on_event(void *user, dirwatch_kind kind, const char *path)
{
    watch_run *w = user;
    if (kind == DIRWATCH_OVERFLOW) {
        w->st->overflows++;
        w->full = "overflow";
        return CDX_OK;
    }
    if (w->full || hidden(path) || (w->skip && under(path, w->skip))) return CDX_OK;
    if (w->n >= WATCH_PENDING_MAX) {   /* cheaper as one full pass */
        w->full = "changes";
        return CDX_OK;
    }
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        char **np = realloc(w->pending, nc * sizeof *np);
        if (!np) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        w->pending = np;
        w->cap = nc;
    }
    if (!(w->pending[w->n] = strdup(path))) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    if (!w->n++) w->first = cdx_now();
    w->last = cdx_now();
    return CDX_OK;
}

static void pending_clear(watch_run *w)
{
    for (size_t i = 0; i < w->n; i++) free(w->pending[i]);
    w->n = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A proper ancestor folder of path is pending too. */
static int ancestor_pending(char *const *v, size_t n, const char *path)
{
    char *buf = strdup(path);
    int found = 0;
    for (char *s; !found && buf && (s = strrchr(buf, '/')) && s > buf;) {
        *s = '\0';
        char *key = buf;
        found = bsearch(&key, v, n, sizeof *v, cmp_str) != NULL;
    }
    free(buf);
    return found;
}

/* Sort, drop repeats and paths below another pending one (that pass walks
 * or prunes the whole folder). */
static cdx_result pending_reduce(watch_run *w)
{
    qsort(w->pending, w->n, sizeof *w->pending, cmp_str);
    unsigned char *drop = calloc(w->n ? w->n : 1, 1);
    if (!drop) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->n; i++)
        drop[i] = (i && !strcmp(w->pending[i - 1], w->pending[i])) || ancestor_pending(w->pending, w->n, w->pending[i]);
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (drop[i]) free(w->pending[i]);
        else w->pending[k++] = w->pending[i];
    }
    w->n = k;
    free(drop);
    return CDX_OK;
}

static void add_totals(cdx_watch_stats *st, const cdx_index_stats *s)
{
    st->added += s->added;
    st->moved += s->moved;
    st->duplicates += s->duplicates;
    st->removed += s->removed;
    st->failed += s->failed;
    st->skipped += s->skipped;
}

static cdx_result run_pass(watch_run *w, const char *const *paths, int n, const char *reason, int full)
{
    cdx_index_params ip = w->p->index;
    ip.prune = 1;
    ip.gone_ok = 1;
    ip.urls_file = NULL;
    ip.cancel = w->p->cancel;
    cdx_index_stats s;
    cdx_result r = cdx_library_index(w->lib, paths, n, &ip, &s);
    if (r) return r;
    w->st->passes++;
    w->st->full_passes += full;
    add_totals(w->st, &s);
    if (w->p->pass) {
        cdx_watch_pass ps = {reason, full, full ? 0 : (uint64_t)n, &s};
        w->p->pass(w->p->user, &ps);
    }
    return CDX_OK;
}

static cdx_result full_pass(watch_run *w, const char *reason)
{
    pending_clear(w);   /* covered */
    w->full = NULL;
    return run_pass(w, (const char *const *)w->roots, w->n_roots, reason, 1);
}

static cdx_result changes_pass(watch_run *w)
{
    cdx_result r = pending_reduce(w);   /* n <= WATCH_PENDING_MAX: fits an int */
    if (!r && w->n) r = run_pass(w, (const char *const *)w->pending, (int)w->n, "changes", 0);
    pending_clear(w);
    return r;
}

static int cancelled(const cdx_cancel_flag *f)
{
    return f && atomic_load(f);
}

cdx_result cdx_library_watch(cdx_library *lib, const char *const *dirs, int n_dirs,
                             const cdx_watch_params *params, cdx_watch_stats *stats)
{
    cdx_watch_stats local;
    cdx_watch_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    if (!lib || !dirs || n_dirs < 1) return cdx_error(CDX_ERR_INVALID_ARG, "cdx_library_watch: no folders");
    cdx_watch_params defaults = cdx_watch_default_params();
    const cdx_watch_params *p = params ? params : &defaults;
    if (p->debounce_ms < 0 || p->max_delay_ms < p->debounce_ms)
        return cdx_error(CDX_ERR_INVALID_ARG, "watch: need 0 <= debounce_ms <= max_delay_ms");
    watch_run w;
    memset(&w, 0, sizeof w);
    w.lib = lib;
    w.p = p;
    w.st = st;
    w.skip = lib_watch_dir(lib);
    cdx_result r = CDX_OK;
    if (!(w.roots = calloc((size_t)n_dirs, sizeof *w.roots))) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    w.n_roots = n_dirs;
    dirwatch *dw = NULL;
    for (int i = 0; i < n_dirs && !r; i++) {
        struct stat sb;
        if (!(w.roots[i] = walk_abspath(dirs[i]))) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        else if (stat(w.roots[i], &sb) != 0 || !S_ISDIR(sb.st_mode))
            r = cdx_error(CDX_ERR_INVALID_ARG, "%s: not a folder", dirs[i]);
    }
    if (!r) r = dirwatch_open(&dw);
    for (int i = 0; i < n_dirs && !r; i++) r = dirwatch_add_tree(dw, w.roots[i]);
    if (!r) r = full_pass(&w, "start");   /* after the watches: nothing missed */
    while (!r && !cancelled(p->cancel)) {
        if (p->rescan && atomic_exchange(p->rescan, 0)) w.full = "request";
        if (w.full) {
            r = full_pass(&w, w.full);
            continue;
        }
        double now = cdx_now();
        if (w.n && (now - w.last >= p->debounce_ms / 1000.0 || now - w.first >= p->max_delay_ms / 1000.0)) {
            r = changes_pass(&w);
            continue;
        }
        int wait_ms = 300;
        if (w.n) {
            double due = w.last + p->debounce_ms / 1000.0;
            double cap = w.first + p->max_delay_ms / 1000.0;
            double left = (due < cap ? due : cap) - now;
            wait_ms = left <= 0 ? 0 : (int)(left * 1000.0) + 1;
            if (wait_ms > 300) wait_ms = 300;
        }
        r = dirwatch_poll(dw, wait_ms, on_event, &w);
    }
    dirwatch_close(dw);
    pending_clear(&w);
    free(w.pending);
    for (int i = 0; i < n_dirs; i++) free(w.roots[i]);
    free(w.roots);
    return r;
}
