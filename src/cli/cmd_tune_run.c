/*
 * cmd_tune_run.c - `clipdex tune`: contrastive fine-tuning of a model on
 * (image, caption) pairs, producing an ordinary model directory.
 *
 * Data: CSV `file,caption` (RFC 4180 quoting, optional header), JSONL
 * {"file": ..., "caption": ...}, a COCO-style JSON object {"file":
 * ["caption", ...]}, or --labels-from-folders (one pair per image, caption
 * "a photo of a {folder}").  Relative files resolve under --images ROOT
 * (default: the pairs file's folder).  Captions are tokenised up front;
 * images are decoded and preprocessed batch by batch (bounded memory).
 *
 * Validation (after each epoch, on the --val split): the mean contrastive
 * loss over its batches and recall@1/5/10 in both directions over the
 * whole split, as `clipdex eval captions` reports them.
 *
 * Schedule: a seeded shuffle splits off --val FRACTION; each epoch visits
 * the training pairs in a seeded permutation (seed, epoch) in full batches;
 * the learning rate warms up linearly over the first 10% of the steps
 * (at most 100) and then follows a cosine down to 0.
 *
 * Crash safety: every --checkpoint-every steps and at each epoch end the
 * trainer state (parameters, Adam moments, step) is written atomically to
 * OUT/checkpoint.safetensors with OUT/checkpoint.json naming the run's
 * settings; a new run with the same settings resumes from it (the step
 * number fixes the epoch, the permutation and the position), so a run
 * killed at any moment continues where its last checkpoint left off.  The
 * model files are written last, then the checkpoint is removed.
 *
 * Output: OUT/ holds config.json, preprocessor_config.json, the tokenizer
 * files (copied), model.safetensors (F32) and training.json (base model,
 * data, settings, per-epoch losses): every command loads it with --model.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 10000000
#define MAX_LINE (1 << 20)

typedef struct pair { char *file, *caption; } pair;
typedef struct pairs { pair *v; int n, cap; } pairs;

typedef struct run_opts {
    const char *model, *pairs_file, *images, *out, *folders;
    long epochs, batch, seed, ckpt_every, threads, cache_mb, cache_disk_mb;
    float lr, val;
    cdx_trainer_params tp;
    const char *train_spec;
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipdex tune --model DIR (--pairs FILE | --labels-from-folders) [--images ROOT]\n"
            "                    --out DIR [options]\n\n"
            "Fine-tune a CLIP model with the contrastive loss on (image, caption) pairs and write\n"
            "the result as a model directory usable by every command (--model DIR).\n\n"
            "  --pairs FILE           CSV 'file,caption', JSONL {\"file\",\"caption\"} or a JSON object\n"
            "                         {\"file\": [\"caption\", ...]} (COCO-style captions)\n"
            "  --labels-from-folders  pairs from ROOT/<folder>/<image>: \"a photo of a <folder>\"\n"
            "  --images ROOT          folder relative image paths start from (default: the pairs\n"
            "                         file's folder; required with --labels-from-folders)\n"
            "  --out DIR              output model directory (also holds the checkpoint)\n"
            "  --epochs E             passes over the training pairs (default 1)\n"
            "  --batch B              pairs per step (default 32)\n"
            "  --lr LR                peak learning rate (default 1e-5), warm-up then cosine\n"
            "  --train all|last:K|proj  what is trained (default all)\n"
            "  --weight-decay WD      decoupled weight decay of weight matrices (default 0.2)\n"
            "  --val FRACTION         held-out share for the validation loss (default 0)\n"
            "  --seed S               shuffling seed (default 0)\n"
            "  --checkpoint-every N   steps between checkpoints (default 50; also at epoch ends)\n"
            "  --threads N            threads (default: all cores)\n"
            "  --cache-mb N           last:K / proj: keep the frozen blocks' output per image and\n"
            "                         caption from the first epoch, up to N MB in RAM (default 1024)\n"
            "  --cache-disk-mb N      ... and up to N MB more in a hidden, already deleted file in\n"
            "                         --out (default 4096); beyond both, recomputed (both 0: no cache)\n");
}

/* ------------------------------------------------------------ data */

static int add_pair(pairs *p, const char *file, size_t flen, const char *cap, size_t clen)
{
    if (p->n >= MAX_PAIRS) {
        fprintf(stderr, "clipdex: error: more than %d pairs\n", MAX_PAIRS);
        return 1;
    }
    if (p->n == p->cap) {
        int c = p->cap ? 2 * p->cap : 256;
        pair *q = realloc(p->v, (size_t)c * sizeof *q);
        if (!q) return 1;
        p->v = q;
        p->cap = c;
    }
    pair *x = &p->v[p->n];
    x->file = strndup(file, flen);
    x->caption = strndup(cap, clen);
    if (!x->file || !x->caption) { free(x->file); free(x->caption); return 1; }
    p->n++;
    return 0;
}

static void free_pairs(pairs *p)
{
    for (int i = 0; i < p->n; i++) { free(p->v[i].file); free(p->v[i].caption); }
    free(p->v);
}

/* One CSV field starting at *s (RFC 4180); unquoted into out (cap bytes). */
static int csv_field(const char **s, char *out, size_t cap, size_t *len)
{
    const char *p = *s;
    size_t n = 0;
    if (*p == '"') {
        for (p++;; p++) {
            if (!*p) return -1;   /* unterminated quote */
            if (*p == '"' && p[1] == '"') p++;
            else if (*p == '"') { p++; break; }
            if (n + 1 >= cap) return -1;
            out[n++] = *p;
        }
    } else {
        for (; *p && *p != ',' && *p != '\n' && *p != '\r'; p++) {
            if (n + 1 >= cap) return -1;
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    *len = n;
    *s = p;
    return 0;
}

static int load_csv(const char *path, const char *text, pairs *p)
{
    const char *s = text;
    char *a = malloc(MAX_LINE), *b = malloc(MAX_LINE);
    int line = 1, rc = a && b ? 0 : 1;
    while (!rc && *s) {
        size_t la, lb;
        if (*s == '\n' || *s == '\r') { line += *s == '\n'; s++; continue; }
        if (csv_field(&s, a, MAX_LINE, &la) || *s != ',' || (s++, csv_field(&s, b, MAX_LINE, &lb)) ||
            (*s && *s != '\n' && *s != '\r')) {
            fprintf(stderr, "clipdex: error: %s:%d: expected two CSV fields: file,caption\n", path, line);
            rc = 1;
        } else if (line == 1 && (!strcmp(a, "file") || !strcmp(a, "filepath") || !strcmp(a, "image") ||
                                 !strcmp(a, "path"))) {
            /* header */
        } else if (!la || !lb) {
            fprintf(stderr, "clipdex: error: %s:%d: empty file or caption\n", path, line);
            rc = 1;
        } else {
            rc = add_pair(p, a, la, b, lb);
        }
    }
    free(a);
    free(b);
    return rc;
}

static int load_json(const char *path, const char *text, size_t len, pairs *p)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    int one_line = json_is_string(json_object_get(root, "file")) || json_is_string(json_object_get(root, "image"));
    if (root && json_is_object(root) && !one_line) {   /* {"file": ["caption", ...]} */
        const char *k;
        json_t *v;
        int rc = 0;
        json_object_foreach(root, k, v) {
            size_t i;
            json_t *c;
            if (!json_is_array(v)) { rc = 2; break; }
            json_array_foreach(v, i, c) {
                if (!json_is_string(c)) { rc = 2; break; }
                if ((rc = add_pair(p, k, strlen(k), json_string_value(c), json_string_length(c)))) break;
            }
            if (rc) break;
        }
        json_decref(root);
        if (rc == 2) fprintf(stderr, "clipdex: error: %s: expected {\"file\": [\"caption\", ...]}\n", path);
        return rc != 0;
    }
    json_decref(root);
    /* JSONL */
    int line = 0;
    for (const char *s = text; s < text + len;) {
        const char *e = memchr(s, '\n', (size_t)(text + len - s));
        size_t l = e ? (size_t)(e - s) : (size_t)(text + len - s);
        line++;
        json_t *o = l ? json_loadb(s, l, 0, &je) : NULL;
        json_t *f = json_object_get(o, "file"), *c = json_object_get(o, "caption");
        if (!f) f = json_object_get(o, "image");
        if (!c) c = json_object_get(o, "text");
        int blank = strspn(s, " \t\r") >= l;
        if (!blank && (!json_is_string(f) || !json_is_string(c) || !json_string_length(f) ||
                       !json_string_length(c))) {
            fprintf(stderr, "clipdex: error: %s:%d: expected {\"file\": \"...\", \"caption\": \"...\"}\n", path,
                    line);
            json_decref(o);
            return 1;
        }
        int rc = blank ? 0 : add_pair(p, json_string_value(f), json_string_length(f), json_string_value(c),
                                      json_string_length(c));
        json_decref(o);
        if (rc) return 1;
        s += l + 1;
    }
    return 0;
}

static int load_pairs_file(const char *path, pairs *p)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "clipdex: error: %s: cannot open: %s\n", path, strerror(errno));
        return 1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *q = cap <= ((size_t)1 << 30) ? realloc(buf, cap) : NULL;
            if (!q) { fprintf(stderr, "clipdex: error: %s: too large\n", path); free(buf); fclose(f); return 1; }
            buf = q;
        }
        size_t got = fread(buf + len, 1, 65536, f);
        len += got;
        if (got < 65536) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); fprintf(stderr, "clipdex: error: %s: read error\n", path); return 1; }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) { free(buf); fprintf(stderr, "clipdex: error: %s: binary file\n", path); return 1; }
    size_t pl = strlen(path);
    const char *t = buf + strspn(buf, " \t\r\n");
    int json = *t == '{' || (pl > 6 && !strcmp(path + pl - 6, ".jsonl")) || (pl > 5 && !strcmp(path + pl - 5, ".json"));
    int rc = json ? load_json(path, buf, len, p) : load_csv(path, buf, p);
    free(buf);
    if (!rc && p->n == 0) { fprintf(stderr, "clipdex: error: %s: no pairs\n", path); rc = 1; }
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_folders(const char *root, pairs *p)
{
    DIR *d = opendir(root);
    if (!d) { fprintf(stderr, "clipdex: error: %s: %s\n", root, strerror(errno)); return 1; }
    char **names = NULL;
    int n = 0, rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {   /* sorted below: the result does not depend on readdir order */
        if (e->d_name[0] == '.') continue;
        char **q = realloc(names, (size_t)(n + 1) * sizeof *names);
        if (!q || !(q[n] = strdup(e->d_name))) { rc = 1; names = q ? q : names; break; }
        names = q;
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    char path[4096], cap[1024];
    for (int i = 0; !rc && i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        DIR *sd = opendir(path);
        if (!sd) continue;   /* a file at the top level: not a class folder */
        char **files = NULL;
        int nf = 0;
        while ((e = readdir(sd))) {
            if (e->d_name[0] == '.') continue;
            char **q = realloc(files, (size_t)(nf + 1) * sizeof *files);
            if (!q) break;
            files = q;
            if (!(files[nf] = strdup(e->d_name))) break;
            nf++;
        }
        closedir(sd);
        if (nf) qsort(files, (size_t)nf, sizeof *files, cmp_str);
        int cl = snprintf(cap, sizeof cap, "a photo of a %s", names[i]);
        for (int j = 0; j < nf; j++) {
            int fl = snprintf(path, sizeof path, "%s/%s", names[i], files[j]);
            if (!rc && fl > 0 && (size_t)fl < sizeof path && cl > 0 && (size_t)cl < sizeof cap)
                rc = add_pair(p, path, (size_t)fl, cap, (size_t)cl);
            free(files[j]);
        }
        free(files);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!rc && p->n == 0) { fprintf(stderr, "clipdex: error: %s: no images in sub-folders\n", root); rc = 1; }
    return rc;
}

/* ------------------------------------------------------------ schedule */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void permute(int *v, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) v[i] = i;
    uint64_t s = mix(seed);
    for (int i = n - 1; i > 0; i--) {
        s = mix(s);
        int j = (int)(s % (uint64_t)(i + 1));
        int t = v[i]; v[i] = v[j]; v[j] = t;
    }
}

static float lr_at(const run_opts *o, long step, long total)
{
    long warm = total / 10 < 100 ? total / 10 : 100;
    if (warm < 1) warm = 1;
    if (step < warm) return o->lr * (float)(step + 1) / (float)warm;
    double x = (double)(step - warm) / (double)(total - warm > 0 ? total - warm : 1);
    return (float)(0.5 * o->lr * (1.0 + cos(M_PI * x)));
}

/* ------------------------------------------------------------ files */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* copy dir/name to out/name if it exists (0), 1 on a write failure */
static int copy_file(const char *dir, const char *out, const char *name)
{
    char *src = join(dir, name), *dst = join(out, name), *tmp = dst ? join(out, ".copy.tmp") : NULL;
    int rc = 0;
    FILE *in = src ? fopen(src, "rb") : NULL, *o = NULL;
    if (in && tmp && (o = fopen(tmp, "wb"))) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            if (fwrite(buf, 1, n, o) != n) { rc = 1; break; }
        rc = rc || ferror(in) || fflush(o) || fsync(fileno(o));
        rc = fclose(o) || rc;
        rc = rc || rename(tmp, dst);
        if (rc) { unlink(tmp); fprintf(stderr, "clipdex: error: %s: write failed\n", dst); }
    } else if (in) {
        fprintf(stderr, "clipdex: error: %s: cannot create\n", tmp ? tmp : out);
        rc = 1;
    }
    if (in) fclose(in);
    free(src);
    free(dst);
    free(tmp);
    return rc;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char *p = join(dir, name), *tmp = join(dir, ".write.tmp");
    FILE *f = p && tmp ? fopen(tmp, "wb") : NULL;
    int rc = !f || fputs(text, f) < 0 || fflush(f) || fsync(fileno(f));
    if (f) rc = fclose(f) || rc;
    rc = rc || rename(tmp, p);
    if (rc) { if (tmp) unlink(tmp); fprintf(stderr, "clipdex: error: %s: write failed\n", p ? p : dir); }
    free(p);
    free(tmp);
    return rc;
}

/* the settings a checkpoint must match to be resumed */
static json_t *settings_json(const run_opts *o, int n_pairs, const char *fingerprint)
{
    return json_pack("{s:s, s:s, s:i, s:I, s:I, s:f, s:s, s:f, s:f, s:I}", "base_model_fingerprint", fingerprint,
                     "data", o->pairs_file ? o->pairs_file : o->images, "pairs", n_pairs, "epochs",
                     (json_int_t)o->epochs, "batch", (json_int_t)o->batch, "lr", (double)o->lr, "train",
                     o->train_spec, "weight_decay", (double)o->tp.weight_decay, "val", (double)o->val, "seed",
                     (json_int_t)o->seed);
}

/* ------------------------------------------------------------ training */

typedef struct trainer_run {
    const run_opts *o;
    cdx_model *model;
    cdx_trainer *t;
    pairs *p;
    int32_t *tok;        /* [n, ctx] */
    int ctx_len, embed_dim;
    size_t per_img;
    float *px;           /* [batch, 3, S, S] */
    int32_t *btok;       /* [batch, ctx] */
} trainer_run;

/* Preprocess and gather the pairs idx[0..n) into r->px / r->btok. */
static int gather(trainer_run *r, const int *idx, int n)
{
    cdx_image_params ip = cdx_image_default_params();
    for (int i = 0; i < n; i++) {
        const pair *x = &r->p->v[idx[i]];
        char *path = x->file[0] == '/' || !r->o->images ? strdup(x->file) : join(r->o->images, x->file);
        cdx_result e = path ? cdx_preprocess_file(r->model, path, &ip, r->px + (size_t)i * r->per_img, NULL)
                            : CDX_ERR_NOMEM;
        if (e) {
            char what[4200];
            snprintf(what, sizeof what, "image %s", path ? path : x->file);
            free(path);
            return cli_fail(what, e);
        }
        free(path);
        memcpy(r->btok + (size_t)i * r->ctx_len, r->tok + (size_t)idx[i] * r->ctx_len,
               (size_t)r->ctx_len * sizeof(int32_t));
    }
    return 0;
}

/* Recall@1/5/10 over the whole validation split, both directions (as
 * `clipdex eval captions`): a caption's relevant images are the pairs with
 * the same file, and an image's relevant captions likewise. */
typedef struct val_metrics { double loss, t2i[3], i2t[3]; } val_metrics;

static void recall_at(const pairs *p, const int *val, int n, const float *q, const float *d, int E, double out[3])
{
    static const int K[3] = {1, 5, 10};
    int hits[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        const char *fi = p->v[val[i]].file;
        double best_rel = -INFINITY;
        for (int j = 0; j < n; j++)
            if (!strcmp(p->v[val[j]].file, fi)) {
                double s = 0;
                for (int e = 0; e < E; e++) s += (double)q[(size_t)i * E + e] * d[(size_t)j * E + e];
                best_rel = s > best_rel ? s : best_rel;
            }
        int above = 0;   /* irrelevant items scoring above the best relevant one */
        for (int j = 0; j < n; j++) {
            if (!strcmp(p->v[val[j]].file, fi)) continue;
            double s = 0;
            for (int e = 0; e < E; e++) s += (double)q[(size_t)i * E + e] * d[(size_t)j * E + e];
            above += s > best_rel;
        }
        for (int k = 0; k < 3; k++) hits[k] += above < K[k];
    }
    for (int k = 0; k < 3; k++) out[k] = n ? (double)hits[k] / n : NAN;
}

static int validate(trainer_run *r, const int *val, int nval, int E, val_metrics *m)
{
    const int B = (int)r->o->batch;
    float *img = malloc((size_t)nval * E * sizeof *img), *txt = malloc((size_t)nval * E * sizeof *txt);
    double sum = 0;
    int batches = 0, rc = img && txt ? 0 : 1;
    for (int b0 = 0; !rc && b0 < nval; b0 += B) {
        int n = nval - b0 < B ? nval - b0 : B;
        double l;
        cdx_result e = CDX_OK;
        if ((rc = gather(r, val + b0, n))) break;
        if (n >= 2 && !(e = cdx_trainer_eval(r->t, r->px, r->btok, n, &l, NULL))) {
            sum += l;
            batches++;
        }
        if (!e) e = cdx_trainer_embed(r->t, r->px, r->btok, n, img + (size_t)b0 * E, txt + (size_t)b0 * E);
        if (e) rc = cli_fail("validation", e);
    }
    if (!rc) {
        m->loss = batches ? sum / batches : NAN;
        recall_at(r->p, val, nval, txt, img, E, m->t2i);
        recall_at(r->p, val, nval, img, txt, E, m->i2t);
    }
    free(img);
    free(txt);
    return rc;
}

static void fmt_eta(double s, char *buf, size_t cap)
{
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int train(trainer_run *r, const char *ckpt, const char *ckpt_json, const char *settings, json_t *epochs_out)
{
    const run_opts *o = r->o;
    const int n = r->p->n, nval = (int)floor(o->val * n);
    const int ntrain = n - nval, B = (int)(o->batch < ntrain ? o->batch : ntrain);
    if (ntrain < 2) {
        fprintf(stderr, "clipdex: error: %d training pairs: at least 2 are needed\n", ntrain);
        return 1;
    }
    int *split = malloc((size_t)n * sizeof *split), *perm = malloc((size_t)ntrain * sizeof *perm),
        *idx = malloc((size_t)B * sizeof *idx);
    if (!split || !perm || !idx) { free(split); free(perm); free(idx); return 1; }
    permute(split, n, (uint64_t)o->seed * 2 + 1);   /* split[0..nval) validation, the rest training */
    const long spe = ntrain / B, total = spe * o->epochs;
    long step = cdx_trainer_steps_done(r->t);
    double t0 = now_s(), ema = NAN;
    long step0 = step;
    int rc = 0;
    for (long ep = step / spe; !rc && ep < o->epochs; ep++) {
        permute(perm, ntrain, ((uint64_t)o->seed << 20) ^ (uint64_t)ep);
        double sum = 0;
        int cnt = 0;
        for (long k = step - ep * spe; !rc && k < spe; k++, step++) {
            for (int i = 0; i < B; i++) idx[i] = split[nval + perm[k * B + i]];
            if ((rc = gather(r, idx, B))) break;
            cdx_train_stats st;
            cdx_result e = cdx_trainer_set_lr(r->t, lr_at(o, step, total));
            if (!e) e = cdx_trainer_step(r->t, r->px, r->btok, B, &st);
            if (e) { rc = cli_fail("training step", e); break; }
            sum += st.loss;
            cnt++;
            ema = isnan(ema) ? st.loss : 0.9 * ema + 0.1 * st.loss;
            double el = now_s() - t0, rate = (double)(step + 1 - step0) * B / el;
            char eta[32];
            fmt_eta((double)(total - step - 1) * B / rate, eta, sizeof eta);
            fprintf(stderr, "epoch %ld/%ld step %ld/%ld  loss %.4f (avg %.4f)  lr %.2e  %.1f ex/s  ETA %s\n", ep + 1,
                    o->epochs, step + 1, total, st.loss, ema, (double)lr_at(o, step, total), rate, eta);
            int last_of_epoch = k == spe - 1;
            if (last_of_epoch || (o->ckpt_every > 0 && (step + 1) % o->ckpt_every == 0)) {
                e = cdx_trainer_save_state(r->t, ckpt);
                if (e) { rc = cli_fail("writing checkpoint", e); break; }
                if ((rc = write_text(o->out, ckpt_json, settings))) break;
            }
        }
        if (rc) break;
        json_t *rec = json_pack("{s:I}", "epoch", (json_int_t)(ep + 1));
        json_object_set_new(rec, "train_loss", cnt ? json_real(sum / cnt) : json_null());   /* null: resumed at an epoch end */
        if (nval >= 2) {
            val_metrics vm;
            if ((rc = validate(r, split, nval, r->embed_dim, &vm))) { json_decref(rec); break; }
            json_object_set_new(rec, "val_loss", isnan(vm.loss) ? json_null() : json_real(vm.loss));
            json_object_set_new(rec, "val_text_to_image_recall", json_pack("[f,f,f]", vm.t2i[0], vm.t2i[1], vm.t2i[2]));
            json_object_set_new(rec, "val_image_to_text_recall", json_pack("[f,f,f]", vm.i2t[0], vm.i2t[1], vm.i2t[2]));
            fprintf(stderr, "epoch %ld: validation loss %.4f; recall@1/5/10 text->image %.3f/%.3f/%.3f, "
                    "image->text %.3f/%.3f/%.3f (%d pairs)\n", ep + 1, vm.loss, vm.t2i[0], vm.t2i[1], vm.t2i[2],
                    vm.i2t[0], vm.i2t[1], vm.i2t[2], nval);
        }
        cdx_train_cache_stats cs;
        cdx_trainer_cache_stats(r->t, &cs);
        if (cs.hits + cs.misses) {
            fprintf(stderr, "epoch %ld: frozen-prefix cache: %llu hits, %llu misses, %llu not kept; %.1f MB RAM, "
                    "%.1f MB spilled\n", ep + 1, (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                    (unsigned long long)cs.refused, cs.ram_bytes / 1048576.0, cs.disk_bytes / 1048576.0);
            json_object_set_new(rec, "frozen_cache", json_pack("{s:I,s:I,s:I,s:I,s:I}", "hits", (json_int_t)cs.hits,
                                "misses", (json_int_t)cs.misses, "not_kept", (json_int_t)cs.refused,
                                "ram_bytes", (json_int_t)cs.ram_bytes, "disk_bytes", (json_int_t)cs.disk_bytes));
        }
        json_array_append_new(epochs_out, rec);
    }
    free(split);
    free(perm);
    free(idx);
    return rc;
}

static int prepare_out(const char *out)
{
    if (mkdir(out, 0777) && errno != EEXIST) {
        fprintf(stderr, "clipdex: error: %s: cannot create: %s\n", out, strerror(errno));
        return 1;
    }
    return 0;
}

static int run(run_opts *o)
{
    pairs p = {0};
    int rc = o->folders ? load_folders(o->images, &p) : load_pairs_file(o->pairs_file, &p);
    if (!rc && p.n - (int)floor(o->val * p.n) < 2) {   /* before anything is created */
        fprintf(stderr, "clipdex: error: %d training pairs: at least 2 are needed\n", p.n - (int)floor(o->val * p.n));
        rc = 1;
    }
    if (rc) { free_pairs(&p); return 1; }
    trainer_run r = {.o = o, .p = &p};
    char *dir_copy = NULL, *ckpt = NULL;
    json_t *epochs = json_array(), *settings = NULL;
    char *settings_s = NULL;
    cdx_result e = cdx_model_load(o->model, NULL, &r.model);
    if (e) { rc = cli_fail("loading model", e); goto done; }
    if (!o->images && o->pairs_file) {   /* relative files start at the pairs file's folder */
        dir_copy = strdup(o->pairs_file);
        char *slash = dir_copy ? strrchr(dir_copy, '/') : NULL;
        if (slash) { *slash = '\0'; o->images = dir_copy; }
    }
    cdx_model_info info;
    cdx_model_get_info(r.model, &info);
    r.ctx_len = info.context_length;
    r.embed_dim = info.embed_dim;
    r.per_img = (size_t)3 * info.image_size * info.image_size;
    r.tok = malloc((size_t)p.n * r.ctx_len * sizeof *r.tok);
    r.px = malloc((size_t)o->batch * r.per_img * sizeof *r.px);
    r.btok = malloc((size_t)o->batch * r.ctx_len * sizeof *r.btok);
    if (!r.tok || !r.px || !r.btok || !epochs) { rc = 1; fprintf(stderr, "clipdex: error: out of memory\n"); goto done; }
    for (int i = 0; i < p.n; i++) {
        e = cdx_tokenize(r.model, p.v[i].caption, strlen(p.v[i].caption), r.tok + (size_t)i * r.ctx_len, NULL);
        if (e) { rc = cli_fail("tokenizing a caption", e); goto done; }
    }
    cdx_trainer_params tp = o->tp;
    tp.lr = o->lr;
    tp.n_threads = (int)o->threads;
    tp.max_batch = (int)o->batch;
    tp.cache_bytes = (size_t)o->cache_mb << 20;
    tp.cache_dir = o->out;   /* the spill file's folder (prepare_out makes it) */
    tp.cache_disk_bytes = (size_t)o->cache_disk_mb << 20;
    if ((rc = prepare_out(o->out))) goto done;
    if ((e = cdx_trainer_new(r.model, &tp, &r.t))) { rc = cli_fail("creating trainer", e); goto done; }
    settings = settings_json(o, p.n, info.fingerprint);
    settings_s = settings ? json_dumps(settings, JSON_SORT_KEYS) : NULL;
    ckpt = join(o->out, "checkpoint.safetensors");
    char *ckpt_json = join(o->out, "checkpoint.json");
    if (!settings_s || !ckpt || !ckpt_json) { free(ckpt_json); rc = 1; goto done; }
    json_error_t je;
    json_t *old = json_load_file(ckpt_json, 0, &je);
    free(ckpt_json);
    if (old) {
        char *olds = json_dumps(old, JSON_SORT_KEYS);
        int same = olds && !strcmp(olds, settings_s);
        free(olds);
        json_decref(old);
        if (!same) {
            fprintf(stderr, "clipdex: error: %s holds a checkpoint of a run with other settings; "
                            "remove it or use another --out\n", o->out);
            rc = 1;
            goto done;
        }
        if ((e = cdx_trainer_load_state(r.t, ckpt))) { rc = cli_fail("loading checkpoint", e); goto done; }
        fprintf(stderr, "resuming from the checkpoint at step %d\n", cdx_trainer_steps_done(r.t));
    }
    if ((rc = train(&r, ckpt, "checkpoint.json", settings_s, epochs))) goto done;
    /* the model directory: tokenizer and configs copied, weights, record */
    static const char *const files[] = {"config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
                                        "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"};
    for (size_t i = 0; !rc && i < sizeof files / sizeof files[0]; i++) rc = copy_file(o->model, o->out, files[i]);
    char *wpath = rc ? NULL : join(o->out, "model.safetensors");
    if (wpath && (e = cdx_trainer_save(r.t, wpath, CDX_TRAINER_SAVE_PARAMS))) rc = cli_fail("writing model", e);
    free(wpath);
    if (rc) goto done;
    json_object_set_new(settings, "clipdex_version", json_string(CDX_VERSION_STRING));
    json_object_set_new(settings, "base_model", json_string(o->model));
    json_object_set_new(settings, "steps", json_integer(cdx_trainer_steps_done(r.t)));
    json_object_set(settings, "epochs_log", epochs);
    char *rec = json_dumps(settings, JSON_INDENT(2) | JSON_SORT_KEYS);
    rc = !rec || write_text(o->out, "training.json", rec);
    free(rec);
    if (!rc) {
        unlink(ckpt);
        char *cj = join(o->out, "checkpoint.json");
        if (cj) unlink(cj);
        free(cj);
        printf("%s\n", o->out);
    }
done:
    cdx_trainer_free(r.t);
    cdx_model_free(r.model);
    free(r.tok);
    free(r.px);
    free(r.btok);
    free(dir_copy);
    free(ckpt);
    free(settings_s);
    json_decref(settings);
    json_decref(epochs);
    free_pairs(&p);
    return rc;
}

static int parse_f(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

int cmd_tune(int argc, char **argv)
{
    run_opts o = {0};
    o.epochs = 1;
    o.batch = 32;
    o.ckpt_every = 50;
    o.cache_mb = 1024;
    o.cache_disk_mb = 4096;
    o.lr = 1e-5f;
    o.train_spec = "all";
    o.tp = cdx_trainer_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--labels-from-folders")) { o.folders = "yes"; continue; }
        if (i + 1 >= argc) return cli_usage_error("tune", "unknown option or missing value: '%s'", a);
        const char *v = argv[++i];
        int bad = 0;
        long k;
        if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--pairs")) o.pairs_file = v;
        else if (!strcmp(a, "--images")) o.images = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--epochs")) bad = cli_parse_int(v, 1, 100000, &o.epochs);
        else if (!strcmp(a, "--batch")) bad = cli_parse_int(v, 2, 4096, &o.batch);
        else if (!strcmp(a, "--seed")) bad = cli_parse_int(v, 0, 2147483647, &o.seed);
        else if (!strcmp(a, "--checkpoint-every")) bad = cli_parse_int(v, 1, 100000000, &o.ckpt_every);
        else if (!strcmp(a, "--threads")) bad = cli_parse_int(v, 1, 1024, &o.threads);
        else if (!strcmp(a, "--cache-mb")) bad = cli_parse_int(v, 0, 1L << 30, &o.cache_mb);
        else if (!strcmp(a, "--cache-disk-mb")) bad = cli_parse_int(v, 0, 1L << 30, &o.cache_disk_mb);
        else if (!strcmp(a, "--lr")) bad = parse_f(v, 0, 0.999, &o.lr);
        else if (!strcmp(a, "--weight-decay")) bad = parse_f(v, 0, 99, &o.tp.weight_decay);
        else if (!strcmp(a, "--val")) bad = parse_f(v, 0, 0.9, &o.val);
        else if (!strcmp(a, "--train")) {
            o.train_spec = v;
            if (!strcmp(v, "all")) o.tp.scope = CDX_TRAIN_ALL;
            else if (!strcmp(v, "proj")) o.tp.scope = CDX_TRAIN_PROJ;
            else if (!strncmp(v, "last:", 5) && !cli_parse_int(v + 5, 1, 1000, &k)) {
                o.tp.scope = CDX_TRAIN_LAST;
                o.tp.last_k = (int)k;
            } else bad = 1;
        } else return cli_usage_error("tune", "unknown option '%s'", a);
        if (bad) return cli_usage_error("tune", "%s: bad value '%s'", a, v);
    }
    if (!o.model || !o.out) return cli_usage_error("tune", "--model and --out are required");
    if (!o.pairs_file == !o.folders)
        return cli_usage_error("tune", "give exactly one of --pairs FILE and --labels-from-folders");
    if (o.folders && !o.images) return cli_usage_error("tune", "--labels-from-folders needs --images ROOT");
    return run(&o);
}
