/*
 * bench_preprocess.c - decode + preprocess speed, exact path vs the JPEG
 * shrink-on-load fast mode, and the fast mode's deviation from the exact
 * output.  Inputs: JPEGs from $CLIPDEX_SHARED/data/imagenet-sample (or the
 * directory given as argv[1]), each also enlarged x4 and x8 with libvips
 * (Lanczos, saved as JPEG Q=92) to stand in for camera-sized photos.
 *
 *   bench_preprocess [DIR] [MAX_IMAGES]
 *
 * Prints per-scale: images, median exact / fast time per image, speed-up,
 * max and mean |fast - exact| in normalised units (1 uint8 level ~ 0.015).
 */
#include "clip/config.h"
#include "common/util.h"
#include "image/preprocess.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#define S 224
#define NPIX (3 * S * S)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run(const void *d, size_t n, int fast, float *out)
{
    cdx_preproc_config pre = {S, S, {0.48145466f, 0.4578275f, 0.40821073f},
                              {0.26862954f, 0.26130258f, 0.27577711f}};
    cdx_image_params p = cdx_image_default_params();
    p.autorotate = 0;
    p.fast_shrink = fast;
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cdx_now();
        if (cdx_image_preprocess(d, n, &pre, &p, out, NULL) != CDX_OK) return -1;
        double dt = cdx_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv)
{
    char dir[4096];
    const char *shared = getenv("CLIPDEX_SHARED");
    if (argc > 1 && argv[1][0]) snprintf(dir, sizeof dir, "%s", argv[1]);
    else snprintf(dir, sizeof dir, "%s/data/imagenet-sample", shared ? shared : "../shared");
    int max_images = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 40;
    if (cdx_image_init() != CDX_OK) return 1;
    DIR *dd = opendir(dir);
    if (!dd) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 1;
    }
    char **files = NULL;
    int nf = 0;
    struct dirent *e;
    while ((e = readdir(dd)) && nf < 100000) {
        size_t l = strlen(e->d_name);
        if (l > 5 && (!strcasecmp(e->d_name + l - 5, ".jpeg") || !strcasecmp(e->d_name + l - 4, ".jpg"))) {
            files = realloc(files, (size_t)(nf + 1) * sizeof *files);
            files[nf++] = cdx_path_join(dir, e->d_name);
        }
    }
    closedir(dd);
    qsort(files, (size_t)nf, sizeof *files, (int (*)(const void *, const void *))strcmp);
    if (nf > max_images) nf = max_images;

    static float a[NPIX], b[NPIX];
    const double scales[] = {1, 4, 8};
    printf("%-6s %6s %12s %12s %8s %10s %10s %8s\n", "scale", "images", "exact ms", "fast ms",
           "speedup", "max|diff|", "mean|diff|", "shrunk");
    for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
        double *te = calloc((size_t)nf, sizeof(double)), *tf = calloc((size_t)nf, sizeof(double));
        double mx = 0, mean_sum = 0;
        int n = 0, shrunk = 0;
        for (int i = 0; i < nf; i++) {
            char *data = NULL;
            size_t len = 0;
            if (cdx_read_file(files[i], (size_t)1 << 28, &data, &len) != CDX_OK) continue;
            void *enc = data;
            size_t elen = len;
            void *vbuf = NULL;
            if (scales[si] != 1) {
                VipsImage *im = vips_image_new_from_buffer(data, len, "", NULL), *big = NULL;
                if (!im || vips_resize(im, &big, scales[si], NULL) ||
                    vips_image_write_to_buffer(big, ".jpg[Q=92]", &vbuf, &elen, NULL)) {
                    fprintf(stderr, "%s: vips failed\n", files[i]);
                    exit(1);
                }
                g_object_unref(big);
                g_object_unref(im);
                enc = vbuf;
            }
            double t1 = run(enc, elen, 0, a), t2 = run(enc, elen, 1, b);
            if (t1 >= 0 && t2 >= 0) {
                te[n] = t1;
                tf[n] = t2;
                double m = 0, s = 0;
                for (int k = 0; k < NPIX; k++) {
                    double d = fabs((double)a[k] - b[k]);
                    s += d;
                    if (d > m) m = d;
                }
                if (m > mx) mx = m;
                mean_sum += s / NPIX;
                shrunk += memcmp(a, b, sizeof a) != 0 || t2 < 0.8 * t1;
                n++;
            }
            g_free(vbuf);
            free(data);
        }
        qsort(te, (size_t)n, sizeof(double), cmp_double);
        qsort(tf, (size_t)n, sizeof(double), cmp_double);
        double me = n ? te[n / 2] : 0, mf = n ? tf[n / 2] : 0;
        printf("x%-5g %6d %12.2f %12.2f %7.2fx %10.4f %10.5f %8d\n", scales[si], n, me * 1e3,
               mf * 1e3, mf > 0 ? me / mf : 0, mx, n ? mean_sum / n : 0, shrunk);
        free(te);
        free(tf);
    }
    for (int i = 0; i < nf; i++) free(files[i]);
    free(files);
    return 0;
}
