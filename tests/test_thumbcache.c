/*
 * test_thumbcache.c - the server's thumbnail cache (src/server/thumbcache.c):
 * byte accounting, least-recently-used eviction down to 90% of the cap, a
 * hit refreshing recency, replacing an entry, names that are refused,
 * counting existing entries at open, and a directory that cannot be used.
 */
#include "server/thumbcache.h"
#include "testutil.h"

#include <fcntl.h>
#include <unistd.h>

static char g_dir[64];

static int exists(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/thumbs/%s", g_dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static void put(thumb_cache *c, const char *name, size_t len, char fill)
{
    char buf[4096];
    memset(buf, fill, sizeof buf);
    thumb_cache_put(c, name, buf, len);
    usleep(20000);   /* distinct mtimes on coarse file systems */
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/cdx_test_thumbs_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/thumbs", g_dir);

    thumb_cache *c = thumb_cache_open(dir, 10000);
    CHECK(c != NULL);
    if (!c) return test_finish();
    thumb_cache_stats st;
    struct stat fst;
    CHECK(thumb_cache_get(c, "a-256.jpg", &fst) < 0);   /* miss */
    put(c, "a-256.jpg", 3000, 'a');
    put(c, "b-256.jpg", 3000, 'b');
    put(c, "c-256.jpg", 3000, 'c');
    thumb_cache_get_stats(c, &st);
    CHECK(st.entries == 3 && st.bytes == 9000 && st.evictions == 0 && st.misses == 1);

    int fd = thumb_cache_get(c, "a-256.jpg", &fst);   /* a is now the most recent */
    CHECK(fd >= 0 && fst.st_size == 3000);
    char first = 0;
    CHECK(fd >= 0 && read(fd, &first, 1) == 1 && first == 'a');
    if (fd >= 0) close(fd);
    usleep(20000);

    put(c, "d-256.jpg", 3000, 'd');   /* 12000 > 10000: evict LRU (b, then c) to <= 9000 */
    thumb_cache_get_stats(c, &st);
    CHECKF(st.bytes <= 9000 && st.entries == 3 && st.evictions == 1, "bytes %llu entries %llu ev %llu",
           (unsigned long long)st.bytes, (unsigned long long)st.entries,
           (unsigned long long)st.evictions);
    CHECK(exists("a-256.jpg") && !exists("b-256.jpg") && exists("c-256.jpg") && exists("d-256.jpg"));
    CHECK(st.hits == 1);

    put(c, "c-256.jpg", 1000, 'C');   /* replacing counts the new size only */
    thumb_cache_get_stats(c, &st);
    CHECK(st.entries == 3 && st.bytes == 7000);

    put(c, "../evil.jpg", 10, 'x');   /* not a plain entry name: refused */
    put(c, "notes.txt", 10, 'x');
    put(c, "huge-256.jpg", 4096, 'h');   /* fits the cap: stored, then LRU evicted */
    CHECK(thumb_cache_get(c, "../evil.jpg", &fst) < 0);
    CHECK(!exists("notes.txt"));
    thumb_cache_get_stats(c, &st);
    CHECK(st.bytes <= 10000);
    thumb_cache_close(c);

    /* a new handle counts what is on disk */
    thumb_cache *c2 = thumb_cache_open(dir, 10000);
    thumb_cache_stats st2;
    thumb_cache_get_stats(c2, &st2);
    CHECKF(c2 && st2.bytes == st.bytes && st2.entries == st.entries, "reopen: %llu bytes",
           (unsigned long long)st2.bytes);
    thumb_cache_close(c2);

    CHECK(thumb_cache_open(dir, 0) == NULL);                        /* cap 0: no cache */
    CHECK(thumb_cache_open("/proc/cdx-no-such/thumbs", 100) == NULL);  /* cannot create */
    thumb_cache_close(NULL);

    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_finish();
}
