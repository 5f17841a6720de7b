/*
 * index_bench.c - ingestion benchmarks (issue #3):
 *  1. the catalog alone: content + image rows inserted per second, in
 *     transactions of 1000 (the ingest batching is 32..256 per commit);
 *  2. the engine's pure embedding rate: cdx_encode_images on batches of 32
 *     preprocessed inputs (no decoding), with a full-size random ViT-B/32;
 *  3. the end-to-end ingest pipeline (walk, read, sha256, decode +
 *     preprocess on worker threads, batched embedding, vecfile append with
 *     fdatasync, catalog commit) on ../shared/data/imagenet-sample with the
 *     same model, for 1 and 2 decode threads;
 *  and prints pipeline / pure ratio (goal >= 0.9: decoding is hidden).
 *  Beside the wall-clock rates it prints the process CPU seconds per image
 *  of the pure embedding and of the pipeline (2 decode threads) and their
 *  ratio (cpu_ratio = pure / pipeline): on a machine shared with other jobs
 *  the wall rates of the two phases, taken seconds apart, see different
 *  loads, while the CPU cost per image says what the pipeline adds (decode,
 *  resize, hashing, stores; 1 - cpu_ratio of the CPU).
 *
 * It drives ingest_run() directly with an in-memory random model
 * (src/testsupport/model_random.h) instead of `clipdex index` with a model
 * directory: the code path from the walk to the commit is the same, only
 * the model comes from memory.  Usage:
 *   index_bench [--quick] [--images DIR] [--limit N] [--rows N] [--json]
 *               [--precision fp32|bf16|int8|auto]
 * (--precision: of the towers, for both the pure rate and the pipeline.)
 */
#include "testsupport/model_random.h"
#include "common/util.h"
#include "ingest/pipeline.h"
#include "store/catalog.h"
#include "store/vecfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

static double bench_catalog(const char *dir, long rows)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench-catalog.db", dir);
    catalog *c;
    if (catalog_open(path, 1, 1, &c)) { fprintf(stderr, "catalog: %s\n", cdx_last_error()); return 0; }
    cdx_image_record rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.format, sizeof rec.format, "jpeg");
    double t0 = cdx_now();
    for (long i = 0; i < rows; i++) {
        if (i % 1000 == 0 && catalog_begin(c)) break;
        snprintf(rec.sha256, sizeof rec.sha256, "%064lx", (unsigned long)i * 2654435761ul);
        char p[128];
        snprintf(p, sizeof p, "/photos/%04ld/IMG_%06ld.jpg", i / 1000, i);
        int64_t id;
        if (catalog_content_insert(c, &rec, i) || catalog_image_insert(c, p, rec.sha256, 1, 1, &id)) {
            fprintf(stderr, "insert: %s\n", cdx_last_error());
            break;
        }
        if (i % 1000 == 999 || i == rows - 1) catalog_commit(c);
    }
    double dt = cdx_now() - t0;
    catalog_close(c);
    return rows / dt;
}

/* CPU seconds (user + system) of the whole process so far */
static double cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    int quick = 0, json = 0;
    cdx_precision prec = CDX_PRECISION_FP32;
    long limit = 500, rows = 200000;
    const char *images = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) { quick = 1; limit = 64; rows = 20000; }
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--images") && i + 1 < argc) images = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc && cdx_precision_parse(argv[i + 1], &prec)) i++;
        else { fprintf(stderr, "usage: index_bench [--quick] [--images DIR] [--limit N] [--rows N] [--json]\n"
                               "                   [--precision fp32|bf16|int8|auto]\n"); return 2; }
    }
    char defimg[512];
    if (!images) {
        const char *sh = getenv("CLIPDEX_SHARED");
        snprintf(defimg, sizeof defimg, "%s/data/imagenet-sample", sh ? sh : "../shared");
        images = defimg;
    }
    char tmp[] = "/tmp/cdx_index_bench_XXXXXX";
    if (!mkdtemp(tmp)) return 1;

    double rows_s = bench_catalog(tmp, rows);

    cdx_clip_config cfg;
    cdx_model *model = NULL;
    if (cdx_model_random_config(quick ? "tiny" : "ViT-B/32", &cfg) || cdx_model_random(&cfg, 1, &model)) {
        fprintf(stderr, "model: %s\n", cdx_last_error());
        return 1;
    }
    cdx_model_info mi;
    cdx_model_get_info(model, &mi);
    const int B = 32;
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.max_batch = B;
    cp.precision = prec;
    cdx_ctx *ctx = NULL;
    if (cdx_ctx_new(model, &cp, &ctx)) { fprintf(stderr, "ctx: %s\n", cdx_last_error()); return 1; }

    /* pure embedding rate */
    size_t per = (size_t)3 * mi.image_size * mi.image_size;
    float *px = cdx_alloc_aligned((size_t)B * per, sizeof(float));
    float *out = cdx_alloc_aligned((size_t)B * mi.embed_dim, sizeof(float));
    for (size_t i = 0; i < (size_t)B * per; i++) px[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    cdx_encode_images(ctx, px, B, out, 1);   /* warm-up */
    int reps = quick ? 2 : 4;
    double t0 = cdx_now(), c0 = cpu_s();
    for (int r = 0; r < reps; r++) cdx_encode_images(ctx, px, B, out, 1);
    double pure = (double)reps * B / (cdx_now() - t0);
    double pure_cpu = (cpu_s() - c0) / ((double)reps * B), pipe_cpu = 0;

    /* the candidate files (first `limit` by name) */
    char **files = NULL;
    size_t nf = 0, cap = 0;
    DIR *d = opendir(images);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".JPEG")) continue;
        if (nf == cap) { cap = cap ? 2 * cap : 512; files = realloc(files, cap * sizeof *files); }
        files[nf++] = cdx_path_join(images, e->d_name);
    }
    if (d) closedir(d);
    if (!nf) { fprintf(stderr, "no .JPEG files in %s\n", images); return 77; }
    qsort(files, nf, sizeof *files, cmp_str);
    if ((long)nf > limit) nf = (size_t)limit;

    double rate[3] = {0, 0, 0};
    for (int nd = 1; nd <= 2; nd++) {
        char vp[600], cpth[600];
        snprintf(vp, sizeof vp, "%s/v%d.cdxv", tmp, nd);
        snprintf(cpth, sizeof cpth, "%s/c%d.db", tmp, nd);
        vecfile *vf = NULL;
        catalog *cat = NULL;
        vecfile_params vpar = vecfile_default_params();
        vpar.writable = vpar.create = 1;
        vpar.dim = mi.embed_dim;
        if (vecfile_open(vp, &vpar, &vf, NULL) || catalog_open(cpth, 1, 1, &cat)) {
            fprintf(stderr, "store: %s\n", cdx_last_error());
            return 1;
        }
        ingest_target t = {cat, vf, model, ctx, tmp, nd};
        cdx_index_params ip = cdx_index_default_params();
        ip.batch_size = B;
        cdx_index_stats st;
        double c1 = cpu_s();
        if (ingest_run(&t, (const char *const *)files, (int)nf, &ip, &st)) {
            fprintf(stderr, "ingest: %s\n", cdx_last_error());
            return 1;
        }
        rate[nd] = st.images_per_s;
        if (nd == 2 && st.added) pipe_cpu = (cpu_s() - c1) / (double)st.added;
        if (st.added != nf) fprintf(stderr, "warning: %llu of %zu added\n", (unsigned long long)st.added, nf);
        vecfile_close(vf);
        catalog_close(cat);
    }
    double best = rate[1] > rate[2] ? rate[1] : rate[2];
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 0) load[0] = -1;
    if (json) {
        printf("{\"model\": \"%s\", \"images\": %zu, \"catalog_rows_per_s\": %.0f, \"embed_images_per_s\": %.2f, "
               "\"index_images_per_s_decode1\": %.2f, \"index_images_per_s_decode2\": %.2f, \"ratio\": %.3f, "
               "\"embed_cpu_s_per_image\": %.4f, \"index_cpu_s_per_image\": %.4f, \"cpu_ratio\": %.3f, "
               "\"cores\": %d, \"loadavg\": %.2f}\n",
               quick ? "tiny" : "ViT-B/32", nf, rows_s, pure, rate[1], rate[2], best / pure,
               pure_cpu, pipe_cpu, pipe_cpu > 0 ? pure_cpu / pipe_cpu : 0, cdx_cpu_count(), load[0]);
    } else {
        printf("catalog alone:        %.0f rows/s (%ld content+image rows, 1000 per transaction)\n", rows_s, rows);
        printf("pure embedding:       %.2f images/s (%s, batch %d, %d cores)\n", pure, quick ? "tiny" : "ViT-B/32", B, cdx_cpu_count());
        printf("index, 1 decode thr:  %.2f images/s\n", rate[1]);
        printf("index, 2 decode thr:  %.2f images/s\n", rate[2]);
        printf("ratio (best / pure):  %.3f  (goal >= 0.9)   load average at end: %.2f\n", best / pure, load[0]);
        printf("CPU per image:        pure %.4f s, index (2 decode thr) %.4f s, ratio %.3f\n", pure_cpu, pipe_cpu,
               pipe_cpu > 0 ? pure_cpu / pipe_cpu : 0);
    }
    for (size_t i = 0; i < (size_t)(cap ? nf : 0); i++) free(files[i]);
    free(files);
    cdx_free_aligned(px);
    cdx_free_aligned(out);
    cdx_ctx_free(ctx);
    cdx_model_free(model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    return 0;
}
