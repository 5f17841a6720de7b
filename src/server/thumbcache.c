/*
 * thumbcache.c - see thumbcache.h.  Written here rather than taken from a
 * library: it is a directory of files with a byte cap, whose only policy is
 * "drop the least recently touched" (no Debian library does just that).
 */
#include "thumbcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EVICT_TO_PERCENT 90

struct thumb_cache {
    char *dir;
    uint64_t max_bytes;
    pthread_mutex_t mu;        /* guards bytes, entries and eviction */
    uint64_t bytes, entries;
    atomic_uint_fast64_t hits, misses, evictions, tmp_counter;
};

typedef struct entry {
    char name[96];
    uint64_t size;
    struct timespec mtime;
} entry;

static int is_entry_name(const char *n)
{
    size_t l = strlen(n);
    return l > 4 && l < sizeof(((entry *)0)->name) && !strcmp(n + l - 4, ".jpg") && n[0] != '.';
}

/* Every entry of the directory (malloc'd array), its count and byte total. */
static entry *scan(const char *dir, size_t *n_out, uint64_t *bytes_out)
{
    *n_out = 0;
    *bytes_out = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t n = 0, cap = 0;
    entry *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_entry_name(e->d_name)) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            entry *nv = realloc(v, nc * sizeof *nv);
            if (!nv) break;
            v = nv;
            cap = nc;
        }
        memcpy(v[n].name, e->d_name, strlen(e->d_name) + 1);   /* is_entry_name: it fits */
        v[n].size = (uint64_t)st.st_size;
        v[n].mtime = st.st_mtim;
        *bytes_out += v[n].size;
        n++;
    }
    closedir(d);
    *n_out = n;
    return v;
}

static int older_first(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

thumb_cache *thumb_cache_open(const char *dir, uint64_t max_bytes)
{
    if (!dir || !max_bytes) return NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return NULL;
    if (access(dir, W_OK) != 0) return NULL;
    thumb_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->mu, NULL);
    size_t n;
    free(scan(dir, &n, &c->bytes));
    c->entries = n;
    return c;
}

void thumb_cache_close(thumb_cache *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->dir);
    free(c);
}

int thumb_cache_get(thumb_cache *c, const char *name, struct stat *st)
{
    if (!c || strchr(name, '/')) return -1;
    int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd = dfd < 0 ? -1 : openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd >= 0) close(dfd);
    if (fd >= 0 && (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size <= 0)) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        atomic_fetch_add(&c->misses, 1);
        return -1;
    }
    futimens(fd, NULL);   /* recently used (needs no write access to the data) */
    atomic_fetch_add(&c->hits, 1);
    return fd;
}

/* Remove the least recently used entries until the total is at most
 * EVICT_TO_PERCENT of the cap.  Called with mu held. */
static void evict(thumb_cache *c)
{
    size_t n;
    uint64_t bytes;
    entry *v = scan(c->dir, &n, &bytes);
    c->bytes = bytes;
    c->entries = n;
    if (!v) return;
    qsort(v, n, sizeof *v, older_first);
    uint64_t target = c->max_bytes / 100 * EVICT_TO_PERCENT;
    char path[4200];
    for (size_t i = 0; i < n && c->bytes > target; i++) {
        snprintf(path, sizeof path, "%s/%s", c->dir, v[i].name);
        if (unlink(path) == 0 || errno == ENOENT) {
            c->bytes -= v[i].size;
            c->entries--;
            atomic_fetch_add(&c->evictions, 1);
        }
    }
    free(v);
}

void thumb_cache_put(thumb_cache *c, const char *name, const void *data, size_t len)
{
    if (!c || strchr(name, '/') || !is_entry_name(name) || len > c->max_bytes) return;
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s", c->dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.%llu.tmp", c->dir, name, (long)getpid(),
             (unsigned long long)atomic_fetch_add(&c->tmp_counter, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        left -= (size_t)w;
    }
    /* A cache entry: no fsync (a torn one after a power cut would be a bad
     * entry, but rename() is atomic for readers). */
    struct stat old;
    int replaced = stat(path, &old) == 0;
    if (close(fd) != 0 || left || rename(tmp, path) != 0) {
        unlink(tmp);
        return;
    }
    pthread_mutex_lock(&c->mu);
    uint64_t gone = replaced ? (uint64_t)old.st_size : 0;
    c->bytes = (c->bytes > gone ? c->bytes - gone : 0) + len;
    if (!replaced) c->entries++;
    if (c->bytes > c->max_bytes) evict(c);
    pthread_mutex_unlock(&c->mu);
}

void thumb_cache_get_stats(thumb_cache *c, thumb_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    out->entries = c->entries;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
    out->max_bytes = c->max_bytes;
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->evictions = atomic_load(&c->evictions);
}
