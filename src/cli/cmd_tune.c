/*
 * cmd_tune.c - `clipdex tune-step`: the low-level fine-tuning command, for
 * tests and checks.  Reads one batch of pairs (raw float32 pixels, int32
 * token rows), takes N AdamW steps on it with the contrastive loss, prints
 * the loss before each step (and after the last), and writes the first
 * step's gradients and the parameters after N steps as safetensors under
 * the model's own tensor names.
 *
 * Every input is checked before any work: file sizes must be exact
 * multiples of one pair, both files must hold the same number of pairs,
 * options are range-checked.  Output files are written atomically.  Uses
 * only the public API.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TUNE_MAX_STEPS 100000
#define TUNE_MAX_PAIRS 4096

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex tune-step --model DIR --pixels BATCH.f32 --tokens BATCH.i32 [options]\n\n"
            "Take N AdamW steps of CLIP's contrastive loss on one batch of (image, caption)\n"
            "pairs (pair i is the positive pair) and print the loss before each step.\n\n"
            "  --model DIR            Hugging Face CLIP model directory\n"
            "  --weights FILE         weight file inside DIR (default model.safetensors)\n"
            "  --pixels FILE          float32 [n,3,S,S] preprocessed images\n"
            "  --tokens FILE          int32 [n,context_length] token ids (clipdex tokenize)\n"
            "  --steps N              optimizer steps (default 1)\n"
            "  --train all|last:K|proj  what is trained (default all)\n"
            "  --lr LR                learning rate (default 1e-5)\n"
            "  --betas B1,B2          Adam betas (default 0.9,0.98)\n"
            "  --eps EPS              Adam epsilon (default 1e-6)\n"
            "  --weight-decay WD      decoupled decay of weight matrices (default 0.2)\n"
            "  --grads-out FILE       write the first step's gradients (trainable tensors)\n"
            "  --out FILE             write every parameter after the steps (model.safetensors)\n"
            "  --threads N            threads (default: all cores)\n"
            "  --json                 one JSON object per line\n");
}

/* Read a whole regular file of at most cap bytes. */
static int read_all(const char *path, size_t cap, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "clipdex: error: %s: cannot open: %s\n", path, strerror(errno));
        return 1;
    }
    size_t n = 0, want = 1 << 20;
    char *p = NULL;
    for (;;) {
        if (n + want > cap + 1) want = cap + 1 - n;
        char *q = realloc(p, n + want);
        if (!q) { fprintf(stderr, "clipdex: error: out of memory reading %s\n", path); break; }
        p = q;
        size_t got = fread(p + n, 1, want, f);
        n += got;
        if (got < want) {
            if (ferror(f)) { fprintf(stderr, "clipdex: error: %s: read error\n", path); break; }
            fclose(f);
            *buf = p;
            *len = n;
            return 0;
        }
        if (n > cap) { fprintf(stderr, "clipdex: error: %s: larger than %zu bytes\n", path, cap); break; }
        want = n;
    }
    free(p);
    fclose(f);
    return 1;
}

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

static int parse_scope(const char *s, cdx_trainer_params *p)
{
    long k;
    if (!strcmp(s, "all")) p->scope = CDX_TRAIN_ALL;
    else if (!strcmp(s, "proj")) p->scope = CDX_TRAIN_PROJ;
    else if (!strncmp(s, "last:", 5) && !cli_parse_int(s + 5, 1, 1000, &k)) {
        p->scope = CDX_TRAIN_LAST;
        p->last_k = (int)k;
    } else {
        return -1;
    }
    return 0;
}

typedef struct tune_args {
    const char *model, *weights, *pixels, *tokens, *grads_out, *out;
    long steps, threads;
    int json;
    cdx_trainer_params tp;
} tune_args;

/* ls NaN: the loss after the last step (no logit_scale field) */
static void print_loss(const tune_args *a, int step, double loss, float ls)
{
    if (isnan(ls)) {
        if (a->json) printf("{\"step\": %d, \"loss\": %.9g, \"final\": true}\n", step, loss);
        else printf("after step %d: loss %.6f\n", step - 1, loss);
    } else if (a->json)
        printf("{\"step\": %d, \"loss\": %.9g, \"logit_scale\": %.9g}\n", step, loss, (double)ls);
    else
        printf("step %d: loss %.6f (logit_scale %.6f)\n", step, loss, (double)ls);
}

static int run(const tune_args *a)
{
    cdx_model_params mp = cdx_model_default_params();
    mp.weights_file = a->weights;
    cdx_model *model = NULL;
    cdx_trainer *t = NULL;
    void *px = NULL, *tk = NULL;
    size_t px_len = 0, tk_len = 0;
    int rc = 1;
    cdx_result r = cdx_model_load(a->model, &mp, &model);
    if (r) return cli_fail("loading model", r);
    cdx_model_info info;
    cdx_model_get_info(model, &info);
    const size_t per_img = (size_t)3 * info.image_size * info.image_size * sizeof(float);
    const size_t per_txt = (size_t)info.context_length * sizeof(int32_t);
    if (read_all(a->pixels, per_img * TUNE_MAX_PAIRS, &px, &px_len) ||
        read_all(a->tokens, per_txt * TUNE_MAX_PAIRS, &tk, &tk_len))
        goto done;
    if (px_len == 0 || px_len % per_img || tk_len % per_txt || px_len / per_img != tk_len / per_txt) {
        fprintf(stderr,
                "clipdex: error: %s holds %zu bytes and %s %zu: expected n x %zu (float32 [3,%d,%d]) and "
                "n x %zu (int32 [%d]) bytes for the same n >= 1\n",
                a->pixels, px_len, a->tokens, tk_len, per_img, info.image_size, info.image_size, per_txt,
                info.context_length);
        goto done;
    }
    const int n = (int)(px_len / per_img);
    cdx_trainer_params tp = a->tp;
    tp.n_threads = (int)a->threads;
    if (n > tp.max_batch) tp.max_batch = n;
    if ((r = cdx_trainer_new(model, &tp, &t))) { rc = cli_fail("creating trainer", r); goto done; }
    for (long s = 0; s < a->steps; s++) {
        cdx_train_stats st;
        if ((r = cdx_trainer_step(t, px, tk, n, &st))) { rc = cli_fail("training step", r); goto done; }
        print_loss(a, (int)s, st.loss, st.logit_scale);
        if (s == 0 && a->grads_out && (r = cdx_trainer_save(t, a->grads_out, CDX_TRAINER_SAVE_GRADS))) {
            rc = cli_fail("writing gradients", r);
            goto done;
        }
    }
    double loss;
    if ((r = cdx_trainer_eval(t, px, tk, n, &loss, NULL))) { rc = cli_fail("evaluating", r); goto done; }
    print_loss(a, (int)a->steps, loss, NAN);
    if (a->out && (r = cdx_trainer_save(t, a->out, CDX_TRAINER_SAVE_PARAMS))) {
        rc = cli_fail("writing parameters", r);
        goto done;
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    cdx_trainer_free(t);
    cdx_model_free(model);
    free(px);
    free(tk);
    return rc;
}

int cmd_tune_step(int argc, char **argv)
{
    tune_args a = {0};
    a.steps = 1;
    a.tp = cdx_trainer_default_params();
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--json")) {
            a.json = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("tune-step", "unknown option or missing value: '%s'", o);
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(o, "--model")) a.model = v;
        else if (!strcmp(o, "--weights")) a.weights = v;
        else if (!strcmp(o, "--pixels")) a.pixels = v;
        else if (!strcmp(o, "--tokens")) a.tokens = v;
        else if (!strcmp(o, "--grads-out")) a.grads_out = v;
        else if (!strcmp(o, "--out")) a.out = v;
        else if (!strcmp(o, "--steps")) bad = cli_parse_int(v, 1, TUNE_MAX_STEPS, &a.steps);
        else if (!strcmp(o, "--threads")) bad = cli_parse_int(v, 1, 1024, &a.threads);
        else if (!strcmp(o, "--train")) bad = parse_scope(v, &a.tp);
        else if (!strcmp(o, "--lr")) bad = parse_float(v, 0, 0.999, &a.tp.lr);
        else if (!strcmp(o, "--eps")) bad = parse_float(v, 1e-30, 0.999, &a.tp.eps);
        else if (!strcmp(o, "--weight-decay")) bad = parse_float(v, 0, 99, &a.tp.weight_decay);
        else if (!strcmp(o, "--betas")) {
            char b1[64];
            const char *comma = strchr(v, ',');
            size_t l = comma ? (size_t)(comma - v) : 0;
            bad = !comma || l >= sizeof b1;
            if (!bad) {
                memcpy(b1, v, l);
                b1[l] = '\0';
                bad = parse_float(b1, 0, 0.999999, &a.tp.beta1) || parse_float(comma + 1, 0, 0.999999, &a.tp.beta2);
            }
        } else {
            return cli_usage_error("tune-step", "unknown option '%s'", o);
        }
        if (bad) return cli_usage_error("tune-step", "%s: bad value '%s'", o, v);
    }
    if (!a.model || !a.pixels || !a.tokens)
        return cli_usage_error("tune-step", "--model, --pixels and --tokens are required");
    return run(&a);
}
