/*
 * cmd_preprocess.c - `clipdex preprocess`: decode one image and write the
 * model's float32 [3,S,S] input tensor (raw little-endian, C order), exactly
 * as CLIP's reference preprocessing computes it.  Prints one JSON line with
 * what was decoded.  The output file is written atomically.  Uses only the
 * public API.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex preprocess --model DIR --image FILE --out FILE.f32\n"
            "                          [--no-autorotate] [--fast] [--max-pixels N]\n\n"
            "Write the model input tensor of an image: float32 [3,S,S] (S = the model's\n"
            "image size), raw little-endian, channel-major; bit-exact with OpenAI CLIP's\n"
            "preprocessing (Pillow 9 bicubic resize, centre crop, mean/std).\n\n"
            "  --model DIR        Hugging Face CLIP model directory\n"
            "  --image FILE       JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF or BMP image\n"
            "  --out FILE         output file (written atomically)\n"
            "  --no-autorotate    ignore the EXIF orientation (the reference behaviour)\n"
            "  --fast             JPEG shrink-on-load: faster for large photos, not exact\n"
            "  --max-pixels N     refuse larger images (default 100000000)\n");
}

/* Write via a temporary file in the same directory, fsync, then rename
 * (the library's cdx_write_file_atomic is internal; commands use only the
 * public header). */
static int write_atomic(const char *path, const void *data, size_t len)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return -1;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f) ok = (fflush(f) == 0) & ok & (fsync(fileno(f)) == 0) & (fclose(f) == 0);
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

int cmd_preprocess(int argc, char **argv)
{
    const char *model_dir = NULL, *image = NULL, *out = NULL;
    cdx_image_params ip = cdx_image_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has_val) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--image") && has_val) {
            image = argv[++i];
        } else if (!strcmp(a, "--out") && has_val) {
            out = argv[++i];
        } else if (!strcmp(a, "--no-autorotate")) {
            ip.autorotate = 0;
        } else if (!strcmp(a, "--fast")) {
            ip.fast_shrink = 1;
        } else if (!strcmp(a, "--max-pixels") && has_val) {
            long v;
            if (cli_parse_int(argv[++i], 1, 2000000000L, &v))
                return cli_usage_error("preprocess", "--max-pixels: expected 1..2000000000, got '%s'", argv[i]);
            ip.max_pixels = (uint64_t)v;
        } else if (!strncmp(a, "--", 2) && !has_val &&
                   (!strcmp(a, "--model") || !strcmp(a, "--image") || !strcmp(a, "--out") ||
                    !strcmp(a, "--max-pixels"))) {
            return cli_usage_error("preprocess", "%s needs a value", a);
        } else {
            return cli_usage_error("preprocess", "unknown argument '%s'", a);
        }
    }
    if (!model_dir || !image || !out)
        return cli_usage_error("preprocess", "--model, --image and --out are required");

    cdx_model *model = NULL;
    cdx_result r = cdx_model_load(model_dir, NULL, &model);
    if (r != CDX_OK) return cli_fail("loading model", r);
    cdx_model_info info;
    cdx_model_get_info(model, &info);
    size_t n = (size_t)3 * info.image_size * info.image_size;
    float *px = malloc(n * sizeof(float));
    int rc = 1;
    if (!px) {
        fprintf(stderr, "clipdex: error: out of memory\n");
        goto done;
    }
    cdx_image_meta meta;
    r = cdx_preprocess_file(model, image, &ip, px, &meta);
    if (r != CDX_OK) {
        rc = cli_fail("preprocessing image", r);
        goto done;
    }
    if (write_atomic(out, px, n * sizeof(float))) {
        fprintf(stderr, "clipdex: error: %s: cannot write the output file\n", out);
        goto done;
    }
    fputs("{\"image\": ", stdout);
    cli_print_json_string(stdout, image);
    printf(", \"format\": \"%s\", \"width\": %d, \"height\": %d, \"orientation\": %d, "
           "\"autorotate\": %s, \"size\": %d, \"out\": ",
           meta.format, meta.width, meta.height, meta.orientation,
           ip.autorotate ? "true" : "false", info.image_size);
    cli_print_json_string(stdout, out);
    fputs("}\n", stdout);
    rc = 0;
done:
    free(px);
    cdx_model_free(model);
    return rc;
}
