/*
 * dirwatch.c - inotify over folder trees (see dirwatch.h).  One watch per
 * folder, its path kept by watch descriptor; events are translated here so
 * that `feed watch` and the library's watcher see the same four kinds.
 */
#include "ingest/dirwatch.h"

#include "common/error.h"
#include "common/util.h"
#include "ingest/walk.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIRWATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ONLYDIR)

struct dirwatch {
    int fd;
    char **dirs;      /* folder path by watch descriptor (NULL = none) */
    size_t cap;
};

cdx_result dirwatch_open(dirwatch **out)
{
    *out = NULL;
    dirwatch *w = calloc(1, sizeof *w);
    if (!w) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    w->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->fd < 0) {
        cdx_result r = cdx_error(CDX_ERR_IO, "inotify_init1: %s", strerror(errno));
        free(w);
        return r;
    }
    *out = w;
    return CDX_OK;
}

void dirwatch_close(dirwatch *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->cap; i++) free(w->dirs[i]);
    free(w->dirs);
    close(w->fd);
    free(w);
}

static cdx_result watch_add(dirwatch *w, const char *dir)
{
    int wd = inotify_add_watch(w->fd, dir, DIRWATCH_MASK);
    if (wd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return CDX_OK;   /* gone meanwhile */
        return cdx_error(CDX_ERR_IO, "%s: inotify_add_watch: %s%s", dir, strerror(errno),
                         errno == ENOSPC ? " (raise fs.inotify.max_user_watches)" : "");
    }
    if ((size_t)wd >= DIRWATCH_MAX_DIRS)
        return cdx_error(CDX_ERR_TOO_LARGE, "more than %d watched folders", DIRWATCH_MAX_DIRS);
    if ((size_t)wd >= w->cap) {
        size_t nc = (size_t)wd * 2 + 16;
        char **nd = realloc(w->dirs, nc * sizeof *nd);
        if (!nd) return cdx_error(CDX_ERR_NOMEM, "out of memory");
        memset(nd + w->cap, 0, (nc - w->cap) * sizeof *nd);
        w->dirs = nd;
        w->cap = nc;
    }
    char *copy = strdup(dir);   /* same folder re-added under a new name: the new one */
    if (!copy) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    free(w->dirs[wd]);
    w->dirs[wd] = copy;
    return CDX_OK;
}

static cdx_result add_tree(dirwatch *w, const char *dir, int depth)
{
    if (depth > WALK_MAX_DEPTH) return CDX_OK;
    cdx_result r = watch_add(w, dir);
    if (r) return r;
    DIR *d = opendir(dir);
    if (!d) return CDX_OK;
    struct dirent *e;
    while (!r && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        char *sub = cdx_path_join(dir, e->d_name);
        struct stat st;
        if (!sub) r = cdx_error(CDX_ERR_NOMEM, "out of memory");
        else if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) r = add_tree(w, sub, depth + 1);
        free(sub);
    }
    closedir(d);
    return r;
}

cdx_result dirwatch_add_tree(dirwatch *w, const char *dir)
{
    if (!w || !dir) return cdx_error(CDX_ERR_INVALID_ARG, "dirwatch_add_tree: NULL argument");
    return add_tree(w, dir, 0);
}

/* A folder deleted or moved away: forget it and everything below (a moved
 * folder would otherwise report events under its old name). */
static void drop_tree(dirwatch *w, const char *dir)
{
    size_t n = strlen(dir);
    for (size_t wd = 0; wd < w->cap; wd++) {
        const char *p = w->dirs[wd];
        if (!p || strncmp(p, dir, n) || (p[n] && p[n] != '/')) continue;
        inotify_rm_watch(w->fd, (int)wd);
        free(w->dirs[wd]);
        w->dirs[wd] = NULL;
    }
}

static cdx_result one_event(dirwatch *w, const struct inotify_event *ev, const char *name, dirwatch_fn fn,
                            void *user)
{
    if (ev->mask & IN_Q_OVERFLOW) return fn(user, DIRWATCH_OVERFLOW, NULL);
    if (ev->wd < 0 || (size_t)ev->wd >= w->cap || !w->dirs[ev->wd]) return CDX_OK;
    if (ev->mask & IN_IGNORED) {   /* the watch is gone (its folder deleted) */
        free(w->dirs[ev->wd]);
        w->dirs[ev->wd] = NULL;
        return CDX_OK;
    }
    if (!name || !name[0]) return CDX_OK;
    char *path = cdx_path_join(w->dirs[ev->wd], name);
    if (!path) return cdx_error(CDX_ERR_NOMEM, "out of memory");
    cdx_result r = CDX_OK;
    if (ev->mask & IN_ISDIR) {
        if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
            r = add_tree(w, path, 0);   /* watch first, then the caller scans: nothing missed */
            if (!r) r = fn(user, DIRWATCH_NEW_DIR, path);
        } else if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) {
            drop_tree(w, path);
            r = fn(user, DIRWATCH_GONE, path);
        }
    } else if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
        r = fn(user, DIRWATCH_CHANGED, path);
    } else if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) {
        r = fn(user, DIRWATCH_GONE, path);
    }
    free(path);
    return r;
}

cdx_result dirwatch_dispatch(dirwatch *w, const char *buf, size_t len, dirwatch_fn fn, void *user)
{
    cdx_result r = CDX_OK;
    for (size_t off = 0; !r && off + sizeof(struct inotify_event) <= len;) {
        struct inotify_event ev;
        memcpy(&ev, buf + off, sizeof ev);   /* buf need not be aligned */
        if (ev.len > len - off - sizeof ev) break;
        const char *name = buf + off + sizeof ev;   /* NUL-padded by the kernel */
        r = one_event(w, &ev, ev.len && memchr(name, '\0', ev.len) ? name : NULL, fn, user);
        off += sizeof ev + ev.len;
    }
    return r;
}

cdx_result dirwatch_poll(dirwatch *w, int timeout_ms, dirwatch_fn fn, void *user)
{
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct pollfd pfd = {w->fd, POLLIN, 0};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr < 0) return errno == EINTR ? CDX_OK : cdx_error(CDX_ERR_IO, "poll: %s", strerror(errno));
    cdx_result r = CDX_OK;
    while (!r && pr > 0) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            return cdx_error(CDX_ERR_IO, "inotify read: %s", strerror(errno));
        }
        r = dirwatch_dispatch(w, buf, (size_t)n, fn, user);
        if ((size_t)n < sizeof buf / 2) break;   /* drained */
    }
    return r;
}
