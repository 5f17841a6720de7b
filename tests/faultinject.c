/*
 * faultinject.c - a test-only LD_PRELOAD shim that makes the Nth call of a
 * chosen system/library function fail, in the style of SQLite's fault
 * simulation and curl's `runtests.pl -t`.  Built as a shared library for
 * the tests only (never installed); tests/e2e_faults.sh sweeps N.
 *
 * Environment (read once, at load):
 *   FAULT_CALL    write | fsync | rename | mmap | malloc | open | gemm  (one class;
 *                 write = write/pwrite/pwrite64/writev on regular files,
 *                 fsync = fsync/fdatasync, open = open/openat (+64) outside
 *                 /proc, /sys and /dev, malloc = malloc/calloc/realloc/
 *                 posix_memalign called from the program itself or SQLite,
 *                 gemm = dnnl_sgemm/cblas_sgemm: counted, failed never,
 *                 only useful with FAULT_ACTION=kill, e.g. inside k-means)
 *   FAULT_N       fail the Nth counted call of that class (1-based; 0 or
 *                 unset = never fail, only count)
 *   FAULT_ERRNO   ENOSPC | EIO | ENOMEM (default: ENOSPC, ENOMEM for
 *                 malloc and mmap)
 *   FAULT_PERSIST 1 = also fail every later call of the class (a full disk)
 *   FAULT_ARM     "signal": count nothing until SIGUSR2 arrives (a server
 *                 arms it before the request under test); any other value:
 *                 count from the first open of a path containing it (e.g.
 *                 "catalog.db"); unset: count from start-up
 *   FAULT_CTL     with FAULT_ARM=signal: a file holding "CLASS N ERRNO
 *                 PERSIST SEQ", read at each SIGUSR2 (which also resets the
 *                 counts), so one server process takes many injections;
 *                 SEQ is then written to FAULT_CTL.ack (the setting is live)
 *   FAULT_ACTION  kill: instead of failing the Nth call, the process sends
 *                 itself SIGKILL right there, before the call takes effect
 *                 (a kill -9 landing at a chosen point: tests/e2e_ann_kill.sh)
 *   FAULT_TRACE   set: print a backtrace to stderr at each injected fault
 *   FAULT_REPORT  file to which the counts per class and the number of
 *                 injected faults are appended at exit ("write 12 fsync 3
 *                 ... injected 1")
 *
 * Invariants: before arming nothing is counted, so the loader and libc
 * start-up, model loading etc. run untouched; the shim's own bookkeeping
 * never allocates.  malloc faults are limited to callers in the main
 * executable and libsqlite3 (their return address): glib's g_malloc and
 * the OpenMP runtime abort on failure by design, which is not a bug of the
 * program under test.  Counters are atomic; every thread counts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

enum { C_NONE = -1, C_WRITE, C_FSYNC, C_RENAME, C_MMAP, C_MALLOC, C_OPEN, C_GEMM, C_COUNT };
static const char *const k_names[C_COUNT] = {"write", "fsync", "rename", "mmap", "malloc", "open", "gemm"};

static int g_class = C_NONE;
static long g_n;
static int g_errno = ENOSPC;
static int g_persist;
static int g_trace;
static int g_kill;   /* FAULT_ACTION=kill */
static char g_arm_path[256];
static atomic_int g_armed;
static atomic_long g_count[C_COUNT];
static atomic_long g_injected;
static char g_report[512];

/* address ranges whose malloc calls may fail (main program, libsqlite3) */
#define MAX_RANGES 16
static struct { uintptr_t lo, hi; } g_ranges[MAX_RANGES];
static int g_n_ranges;

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static int range_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    int *first = data;
    int take = *first || (info->dlpi_name && strstr(info->dlpi_name, "libsqlite3"));
    *first = 0;
    if (!take) return 0;
    for (int i = 0; i < info->dlpi_phnum && g_n_ranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        g_ranges[g_n_ranges].lo = info->dlpi_addr + ph->p_vaddr;
        g_ranges[g_n_ranges].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        g_n_ranges++;
    }
    return 0;
}

static void arm(void)
{
    if (atomic_load(&g_armed)) return;
    int first = 1;
    dl_iterate_phdr(range_cb, &first);
    atomic_store(&g_armed, 1);
}

static char g_ctl[512];

static int class_of(const char *c, size_t n)
{
    for (int i = 0; i < C_COUNT; i++)
        if (strlen(k_names[i]) == n && !strncmp(c, k_names[i], n)) return i;
    return C_NONE;
}

/* FAULT_CTL holds "CLASS N ERRNO PERSIST SEQ" (e.g. "write 3 EIO 0 17"): read at
 * each SIGUSR2, so one server process takes many injections.  Only
 * async-signal-safe calls here. */
static void read_ctl(char *seq, size_t seq_len)
{
    char buf[128];
    /* raw system calls: the wrappers below would count (and fail) these */
    int fd = g_ctl[0] ? (int)syscall(SYS_openat, AT_FDCWD, g_ctl, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) return;
    ssize_t len = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (len <= 0) return;
    buf[len] = '\0';
    char *f[5] = {buf, NULL, NULL, NULL, NULL};
    for (int i = 1; i < 5; i++) {
        char *sp = f[i - 1] ? strchr(f[i - 1], ' ') : NULL;
        if (!sp) break;
        *sp = '\0';
        f[i] = sp + 1;
    }
    g_class = class_of(f[0], strlen(f[0]));
    long n = 0;
    for (const char *d = f[1]; d && *d >= '0' && *d <= '9'; d++) n = n * 10 + (*d - '0');
    g_n = n;
    g_errno = g_class == C_MALLOC || g_class == C_MMAP ? ENOMEM : ENOSPC;
    if (f[2] && !strncmp(f[2], "EIO", 3)) g_errno = EIO;
    if (f[2] && !strncmp(f[2], "ENOMEM", 6)) g_errno = ENOMEM;
    g_persist = f[3] && f[3][0] == '1';
    size_t k = 0;
    for (const char *d = f[4]; d && *d >= '0' && *d <= '9' && k + 1 < seq_len; d++) seq[k++] = *d;
    seq[k] = '\0';
}

/* Acknowledge a SIGUSR2: FAULT_CTL.ack gets the control line's fifth
 * field (a sequence number), so the test knows the new setting is live. */
static void ack_ctl(const char *seq)
{
    char path[600];
    size_t n = strlen(g_ctl);
    if (n + 5 >= sizeof path) return;
    memcpy(path, g_ctl, n);
    memcpy(path + n, ".ack", 5);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    syscall(SYS_write, fd, seq, strlen(seq));
    syscall(SYS_close, fd);
}

static void on_sigusr2(int sig)
{
    (void)sig;
    int saved = errno;
    char seq[32] = "";
    read_ctl(seq, sizeof seq);
    for (int i = 0; i < C_COUNT; i++) atomic_store(&g_count[i], 0);
    atomic_store(&g_armed, 1);   /* ranges were taken at load for this mode */
    ack_ctl(seq);
    errno = saved;
}

/* 1 = this call must fail (errno set). */
static int hit(int c)
{
    if (!atomic_load_explicit(&g_armed, memory_order_relaxed)) return 0;
    long k = atomic_fetch_add(&g_count[c], 1) + 1;
    if (c != g_class || g_n <= 0 || (k != g_n && !(g_persist && k > g_n))) return 0;
    atomic_fetch_add(&g_injected, 1);
    if (g_trace) {   /* where: for debugging a finding (addr2line -e BIN -f OFFSET) */
        void *bt[24];
        int nb = backtrace(bt, 24);
        static const char head[] = "faultinject: injected here:\n";
        ssize_t w = write(2, head, sizeof head - 1);
        (void)w;
        backtrace_symbols_fd(bt, nb, 2);
    }
    if (g_kill) syscall(SYS_kill, getpid(), SIGKILL);   /* does not return */
    errno = g_errno;
    return 1;
}

static int from_traced_code(const void *ret)
{
    uintptr_t a = (uintptr_t)ret;
    for (int i = 0; i < g_n_ranges; i++)
        if (a >= g_ranges[i].lo && a < g_ranges[i].hi) return 1;
    return 0;
}

static int regular_fd(int fd)
{
    struct stat st;
    return fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static int counted_path(const char *p)
{
    if (!p) return 0;
    if (g_arm_path[0] && !atomic_load(&g_armed) && strstr(p, g_arm_path)) arm();
    return strncmp(p, "/proc/", 6) && strncmp(p, "/sys/", 5) && strncmp(p, "/dev/", 5);
}

__attribute__((constructor)) static void fi_init(void)
{
    const char *c = getenv("FAULT_CALL"), *n = getenv("FAULT_N"), *e = getenv("FAULT_ERRNO");
    const char *p = getenv("FAULT_PERSIST"), *a = getenv("FAULT_ARM"), *r = getenv("FAULT_REPORT");
    for (int i = 0; c && i < C_COUNT; i++)
        if (!strcmp(c, k_names[i])) g_class = i;
    g_n = n ? strtol(n, NULL, 10) : 0;
    if (g_class == C_MALLOC || g_class == C_MMAP) g_errno = ENOMEM;
    if (e && !strcmp(e, "EIO")) g_errno = EIO;
    if (e && !strcmp(e, "ENOSPC")) g_errno = ENOSPC;
    if (e && !strcmp(e, "ENOMEM")) g_errno = ENOMEM;
    g_persist = p && p[0] == '1';
    g_trace = getenv("FAULT_TRACE") != NULL;
    g_kill = getenv("FAULT_ACTION") && !strcmp(getenv("FAULT_ACTION"), "kill");
    if (g_trace) {   /* backtrace() loads libgcc on its first call: not inside a fault */
        void *bt[2];
        backtrace(bt, 2);
    }
    if (r) snprintf(g_report, sizeof g_report, "%s", r);
    const char *ctl = getenv("FAULT_CTL");
    if (ctl) snprintf(g_ctl, sizeof g_ctl, "%s", ctl);
    if (a && !strcmp(a, "signal")) {
        int first = 1;
        dl_iterate_phdr(range_cb, &first);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigusr2;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGUSR2, &sa, NULL);
    } else if (a && a[0]) {
        snprintf(g_arm_path, sizeof g_arm_path, "%s", a);
    } else {
        arm();
    }
}

__attribute__((destructor)) static void fi_report(void)
{
    if (!g_report[0]) return;
    int fd = open(g_report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[512];
    int at = 0;
    for (int i = 0; i < C_COUNT && at < (int)sizeof line; i++)
        at += snprintf(line + at, sizeof line - (size_t)at, "%s %ld ", k_names[i], atomic_load(&g_count[i]));
    if (at < (int)sizeof line)
        snprintf(line + at, sizeof line - (size_t)at, "injected %ld\n", atomic_load(&g_injected));
    ssize_t w = write(fd, line, strlen(line));
    (void)w;
    close(fd);
}

/* ---- the wrapped calls ---------------------------------------------------- */

#define REAL(ret, name, ...)                                            \
    static ret (*real_##name)(__VA_ARGS__);                             \
    if (!real_##name) real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(ssize_t, write, int, const void *, size_t);
    if (regular_fd(fd) && hit(C_WRITE)) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    if (regular_fd(fd) && hit(C_WRITE)) return -1;
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    if (regular_fd(fd) && hit(C_WRITE)) return -1;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    REAL(ssize_t, writev, int, const struct iovec *, int);
    if (regular_fd(fd) && hit(C_WRITE)) return -1;
    return real_writev(fd, iov, n);
}

int fsync(int fd)
{
    REAL(int, fsync, int);
    if (hit(C_FSYNC)) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(int, fdatasync, int);
    if (hit(C_FSYNC)) return -1;
    return real_fdatasync(fd);
}

int rename(const char *a, const char *b)
{
    REAL(int, rename, const char *, const char *);
    if (hit(C_RENAME)) return -1;
    return real_rename(a, b);
}

int renameat(int da, const char *a, int db, const char *b)
{
    REAL(int, renameat, int, const char *, int, const char *);
    if (hit(C_RENAME)) return -1;
    return real_renameat(da, a, db, b);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(void *, mmap, void *, size_t, int, int, int, off_t);
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MMAP)) return MAP_FAILED;
    return real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(void *, mmap64, void *, size_t, int, int, int, off_t);
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MMAP)) return MAP_FAILED;
    return real_mmap64(addr, len, prot, flags, fd, off);
}

#define OPEN_MODE(flags, mode)                       \
    mode_t mode = 0;                                 \
    if ((flags) & (O_CREAT | __O_TMPFILE)) {         \
        va_list ap;                                  \
        va_start(ap, flags);                         \
        mode = (mode_t)va_arg(ap, int);              \
        va_end(ap);                                  \
    }

int open(const char *p, int flags, ...)
{
    REAL(int, open, const char *, int, ...);
    OPEN_MODE(flags, mode);
    if (counted_path(p) && hit(C_OPEN)) return -1;
    return real_open(p, flags, mode);
}

int open64(const char *p, int flags, ...)
{
    REAL(int, open64, const char *, int, ...);
    OPEN_MODE(flags, mode);
    if (counted_path(p) && hit(C_OPEN)) return -1;
    return real_open64(p, flags, mode);
}

int openat(int dfd, const char *p, int flags, ...)
{
    REAL(int, openat, int, const char *, int, ...);
    OPEN_MODE(flags, mode);
    if (counted_path(p) && hit(C_OPEN)) return -1;
    return real_openat(dfd, p, flags, mode);
}

int openat64(int dfd, const char *p, int flags, ...)
{
    REAL(int, openat64, int, const char *, int, ...);
    OPEN_MODE(flags, mode);
    if (counted_path(p) && hit(C_OPEN)) return -1;
    return real_openat64(dfd, p, flags, mode);
}

void *malloc(size_t n)
{
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MALLOC)) return NULL;
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MALLOC)) return NULL;
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (n && from_traced_code(__builtin_return_address(0)) && hit(C_MALLOC)) return NULL;
    return __libc_realloc(p, n);
}

char *strdup(const char *s)
{
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MALLOC)) return NULL;
    size_t n = strlen(s) + 1;
    char *d = __libc_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MALLOC)) return NULL;
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (from_traced_code(__builtin_return_address(0)) && hit(C_MALLOC)) return ENOMEM;
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* GEMM entry points (libdnnl, libopenblas): counted only, so that
 * FAULT_ACTION=kill can land inside a computation that makes no system
 * call (k-means).  Prototypes written out: no build dependency on either. */
int dnnl_sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    REAL(int, dnnl_sgemm, char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
         const float *, int64_t, float, float *, int64_t);
    hit(C_GEMM);
    return real_dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc)
{
    REAL(void, cblas_sgemm, int, int, int, int, int, int, float, const float *, int, const float *, int,
         float, float *, int);
    hit(C_GEMM);
    real_cblas_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
