/*
 * ann_bench.c - the approximate index against the exact scan and against
 * FAISS and hnswlib, on the same generated CLIP-like data in the same run.
 *
 *   ann_bench [--n N] [--dim D] [--nq Q] [--probes 8,16,32,64] [--nlist L] [--threads T]
 *             [--dir DIR] [--no-faiss] [--faiss-only hnsw,ivfflat,ivfsq8,ivfpq]
 *             [--no-hnswlib] [--hnsw-ef LIST]
 *             [--crossover] [--json] [--index FILE]
 *
 * Data (bench/ann_synth.h): clustered with Zipf-sized clusters, a shared
 * mean direction, decaying variance, text-like queries from a shifted
 * distribution, unit length.  Ground truth: the exact top-10 (search/topk).
 * For every method and knob setting it prints recall@10 against exact,
 * p50 / p99 latency of one query at a time using all cores, queries/s with
 * T queries in flight (one per thread), resident bytes per image of the
 * index, and build time.  Competitors run as child processes on the same
 * files written to DIR: bench/ann_faiss.py (python3-faiss: IndexHNSWFlat
 * M=32, IndexIVFFlat, IndexIVFScalarQuantizer SQ8, IndexIVFPQ) and
 * bench/ann_hnswlib.cpp (libhnswlib-dev, compiled here with g++ -O3
 * -march=native); each is skipped with a message when missing.
 * --crossover measures where the index starts to beat the exact scan (the
 * library's ann_min_rows).  --index FILE keeps the built index in FILE
 * (ann_file format) and loads it on later runs instead of building (the
 * build time printed is then the saved one): a 10M query sweep no longer
 * waits for a 7-minute build.  Every line of --json output is one JSON
 * object.
 */
#include "search/ann_file.h"
#include "search/ann_ivf.h"
#include "search/topk.h"
#include "common/util.h"

#include "ann_synth.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <libgen.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define K 10
#define MAX_KNOBS 16
#define DATA_MAGIC "CDXANNB1"
#define DATA_HEADER_BYTES 4096
#define DATA_BLOCK 16384
#define DATA_SEED 2024

static int json;
static int T;

static void die(const char *what)
{
    fprintf(stderr, "ann_bench: %s: %s\n", what, cdx_last_error());
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    const char *method;
    char knob[64];
    double recall, p50, p99, qps, bytes, build_s;
    double scan;   /* share of the codes scanned per query */
} result;

static void print_result(const result *r, uint64_t n, int dim)
{
    if (json)
        printf("{\"method\": \"%s\", \"knob\": \"%s\", \"n\": %llu, \"dim\": %d, \"recall10\": %.4f, "
               "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"qps\": %.1f, \"bytes_per_image\": %.0f, "
               "\"build_s\": %.2f, \"scanned\": %.4f}\n", r->method, r->knob, (unsigned long long)n, dim, r->recall,
               r->p50, r->p99, r->qps, r->bytes, r->build_s, r->scan);
    else
        printf("%-26s %-14s recall@10 %.4f  p50 %7.3f ms  p99 %7.3f ms  %8.1f q/s  %6.0f B/img  build %.1f s  scanned %.2f%%\n",
               r->method, r->knob, r->recall, r->p50, r->p99, r->qps, r->bytes, r->build_s, 100 * r->scan);
    fflush(stdout);
}

/* ---------------------------------------------------------------- searchers */

typedef struct bench_ctx {
    const cdx_rows *src;
    const float *queries;
    int dim;
    size_t nq;
    const ann_ivf *ix;      /* NULL = exact scan */
    int probes;
    int threads_per_query;
    topk_hit *out;          /* nq x K */
    int bits, prefetch;     /* ann_search_params of the same names */
    size_t bits_keep, rescore;
    uint64_t scanned;       /* codes scanned, summed over the throughput pass */
} bench_ctx;

static void one_query(const bench_ctx *b, size_t q, int threads, topk_hit *h)
{
    size_t n = 0;
    cdx_result r;
    if (b->ix) {
        ann_search_params p = ann_default_search_params();
        p.k = K;
        p.probes = b->probes;
        p.n_threads = threads;
        p.bits = b->bits;
        p.bits_keep = b->bits_keep;
        p.rescore = b->rescore;
        p.prefetch = b->prefetch;
        uint64_t sc = 0;
        r = ann_ivf_search(b->ix, b->src, b->queries + q * b->dim, &p, h, &n, &sc);
        if (threads == 1) __atomic_fetch_add(&((bench_ctx *)b)->scanned, sc, __ATOMIC_RELAXED);
    } else {
        topk_params p = topk_default_params();
        p.k = K;
        p.n_threads = threads;
        r = topk_search(b->src, b->queries + q * b->dim, 1, &p, h, &n);
    }
    if (r) die("search");
    for (size_t i = n; i < K; i++) h[i] = (topk_hit){UINT64_MAX, -2};
}

typedef struct worker {
    const bench_ctx *b;
    size_t from, to;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (size_t q = w->from; q < w->to; q++) one_query(w->b, q, 1, w->b->out + q * K);
    return NULL;
}

/* Latency (one query at a time, all cores) over up to lat_q queries, then
 * throughput with T threads each running its share of all queries (results
 * kept for recall). */
static void measure(bench_ctx *b, size_t lat_q, double *p50, double *p99, double *qps)
{
    double *lat = malloc(lat_q * sizeof *lat);
    topk_hit h[K];
    for (size_t q = 0; q < lat_q; q++) {
        double t0 = cdx_now();
        one_query(b, q % b->nq, b->threads_per_query, h);
        lat[q] = (cdx_now() - t0) * 1e3;
    }
    qsort(lat, lat_q, sizeof *lat, cmp_double);
    *p50 = lat[lat_q / 2];
    *p99 = lat[(size_t)(lat_q * 0.99)];
    free(lat);
    pthread_t th[64];
    worker w[64];
    double t0 = cdx_now();
    for (int t = 0; t < T; t++) {
        w[t] = (worker){b, b->nq * t / T, b->nq * (t + 1) / T};
        pthread_create(&th[t], NULL, worker_main, &w[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    *qps = b->nq / (cdx_now() - t0);
}

static double recall_of(const topk_hit *got, const topk_hit *truth, size_t nq)
{
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++)
                if (got[q * K + i].slot == truth[q * K + j].slot) hit++;
    return (double)hit / (nq * K);
}

static int opt_nlist;   /* --nlist: 0 = the library's automatic choice */
static void release_rows(uint64_t first, uint64_t m);

static int opt_group_probes = 8, opt_train_iters, opt_train_per_list;

static const char *index_path;   /* --index */

/* The index saved by an earlier run with the same data, or NULL. */
static ann_ivf *load_ivf(uint64_t n, int dim, double *secs, double *train_secs)
{
    char meta[4200];
    snprintf(meta, sizeof meta, "%s.meta", index_path);
    FILE *f = fopen(meta, "r");
    unsigned long long mn = 0;
    if (!f) return NULL;
    int ok = fscanf(f, "%llu %lf %lf", &mn, secs, train_secs) == 3 && mn == n;
    fclose(f);
    ann_ivf *ix = NULL;
    ann_file_header h;
    ann_file_report rep;
    if (!ok || ann_file_load(index_path, dim, &h, &ix, &rep)) return NULL;
    if (rep.rows != n) {
        ann_ivf_free(ix);
        return NULL;
    }
    ann_ivf_set_group_probes(ix, opt_group_probes);
    fprintf(stderr, "ann_bench: index loaded from %s\n", index_path);
    return ix;
}

static ann_ivf *build_ivf(const cdx_rows *src, uint64_t n, double *secs, double *train_secs)
{
    if (index_path) {
        ann_ivf *ix = load_ivf(n, src->dim, secs, train_secs);
        if (ix) return ix;
    }
    double t0 = cdx_now();
    ann_ivf *ix;
    ann_ivf_train_params tp = ann_ivf_default_train_params();
    tp.nlist = opt_nlist;
    if (opt_train_iters) tp.iters = opt_train_iters;
    if (opt_train_per_list) tp.per_list = (size_t)opt_train_per_list;
    if (ann_ivf_train(src, n, &tp, &ix)) die("train");
    *train_secs = cdx_now() - t0;
    ann_ivf_set_group_probes(ix, opt_group_probes);
    ann_file_writer *w = NULL;
    ann_file_header h = {src->dim, ann_ivf_nlist(ix), n, {0}};
    if (index_path && ann_file_create(index_path, &h, ix, &w)) die("index file");
    double save_s = 0;
    for (uint64_t first = 0; first < n; first += 65536) {
        ann_segment seg;
        size_t m = n - first < 65536 ? (size_t)(n - first) : 65536;
        if (ann_ivf_encode(ix, src, first, m, &seg) || ann_ivf_insert(ix, &seg)) die("encode");
        double ts = cdx_now();
        if (w && ann_file_write_segment(w, &seg)) die("index file");
        save_s += cdx_now() - ts;
        ann_segment_free(&seg);
        release_rows(first, m);
    }
    double ts = cdx_now();
    if (w && ann_file_commit(w)) die("index file");
    save_s += cdx_now() - ts;
    *secs = cdx_now() - t0 - save_s;   /* writing the file is not building */
    if (index_path) {
        char meta[4200];
        snprintf(meta, sizeof meta, "%s.meta", index_path);
        FILE *f = fopen(meta, "w");
        if (!f || fprintf(f, "%llu %.3f %.3f\n", (unsigned long long)n, *secs, *train_secs) < 0 || fclose(f))
            die("index meta");
    }
    return ix;
}

/* Take (1) or release (0) the machine-wide timing lock. */
static void bench_lock(const char *path, int take)
{
    static int fd = -1;
    if (take) {
        fd = open(path, O_RDWR | O_CREAT, 0666);
        double t0 = cdx_now();
        if (fd < 0 || flock(fd, LOCK_EX) != 0) die("taking the timing lock");
        fprintf(stderr, "ann_bench: timing lock %s taken after %.0f s\n", path, cdx_now() - t0);
    } else if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
        fd = -1;
    }
}

/* Resident memory of this process (kB from /proc/self/status). */
static void print_mem(const char *when)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    long rss = 0, anon = 0, file = 0, hwm = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) rss = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "RssAnon:", 8)) anon = strtol(line + 8, NULL, 10);
        else if (!strncmp(line, "RssFile:", 8)) file = strtol(line + 8, NULL, 10);
        else if (!strncmp(line, "VmHWM:", 6)) hwm = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    fprintf(stderr, "ann_bench: memory %s: resident %.2f GB (anonymous %.2f GB, mapped file %.2f GB), peak %.2f GB\n",
            when, rss / 1048576.0, anon / 1048576.0, file / 1048576.0, hwm / 1048576.0);
    if (json)
        printf("{\"memory\": \"%s\", \"rss_bytes\": %ld, \"anon_bytes\": %ld, \"file_bytes\": %ld, \"peak_bytes\": %ld}\n",
               when, rss * 1024, anon * 1024, file * 1024, hwm * 1024);
    fflush(stdout);
}

/* ---------------------------------------------------------------- competitors */

static int write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, bytes, f);
    return fclose(f) == 0 && w == bytes ? 0 : -1;
}

/* Run argv, forwarding its stdout lines; nonzero on failure. */
static int run(char *const argv[])
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "ann_bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *faiss_only = "hnsw,ivfflat,ivfsq8,ivfpq";
static const char *base_file;   /* the data file (base vectors at DATA_HEADER_BYTES), or NULL */

static void competitors(const char *dir, int do_faiss, int do_hnsw, const char *probes,
                        const char *hnsw_ef, int nlist)
{
    /* the drivers sit next to this file; __FILE__ is relative when ccache
     * rewrote paths (CCACHE_BASEDIR): then $CLIPDEX_SRC/bench, if set */
    char here[4096];
    snprintf(here, sizeof here, "%s", __FILE__);
    const char *bdir = dirname(here);
    char probe[4200], alt[4096];
    snprintf(probe, sizeof probe, "%s/ann_faiss.py", bdir);
    if (access(probe, R_OK) != 0 && getenv("CLIPDEX_SRC")) {
        snprintf(alt, sizeof alt, "%s/bench", getenv("CLIPDEX_SRC"));
        bdir = alt;
    }
    char nthr[16], nl[16], script[4200], cpp[4200], exe[4200];
    snprintf(nthr, sizeof nthr, "%d", T);
    snprintf(nl, sizeof nl, "%d", nlist);
    if (do_faiss) {
        snprintf(script, sizeof script, "%s/ann_faiss.py", bdir);
        /* Debian's python3-faiss lives in the system interpreter */
        char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
        char *argv[] = {py, script, "--dir", (char *)dir, "--threads", nthr, "--nlist", nl,
                        "--probes", (char *)probes, "--hnsw-ef", (char *)hnsw_ef,
                        "--only", (char *)faiss_only, json ? "--json" : NULL, NULL, NULL, NULL, NULL, NULL};
        char off[32];
        snprintf(off, sizeof off, "%d", DATA_HEADER_BYTES);
        if (base_file) {
            int a = json ? 15 : 14;
            argv[a] = "--base";
            argv[a + 1] = (char *)base_file;
            argv[a + 2] = "--base-offset";
            argv[a + 3] = off;
        }
        if (run(argv)) fprintf(stderr, "ann_bench: FAISS skipped (python3-faiss missing or failed)\n");
    }
    if (do_hnsw && base_file) {
        fprintf(stderr, "ann_bench: hnswlib skipped (it reads an in-memory base.f32; at this size the data "
                        "stays in %s)\n", base_file);
    } else if (do_hnsw) {
        snprintf(cpp, sizeof cpp, "%s/ann_hnswlib.cpp", bdir);
        snprintf(exe, sizeof exe, "%s/ann_hnswlib", dir);
        if (access("/usr/include/hnswlib/hnswlib.h", R_OK) != 0) {
            fprintf(stderr, "ann_bench: hnswlib skipped (apt-get install libhnswlib-dev)\n");
            return;
        }
        char *cc[] = {"g++", "-O3", "-march=native", "-fopenmp", "-o", exe, cpp, "-lpthread", NULL};
        if (run(cc)) {
            fprintf(stderr, "ann_bench: hnswlib skipped (compiling %s failed)\n", cpp);
            return;
        }
        char *argv[] = {exe, "--dir", (char *)dir, "--threads", nthr, "--ef", (char *)hnsw_ef,
                        json ? "--json" : NULL, NULL};
        if (run(argv)) fprintf(stderr, "ann_bench: hnswlib failed\n");
    }
}

/* ---------------------------------------------------------------- data */

/* The base vectors, queries and exact top-K.  With a path the base vectors
 * live in a file (mapped read-only, so 10M x 512 float32 never sits in
 * anonymous memory): HEADER_BYTES of header, n x dim float32, nq x dim
 * float32 queries, nq x K ground truth.  The file is generated block by
 * block (the exact top-K merged per block while the block is in cache) and
 * reused by a later run with the same n, dim, nq and seed. */

typedef struct data_header {
    char magic[8];
    uint64_t n, nq, seed, complete;
    int32_t dim, k;
} data_header;

typedef struct bench_data {
    float *base, *queries;
    topk_hit *truth;
    void *map;
    size_t map_bytes;
    const char *path;
    int reused;
    double gen_s, truth_s;
} bench_data;

static int pwrite_all(int fd, const void *p, size_t bytes, uint64_t off)
{
    const char *c = p;
    while (bytes) {
        ssize_t w = pwrite(fd, c, bytes > (1u << 30) ? (1u << 30) : bytes, (off_t)off);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return -1;
        }
        c += w;
        bytes -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Merge the block's top-K (slots relative to `first`) into the running
 * top-K of one query (both ordered best first). */
static void merge_topk(topk_hit *run, const topk_hit *blk, size_t nb, uint64_t first)
{
    topk_hit out[K];
    size_t i = 0, j = 0;
    for (int o = 0; o < K; o++) {
        topk_hit b = j < nb ? (topk_hit){blk[j].slot + first, blk[j].score} : (topk_hit){UINT64_MAX, -INFINITY};
        if (i < K && (j >= nb || !topk_hit_better(&b, &run[i]))) out[o] = run[i++];
        else {
            out[o] = b;
            j++;
        }
    }
    memcpy(run, out, sizeof out);
}

/* Generate rows [0, n) into `dst` (memory) or fd (file), block by block,
 * with the exact top-K of every query. */
static void data_generate(bench_data *d, int fd, uint64_t n, int dim, size_t nq)
{
    ann_synth g;
    if (synth_init(&g, dim, n, DATA_SEED)) die("synth");
    for (size_t i = 0; i < nq; i++) synth_query(&g, i, d->queries + i * dim);
    for (size_t i = 0; i < nq * K; i++) d->truth[i] = (topk_hit){UINT64_MAX, -INFINITY};
    float *buf = fd >= 0 ? cdx_alloc_aligned((size_t)DATA_BLOCK * dim, sizeof(float)) : NULL;
    topk_hit *bh = malloc(nq * K * sizeof *bh);
    size_t *nh = malloc(nq * sizeof *nh);
    if ((fd >= 0 && !buf) || !bh || !nh) die("out of memory");
    topk_params tp = topk_default_params();
    tp.k = K;
    double gen = 0, tru = 0;
    for (uint64_t first = 0; first < n; first += DATA_BLOCK) {
        size_t m = n - first < DATA_BLOCK ? (size_t)(n - first) : DATA_BLOCK;
        float *blk = fd >= 0 ? buf : d->base + first * dim;
        double t0 = cdx_now();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < m; i++) synth_image(&g, first + i, blk + i * dim);
        if (fd >= 0 && pwrite_all(fd, blk, m * (size_t)dim * sizeof(float),
                                  DATA_HEADER_BYTES + first * (uint64_t)dim * sizeof(float)))
            die("writing the data file");
        double t1 = cdx_now();
        cdx_rows br = cdx_rows_array(blk, m, dim, (size_t)dim * sizeof(float));
        for (size_t q = 0; q < nq; q += 64) {
            size_t mq = nq - q < 64 ? nq - q : 64;
            if (topk_search(&br, d->queries + q * dim, mq, &tp, bh + q * K, nh + q)) die("truth");
        }
        for (size_t q = 0; q < nq; q++) merge_topk(d->truth + q * K, bh + q * K, nh[q], first);
        gen += t1 - t0;
        tru += cdx_now() - t1;
        if (fd >= 0 && (first / DATA_BLOCK) % 64 == 63) {
            /* keep dirty pages few and the page cache for the others */
            fdatasync(fd);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            fprintf(stderr, "ann_bench: generated %llu / %llu rows (%.0f s + %.0f s truth)\n",
                    (unsigned long long)(first + m), (unsigned long long)n, gen, tru);
        }
    }
    synth_free(&g);
    cdx_free_aligned(buf);
    free(bh);
    free(nh);
    d->gen_s = gen;
    d->truth_s = tru;
}

static void data_open(bench_data *d, const char *path, uint64_t n, int dim, size_t nq)
{
    memset(d, 0, sizeof *d);
    d->path = path;
    d->queries = malloc(nq * (size_t)dim * sizeof(float));
    d->truth = malloc(nq * K * sizeof *d->truth);
    if (!d->queries || !d->truth) die("out of memory");
    if (!path) {
        d->base = cdx_alloc_aligned(n * (size_t)dim, sizeof(float));
        if (!d->base) die("out of memory");
        data_generate(d, -1, n, dim, nq);
        return;
    }
    uint64_t qoff = DATA_HEADER_BYTES + n * (uint64_t)dim * sizeof(float);
    uint64_t toff = qoff + nq * (uint64_t)dim * sizeof(float);
    uint64_t total = toff + nq * K * sizeof(topk_hit);
    data_header h = {0};
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd >= 0 && pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && !memcmp(h.magic, DATA_MAGIC, 8) &&
        h.n == n && h.dim == dim && h.nq == nq && h.k == K && h.seed == DATA_SEED && h.complete == 1 &&
        fstat(fd, &st) == 0 && (uint64_t)st.st_size == total &&
        pread(fd, d->queries, nq * (size_t)dim * sizeof(float), (off_t)qoff) == (ssize_t)(nq * dim * sizeof(float)) &&
        pread(fd, d->truth, nq * K * sizeof *d->truth, (off_t)toff) == (ssize_t)(nq * K * sizeof *d->truth)) {
        d->reused = 1;
    } else {
        if (fd >= 0) close(fd);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, (off_t)total) != 0) die("creating the data file");
        data_generate(d, fd, n, dim, nq);
        memcpy(h.magic, DATA_MAGIC, 8);
        h.n = n;
        h.nq = nq;
        h.seed = DATA_SEED;
        h.dim = dim;
        h.k = K;
        h.complete = 1;
        if (pwrite_all(fd, d->queries, nq * (size_t)dim * sizeof(float), qoff) ||
            pwrite_all(fd, d->truth, nq * K * sizeof *d->truth, toff) || fdatasync(fd) ||
            pwrite_all(fd, &h, sizeof h, 0) || fdatasync(fd))
            die("writing the data file");
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    }
    d->map_bytes = (size_t)qoff;
    d->map = mmap(NULL, d->map_bytes, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (d->map == MAP_FAILED) die("mapping the data file");
    d->base = (float *)((char *)d->map + DATA_HEADER_BYTES);
}

/* Drop the mapped pages of rows [first, first + m) from this process (they
 * stay in the page cache while the kernel has room for them). */
static void data_release(const bench_data *d, uint64_t first, uint64_t m, int dim)
{
    if (!d->map) return;
    uintptr_t a = (uintptr_t)(d->base + first * dim), e = (uintptr_t)(d->base + (first + m) * dim);
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    a = (a + pg - 1) & ~(pg - 1);
    e &= ~(pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

static const bench_data *g_data;   /* the open data, for release_rows */
static int g_dim;

static void release_rows(uint64_t first, uint64_t m)
{
    if (g_data) data_release(g_data, first, m, g_dim);
}

static void data_close(bench_data *d, int keep)
{
    if (d->map) {
        munmap(d->map, d->map_bytes);
        if (!keep && unlink(d->path) == 0)
            fprintf(stderr, "ann_bench: removed %s (--keep-data keeps it for the next run)\n", d->path);
    } else {
        cdx_free_aligned(d->base);
    }
    free(d->queries);
    free(d->truth);
    memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------- main */

static void crossover(const cdx_rows *all, const float *queries, int dim)
{
    static const uint64_t sizes[] = {1000, 2000, 5000, 10000, 25000, 50000, 100000, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes && sizes[i] <= all->count; i++) {
        cdx_rows src = *all;
        src.count = sizes[i];
        double bs, ts;
        ann_ivf *ix = build_ivf(&src, sizes[i], &bs, &ts);
        bench_ctx b = {&src, queries, dim, 200, NULL, 0, 1, NULL, 0, 0, 0, 0, 0};   /* one thread per query */
        b.out = malloc(200 * K * sizeof *b.out);
        double e50, e99, eq, a50, a99, aq;
        measure(&b, 200, &e50, &e99, &eq);
        b.ix = ix;
        b.probes = ann_ivf_default_probes(ann_ivf_nlist(ix));
        measure(&b, 200, &a50, &a99, &aq);
        if (json)
            printf("{\"crossover\": %llu, \"exact_p50_ms\": %.3f, \"ann_p50_ms\": %.3f, \"exact_qps\": %.1f, "
                   "\"ann_qps\": %.1f}\n", (unsigned long long)sizes[i], e50, a50, eq, aq);
        else
            printf("crossover n=%-8llu exact p50 %.3f ms (%.0f q/s)  ann p50 %.3f ms (%.0f q/s)\n",
                   (unsigned long long)sizes[i], e50, eq, a50, aq);
        free(b.out);
        ann_ivf_free(ix);
    }
}

int main(int argc, char **argv)
{
    uint64_t n = 100000;
    int dim = 512, do_faiss = 1, do_hnsw = 1, do_cross = 0;
    size_t nq = 1000;
    const char *data_path = NULL;
    int data_only = 0, keep_data = 0, check_assign = 0, opt_prefetch = 0;
    size_t opt_rescore = 0;
    long exact_q = -1;
    const char *keep_arg = "0", *lock_path = NULL, *bits_arg = "-1";
    static char default_data[256];
    const char *probes_arg = "4,8,16,32,64", *dir = "/tmp/clipdex-ann-bench", *hnsw_ef = "16,32,64,128,256";
    T = cdx_cpu_count();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "--n") && hv) n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--dim") && hv) dim = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--nq") && hv) nq = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--probes") && hv) probes_arg = argv[++i];
        else if (!strcmp(a, "--nlist") && hv) opt_nlist = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--hnsw-ef") && hv) hnsw_ef = argv[++i];
        else if (!strcmp(a, "--threads") && hv) T = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--dir") && hv) dir = argv[++i];
        else if (!strcmp(a, "--no-faiss")) do_faiss = 0;
        else if (!strcmp(a, "--faiss-only") && hv) faiss_only = argv[++i];
        else if (!strcmp(a, "--no-hnswlib")) do_hnsw = 0;
        else if (!strcmp(a, "--crossover")) do_cross = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--data") && hv) data_path = argv[++i];
        else if (!strcmp(a, "--data-only")) data_only = keep_data = 1;
        else if (!strcmp(a, "--keep-data")) keep_data = 1;
        else if (!strcmp(a, "--bits") && hv) bits_arg = argv[++i];
        else if (!strcmp(a, "--keep") && hv) keep_arg = argv[++i];
        else if (!strcmp(a, "--rescore") && hv) opt_rescore = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--prefetch")) opt_prefetch = 1;
        else if (!strcmp(a, "--group-probes") && hv) opt_group_probes = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--train-iters") && hv) opt_train_iters = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--train-per-list") && hv) opt_train_per_list = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--check-assign")) check_assign = 1;
        else if (!strcmp(a, "--exact-q") && hv) exact_q = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--lock") && hv) lock_path = argv[++i];
        else if (!strcmp(a, "--index") && hv) index_path = argv[++i];
        else {
            fprintf(stderr, "usage: ann_bench [--n N] [--dim D] [--nq Q] [--probes LIST] [--nlist L] [--hnsw-ef LIST] "
                            "[--threads T] [--dir DIR] [--no-faiss] [--faiss-only LIST] [--no-hnswlib] [--crossover] [--json]\n"
                            "                 [--data FILE] [--keep-data] [--data-only] [--bits LIST of -1|0|1] [--keep LIST]\n"
                            "                 [--rescore F] [--prefetch] [--group-probes G] [--train-iters I]\n"
                            "                 [--train-per-list S] [--check-assign] [--exact-q Q] [--lock FILE] [--index FILE]\n");
            return 2;
        }
    }
    if (n < 1000 || n > 100000000 || dim < 8 || dim > 4096 || nq < 10 || nq > 100000 || T < 1 || T > 64) {
        fprintf(stderr, "ann_bench: argument out of range\n");
        return 2;
    }
    omp_set_num_threads(T);
    if (!data_path && n > 2000000) {   /* 10M x 512 float32 = 20 GB: never in RAM */
        snprintf(default_data, sizeof default_data, "/tmp/clipdex-ann-data-%llu-%d-%zu.f32",
                 (unsigned long long)n, dim, nq);
        data_path = default_data;
    }
    /* data and ground truth (generated block by block, or reused) */
    bench_data dd;
    data_open(&dd, data_path, n, dim, nq);
    float *base = dd.base, *queries = dd.queries;
    g_data = &dd;
    g_dim = dim;
    topk_hit *truth = dd.truth;
    cdx_rows src = cdx_rows_array(base, n, dim, (size_t)dim * sizeof(float));
    fprintf(stderr, "ann_bench: %llu x %d %s (%s), %zu queries, %d threads; generation %.1f s, "
            "exact ground truth (batched, during generation) %.1f s\n",
            (unsigned long long)n, dim, dd.reused ? "reused" : "generated",
            data_path ? data_path : "in memory", nq, T, dd.gen_s, dd.truth_s);
    if (json)
        printf("{\"data\": \"%s\", \"n\": %llu, \"dim\": %d, \"nq\": %zu, \"reused\": %d, \"gen_s\": %.1f, "
               "\"truth_s\": %.1f}\n", data_path ? data_path : "memory", (unsigned long long)n, dim, nq,
               dd.reused, dd.gen_s, dd.truth_s);
    if (data_only) {
        data_close(&dd, keep_data);
        return 0;
    }
    if (do_cross) crossover(&src, queries, dim);
    /* exact scan (skipped by default when the data is larger than memory:
     * every query would read the whole file) */
    topk_hit *got = malloc(nq * K * sizeof *got);
    bench_ctx b = {&src, queries, dim, nq, NULL, 0, 0, got, 0, 0, 0, 0, 0};
    size_t lat_q = nq < 200 ? nq : 200;
    if (exact_q < 0) exact_q = dd.map ? 0 : (long)(nq < 200 ? nq : 200);
    if (exact_q > (long)nq) exact_q = (long)nq;
    if (lock_path && exact_q > 0) bench_lock(lock_path, 1);
    if (exact_q > 0) {
        result r = {"clipdex-exact-f32", "-", 0, 0, 0, 0, (double)dim * 4, 0, 1};
        bench_ctx be = b;
        be.nq = (size_t)exact_q;   /* the exact scan is slow: fewer queries */
        measure(&be, exact_q < 50 ? (size_t)exact_q : 50, &r.p50, &r.p99, &r.qps);
        r.recall = recall_of(got, truth, be.nq);
        print_result(&r, n, dim);
    }
    if (lock_path && exact_q > 0) bench_lock(lock_path, 0);
    /* ours: build (not under the lock), then every knob setting */
    double bs, ts;
    print_mem("before build");
    ann_ivf *ix = build_ivf(&src, n, &bs, &ts);
    int nlist = ann_ivf_nlist(ix);
    fprintf(stderr, "ann_bench: index of %d lists built in %.1f s (training %.1f s, assignment + encoding %.1f s)\n",
            nlist, bs, ts, bs - ts);
    if (json)
        printf("{\"build\": \"clipdex-ivf\", \"nlist\": %d, \"build_s\": %.1f, \"train_s\": %.1f, \"encode_s\": %.1f, "
               "\"index_bytes\": %llu, \"group_probes\": %d}\n", nlist, bs, ts, bs - ts,
               (unsigned long long)ann_ivf_bytes(ix), opt_group_probes);
    print_mem("after build");
    if (check_assign) {
        /* the two-level assignment against the exact one, on a sample */
        size_t m = n < 65536 ? (size_t)n : 65536;
        uint64_t first = n - m;
        ann_segment s1, s2;
        double t1 = cdx_now();
        ann_ivf_set_group_probes(ix, opt_group_probes);
        if (ann_ivf_encode(ix, &src, first, m, &s1)) die("encode");
        double t2 = cdx_now();
        ann_ivf_set_group_probes(ix, 0);
        if (ann_ivf_encode(ix, &src, first, m, &s2)) die("encode");
        double t3 = cdx_now();
        size_t diff = 0;
        for (size_t i = 0; i < m; i++) diff += s1.lists[i] != s2.lists[i];
        fprintf(stderr, "ann_bench: two-level assignment (%d groups probed) differs from the exact one for %.3f%% "
                "of %zu rows; %.2f s against %.2f s exact\n", opt_group_probes, 100.0 * diff / m, m, t2 - t1, t3 - t2);
        if (json)
            printf("{\"assign_check_rows\": %zu, \"group_probes\": %d, \"assign_differs\": %.5f, \"grouped_s\": %.2f, "
                   "\"exact_s\": %.2f}\n", m, opt_group_probes, (double)diff / m, t2 - t1, t3 - t2);
        ann_segment_free(&s1);
        ann_segment_free(&s2);
    }
    b.ix = ix;
    b.rescore = opt_rescore;
    b.prefetch = opt_prefetch;
    if (lock_path) bench_lock(lock_path, 1);
    double lock_t0 = cdx_now();
    for (const char *bm = bits_arg; *bm;) {
    int opt_bits = (int)strtol(bm, (char **)&bm, 10);
    if (*bm == ',') bm++;
    b.bits = opt_bits;
    const char *p = probes_arg;
    while (*p) {
        int pr = (int)strtol(p, (char **)&p, 10);
        if (*p == ',') p++;
        if (pr < 1) break;
        const char *kp = keep_arg;
        while (*kp) {
            long keep = strtol(kp, (char **)&kp, 10);
            if (*kp == ',') kp++;
            if (keep < 0) break;
            if (lock_path && cdx_now() - lock_t0 > 480) {   /* hold the shared lock <= ~10 min at a time */
                bench_lock(lock_path, 0);
                sleep(20);
                bench_lock(lock_path, 1);
                lock_t0 = cdx_now();
            }
            b.probes = pr;
            b.bits_keep = (size_t)keep;
            b.scanned = 0;
            result o = {opt_bits < 0 ? "clipdex-ivf-int8" : opt_bits > 0 ? "clipdex-ivf-sign+int8" : "clipdex-ivf",
                        "", 0, 0, 0, 0, (double)ann_ivf_bytes(ix) / n, bs, 0};
            if (opt_bits < 0) snprintf(o.knob, sizeof o.knob, "probes=%d/%d", pr, nlist);
            else snprintf(o.knob, sizeof o.knob, "probes=%d/%d,keep=%ld", pr, nlist, keep);
            if (opt_rescore) {
                size_t l = strlen(o.knob);
                snprintf(o.knob + l, sizeof o.knob - l, ",f32=%zu", opt_rescore);
            }
            measure(&b, lat_q, &o.p50, &o.p99, &o.qps);
            o.recall = recall_of(got, truth, nq);
            o.scan = (double)b.scanned / nq / n;
            print_result(&o, n, dim);
            if (opt_bits < 0) break;
        }
    }
    }
    if (lock_path) bench_lock(lock_path, 0);
    ann_ivf_free(ix);
    /* competitors on the same data */
    if (do_faiss || do_hnsw) {
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) die("mkdir");
        uint32_t *gt = malloc(nq * K * sizeof *gt);
        for (size_t i = 0; i < nq * K; i++) gt[i] = (uint32_t)truth[i].slot;
        uint32_t hdr[3] = {(uint32_t)n, (uint32_t)dim, (uint32_t)nq};
        if (write_file(dir, "shape.u32", hdr, sizeof hdr) ||
            (!dd.map && write_file(dir, "base.f32", base, n * (size_t)dim * sizeof(float))) ||
            write_file(dir, "queries.f32", queries, nq * (size_t)dim * sizeof(float)) ||
            write_file(dir, "gt.u32", gt, nq * K * sizeof *gt)) {
            fprintf(stderr, "ann_bench: cannot write the data to %s: competitors skipped\n", dir);
        } else {
            if (!dd.map) {   /* the children need the memory */
                cdx_free_aligned(dd.base);
                dd.base = base = NULL;
            } else {         /* they map the data file itself (ann_faiss.py --base) */
                base_file = dd.path;
            }
            competitors(dir, do_faiss, do_hnsw, probes_arg, hnsw_ef, nlist);
        }
        free(gt);
    }
    data_close(&dd, keep_data);
    free(got);
    return 0;
}
