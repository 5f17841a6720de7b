/*
 * pool.h - a fork/join for the latency-critical kernels that never waits
 * for a thread that has not started.
 *
 * cdx_par_for(n, threads, fn, arg) runs fn(arg, i, slot) for every i in
 * [0, n), spread over the calling thread (slot 0) and pool workers 1 ..
 * threads-1 (slot = the worker's permanent number, so two items running at
 * the same time never share a slot: per-thread scratch is indexed by it),
 * and returns when all are done.  Items are claimed one at a time from a shared
 * counter; the caller claims too, so when a worker is asleep, descheduled
 * or busy elsewhere the caller simply does its share: the only wait is for
 * items already running on another thread.  (OpenMP's fork/join ends with
 * a barrier every team thread must reach, so one preempted thread stalls
 * the whole region for a scheduler time slice: on this shared 2-core
 * machine that turned a 4 ms text query into a 95 ms p99; see
 * docs/engine.md "Steady latency".)
 *
 * Invariants: items of one call may run concurrently and in any order; fn
 * must not throw away work (every item runs exactly once).  The pool serves
 * one call at a time: a call made while it is busy (another thread, or from
 * inside an item) runs all its items on the calling thread.  Workers are
 * created on first need (at most CDX_POOL_MAX - 1, never freed), spin
 * briefly after a job for the next one, then sleep on a futex.
 * Nothing allocates after a worker exists.
 */
#ifndef CDX_COMMON_POOL_H
#define CDX_COMMON_POOL_H

#define CDX_POOL_MAX 64

typedef void (*cdx_par_fn)(void *arg, int item, int slot);

/* fn(arg, i, slot) for i in [0, n), on up to `threads` threads (the caller
 * included; threads <= 1 or n <= 1 runs inline with slot 0); slot < threads. */
void cdx_par_for(int n, int threads, cdx_par_fn fn, void *arg);

/* 1 while the calling thread runs an item of cdx_par_for (nested parallel
 * work should then stay on this thread). */
int cdx_par_inside(void);

#endif
