/*
 * dupes_bench.c - what `clipdex dupes` costs at N images (default 1M x 512):
 * the k-NN candidate search of every image (exact float32 scan, and the
 * IVF-over-int8 index at a few probe counts), the hash confirmation and
 * the union-find grouping, on synthetic CLIP-like vectors (bench/ann_synth.h)
 * with planted near-duplicate pairs.
 *
 *   dupes_bench [--n N] [--dim D] [--pairs P] [--sample S] [--threshold T]
 *               [--probes 1,2,4,8] [--threads T] [--json]
 *   dupes_bench --model DIR --n N [--pairs P] [--scans f32,int8]   (the library call)
 *
 * Planted: P pairs (j a near copy of i: cosine ~0.98, perceptual hash 0-6
 * bits apart) and P look-alike pairs (cosine ~0.96, hashes unrelated).
 * The full run searches all N images as queries; that takes hours with the
 * exact scan at 1M, so the benchmark times S sample queries (the planted
 * images among them) and extrapolates per-query time x N; the recall of
 * planted pairs (is j among i's k = 9 neighbours above T) is measured on
 * the sample.  Grouping is timed on all N images with every confirmed pair.
 *
 * --model DIR: instead, a real library (in /tmp, bound to the model DIR,
 * whose dimension is used) gets the N vectors (cdx_library_add_vectors)
 * and their hashes, and cdx_library_dupes runs end to end with the
 * float32 and the int8 scan: seconds, groups, planted pairs grouped.
 *
 * How the library would use the index: cdx_library_dupes sends every
 * batch of images through cdx_library_search_vectors; once the approximate
 * index serves that call (ann branch), dupes gets it with no change of its
 * own, and near-duplicates (cosine >= 0.9) sit in the same or a
 * neighbouring list, so few probes suffice (the recall column below).
 */
#include "clipdex.h"
#include "common/util.h"
#include "search/ann_ivf.h"
#include "store/catalog.h"
#include "search/dupes.h"
#include "search/topk.h"

#include "ann_synth.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 9

static void die(const char *what)
{
    fprintf(stderr, "dupes_bench: %s: %s\n", what, cdx_last_error());
    exit(1);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* out = normalize(v + eps * gaussian / sqrt(dim)) */
static void near_copy(const float *v, float *out, int dim, float eps, uint64_t seed)
{
    uint64_t s = mix(seed);
    for (int d = 0; d < dim; d++) out[d] = v[d] + eps * synth_gauss(&s) / sqrtf((float)dim);
    synth_normalize(out, dim);
}

/* The library call end to end on rows [0, n) (planted pairs at 2p, 2p+1). */
static void library_run(const char *model, const char *scans, const float *rows, const uint64_t *hash,
                        uint64_t n, int dim, size_t pairs, float threshold, int json)
{
    char dir[] = "/tmp/dupes_bench_XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp");
    char libdir[64], cat[96];
    snprintf(libdir, sizeof libdir, "%s/lib", dir);
    snprintf(cat, sizeof cat, "%s/catalog.db", libdir);
    cdx_library_params lp = cdx_library_default_params();
    lp.model_dir = model;
    lp.create = 1;
    lp.writable = 1;
    lp.load_model = 0;
    cdx_library *lib;
    if (cdx_library_open(libdir, &lp, &lib)) die("library");
    cdx_library_info li;
    if (cdx_library_get_info(lib, &li) || li.dim != dim) die("the model's dimension differs from --dim");
    double t0 = cdx_now();
    cdx_image_record *recs = calloc(4096, sizeof *recs);
    if (!recs) die("out of memory");
    for (uint64_t first = 0; first < n; first += 4096) {
        size_t m = n - first < 4096 ? (size_t)(n - first) : 4096;
        for (size_t i = 0; i < m; i++) {
            memset(&recs[i], 0, sizeof recs[i]);
            snprintf(recs[i].path, sizeof recs[i].path, "/bench/img%08llu.jpg", (unsigned long long)(first + i));
            recs[i].width = 1000;
            recs[i].height = 750;
            snprintf(recs[i].format, sizeof recs[i].format, "jpeg");
        }
        if (cdx_library_add_vectors(lib, recs, rows + first * dim, m, NULL, NULL)) die("add vectors");
    }
    catalog *c;
    if (catalog_open(cat, 1, 0, &c) || catalog_begin(c)) die("catalog");
    for (uint64_t i = 0; i < n; i++) {
        cdx_image_record r;
        snprintf(recs[0].path, sizeof recs[0].path, "/bench/img%08llu.jpg", (unsigned long long)i);
        if (catalog_image_by_path(c, recs[0].path, &r) || catalog_content_set_phash(c, r.sha256, hash[i]))
            die("hashes");
    }
    if (catalog_commit(c)) die("commit");
    catalog_close(c);
    free(recs);
    double setup = cdx_now() - t0;
    for (int scan = 0; scan < 2; scan++) {
        if (!strstr(scans, scan ? "int8" : "f32")) continue;
        cdx_dupes_params p = cdx_dupes_default_params();
        p.threshold = threshold;
        p.rehash = 0;
        p.scan = scan ? CDX_SCAN_INT8 : CDX_SCAN_F32;
        cdx_dupes *d;
        double t1 = cdx_now();
        if (cdx_library_dupes(lib, &p, &d)) die("dupes");
        double secs = cdx_now() - t1;
        size_t found = 0;
        for (size_t g = 0; g < d->n_groups; g++)
            if (d->groups[g].count == 2 && d->members[d->groups[g].first].id % 2 == 1 &&
                (uint64_t)d->members[d->groups[g].first].id <= 2 * pairs)
                found++;   /* ids are rows + 1: a planted pair is ids 2p+1, 2p+2 */
        if (json)
            printf("{\"method\":\"library %s\",\"n\":%llu,\"seconds\":%.2f,\"ms_per_image\":%.3f,\"groups\":%zu,"
                   "\"planted_grouped\":%zu,\"candidates\":%llu,\"rejected\":%llu}\n",
                   scan ? "int8" : "f32", (unsigned long long)n, secs, secs * 1e3 / (double)n, d->n_groups, found,
                   (unsigned long long)d->candidates, (unsigned long long)d->rejected);
        else
            printf("library dupes, %s scan: %llu images in %.2f s (%.3f ms/image; setup %.1f s), %zu groups, "
                   "%zu of %zu planted pairs grouped, %llu candidates, %llu rejected by the hashes\n",
                   scan ? "int8" : "f32", (unsigned long long)n, secs, secs * 1e3 / (double)n, setup, d->n_groups,
                   found, pairs, (unsigned long long)d->candidates, (unsigned long long)d->rejected);
        cdx_dupes_free(d);
    }
    cdx_library_close(lib);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "dupes_bench: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    uint64_t n = 1000000;
    int dim = 512, json = 0, threads = 0;
    size_t pairs = 1000, sample = 2000;
    float threshold = 0.9f;
    const char *probes_arg = "1,2,4,8", *model = NULL, *scans = "f32,int8";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--n") && i + 1 < argc) n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--dim") && i + 1 < argc) dim = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--pairs") && i + 1 < argc) pairs = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--sample") && i + 1 < argc) sample = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threshold") && i + 1 < argc) threshold = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--probes") && i + 1 < argc) probes_arg = argv[++i];
        else if (!strcmp(a, "--threads") && i + 1 < argc) threads = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--scans") && i + 1 < argc) scans = argv[++i];
        else {
            fprintf(stderr, "usage: dupes_bench [--n N] [--dim D] [--pairs P] [--sample S] [--threshold T] "
                            "[--probes LIST] [--threads T] [--json]\n");
            return 2;
        }
    }
    if (n < 1000 || dim < 8 || pairs < 1 || 4 * pairs > n || sample < 2 * pairs || sample > n ||
        !(threshold > 0 && threshold <= 1)) {
        fprintf(stderr, "dupes_bench: bad sizes (n >= 1000, 4 * pairs <= n, 2 * pairs <= sample <= n, 0 < threshold <= 1)\n");
        return 2;
    }
    if (threads > 0) omp_set_num_threads(threads);
    int T = omp_get_max_threads();

    /* data: rows, then the planted pairs at rows 2p (original) and 2p+1
     * (near copy), look-alikes at 2P + 2p, 2P + 2p + 1 */
    double t0 = cdx_now();
    ann_synth g;
    if (synth_init(&g, dim, n, 42)) die("synth");
    float *rows = malloc(n * (size_t)dim * sizeof *rows);
    uint64_t *hash = malloc(n * sizeof *hash);
    dupes_image *im = malloc(n * sizeof *im);
    if (!rows || !hash || !im) die("out of memory");
    #pragma omp parallel for schedule(static)
    for (uint64_t i = 0; i < n; i++) synth_image(&g, i, rows + i * (size_t)dim);
    for (uint64_t i = 0; i < n; i++) {
        hash[i] = mix(i + 7);
        im[i] = (dupes_image){(int64_t)i + 1, hash[i], 1, 1000 + (i % 7), (int64_t)i};
    }
    for (size_t p = 0; p < 2 * pairs; p++) {
        uint64_t a = 2 * p, b = 2 * p + 1;
        int planted = p < pairs;
        near_copy(rows + a * dim, rows + b * dim, dim, planted ? 0.2f : 0.3f, p);
        if (planted) {
            int flips = (int)(mix(p) % 7);
            hash[b] = hash[a];
            for (int f = 0; f < flips; f++) hash[b] ^= 1ull << (mix(p * 64 + (uint64_t)f) % 64);
        }
        im[b].phash = hash[b];
    }
    double gen_s = cdx_now() - t0;
    if (model) {
        library_run(model, scans, rows, hash, n, dim, pairs, threshold, json);
        free(rows);
        free(hash);
        free(im);
        synth_free(&g);
        return 0;
    }
    cdx_rows src = cdx_rows_array(rows, n, dim, (size_t)dim * sizeof(float));

    /* sample queries: all planted originals and look-alike originals first,
     * then spread over the rest */
    uint64_t *qi = malloc(sample * sizeof *qi);
    float *q = malloc(sample * (size_t)dim * sizeof *q);
    topk_hit *hits = malloc(sample * (K + 1) * sizeof *hits);
    size_t *nh = malloc(sample * sizeof *nh);
    if (!qi || !q || !hits || !nh) die("out of memory");
    for (size_t s = 0; s < sample; s++) {
        qi[s] = s < pairs ? 2 * s : s < 2 * pairs ? 2 * s : 4 * pairs + (mix(s) % (n - 4 * pairs));
        memcpy(q + s * dim, rows + qi[s] * dim, (size_t)dim * sizeof *q);
    }

    /* one evaluation: recall of planted partners, candidates, rejections */
    #define EVAL(found, cand, rej) do { \
        found = cand = rej = 0; \
        for (size_t s = 0; s < sample; s++) \
            for (size_t h = 0; h < nh[s]; h++) { \
                uint64_t j = hits[s * (K + 1) + h].slot; \
                if (j == qi[s]) continue; \
                cand++; \
                if (__builtin_popcountll(hash[qi[s]] ^ hash[j]) > 12) { rej++; continue; } \
                if (s < pairs && j == qi[s] + 1) found++; \
            } \
    } while (0)

    /* exact float32 scan, batched like cdx_library_dupes (256 per call) */
    topk_params tp = topk_default_params();
    tp.k = K + 1;
    tp.min_score = threshold;
    double t1 = cdx_now();
    for (size_t s = 0; s < sample; s += 256) {
        size_t m = sample - s < 256 ? sample - s : 256;
        if (topk_search(&src, q + s * dim, m, &tp, hits + s * (K + 1), nh + s)) die("exact scan");
    }
    double exact_s = cdx_now() - t1;
    size_t found, cand, rej;
    EVAL(found, cand, rej);
    double exact_q = exact_s / (double)sample;
    if (json)
        printf("{\"method\":\"exact f32\",\"n\":%llu,\"dim\":%d,\"threads\":%d,\"sample\":%zu,\"ms_per_image\":%.4f,"
               "\"full_run_s\":%.0f,\"planted_recall\":%.4f,\"candidates_per_image\":%.2f,\"rejected_per_image\":%.2f}\n",
               (unsigned long long)n, dim, T, sample, exact_q * 1e3, exact_q * (double)n, (double)found / pairs,
               (double)cand / sample, (double)rej / sample);
    else
        printf("n %llu x %d, %d threads, %zu planted pairs + %zu look-alikes, sample %zu queries, threshold %.2f "
               "(data %.1f s)\n\n%-16s %12s %14s %14s %12s %12s %10s\n%-16s %12.3f %14.0f %14.2f %12.4f %12.2f %10.2f\n",
               (unsigned long long)n, dim, T, pairs, pairs, sample, (double)threshold, gen_s, "method", "ms/image",
               "full run (s)", "vs exact", "recall", "cand/image", "rej/image", "exact f32", exact_q * 1e3,
               exact_q * (double)n, 1.0, (double)found / pairs, (double)cand / sample, (double)rej / sample);

    /* the IVF index (int8 codes): build, then the sample at each probe count */
    double t2 = cdx_now();
    ann_ivf *ix;
    ann_ivf_train_params itp = ann_ivf_default_train_params();
    if (ann_ivf_train(&src, n, &itp, &ix)) die("train");
    for (uint64_t first = 0; first < n; first += 65536) {
        ann_segment seg;
        size_t m = n - first < 65536 ? (size_t)(n - first) : 65536;
        if (ann_ivf_encode(ix, &src, first, m, &seg) || ann_ivf_insert(ix, &seg)) die("encode");
        ann_segment_free(&seg);
    }
    double build_s = cdx_now() - t2;
    if (!json) printf("\nIVF index: %d lists, built in %.1f s\n", ann_ivf_nlist(ix), build_s);
    char list[256];
    snprintf(list, sizeof list, "%s", probes_arg);
    for (char *tok = list, *next; tok && *tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        int probes = (int)strtol(tok, NULL, 10);
        ann_search_params ap = ann_default_search_params();
        ap.k = K + 1;
        ap.probes = probes;
        ap.min_score = threshold;
        ap.n_threads = 1;   /* one query per thread, as a batched run would */
        double t3 = cdx_now();
        int bad = 0;
        #pragma omp parallel for schedule(dynamic, 16)
        for (size_t s = 0; s < sample; s++)
            if (ann_ivf_search(ix, &src, q + s * dim, &ap, hits + s * (K + 1), &nh[s], NULL)) bad = 1;
        if (bad) die("ivf search");
        double ivf_s = cdx_now() - t3, per = ivf_s / (double)sample;
        EVAL(found, cand, rej);
        if (json)
            printf("{\"method\":\"ivf\",\"probes\":%d,\"nlist\":%d,\"build_s\":%.1f,\"ms_per_image\":%.4f,\"full_run_s\":%.0f,"
                   "\"speedup\":%.1f,\"planted_recall\":%.4f,\"candidates_per_image\":%.2f,\"rejected_per_image\":%.2f}\n",
                   probes, ann_ivf_nlist(ix), build_s, per * 1e3, per * (double)n + build_s, exact_q / per,
                   (double)found / pairs, (double)cand / sample, (double)rej / sample);
        else {
            char name[32];
            snprintf(name, sizeof name, "ivf probes %d", probes);
            printf("%-16s %12.4f %14.0f %14.1f %12.4f %12.2f %10.2f\n", name, per * 1e3, per * (double)n + build_s,
                   exact_q / per, (double)found / pairs, (double)cand / sample, (double)rej / sample);
        }
    }
    ann_ivf_free(ix);

    /* grouping: every confirmed planted pair over all n images */
    dupes_pair *pp = malloc(pairs * sizeof *pp);
    if (!pp) die("out of memory");
    for (size_t p = 0; p < pairs; p++)
        pp[p] = (dupes_pair){(uint32_t)(2 * p), (uint32_t)(2 * p + 1), 0.98f,
                             __builtin_popcountll(hash[2 * p] ^ hash[2 * p + 1])};
    double t4 = cdx_now();
    cdx_dupes *d;
    if (dupes_group(im, n, pp, pairs, &d)) die("group");
    double group_s = cdx_now() - t4;
    if (json)
        printf("{\"method\":\"group\",\"n\":%llu,\"pairs\":%zu,\"groups\":%zu,\"seconds\":%.3f}\n", (unsigned long long)n,
               pairs, d->n_groups, group_s);
    else
        printf("\ngrouping %llu images, %zu pairs -> %zu groups: %.3f s\n", (unsigned long long)n, pairs, d->n_groups,
               group_s);
    cdx_dupes_free(d);
    free(pp);
    free(rows);
    free(hash);
    free(im);
    free(qi);
    free(q);
    free(hits);
    free(nh);
    synth_free(&g);
    return 0;
}
