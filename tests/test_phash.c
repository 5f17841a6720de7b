/*
 * test_phash.c - the perceptual hash (image/phash.c) on real photos from
 * ../shared/data/imagenet-sample and on copies made here with libvips:
 * a lossless re-encode hashes identically, a JPEG re-encode (quality 30),
 * a half-size resize, a 5% crop and a small colour change stay within a
 * few bits, and distinct photos are far apart.  Also the DCT on synthetic
 * 32x32 images (a flat image, a gradient, its negative).
 */
#include "testutil.h"

#include "clipdex.h"
#include "image/phash.h"

#include <dirent.h>
#include <vips/vips.h>

#define N_PHOTOS 40

static int hash_of(const void *buf, size_t len, uint64_t *h)
{
    return cdx_image_phash(buf, len, NULL, h) == CDX_OK;
}

/* Encode a libvips image (consumed) as JPEG (q > 0) or PNG (q = 0). */
static int encode(VipsImage *im, int q, void **buf, size_t *len)
{
    int e = q ? vips_jpegsave_buffer(im, buf, len, "Q", q, NULL) : vips_pngsave_buffer(im, buf, len, NULL);
    g_object_unref(im);
    return e == 0;
}

static void synthetic(void)
{
    double g[CDX_PHASH_SIDE * CDX_PHASH_SIDE], n[CDX_PHASH_SIDE * CDX_PHASH_SIDE];
    for (int y = 0; y < CDX_PHASH_SIDE; y++)
        for (int x = 0; x < CDX_PHASH_SIDE; x++) {
            g[y * CDX_PHASH_SIDE + x] = 10.0 * x + 3.0 * y + 20.0 * ((x / 8 + y / 8) % 2);
            n[y * CDX_PHASH_SIDE + x] = 255.0 - g[y * CDX_PHASH_SIDE + x];
        }
    uint64_t a = cdx_phash_grey(g), b = cdx_phash_grey(n);
    CHECK(a == cdx_phash_grey(g));   /* deterministic */
    /* the negative flips the sign of every AC coefficient: far apart */
    CHECKF(cdx_phash_distance(a, b) >= 40, "negative: distance %d", cdx_phash_distance(a, b));
    /* scaling the brightness does not change the hash */
    for (int i = 0; i < CDX_PHASH_SIDE * CDX_PHASH_SIDE; i++) n[i] = 0.5 * g[i];
    CHECK(cdx_phash_grey(n) == a);
    CHECK(cdx_phash_distance(0, ~0ull) == 64 && cdx_phash_distance(5, 5) == 0);
}

int main(void)
{
    const char *shared = test_shared_dir();
    if (VIPS_INIT("test_phash")) return 1;
    synthetic();

    char dir[4096];
    snprintf(dir, sizeof dir, "%s/data/imagenet-sample", shared);
    DIR *d = opendir(dir);
    if (!d) {
        printf("SKIP: %s is absent\n", dir);
        return 77;
    }
    char *names[N_PHOTOS];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < N_PHOTOS * 4)
        if (strstr(de->d_name, ".JPEG") && n < N_PHOTOS) names[n++] = strdup(de->d_name);
    closedir(d);
    CHECK(n == N_PHOTOS);

    uint64_t orig[N_PHOTOS];
    int worst[5] = {0, 0, 0, 0, 0}, far_crops = 0;
    const char *what[5] = {"PNG re-encode", "JPEG q30", "half size", "5% crop", "colour change"};
    for (int i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len = 0;
        void *buf = test_read_file(path, &len);
        CHECK(buf && hash_of(buf, len, &orig[i]));
        VipsImage *im = vips_image_new_from_buffer(buf, len, "", NULL);
        CHECK(im != NULL);
        if (!im) continue;
        int w = vips_image_get_width(im), h = vips_image_get_height(im);
        for (int k = 0; k < 5; k++) {
            VipsImage *c = NULL;
            int q = 0, ok;
            switch (k) {
            case 0: ok = !vips_copy(im, &c, NULL); break;
            case 1: ok = !vips_copy(im, &c, NULL); q = 30; break;
            case 2: ok = !vips_resize(im, &c, 0.5, NULL); q = 90; break;
            case 3: ok = !vips_crop(im, &c, w / 40, h / 40, w - w / 20, h - h / 20, NULL); q = 90; break;
            default: {   /* warmer and a little brighter */
                double a[3] = {1.06, 1.02, 0.95}, b[3] = {6, 3, 0};
                VipsImage *t = NULL;
                ok = !vips_linear(im, &t, a, b, 3, NULL) && !vips_cast(t, &c, VIPS_FORMAT_UCHAR, NULL);
                if (t) g_object_unref(t);
                q = 90;
            }
            }
            void *cb = NULL;
            size_t cl = 0;
            uint64_t hc = 0;
            CHECK(ok && encode(c, q, &cb, &cl) && hash_of(cb, cl, &hc));
            int dist = cdx_phash_distance(orig[i], hc);
            if (dist > worst[k]) worst[k] = dist;
            if (k == 3 && dist > 12) {
                far_crops++;
                printf("5%% crop of %s: %d bits\n", names[i], dist);
            }
            g_free(cb);
        }
        g_object_unref(im);
        free(buf);
    }
    /* A 5% crop moves the hash more than the other edits, and a crop that
     * cuts off a frame (n02699494_altar: a scanned print with a white
     * border) moves it as far as another photo: at most one of the 40 may
     * exceed 12 bits (docs/search.md says so). */
    int limit[5] = {0, 6, 4, 28, 6};
    for (int k = 0; k < 5; k++) {
        printf("%-14s worst distance %d (limit %d)\n", what[k], worst[k], limit[k]);
        CHECKF(worst[k] <= limit[k], "%s: worst distance %d", what[k], worst[k]);
    }
    CHECKF(far_crops <= 1, "%d crops are more than 12 bits away", far_crops);
    int closest = 64;
    double sum = 0;
    int pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int dist = cdx_phash_distance(orig[i], orig[j]);
            if (dist < closest) closest = dist;
            sum += dist;
            pairs++;
        }
    printf("distinct photos: closest pair %d bits, mean %.1f\n", closest, sum / pairs);
    CHECKF(closest > 14, "two distinct photos are %d bits apart", closest);
    CHECK(sum / pairs > 24);

    /* not an image: an error, not a hash */
    uint64_t h;
    CHECK(cdx_image_phash("hello", 5, NULL, &h) != CDX_OK);
    for (int i = 0; i < n; i++) free(names[i]);
    return test_finish();
}
