/*
 * serve_bench_images.c - writes N distinct JPEG files for bench/serve_bench.sh
 * (usage: serve_bench_images SRC_DIR... -- OUT_DIR N).
 *
 * Each output is a random crop (40-100% of each side) of one of the source
 * images, resized to a long side of 320..1024 px and saved at a random JPEG
 * quality, with the image index drawn into a corner pixel row so every
 * file's bytes differ.  Deterministic (fixed seed).  Uses libvips.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

static int is_image(const char *n)
{
    const char *e = strrchr(n, '.');
    return e && (!strcasecmp(e, ".jpg") || !strcasecmp(e, ".jpeg") || !strcasecmp(e, ".png") || !strcasecmp(e, ".webp"));
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0])) return 1;
    vips_cache_set_max(0);
    int sep = 1;
    while (sep < argc && strcmp(argv[sep], "--")) sep++;
    if (sep + 2 >= argc) {
        fprintf(stderr, "usage: %s SRC_DIR... -- OUT_DIR N\n", argv[0]);
        return 2;
    }
    const char *out = argv[sep + 1];
    long n = strtol(argv[sep + 2], NULL, 10);
    char **srcs = NULL;
    size_t ns = 0;
    for (int i = 1; i < sep; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!is_image(e->d_name)) continue;
            srcs = realloc(srcs, (ns + 1) * sizeof *srcs);
            size_t l = strlen(argv[i]) + strlen(e->d_name) + 2;
            srcs[ns] = malloc(l);
            snprintf(srcs[ns++], l, "%s/%s", argv[i], e->d_name);
        }
        if (d) closedir(d);
    }
    if (!ns) {
        fprintf(stderr, "no source images\n");
        return 1;
    }
    unsigned seed = 1234;
    for (long i = 0; i < n; i++) {
        const char *src = srcs[rand_r(&seed) % ns];
        VipsImage *im = vips_image_new_from_file(src, "access", VIPS_ACCESS_RANDOM, NULL);
        if (!im) { fprintf(stderr, "%s: %s\n", src, vips_error_buffer()); return 1; }
        int w = im->Xsize, h = im->Ysize;
        int cw = w * (40 + rand_r(&seed) % 61) / 100, ch = h * (40 + rand_r(&seed) % 61) / 100;
        if (cw < 16) cw = w;
        if (ch < 16) ch = h;
        int x = (w - cw) ? rand_r(&seed) % (w - cw + 1) : 0, y = (h - ch) ? rand_r(&seed) % (h - ch + 1) : 0;
        VipsImage *crop = NULL, *rgb = NULL, *small = NULL, *marked = NULL;
        int target = 320 + rand_r(&seed) % 705;
        double scale = (double)target / (cw > ch ? cw : ch);
        if (vips_extract_area(im, &crop, x, y, cw, ch, NULL) ||
            vips_colourspace(crop, &rgb, VIPS_INTERPRETATION_sRGB, NULL) ||
            vips_resize(rgb, &small, scale, NULL)) {
            fprintf(stderr, "%s: %s\n", src, vips_error_buffer());
            return 1;
        }
        /* stamp the index into the first pixels so contents differ */
        double ink[4] = {(double)(i & 255), (double)((i >> 8) & 255), (double)((i >> 16) & 255), 255};
        marked = vips_image_copy_memory(small);
        if (!marked || vips_draw_rect(marked, ink, small->Bands < 4 ? small->Bands : 4, 0, 0, 8, 8, "fill", TRUE, NULL)) {
            fprintf(stderr, "draw: %s\n", vips_error_buffer());
            return 1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/img%05ld.jpg", out, i);
        if (vips_jpegsave(marked, path, "Q", 60 + rand_r(&seed) % 36, NULL)) {
            fprintf(stderr, "%s: %s\n", path, vips_error_buffer());
            return 1;
        }
        g_object_unref(marked);
        g_object_unref(small);
        g_object_unref(rgb);
        g_object_unref(crop);
        g_object_unref(im);
        if ((i + 1) % 1000 == 0) fprintf(stderr, "%ld images\n", i + 1);
    }
    for (size_t i = 0; i < ns; i++) free(srcs[i]);
    free(srcs);
    return 0;
}
