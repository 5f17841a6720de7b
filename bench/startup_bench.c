/*
 * startup_bench.c - what a user waits for before the first answer, on a
 * full-size model (default /tmp/clipdex-vitb32 from bench/make_random_clip.py),
 * next to the in-process text-query latency measured in the same run.
 *
 *   startup_bench [--json] [--model DIR] [--clipdex BIN] [--runs N]
 *                 [--precision fp32|int8|bf16]
 *
 * In a temporary directory it creates an empty library bound to the model
 * and a fresh engine cache ($CLIPDEX_CACHE_DIR), then measures:
 *  - `clipdex search --library L TEXT` from a new process (wall, CPU =
 *    user + sys, peak RSS): the first run with an empty engine cache (cold:
 *    hashes the weights, builds, packs and saves the text tower), then N warm
 *    runs (median wall and CPU, largest RSS), and N runs with
 *    CLIPDEX_PREPARED=0 (fingerprint cached, text tower converted and packed
 *    in memory every time);
 *  - `clipdex serve`: time from spawning it to the complete reply of its
 *    first GET /api/search?q=TEXT (warm engine cache);
 *  - in process: model open, first text encode (prepares the text tower),
 *    then the p50 of 50 text queries (8 tokens);
 *  - resident weights (section "Memory" of docs/engine.md): the growth of
 *    RSS from before the model is opened to after one text and one image
 *    encode, i.e. with every weight page touched once, for mapped prepared
 *    weights and for weights built in memory (CLIPDEX_PREPARED=0), each in a
 *    child process of its own; and the same (mapped) at int8 and at bf16
 *    (resident_weights_mb_int8, _bf16; bf16 runs on the reference kernels
 *    where the CPU lacks AVX512_BF16, which changes no byte of the weights).
 *
 * --precision P runs the search, serve and in-process query figures at P
 * (`search --precision P`, `serve --precision P`; the engine cache then
 * holds P's copies too); the resident-weights figures are always all four.
 *
 * Page cache: the model file and prepared files stay in the OS page cache
 * between runs ("warm page cache"); "cold" refers to the engine cache only.
 * Wall times on a loaded machine include waiting for a CPU: compare the CPU
 * times and the ratios measured in the same run.
 */
#include "benchutil.h"
#include "clipdex.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define QUERY "playing dogs"
#define MAX_RUNS 50

typedef struct run {
    double wall, cpu, rss_mb;
    int ok;
} run;

static char g_bin[PATH_MAX];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}

/* Run argv with the extra environment entry env (may be NULL), stdout to
 * /dev/null; wall clock, CPU and peak RSS from wait4. */
static run spawn_measure(char *const argv[], const char *env)
{
    run r = {0, 0, 0, 0};
    double t0 = cdx_now();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 1);
        if (env) putenv((char *)env);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return r;
    r.wall = cdx_now() - t0;
    r.cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
            (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    r.rss_mb = (double)ru.ru_maxrss / 1024.0;
    r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return r;
}

/* median wall / cpu, max rss over n runs */
static run summarise(const run *rs, int n)
{
    double w[MAX_RUNS], c[MAX_RUNS];
    run s = {0, 0, 0, 1};
    for (int i = 0; i < n; i++) {
        w[i] = rs[i].wall;
        c[i] = rs[i].cpu;
        if (rs[i].rss_mb > s.rss_mb) s.rss_mb = rs[i].rss_mb;
        s.ok &= rs[i].ok;
    }
    s.wall = median(w, n);
    s.cpu = median(c, n);
    return s;
}

/* ------------------------------------------------------------ serve */

static int http_search(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return 0;
    }
    const char req[] = "GET /api/search?q=playing%20dogs HTTP/1.1\r\nHost: localhost\r\n"
                       "Connection: close\r\n\r\n";
    int ok = write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1);
    char buf[4096];
    size_t got = 0;
    ssize_t n;
    while (ok && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
        got += (size_t)n;
        if (got == sizeof buf - 1) got = 64;   /* keep the status line */
    }
    buf[got] = '\0';
    close(fd);
    return ok && !strncmp(buf, "HTTP/1.1 200", 12);
}

/* Seconds from spawning `clipdex serve` to its first complete search
 * reply; -1 on failure. */
static double serve_first_answer(const char *lib, const char *prec)
{
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    double t0 = cdx_now();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 2);
        execl(g_bin, g_bin, "serve", "--library", lib, "--port", "0", "--access-log", "off",
              "--precision", prec, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[256];
    size_t k = 0;
    char c;
    while (k + 1 < sizeof line && read(pfd[0], &c, 1) == 1 && c != '\n') line[k++] = c;
    line[k] = '\0';
    const char *colon = strrchr(line, ':');
    int port = colon ? (int)strtol(colon + 1, NULL, 10) : 0;
    double t = -1;
    if (pid > 0 && port > 0 && http_search(port)) t = cdx_now() - t0;
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    close(pfd[0]);
    return t;
}

/* ------------------------------------------------------------ in process */

typedef struct inproc {
    double open_ms, first_text_ms, text_p50_ms, weights_mb;
} inproc;

/* Open, first text query, p50 of 50 more; with `touch_all` also one image,
 * and the RSS growth over all of it (resident weights). */
static int measure_inproc(const char *model_dir, int touch_all, cdx_precision prec, inproc *out)
{
    double base = bench_rss_mb(), t0 = cdx_now();
    cdx_model *m = NULL;
    cdx_ctx *c = NULL;
    if (cdx_model_load(model_dir, NULL, &m) != CDX_OK) return 0;
    out->open_ms = 1e3 * (cdx_now() - t0);
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.max_batch = 1;
    cp.precision = prec;
    float e[4096];
    const char *q = QUERY;
    int ok = cdx_ctx_new(m, &cp, &c) == CDX_OK;
    t0 = cdx_now();
    ok = ok && cdx_encode_texts(c, &q, 1, e, 1) == CDX_OK;
    out->first_text_ms = 1e3 * (cdx_now() - t0);
    double lat[50];
    for (int i = 0; ok && i < 50; i++) {
        t0 = cdx_now();
        ok = cdx_encode_texts(c, &q, 1, e, 1) == CDX_OK;
        lat[i] = 1e3 * (cdx_now() - t0);
    }
    if (ok) out->text_p50_ms = median(lat, 50);
    if (ok && touch_all) {
        cdx_model_info mi;
        cdx_model_get_info(m, &mi);
        float *px = calloc((size_t)3 * mi.image_size * mi.image_size, sizeof(float));
        ok = px && cdx_encode_images(c, px, 1, e, 1) == CDX_OK;
        free(px);
        cdx_ctx_free(c);   /* scratch is not weights */
        c = NULL;
        out->weights_mb = bench_rss_mb() - base;
    }
    cdx_ctx_free(c);
    cdx_model_free(m);
    return ok;
}

/* measure_inproc in a new process (clean RSS; a forked child of a process
 * that ran OpenMP would hang in libgomp): this program re-executed with
 * --inproc-child, answering on a pipe.  env entry may be NULL. */
static char g_self[PATH_MAX];

static int measure_child(const char *model_dir, const char *env, cdx_precision prec, inproc *out)
{
    int pfd[2];
    if (pipe(pfd) != 0) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 1);
        if (env) putenv((char *)env);
        execl(g_self, g_self, "--inproc-child", model_dir, cdx_precision_name(prec), (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    int ok = pid > 0 && read(pfd[0], out, sizeof *out) == (ssize_t)sizeof *out;
    close(pfd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return ok;
}

static int inproc_child(const char *model_dir, const char *prec_name)
{
    inproc r = {0, 0, 0, 0};
    cdx_precision prec = CDX_PRECISION_FP32;
    int ok = cdx_precision_parse(prec_name, &prec) && measure_inproc(model_dir, 1, prec, &r);
    return ok && write(1, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1;
}

/* ------------------------------------------------------------ main */

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static void find_clipdex(const char *argv0)
{
    const char *e = getenv("CLIPDEX_BIN");
    if (e && *e) {
        snprintf(g_bin, sizeof g_bin, "%s", e);
        return;
    }
    char self[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(g_bin, sizeof g_bin, "%s", argv0);
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(g_bin, sizeof g_bin, "%s/../clipdex", self);   /* build/bench/.. */
}

int main(int argc, char **argv)
{
    int json = 0, runs = 5;
    const char *prec_name = "fp32";
    cdx_precision prec = CDX_PRECISION_FP32;
    const char *model = "/tmp/clipdex-vitb32";
    ssize_t sl = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    g_self[sl > 0 ? sl : 0] = '\0';
    if (argc == 4 && !strcmp(argv[1], "--inproc-child")) return inproc_child(argv[2], argv[3]);
    find_clipdex(argv[0]);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--clipdex") && i + 1 < argc) snprintf(g_bin, sizeof g_bin, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc && cdx_precision_parse(argv[i + 1], &prec) &&
                 prec != CDX_PRECISION_AUTO)
            prec_name = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = (int)strtol(argv[++i], NULL, 10);
            if (runs < 1 || runs > MAX_RUNS) runs = 5;
        } else {
            fprintf(stderr, "usage: startup_bench [--json] [--model DIR] [--clipdex BIN] [--runs N]\n"
                    "                     [--precision fp32|int8|bf16]\n");
            return 2;
        }
    }
    struct stat st;
    char cfg[PATH_MAX];
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    if (stat(cfg, &st) != 0) {
        fprintf(stderr, "startup_bench: no model at %s; make one with\n"
                "  python3 bench/make_random_clip.py ../shared/fixtures/clip-tiny %s\n", model, model);
        return 1;
    }
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "startup_bench: %s is not executable (--clipdex BIN)\n", g_bin);
        return 1;
    }
    char tmp[] = "/tmp/cdx_startup_bench_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char lib[PATH_MAX], cache[PATH_MAX], cache_env[PATH_MAX + 32];
    snprintf(lib, sizeof lib, "%s/library", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(cache_env, sizeof cache_env, "CLIPDEX_CACHE_DIR=%s", cache);
    putenv(cache_env);
    unsetenv("CLIPDEX_PREPARED");
    sleep(1);   /* fingerprints are not cached within a timestamp tick of a write */

    char *init[] = {g_bin, "init", "--library", lib, "--model", (char *)model, NULL};
    char *search[] = {g_bin, "search", "--library", lib, "--precision", (char *)prec_name, QUERY, NULL};
    run rs[MAX_RUNS] = {{0, 0, 0, 0}};
    run r = spawn_measure(init, NULL), cold, warm, noprep;
    int ok = r.ok;
    if (!ok) fprintf(stderr, "startup_bench: clipdex init failed\n");
    double init_wall = r.wall;
    /* init hashed the weights (fingerprint now cached): the first search
     * still builds and saves the text tower */
    cold = spawn_measure(search, NULL);
    for (int i = 0; i < runs; i++) rs[i] = spawn_measure(search, NULL);
    warm = summarise(rs, runs);
    for (int i = 0; i < runs; i++) rs[i] = spawn_measure(search, "CLIPDEX_PREPARED=0");
    noprep = summarise(rs, runs);
    ok = ok && cold.ok && warm.ok && noprep.ok;
    double serve = ok ? serve_first_answer(lib, prec_name) : -1;
    inproc ip = {0, 0, 0, 0}, mapped = {0, 0, 0, 0}, built = {0, 0, 0, 0};
    inproc q8 = {0, 0, 0, 0}, bf = {0, 0, 0, 0};
    const cdx_precision FP32 = CDX_PRECISION_FP32;
    /* the first child also builds and saves the vision tower: measure the
     * second, which maps both.  The same for the int8 and bf16 copies (bf16
     * on the reference kernels where the CPU lacks AVX512_BF16: its
     * resident size does not depend on the kernel). */
    ok = ok && serve > 0 && measure_inproc(model, 0, prec, &ip) && measure_child(model, NULL, FP32, &mapped) &&
         measure_child(model, NULL, FP32, &mapped) && measure_child(model, "CLIPDEX_PREPARED=0", FP32, &built);
    ok = ok && measure_child(model, NULL, CDX_PRECISION_INT8, &q8) &&
         measure_child(model, NULL, CDX_PRECISION_INT8, &q8) &&
         measure_child(model, "CLIPDEX_PRECISION_EMULATE=1", CDX_PRECISION_BF16, &bf) &&
         measure_child(model, "CLIPDEX_PRECISION_EMULATE=1", CDX_PRECISION_BF16, &bf);
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (!ok) {
        fprintf(stderr, "startup_bench: a measurement failed (serve %.3f)\n", serve);
        return 1;
    }
    if (json) {
        printf("{\"model\": \"%s\", \"precision\": \"%s\", \"runs\": %d, \"init_wall_s\": %.3f, "
               "\"search_cold_wall_s\": %.3f, \"search_cold_cpu_s\": %.3f, \"search_cold_rss_mb\": %.1f, "
               "\"search_warm_wall_s\": %.3f, \"search_warm_cpu_s\": %.3f, \"search_warm_rss_mb\": %.1f, "
               "\"search_noprep_wall_s\": %.3f, \"search_noprep_cpu_s\": %.3f, "
               "\"search_noprep_rss_mb\": %.1f, \"serve_first_answer_s\": %.3f, "
               "\"inproc_open_ms\": %.1f, \"inproc_first_text_ms\": %.1f, \"text_query_p50_ms\": %.2f, "
               "\"resident_weights_mb_mapped\": %.1f, \"resident_weights_mb_built\": %.1f, "
               "\"resident_weights_mb_int8\": %.1f, \"resident_weights_mb_bf16\": %.1f, "
               "\"ratio_search_warm_to_query\": %.1f}\n",
               model, prec_name, runs, init_wall, cold.wall, cold.cpu, cold.rss_mb, warm.wall, warm.cpu,
               warm.rss_mb, noprep.wall, noprep.cpu, noprep.rss_mb, serve, ip.open_ms,
               ip.first_text_ms, ip.text_p50_ms, mapped.weights_mb, built.weights_mb, q8.weights_mb,
               bf.weights_mb, warm.wall / (ip.text_p50_ms * 1e-3));
        return 0;
    }
    printf("model %s, precision %s, %d runs per warm figure (median wall/CPU, max RSS)\n", model, prec_name, runs);
    printf("clipdex search TEXT, new process:\n");
    printf("  cold engine cache        %6.3f s wall  %6.3f s CPU  %6.1f MB RSS\n", cold.wall, cold.cpu, cold.rss_mb);
    printf("  warm (prepared, mapped)  %6.3f s wall  %6.3f s CPU  %6.1f MB RSS\n", warm.wall, warm.cpu, warm.rss_mb);
    printf("  CLIPDEX_PREPARED=0       %6.3f s wall  %6.3f s CPU  %6.1f MB RSS\n", noprep.wall, noprep.cpu, noprep.rss_mb);
    printf("clipdex serve: first search answered %.3f s after start\n", serve);
    printf("in process: open %.1f ms, first text query %.1f ms, then p50 %.2f ms\n", ip.open_ms,
           ip.first_text_ms, ip.text_p50_ms);
    printf("resident weights (both towers, every page touched): mapped %.1f MB, built %.1f MB\n",
           mapped.weights_mb, built.weights_mb);
    printf("resident weights, mapped: int8 %.1f MB, bf16 %.1f MB\n", q8.weights_mb, bf.weights_mb);
    printf("warm one-shot search = %.1f x an in-process text query\n", warm.wall / (ip.text_p50_ms * 1e-3));
    return 0;
}
