/*
 * pool.c - the claim-counter fork/join of pool.h.
 *
 * Shared state (one job at a time, guarded by a try-lock):
 *   claim  64-bit word gen:24 | threads:8 | n:16 | next:16.  Worker w
 *          (1 .. CDX_POOL_MAX-1) takes part only when w < threads; it owns
 *          item `next` of job `gen` when its compare-and-swap from v to v+1
 *          succeeds, so a stale v (an older job) never succeeds and a late
 *          worker never runs an item of a job it did not see published.
 *          More than 65535 items are grouped (`per` items per claim).
 *   job    fn/arg/per/n of the current job: written by the submitter before
 *          the claim word is published (release), read by a claimer after
 *          its successful claim (acquire).  The submitter overwrites them
 *          only after `done` reached the claim count, i.e. when no claimer
 *          of the old job is left.
 *   done   claims finished (release), polled by the submitter.
 *   seq    futex word bumped per job; idle workers spin on it for
 *          SPIN_NS, then sleep (counted in `sleepers`, so the submitter only
 *          makes the wake-up system call when someone sleeps).
 */
#include "common/pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 100000L   /* a worker's busy wait for the next job (100 us) */
#define MAX_CLAIMS 0xFFFF

static pthread_mutex_t submit = PTHREAD_MUTEX_INITIALIZER;  /* one job at a time */
static pthread_mutex_t grow = PTHREAD_MUTEX_INITIALIZER;    /* worker creation */
/* claim, done and seq on separate cache lines: idle workers poll seq while
 * the busy ones update claim and done */
static _Alignas(64) uint64_t claim;
static _Alignas(64) int done;
static _Alignas(64) unsigned seq;
static int sleepers, n_workers;
static cdx_par_fn job_fn;
static void *job_arg;
static int job_n, job_per;
static _Thread_local int inside;

int cdx_par_inside(void)
{
    return inside;
}

#define GEN(v) ((v) >> 40)
#define THREADS(v) ((int)(((v) >> 32) & 0xFF))
#define NCLAIMS(v) ((int)(((v) >> 16) & 0xFFFF))
#define NEXT(v) ((int)((v) & 0xFFFF))

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs items of the published job until none is left. */
static void run_items(int slot)
{
    uint64_t v = __atomic_load_n(&claim, __ATOMIC_ACQUIRE);
    while (slot < THREADS(v) && NEXT(v) < NCLAIMS(v)) {
        if (!__atomic_compare_exchange_n(&claim, &v, v + 1, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;   /* v now holds the current word */
        cdx_par_fn fn = job_fn;
        void *arg = job_arg;
        int i0 = NEXT(v) * job_per, i1 = i0 + job_per < job_n ? i0 + job_per : job_n;
        inside = 1;
        for (int i = i0; i < i1; i++) fn(arg, i, slot);
        inside = 0;
        __atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
        v = __atomic_load_n(&claim, __ATOMIC_ACQUIRE);
    }
}

static void *worker(void *p)
{
    const int slot = (int)(intptr_t)p;
    unsigned seen = __atomic_load_n(&seq, __ATOMIC_ACQUIRE);
    for (;;) {
        long t0 = now_ns();
        unsigned s;
        int spins = 0;
        while ((s = __atomic_load_n(&seq, __ATOMIC_ACQUIRE)) == seen) {
            cpu_relax();
            if (++spins % 64 == 0 && now_ns() - t0 > SPIN_NS) {
                __atomic_fetch_add(&sleepers, 1, __ATOMIC_SEQ_CST);
                if (__atomic_load_n(&seq, __ATOMIC_SEQ_CST) == seen)
                    syscall(SYS_futex, &seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
                __atomic_fetch_sub(&sleepers, 1, __ATOMIC_SEQ_CST);
                t0 = now_ns();
            }
        }
        seen = s;
        run_items(slot);
    }
    return NULL;
}

/* Makes sure workers 1 .. want exist; returns how many do (a failed
 * pthread_create only means fewer helpers). */
static int ensure_workers(int want)
{
    int have = __atomic_load_n(&n_workers, __ATOMIC_ACQUIRE);
    if (have >= want) return have;
    pthread_mutex_lock(&grow);
    while (n_workers < want) {
        pthread_t t;
        pthread_attr_t at;
        if (pthread_attr_init(&at)) break;
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 1024 * 1024);
        int r = pthread_create(&t, &at, worker, (void *)(intptr_t)(n_workers + 1));
        pthread_attr_destroy(&at);
        if (r) break;
        __atomic_store_n(&n_workers, n_workers + 1, __ATOMIC_RELEASE);
    }
    have = n_workers;
    pthread_mutex_unlock(&grow);
    return have;
}

void cdx_par_for(int n, int threads, cdx_par_fn fn, void *arg)
{
    if (n <= 0) return;
    if (threads > CDX_POOL_MAX) threads = CDX_POOL_MAX;
    if (threads < 2 || n < 2 || ensure_workers(threads - 1) < 1 || pthread_mutex_trylock(&submit)) {
        int was = inside;
        inside = 1;
        for (int i = 0; i < n; i++) fn(arg, i, 0);
        inside = was;
        return;
    }
    const int per = (n + MAX_CLAIMS - 1) / MAX_CLAIMS, nclaims = (n + per - 1) / per;
    job_fn = fn;
    job_arg = arg;
    job_n = n;
    job_per = per;
    __atomic_store_n(&done, 0, __ATOMIC_RELAXED);
    uint64_t gen = (GEN(__atomic_load_n(&claim, __ATOMIC_RELAXED)) + 1) & 0xFFFFFF;
    __atomic_store_n(&claim, gen << 40 | (uint64_t)threads << 32 | (uint64_t)nclaims << 16,
                     __ATOMIC_RELEASE);
    __atomic_fetch_add(&seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sleepers, __ATOMIC_SEQ_CST) > 0)
        syscall(SYS_futex, &seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
    run_items(0);
    /* only claims already running elsewhere are left: wait for them,
     * yielding the core now and then in case their thread shares it */
    for (int spins = 0; __atomic_load_n(&done, __ATOMIC_ACQUIRE) < nclaims; spins++) {
        cpu_relax();
        if (spins % 256 == 255) sched_yield();
    }
    pthread_mutex_unlock(&submit);
}
