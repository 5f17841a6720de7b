/*
 * keyword_bench.c - keyword (FTS5) query latency on a large catalog.
 *
 * Builds a catalog of --rows images (default 1M) with the real schema
 * (version 2, the catalog's triggers filling the full-text index; rows
 * inserted with SQL in chunks of 100k for speed) with synthetic
 * text: paths "/photos/YEAR/ALBUM/img_N.jpg", a 3-word title and 2 tags for
 * every image, 4 words of embedded metadata for 30% of them; words are
 * drawn from an 8000-word vocabulary with a 1/rank (Zipf-like) frequency, so
 * there are rare and very common words.  Then, for each query shape, p50
 * and p99 latency of catalog_fts_query (top 10 + the count of all matches,
 * what a search request does) over --reps runs after one warm-up, wall
 * clock and CPU time of the thread (the latter unaffected by other load):
 * a rare word, a common word, two words (AND), a phrase, a prefix, an OR, a
 * rare word with a tag filter and a common word with a tag filter.
 * Also reports the build rate (rows/s, index maintained by the triggers).
 * Options: --rows N --reps N --keep DIR (reuse/keep the catalog) --only
 * SHAPE (shapes whose name contains SHAPE) --json.
 * Disk: about 0.4 KB per row (400 MB at 1M) under /dev/shm (else /tmp).
 */
#include "store/catalog.h"

#include "common/error.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VOCAB 8000

static const char *const syl[20] = {"ka", "lo", "mi", "ren", "sa", "to", "vu", "bel", "dor", "fi",
                                    "gan", "hu", "jo", "ker", "lu", "mor", "ne", "pa", "qui", "ris"};

static void word(int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", syl[i % 20], syl[(i / 20) % 20], syl[(i / 400) % 20]);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uni(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* rank 0.. with frequency ~ 1/(rank+1) */
static int zipf(void) { return (int)exp(uni() * log((double)VOCAB)) - 1; }

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of this thread: what a query costs whatever else the machine
 * runs (wall times on a shared machine include waiting for a core). */
static double cpu(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

static int die(const char *what)
{
    fprintf(stderr, "keyword_bench: %s: %s\n", what, cdx_last_error());
    return 1;
}

/* zw(n): n words drawn by zipf(), space-separated; zu(): uniform [0,1). */
static void sql_zw(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    int n = sqlite3_value_int(argv[0]);
    char buf[256], w[32];
    size_t j = 0;
    for (int k = 0; k < n && k < 8; k++) {
        word(zipf(), w, sizeof w);
        j += (size_t)snprintf(buf + j, sizeof buf - j, "%s%s", k ? " " : "", w);
    }
    sqlite3_result_text(ctx, buf, (int)j, SQLITE_TRANSIENT);
}

static void sql_zu(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_double(ctx, uni());
}

/* Rows go in through SQL on a second connection (synchronous off: a
 * benchmark file), in chunks of 100k, but through the catalog's own
 * triggers, so the index is built exactly as indexing builds it. */
static int build(const char *path, long rows)
{
    double t0 = now();
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) return fprintf(stderr, "open %s\n", path), 1;
    sqlite3_create_function(db, "zw", 1, SQLITE_UTF8, NULL, sql_zw, NULL, NULL);
    sqlite3_create_function(db, "zu", 0, SQLITE_UTF8, NULL, sql_zu, NULL, NULL);
    char *err = NULL;
    if (sqlite3_exec(db, "PRAGMA synchronous=OFF; PRAGMA cache_size=-131072;", NULL, NULL, &err)) goto fail;
    for (long at = 0; at < rows; at += 100000) {
        long end = at + 100000 < rows ? at + 100000 : rows;
        char sql[2048];
        snprintf(sql, sizeof sql,
                 "BEGIN;"
                 "WITH RECURSIVE n(x) AS (SELECT %ld UNION ALL SELECT x + 1 FROM n WHERE x + 1 < %ld) "
                 "INSERT INTO contents(sha256, slot, size, width, height, format, meta_text) "
                 "SELECT printf('%%064x', x), x, 1000, 100, 100, 'jpeg', "
                 "CASE WHEN zu() < 0.3 THEN zw(2) || char(10) || zw(2) ELSE '' END FROM n;"
                 "WITH RECURSIVE n(x) AS (SELECT %ld UNION ALL SELECT x + 1 FROM n WHERE x + 1 < %ld) "
                 "INSERT INTO images(path, sha256, mtime, added, title, tags) "
                 "SELECT printf('/photos/%%d/%%s/img_%%07d.jpg', 2000 + x %% 25, zw(1), x), "
                 "printf('%%064x', x), 1, 1, zw(3), char(10) || zw(1) || char(10) || zw(1) || char(10) FROM n;"
                 "COMMIT;", at, end, at, end);
        if (sqlite3_exec(db, sql, NULL, NULL, &err)) goto fail;
    }
    sqlite3_close(db);
    double dt = now() - t0;
    fprintf(stderr, "built %ld rows in %.1f s (%.0f rows/s, index maintained by the triggers)\n",
            rows, dt, rows / dt);
    return 0;
fail:
    fprintf(stderr, "keyword_bench: building: %s\n", err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    sqlite3_close(db);
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long rows = 1000000, reps = 15;
    const char *keep = NULL, *only = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--keep") && i + 1 < argc) keep = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: keyword_bench [--rows N] [--reps N] [--keep DIR] [--only SHAPE] [--json]\n");
            return 2;
        }
    }
    if (rows < 1000 || rows > 100000000 || reps < 1 || reps > 10000) {
        fprintf(stderr, "keyword_bench: --rows 1000..1e8, --reps 1..10000\n");
        return 2;
    }
    char dir[256], path[300];
    if (keep) snprintf(dir, sizeof dir, "%s", keep);
    else snprintf(dir, sizeof dir, "%s/cdx-keyword-bench-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (keep ? (mkdir(dir, 0777) != 0 && access(dir, W_OK) != 0) : !mkdtemp(dir)) {
        perror(dir);
        return 1;
    }
    snprintf(path, sizeof path, "%s/catalog.db", dir);
    int exists = access(path, F_OK) == 0;
    catalog *c = NULL;
    if (catalog_open(path, 1, 1, &c)) return die("open");
    uint64_t have = 0, contents = 0;
    if (catalog_counts(c, &have, &contents)) return die("count");
    if (!exists || have == 0) {
        catalog_close(c);
        if (build(path, rows)) return 1;
        if (catalog_open(path, 1, 0, &c)) return die("open");
    } else {
        rows = (long)have;
        fprintf(stderr, "reusing %s (%ld rows)\n", path, rows);
    }
    char rare[32], common[32], mid[32], q2[80], phrase[80], prefix[40], orq[80];
    word(VOCAB - 7, rare, sizeof rare);     /* ~1e-4 of titles */
    word(0, common, sizeof common);         /* the most frequent word */
    word(40, mid, sizeof mid);
    snprintf(q2, sizeof q2, "%s %s", common, mid);
    snprintf(phrase, sizeof phrase, "\"%s %s\"", mid, common);
    snprintf(prefix, sizeof prefix, "%.4s*", mid);
    snprintf(orq, sizeof orq, "%s OR %s", rare, mid);
    struct { const char *name, *q, *tag; } qs[] = {
        {"rare word", rare, NULL},     {"common word", common, NULL}, {"two words", q2, NULL},
        {"phrase", phrase, NULL},      {"prefix", prefix, NULL},      {"or", orq, NULL},
        {"rare + tag", rare, common},  {"common + tag", common, mid},
    };
    double *lat = malloc((size_t)reps * sizeof *lat), *cp = malloc((size_t)reps * sizeof *cp);
    if (json) printf("{\"rows\": %ld, \"queries\": [", rows);
    for (size_t k = 0, first = 1; k < sizeof qs / sizeof qs[0]; k++) {
        if (only && !strstr(qs[k].name, only)) continue;
        catalog_filter f = {NULL, NULL, 0, 0, qs[k].tag};
        catalog_fts_hit h[10];
        size_t n = 0;
        uint64_t total = 0;
        if (catalog_fts_query(c, qs[k].q, &f, 0, 10, h, &n, &total)) return die(qs[k].q);   /* warm-up */
        for (long r = 0; r < reps; r++) {
            double t0 = now(), c0 = cpu();
            if (catalog_fts_query(c, qs[k].q, &f, 0, 10, h, &n, &total)) return die(qs[k].q);
            lat[r] = (now() - t0) * 1e3;
            cp[r] = (cpu() - c0) * 1e3;
        }
        qsort(lat, (size_t)reps, sizeof *lat, cmp_double);
        qsort(cp, (size_t)reps, sizeof *cp, cmp_double);
        double p50 = lat[reps / 2], p99 = lat[(size_t)((reps - 1) * 0.99)], c50 = cp[reps / 2];
        if (json)
            printf("%s{\"shape\": \"%s\", \"matches\": %llu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
                   "\"cpu_p50_ms\": %.3f, \"cpu_us_per_match\": %.3f}",
                   first ? "" : ", ", qs[k].name, (unsigned long long)total, p50, p99, c50,
                   total ? c50 * 1e3 / (double)total : 0.0);
        else
            printf("%-13s %-28s tag=%-7s matches %7llu  p50 %8.2f ms  p99 %8.2f ms  cpu p50 %8.2f ms"
                   " (%.2f us/match)\n", qs[k].name, qs[k].q, qs[k].tag ? qs[k].tag : "-",
                   (unsigned long long)total, p50, p99, c50, total ? c50 * 1e3 / (double)total : 0.0);
        first = 0;
    }
    if (json) printf("]}\n");
    free(lat);
    free(cp);
    catalog_close(c);
    if (!keep) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
    }
    return 0;
}
