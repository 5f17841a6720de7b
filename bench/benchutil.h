/*
 * benchutil.h - small helpers shared by the benchmarks (header only).
 *
 * bench_rss_mb() is the process's resident set now, in MB, from
 * /proc/self/statm (0 where that file is absent): what clip_bench and
 * startup_bench report as resident weights and memory.
 */
#ifndef CDX_BENCHUTIL_H
#define CDX_BENCHUTIL_H

#include <stdio.h>
#include <unistd.h>

static inline double bench_rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

#endif
