/*
 * fcache.c - the trainer's frozen-prefix cache (fcache.h).
 *
 * An open-addressing hash table (linear probing, power-of-two capacity, at
 * most half full) of entries {key, length, where}; a value lives either in
 * its own malloc'ed block (RAM) or at an offset of the spill file.  The keys
 * are 128 bits of two independent multiply-rotate hashes over the input's
 * 64-bit words: a false hit needs both to collide (inputs are the user's own
 * training data; nothing is gained by forging one).
 */
#include "train/fcache.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CAP (1u << 30)
#define ENTRY_OVERHEAD 64   /* bytes counted per entry beyond its values */

typedef struct entry {
    cdx_fcache_key k;
    uint32_t n;          /* floats; 0 = empty slot */
    uint8_t on_disk;
    union { float *p; off_t off; } at;
} entry;

struct cdx_fcache {
    entry *tab;
    size_t cap, used;
    size_t ram_max, disk_max, ram, disk;
    char *dir;
    int fd;              /* spill file: -1 none yet; -2 disabled */
    uint64_t hits, misses, refused;
};

cdx_result cdx_fcache_new(size_t ram_bytes, const char *spill_dir, size_t disk_bytes, cdx_fcache **out)
{
    *out = NULL;
    cdx_fcache *c = calloc(1, sizeof *c);
    if (!c) return cdx_error(CDX_ERR_NOMEM, "frozen cache: out of memory");
    c->ram_max = ram_bytes;
    c->disk_max = spill_dir && *spill_dir ? disk_bytes : 0;
    c->fd = c->disk_max ? -1 : -2;
    if (c->disk_max && !(c->dir = strdup(spill_dir))) {
        free(c);
        return cdx_error(CDX_ERR_NOMEM, "frozen cache: out of memory");
    }
    *out = c;
    return CDX_OK;
}

void cdx_fcache_clear(cdx_fcache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab[i].n && !c->tab[i].on_disk) free(c->tab[i].at.p);
    if (c->tab) memset(c->tab, 0, c->cap * sizeof *c->tab);
    c->used = c->ram = c->disk = 0;
    if (c->fd >= 0 && ftruncate(c->fd, 0) != 0) {
        close(c->fd);
        c->fd = -2;
    }
}

void cdx_fcache_free(cdx_fcache *c)
{
    if (!c) return;
    cdx_fcache_clear(c);
    if (c->fd >= 0) close(c->fd);
    free(c->tab);
    free(c->dir);
    free(c);
}

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

cdx_fcache_key cdx_fcache_hash(const void *data, size_t n, uint64_t tag)
{
    const unsigned char *b = data;
    uint64_t h1 = 0x9e3779b97f4a7c15ull ^ tag, h2 = 0x6a09e667f3bcc909ull ^ fmix(tag + n);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h1 = rotl(h1 ^ (w * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
        h2 = rotl(h2 ^ (w * 0x52dce729da3ed5b1ull), 29) * 0x38495ab5ull + 0x9e3779b9ull;
    }
    uint64_t w = 0;
    memcpy(&w, b + i, n - i);
    h1 = fmix(h1 ^ w ^ n);
    h2 = fmix(h2 ^ rotl(w, 17) ^ (n << 1));
    cdx_fcache_key k = {h1, h2};
    return k;
}

/* slot of k, or of the empty slot where it would go */
static entry *slot_of(const cdx_fcache *c, cdx_fcache_key k)
{
    size_t i = (size_t)k.h1 & (c->cap - 1);
    while (c->tab[i].n && (c->tab[i].k.h1 != k.h1 || c->tab[i].k.h2 != k.h2)) i = (i + 1) & (c->cap - 1);
    return &c->tab[i];
}

static int grow(cdx_fcache *c)
{
    size_t cap = c->cap ? 2 * c->cap : 1024;
    if (cap > MAX_CAP) return -1;
    entry *old = c->tab, *tab = calloc(cap, sizeof *tab);
    if (!tab) return -1;
    size_t oc = c->cap;
    c->tab = tab;
    c->cap = cap;
    for (size_t i = 0; i < oc; i++)
        if (old[i].n) *slot_of(c, old[i].k) = old[i];
    free(old);
    return 0;
}

int cdx_fcache_get(cdx_fcache *c, cdx_fcache_key k, float *dst, size_t n)
{
    entry *e = c->cap ? slot_of(c, k) : NULL;
    if (!e || !e->n || e->n != n) {
        c->misses++;
        return 0;
    }
    if (!e->on_disk) {
        memcpy(dst, e->at.p, n * sizeof(float));
    } else {
        size_t want = n * sizeof(float), got = 0;
        while (got < want) {
            ssize_t r = c->fd >= 0 ? pread(c->fd, (char *)dst + got, want - got, e->at.off + (off_t)got) : -1;
            if (r <= 0 && !(r < 0 && errno == EINTR)) {
                c->misses++;   /* the caller recomputes; the entry stays unusable */
                return 0;
            }
            if (r > 0) got += (size_t)r;
        }
    }
    c->hits++;
    return 1;
}

/* Append n floats to the spill file; its offset, or -1. */
static off_t spill(cdx_fcache *c, const float *src, size_t n)
{
    if (c->fd == -1) {
        size_t len = strlen(c->dir) + 40;
        char *path = malloc(len);
        if (path) {
            snprintf(path, len, "%s/.clipdex-frozen-cache-XXXXXX", c->dir);
            c->fd = mkostemp(path, O_CLOEXEC);
            if (c->fd >= 0) unlink(path);   /* anonymous from now on */
            else c->fd = -2;
            free(path);
        } else {
            c->fd = -2;
        }
    }
    if (c->fd < 0) return -1;
    const off_t at = (off_t)c->disk;
    size_t want = n * sizeof(float), done = 0;
    while (done < want) {
        ssize_t w = pwrite(c->fd, (const char *)src + done, want - done, at + (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {   /* disk full or I/O error: no more spilling */
            if (ftruncate(c->fd, at) != 0) { /* the entries before stay readable */ }
            c->disk_max = c->disk;
            return -1;
        }
        done += (size_t)w;
    }
    return at;
}

int cdx_fcache_put(cdx_fcache *c, cdx_fcache_key k, const float *src, size_t n)
{
    if (!n || n > UINT32_MAX) return -1;
    if ((c->used + 1) * 2 > c->cap && grow(c)) {
        c->refused++;
        return -1;
    }
    entry *e = slot_of(c, k);
    if (e->n) return 0;
    const size_t bytes = n * sizeof(float);
    entry v = {k, (uint32_t)n, 0, {NULL}};
    if (c->ram + bytes + ENTRY_OVERHEAD <= c->ram_max && (v.at.p = malloc(bytes))) {
        memcpy(v.at.p, src, bytes);
        c->ram += bytes + ENTRY_OVERHEAD;
    } else if (c->disk + bytes <= c->disk_max && (v.at.off = spill(c, src, n)) >= 0) {
        v.on_disk = 1;
        c->disk += bytes;
    } else {
        c->refused++;
        return -1;
    }
    *e = v;
    c->used++;
    return 0;
}

void cdx_fcache_stats(const cdx_fcache *c, cdx_train_cache_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!c) return;
    s->hits = c->hits;
    s->misses = c->misses;
    s->refused = c->refused;
    s->entries = c->used;
    s->ram_bytes = c->ram;
    s->disk_bytes = c->disk;
}
