/*
 * cmd_embed.c - `clipdex embed`: print the CLIP embeddings of texts, image
 * files and raw pixel tensors, one JSON object per input, in input order:
 *   {"input": "<text or path>", "embedding": [...]}
 *
 * Inputs are gathered first (texts tokenised, images decoded and
 * preprocessed, pixel files read and size-checked), then each kind is encoded
 * in one batched call.  Any failing input aborts with exit status 1 before
 * anything is printed.  Uses only the public API.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define EMBED_MAX_INPUTS 100000

typedef enum input_kind { IN_TEXT, IN_IMAGE, IN_PIXELS } input_kind;

typedef struct input {
    input_kind kind;
    const char *arg;
    int slot;        /* row in the texts or the images batch */
} input;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex embed --model DIR [--normalize] [--no-autorotate]\n"
            "                     (--text T | --image FILE | --pixels FILE.f32)...\n\n"
            "Print one JSON object per input, in input order, one per line:\n"
            "  {\"input\": \"<text or file>\", \"embedding\": [...]}\n\n"
            "  --model DIR       Hugging Face CLIP model directory\n"
            "  --text T          embed the UTF-8 text T\n"
            "  --image FILE      embed an image file (decoded and preprocessed like CLIP)\n"
            "  --pixels FILE     embed a raw float32 [3,S,S] model input (S = image size)\n"
            "  --normalize       divide each embedding by its L2 norm\n"
            "  --no-autorotate   ignore the EXIF orientation (the reference CLIP behaviour)\n"
            "  --threads N       inference threads (default: all cores)\n"
            CLI_PRECISION_HELP);
}

/* Read exactly want bytes from path into out. */
static int read_pixels(const char *path, float *out, size_t want)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "clipdex: error: %s: cannot open\n", path);
        return 1;
    }
    size_t got = fread(out, 1, want, f);
    char extra;
    int more = fread(&extra, 1, 1, f) == 1;
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "clipdex: error: %s: read error\n", path);
        return 1;
    }
    if (got != want || more) {
        fprintf(stderr, "clipdex: error: %s: expected exactly %zu bytes (float32 [3,S,S]), got %s%zu\n",
                path, want, more ? "more than " : "", got);
        return 1;
    }
    return 0;
}

static int run(const char *model_dir, input *in, int n, int n_text, int n_img, int normalize,
               int autorotate, int threads, cdx_precision prec)
{
    cdx_model *model = NULL;
    cdx_ctx *ctx = NULL;
    float *pixels = NULL, *temb = NULL, *iemb = NULL;
    const char **texts = NULL;
    int rc = 1;
    cdx_result r = cdx_model_load(model_dir, NULL, &model);
    if (r != CDX_OK) return cli_fail("loading model", r);
    cdx_model_info info;
    cdx_model_get_info(model, &info);
    const int E = info.embed_dim;
    const size_t per = (size_t)3 * info.image_size * info.image_size;
    cdx_ctx_params cp = cdx_ctx_default_params();
    cp.n_threads = threads;
    cp.precision = prec;
    r = cdx_ctx_new(model, &cp, &ctx);
    if (r != CDX_OK) { rc = cli_fail("creating inference context", r); goto done; }

    texts = calloc((size_t)n_text + 1, sizeof *texts);
    temb = calloc((size_t)n_text * E + 1, sizeof *temb);
    iemb = calloc((size_t)n_img * E + 1, sizeof *iemb);
    pixels = calloc(n_img ? (size_t)n_img * per : 1, sizeof *pixels);
    if (!texts || !temb || !iemb || !pixels) {
        fprintf(stderr, "clipdex: error: out of memory for %d inputs\n", n);
        goto done;
    }
    cdx_image_params ip = cdx_image_default_params();
    ip.autorotate = autorotate;
    for (int i = 0; i < n; i++) {
        if (in[i].kind == IN_TEXT) {
            texts[in[i].slot] = in[i].arg;
        } else if (in[i].kind == IN_PIXELS) {
            if (read_pixels(in[i].arg, pixels + (size_t)in[i].slot * per, per * sizeof(float))) goto done;
        } else {
            r = cdx_preprocess_file(model, in[i].arg, &ip, pixels + (size_t)in[i].slot * per, NULL);
            if (r != CDX_OK) { rc = cli_fail("preprocessing image", r); goto done; }
        }
    }
    if (n_text && (r = cdx_encode_texts(ctx, texts, n_text, temb, normalize)) != CDX_OK) {
        rc = cli_fail("encoding texts", r);
        goto done;
    }
    if (n_img && (r = cdx_encode_images(ctx, pixels, n_img, iemb, normalize)) != CDX_OK) {
        rc = cli_fail("encoding images", r);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const float *e = (in[i].kind == IN_TEXT ? temb : iemb) + (size_t)in[i].slot * E;
        fputs("{\"input\": ", stdout);
        cli_print_json_string(stdout, in[i].arg);
        fputs(", \"embedding\": ", stdout);
        cli_print_floats(stdout, e, E);
        fputs("}\n", stdout);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "clipdex: error: writing output failed\n");
        goto done;
    }
    rc = 0;
done:
    free(texts);
    free(temb);
    free(iemb);
    free(pixels);
    cdx_ctx_free(ctx);
    cdx_model_free(model);
    return rc;
}

int cmd_embed(int argc, char **argv)
{
    const char *model_dir = NULL;
    int normalize = 0, autorotate = 1, n = 0, n_text = 0, n_img = 0;
    long threads = 0;
    cdx_precision prec = CDX_PRECISION_FP32;
    input *in = calloc((size_t)argc + 1, sizeof *in);
    if (!in) {
        fprintf(stderr, "clipdex: error: out of memory\n");
        return 1;
    }
    int rc = -1;
    for (int i = 1; i < argc && rc < 0; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
        } else if (!strcmp(a, "--normalize")) {
            normalize = 1;
        } else if (!strcmp(a, "--no-autorotate")) {
            autorotate = 0;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--text") || !strcmp(a, "--image") ||
                   !strcmp(a, "--pixels") || !strcmp(a, "--threads") || !strcmp(a, "--precision")) {
            if (!has_val) {
                rc = cli_usage_error("embed", "%s needs a value", a);
            } else if (!strcmp(a, "--model")) {
                model_dir = argv[++i];
            } else if (!strcmp(a, "--precision")) {
                if (cli_parse_precision("embed", argv[++i], &prec)) rc = 2;
            } else if (!strcmp(a, "--threads")) {
                if (cli_parse_int(argv[++i], 1, 1024, &threads))
                    rc = cli_usage_error("embed", "--threads: expected 1..1024, got '%s'", argv[i]);
            } else if (n >= EMBED_MAX_INPUTS) {
                rc = cli_usage_error("embed", "too many inputs (at most %d)", EMBED_MAX_INPUTS);
            } else {
                input_kind k = !strcmp(a, "--text") ? IN_TEXT : !strcmp(a, "--image") ? IN_IMAGE : IN_PIXELS;
                in[n] = (input){k, argv[++i], k == IN_TEXT ? n_text++ : n_img++};
                n++;
            }
        } else {
            rc = cli_usage_error("embed", "unknown option '%s'", a);
        }
    }
    if (rc < 0 && !model_dir) rc = cli_usage_error("embed", "--model DIR is required");
    if (rc < 0 && n == 0) rc = cli_usage_error("embed", "nothing to embed: give --text, --image or --pixels");
    if (rc < 0) rc = run(model_dir, in, n, n_text, n_img, normalize, autorotate, (int)threads, prec);
    free(in);
    return rc;
}
