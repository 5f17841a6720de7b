/*
 * test_dirwatch.c - ingest/dirwatch.c on a real temporary tree: files
 * written and deleted, a folder created, renamed (its later events carry
 * the new name) and removed, a real kernel queue overflow (more events
 * than fs.inotify.max_queued_events while nobody reads), and hostile
 * buffers handed to dirwatch_dispatch.
 */
#include "ingest/dirwatch.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

#define MAX_SEEN 64
typedef struct seen {
    int kind[MAX_SEEN];
    char path[MAX_SEEN][512];
    int n, overflows;
} seen;

static cdx_result record(void *user, dirwatch_kind kind, const char *path)
{
    seen *s = user;
    if (kind == DIRWATCH_OVERFLOW) {
        s->overflows++;
        return CDX_OK;
    }
    if (s->n < MAX_SEEN) {
        s->kind[s->n] = (int)kind;
        snprintf(s->path[s->n], sizeof s->path[0], "%s", path);
        s->n++;
    }
    return CDX_OK;
}

static int has(const seen *s, int kind, const char *path)
{
    for (int i = 0; i < s->n; i++)
        if (s->kind[i] == kind && !strcmp(s->path[i], path)) return 1;
    return 0;
}

static void drain(dirwatch *w, seen *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 5; i++) CHECK(dirwatch_poll(w, 50, record, s) == CDX_OK);
}

static void write_file(const char *path)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("x", f);
        fclose(f);
    }
}

int main(void)
{
    char root[] = "/tmp/clipdex-dirwatch-XXXXXX";
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    char a[600], b[600], f1[700], f2[700], big[700];
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    dirwatch *w = NULL;
    CHECK(dirwatch_open(&w) == CDX_OK);
    CHECK(dirwatch_add_tree(w, root) == CDX_OK);
    seen s;

    /* a folder created, a file written in it */
    CHECK(mkdir(a, 0755) == 0);
    drain(w, &s);
    CHECK(has(&s, DIRWATCH_NEW_DIR, a));
    snprintf(f1, sizeof f1, "%s/one.jpg", a);
    write_file(f1);
    drain(w, &s);
    CHECK(has(&s, DIRWATCH_CHANGED, f1));

    /* renamed: gone under the old name, new under the new one, and its
     * later events carry the new name */
    CHECK(rename(a, b) == 0);
    drain(w, &s);
    CHECK(has(&s, DIRWATCH_GONE, a));
    CHECK(has(&s, DIRWATCH_NEW_DIR, b));
    snprintf(f2, sizeof f2, "%s/two.jpg", b);
    write_file(f2);
    drain(w, &s);
    CHECK(has(&s, DIRWATCH_CHANGED, f2));
    CHECK(s.n == 1);

    /* a file deleted, then the folder */
    snprintf(f1, sizeof f1, "%s/one.jpg", b);
    CHECK(unlink(f1) == 0 && unlink(f2) == 0 && rmdir(b) == 0);
    drain(w, &s);
    CHECK(has(&s, DIRWATCH_GONE, f1));
    CHECK(has(&s, DIRWATCH_GONE, f2));
    CHECK(has(&s, DIRWATCH_GONE, b));

    /* a real overflow: more events than the kernel queues while unread
     * (two files alternately, so that no two neighbours coalesce) */
    long maxq = 16384;
    FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    if (q) {
        if (fscanf(q, "%ld", &maxq) != 1) maxq = 16384;
        fclose(q);
    }
    if (maxq > 0 && maxq <= 200000) {
        snprintf(f1, sizeof f1, "%s/x.txt", root);
        snprintf(big, sizeof big, "%s/y.txt", root);
        for (long i = 0; i < maxq + 100; i++) {
            int fd = open(i & 1 ? big : f1, O_WRONLY | O_CREAT, 0644);
            CHECK(fd >= 0);
            if (fd >= 0) close(fd);
        }
        drain(w, &s);
        CHECK(s.overflows >= 1);
    } else {
        printf("overflow part skipped: max_queued_events = %ld\n", maxq);
    }

    /* synthetic buffers: an overflow record, a truncated one, a name
     * without its NUL, an unknown watch descriptor */
    char buf[256] __attribute__((aligned(8)));
    struct inotify_event ev = {-1, IN_Q_OVERFLOW, 0, 0};
    memset(&s, 0, sizeof s);
    memcpy(buf, &ev, sizeof ev);
    CHECK(dirwatch_dispatch(w, buf, sizeof ev, record, &s) == CDX_OK && s.overflows == 1);
    CHECK(dirwatch_dispatch(w, buf, sizeof ev - 1, record, &s) == CDX_OK && s.overflows == 1);
    struct inotify_event ev2 = {1, IN_CLOSE_WRITE, 0, 8};
    memcpy(buf + 1, &ev2, sizeof ev2);               /* unaligned on purpose */
    memcpy(buf + 1 + sizeof ev2, "abcdefgh", 8);     /* no NUL: ignored */
    CHECK(dirwatch_dispatch(w, buf + 1, sizeof ev2 + 8, record, &s) == CDX_OK && s.n == 0);
    ev2.len = 200;                                   /* longer than the buffer */
    memcpy(buf + 1, &ev2, sizeof ev2);
    CHECK(dirwatch_dispatch(w, buf + 1, sizeof ev2 + 8, record, &s) == CDX_OK && s.n == 0);
    struct inotify_event ev3 = {99999, IN_CLOSE_WRITE, 0, 8};
    memcpy(buf, &ev3, sizeof ev3);
    memcpy(buf + sizeof ev3, "a.jpg\0\0\0", 8);
    CHECK(dirwatch_dispatch(w, buf, sizeof ev3 + 8, record, &s) == CDX_OK && s.n == 0);

    dirwatch_close(w);
    dirwatch_close(NULL);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_dirwatch: ok\n");
    return 0;
}
