/*
 * test_model_load.c - cdx_model_load() on the clip-tiny fixture (F32 with I64
 * position_ids, F16) and on files written here (BF16, 64-byte aligned F32,
 * hostile variants).  Loaded weights are compared with values read from the
 * raw file by an independent mini-reader (jansson + offsets), the F16/BF16
 * upcasts with reference conversions written with ldexp(), and the
 * fingerprint with SHA-256 computed here.
 */
#include "testutil.h"

#include "clip/model.h"

#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <unistd.h>

/* ------------------------------------------------------------ raw reader */

typedef struct raw_st {
    uint8_t *bytes;
    size_t len;
    json_t *hdr;
    size_t data_start;
} raw_st;

static int raw_open(raw_st *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->bytes = test_read_file(path, &r->len);
    if (!r->bytes || r->len < 8) return 0;
    uint64_t n;
    memcpy(&n, r->bytes, 8);
    r->hdr = json_loadb((const char *)r->bytes + 8, n, 0, NULL);
    r->data_start = 8 + n;
    return r->hdr != NULL;
}

static void raw_close(raw_st *r)
{
    free(r->bytes);
    json_decref(r->hdr);
}

/* Raw bytes and dtype of tensor `name` (NULL if absent). */
static const uint8_t *raw_tensor(const raw_st *r, const char *name, const char **dtype, size_t *nbytes)
{
    json_t *e = json_object_get(r->hdr, name);
    if (!e) return NULL;
    json_t *off = json_object_get(e, "data_offsets");
    size_t b = (size_t)json_integer_value(json_array_get(off, 0));
    size_t en = (size_t)json_integer_value(json_array_get(off, 1));
    *dtype = json_string_value(json_object_get(e, "dtype"));
    *nbytes = en - b;
    return r->bytes + r->data_start + b;
}

/* Reference conversions, written independently of safetensors.c. */
static float ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1024.0 + m, e - 25);
    return (float)(s ? -v : v);
}
static float ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp((double)m, -133) : ldexp(128.0 + m, e - 134);
    return (float)(s ? -v : v);
}

/* Tensor `name` of the raw file converted to float; checks the count. */
static float *raw_floats(const raw_st *r, const char *name, size_t count)
{
    const char *dt = NULL;
    size_t nb = 0;
    const uint8_t *p = raw_tensor(r, name, &dt, &nb);
    if (!p) {
        fprintf(stderr, "raw: no tensor %s\n", name);
        return NULL;
    }
    float *out = malloc(count * sizeof *out + 1);
    if (strcmp(dt, "F32") == 0 && nb == count * 4) {
        memcpy(out, p, nb);
    } else if ((strcmp(dt, "F16") == 0 || strcmp(dt, "BF16") == 0) && nb == count * 2) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = dt[0] == 'F' ? ref_f16(h) : ref_bf16(h);
        }
    } else {
        fprintf(stderr, "raw: tensor %s has dtype %s and %zu bytes, want %zu elements\n", name, dt, nb, count);
        free(out);
        return NULL;
    }
    return out;
}

/* 1 when got[0..n) equals tensor `name` of the raw file bit for bit. */
static int same_as_raw(const raw_st *r, const char *name, const float *got, size_t n)
{
    float *want = raw_floats(r, name, n);
    if (!want || !got) {
        free(want);
        return 0;
    }
    int ok = memcmp(want, got, n * sizeof *got) == 0;
    if (!ok) fprintf(stderr, "tensor %s differs from the raw file\n", name);
    free(want);
    return ok;
}

/* --------------------------------------------------------- temp model dirs */

static char g_tmp[256];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* A fresh directory g_tmp/<name> with symlinks to the fixture's files except
 * those the caller will write. */
static const char *make_dir(const char *name, int link_config, int link_weights)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    mkdir(dir, 0755);
    const char *files[] = {"vocab.json", "merges.txt", "preprocessor_config.json", "config.json",
                           "model.safetensors"};
    for (int i = 0; i < 5; i++) {
        if (i == 3 && !link_config) continue;
        if (i == 4 && !link_weights) continue;
        char src[4200], dst[600];
        snprintf(src, sizeof src, "%s/%s", test_fixture_dir(), files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        if (symlink(src, dst) != 0) perror(dst);
    }
    return dir;
}

static void write_bytes(const char *dir, const char *name, const void *data, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) perror(path);
    if (f) fclose(f);
}

/* Write header JSON (padded with spaces to a multiple of `align` after the
 * 8-byte length) and data. */
static void write_st(const char *dir, const char *name, json_t *hdr, const void *data, size_t len, size_t align)
{
    char *js = json_dumps(hdr, JSON_COMPACT);
    size_t n = strlen(js), padded = n;
    while ((8 + padded) % align) padded++;
    size_t total = 8 + padded + len;
    uint8_t *buf = malloc(total);
    uint64_t h = padded;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, js, n);
    memset(buf + 8 + n, ' ', padded - n);
    if (len) memcpy(buf + 8 + padded, data, len);
    write_bytes(dir, name, buf, total);
    free(buf);
    free(js);
}

/* The fixture's F32 file with its header edited by `edit`, data unchanged. */
static const char *dir_with_edited_header(const char *name, const raw_st *f32,
                                          void (*edit)(json_t *hdr, void *arg), void *arg)
{
    const char *dir = make_dir(name, 1, 0);
    json_t *hdr = json_deep_copy(f32->hdr);
    edit(hdr, arg);
    write_st(dir, "model.safetensors", hdr, f32->bytes + f32->data_start, f32->len - f32->data_start, 1);
    json_decref(hdr);
    return dir;
}

/* -------------------------------------------------------------- checks */

static int aligned(const void *p) { return ((uintptr_t)p & 63) == 0; }

static void check_block(const raw_st *r, const char *tower, int i, const cdx_block *b, int w, int mlp)
{
    char n[256];
    size_t ww = (size_t)w * w;
    CHECK(b->qkv.in == w && b->qkv.out == 3 * w);
    CHECK(b->out.in == w && b->out.out == w);
    CHECK(b->fc1.in == w && b->fc1.out == mlp);
    CHECK(b->fc2.in == mlp && b->fc2.out == w);
    CHECK(aligned(b->qkv.w) && aligned(b->qkv.b) && aligned(b->fc1.w) && aligned(b->ln1.g));
    const char *parts[3] = {"q_proj", "k_proj", "v_proj"};
    for (int k = 0; k < 3; k++) {   /* fused rows: q, then k, then v */
        snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.%s.weight", tower, i, parts[k]);
        CHECKF(same_as_raw(r, n, b->qkv.w + k * ww, ww), "%s", n);
        snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.%s.bias", tower, i, parts[k]);
        CHECKF(same_as_raw(r, n, b->qkv.b + k * w, (size_t)w), "%s", n);
    }
    snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.out_proj.weight", tower, i);
    CHECK(same_as_raw(r, n, b->out.w, ww));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.out_proj.bias", tower, i);
    CHECK(same_as_raw(r, n, b->out.b, (size_t)w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc1.weight", tower, i);
    CHECK(same_as_raw(r, n, b->fc1.w, (size_t)mlp * w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc1.bias", tower, i);
    CHECK(same_as_raw(r, n, b->fc1.b, (size_t)mlp));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc2.weight", tower, i);
    CHECK(same_as_raw(r, n, b->fc2.w, (size_t)mlp * w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc2.bias", tower, i);
    CHECK(same_as_raw(r, n, b->fc2.b, (size_t)w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.layer_norm1.weight", tower, i);
    CHECK(same_as_raw(r, n, b->ln1.g, (size_t)w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.layer_norm1.bias", tower, i);
    CHECK(same_as_raw(r, n, b->ln1.b, (size_t)w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.layer_norm2.weight", tower, i);
    CHECK(same_as_raw(r, n, b->ln2.g, (size_t)w));
    snprintf(n, sizeof n, "%s.encoder.layers.%d.layer_norm2.bias", tower, i);
    CHECK(same_as_raw(r, n, b->ln2.b, (size_t)w));
}

/* Every tensor of the model equals the raw file (after upcast). */
static void check_all_weights(const cdx_model *m, const raw_st *r)
{
    const cdx_vision_tower *v = &m->vision;
    const cdx_text_tower *t = &m->text;
    CHECK(v->grid == 7 && v->n_tokens == 50 && v->image_size == 224 && v->patch_size == 32);
    CHECK(t->vocab_size == 49408 && t->context_length == 77);
    CHECK(v->cfg.width == 128 && t->cfg.width == 64);
    CHECK(aligned(v->patch_w) && aligned(v->pos_emb) && aligned(t->tok_emb) && aligned(v->proj.w));
    CHECK(same_as_raw(r, "vision_model.embeddings.patch_embedding.weight", v->patch_w, 128 * 3 * 32 * 32));
    CHECK(same_as_raw(r, "vision_model.embeddings.class_embedding", v->class_emb, 128));
    CHECK(same_as_raw(r, "vision_model.embeddings.position_embedding.weight", v->pos_emb, 50 * 128));
    CHECK(same_as_raw(r, "vision_model.pre_layrnorm.weight", v->ln_pre.g, 128));
    CHECK(same_as_raw(r, "vision_model.pre_layrnorm.bias", v->ln_pre.b, 128));
    CHECK(same_as_raw(r, "vision_model.post_layernorm.weight", v->ln_post.g, 128));
    CHECK(same_as_raw(r, "vision_model.post_layernorm.bias", v->ln_post.b, 128));
    CHECK(same_as_raw(r, "visual_projection.weight", v->proj.w, 64 * 128));
    CHECK(v->proj.b == NULL && v->proj.in == 128 && v->proj.out == 64);
    CHECK(same_as_raw(r, "text_model.embeddings.token_embedding.weight", t->tok_emb, 49408 * 64));
    CHECK(same_as_raw(r, "text_model.embeddings.position_embedding.weight", t->pos_emb, 77 * 64));
    CHECK(same_as_raw(r, "text_model.final_layer_norm.weight", t->ln_final.g, 64));
    CHECK(same_as_raw(r, "text_model.final_layer_norm.bias", t->ln_final.b, 64));
    CHECK(same_as_raw(r, "text_projection.weight", t->proj.w, 64 * 64));
    CHECK(t->proj.b == NULL && t->proj.in == 64 && t->proj.out == 64);
    for (int i = 0; i < 2; i++) {
        check_block(r, "vision_model", i, &v->blocks[i], 128, 512);
        check_block(r, "text_model", i, &t->blocks[i], 64, 256);
    }
    float *ls = raw_floats(r, "logit_scale", 1);
    CHECK(ls && m->logit_scale == ls[0]);
    free(ls);
}

static void sha256_hex(const char *dir, const char *weights, char out[65])
{
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/config.json", dir);
    snprintf(p2, sizeof p2, "%s/%s", dir, weights);
    size_t n1, n2;
    void *a = test_read_file(p1, &n1), *b = test_read_file(p2, &n2);
    unsigned char md[32];
    unsigned int ml = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, a, n1);
    EVP_DigestUpdate(c, b, n2);
    EVP_DigestFinal_ex(c, md, &ml);
    EVP_MD_CTX_free(c);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    free(a);
    free(b);
}

static cdx_model *load(const char *dir, const char *weights)
{
    cdx_model_params p = cdx_model_default_params();
    p.weights_file = weights;
    cdx_model *m = NULL;
    cdx_result r = cdx_model_load(dir, &p, &m);
    if (r == CDX_OK) r = cdx_model_prepare(m, CDX_TOWER_ALL);   /* towers are lazy */
    CHECKF(r == CDX_OK && m, "load %s/%s: %s", dir, weights ? weights : "(default)", cdx_last_error());
    if (r != CDX_OK) cdx_model_free(m);
    return r == CDX_OK ? m : NULL;
}

/* ------------------------------------------------------------- test cases */

static void test_f32(const raw_st *f32, char fp_out[65])
{
    const char *dir = test_fixture_dir();
    cdx_model *m = load(dir, NULL);
    if (!m) return;
    cdx_model_info info;
    cdx_model_get_info(m, &info);
    CHECK(info.embed_dim == 64 && info.image_size == 224 && info.patch_size == 32);
    CHECK(info.context_length == 77 && info.vocab_size == 49408);
    CHECK(info.vision_width == 128 && info.vision_layers == 2 && info.vision_heads == 2 && info.vision_mlp == 512);
    CHECK(info.text_width == 64 && info.text_layers == 2 && info.text_heads == 2 && info.text_mlp == 256);
    CHECK(info.weights_dtype == CDX_DTYPE_F32);
    CHECKF(fabsf(info.logit_scale - 4.60517f) < 1e-5f, "logit_scale %g", (double)info.logit_scale);
    CHECK(m->cfg.vision.act == CDX_ACT_QUICK_GELU && m->cfg.text.act == CDX_ACT_QUICK_GELU);
    CHECK(m->cfg.vision.eps == 1e-5f && m->cfg.text.eps == 1e-5f);
    CHECK(m->cfg.pre.crop == 224 && m->cfg.pre.resize_shortest == 224);
    CHECK(m->cfg.pre.mean[0] == 0.48145466f && m->cfg.pre.std[2] == 0.27577711f);
    CHECK(m->tokenizer != NULL);
    check_all_weights(m, f32);

    /* cdx_tokenize = the tokenizer at the model's context length */
    int32_t ids[77], *want_ids = test_load_array("expected/text_tokens.i32", 36 * 77);
    int n = 0;
    const char *txt = "a photo of a cat";   /* cases.json texts[0] */
    CHECKF(cdx_tokenize(m, txt, strlen(txt), ids, &n) == CDX_OK, "%s", cdx_last_error());
    CHECK(memcmp(ids, want_ids, sizeof ids) == 0 && n == 7);
    free(want_ids);
    CHECK(cdx_tokenize(NULL, txt, 3, ids, &n) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_tokenize(m, NULL, 3, ids, &n) == CDX_ERR_INVALID_ARG);
    CHECK(cdx_tokenize(m, txt, 3, NULL, &n) == CDX_ERR_INVALID_ARG);

    char want[65];
    sha256_hex(dir, "model.safetensors", want);
    CHECKF(strcmp(info.fingerprint, want) == 0, "fingerprint %s want %s", info.fingerprint, want);
    memcpy(fp_out, info.fingerprint, 65);
    cdx_model_free(m);

    m = load(dir, "model.safetensors");   /* stable across loads */
    if (m) CHECK(strcmp(m->fingerprint, fp_out) == 0);
    cdx_model_free(m);
}

static void test_f16(const char *fp32)
{
    const char *dir = test_fixture_dir();
    char path[600];
    snprintf(path, sizeof path, "%s/model.fp16.safetensors", dir);
    raw_st r;
    CHECK(raw_open(&r, path));
    cdx_model *m = load(dir, "model.fp16.safetensors");
    if (m) {
        cdx_model_info info;
        cdx_model_get_info(m, &info);
        CHECK(info.weights_dtype == CDX_DTYPE_F16);
        CHECK(info.vision_width == 128 && info.text_width == 64);
        CHECKF(fabsf(info.logit_scale - 4.60517f) < 2e-3f, "logit_scale %g", (double)info.logit_scale);
        check_all_weights(m, &r);   /* F16 upcast == reference conversion */
        char want[65];
        sha256_hex(dir, "model.fp16.safetensors", want);
        CHECK(strcmp(info.fingerprint, want) == 0);
        CHECK(strcmp(info.fingerprint, fp32) != 0);
        CHECK(m->st.base == NULL);   /* nothing used in place: map released */
    }
    cdx_model_free(m);
    raw_close(&r);
}

/* F32 -> BF16, round to nearest even (NaN-free inputs). */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* Re-encode the F32 fixture: floats as BF16 (or F32 when `bf16` is 0), every
 * tensor start aligned to `align` bytes, I64 tensors copied unchanged. */
static void write_converted(const char *dir, const char *name, const raw_st *f32, int bf16, size_t align)
{
    json_t *hdr = json_object();
    size_t cap = f32->len * 2, off = 0;
    uint8_t *data = calloc(1, cap);
    const char *key;
    json_t *val;
    json_object_foreach(f32->hdr, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            json_object_set(hdr, key, val);
            continue;
        }
        const char *dt;
        size_t nb;
        const uint8_t *p = raw_tensor(f32, key, &dt, &nb);
        off = (off + align - 1) / align * align;
        size_t begin = off;
        int conv = bf16 && strcmp(dt, "F32") == 0;
        if (conv) {
            for (size_t i = 0; i < nb / 4; i++) {
                float x;
                memcpy(&x, p + 4 * i, 4);
                uint16_t h = to_bf16(x);
                memcpy(data + off + 2 * i, &h, 2);
            }
            off += nb / 2;
        } else {
            memcpy(data + off, p, nb);
            off += nb;
        }
        json_t *e = json_deep_copy(val);
        if (conv) json_object_set_new(e, "dtype", json_string("BF16"));
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)begin, (json_int_t)off));
        json_object_set_new(hdr, key, e);
    }
    write_st(dir, name, hdr, data, off, align);
    json_decref(hdr);
    free(data);
}

static void test_bf16(const raw_st *f32)
{
    const char *dir = make_dir("bf16", 1, 0);
    write_converted(dir, "model.bf16.safetensors", f32, 1, 1);
    char path[600];
    snprintf(path, sizeof path, "%s/model.bf16.safetensors", dir);
    raw_st r;
    CHECK(raw_open(&r, path));
    cdx_model *m = load(dir, "model.bf16.safetensors");
    if (m) {
        CHECK(m->dtype == CDX_DTYPE_BF16);
        check_all_weights(m, &r);   /* exact upcast of the BF16 bits */
        /* and the BF16 values are the rounded F32 ones */
        float *orig = raw_floats(f32, "text_model.encoder.layers.1.mlp.fc1.weight", 256 * 64);
        int ok = orig != NULL;
        for (int i = 0; ok && i < 256 * 64; i++)
            ok = m->text.blocks[1].fc1.w[i] == ref_bf16(to_bf16(orig[i]));
        CHECK(ok);
        free(orig);
    }
    cdx_model_free(m);
    raw_close(&r);
}

static int inside(const cdx_model *m, const void *p)
{
    const char *b = (const char *)m->st.base;
    return b && (const char *)p >= b && (const char *)p < b + m->st.len;
}

static void test_aligned_in_place(const raw_st *f32)
{
    const char *dir = make_dir("aligned", 1, 0);
    write_converted(dir, "model.safetensors", f32, 0, 64);
    cdx_model *m = load(dir, NULL);
    if (m) {
        CHECK(m->st.base != NULL && m->st_pinned);
        CHECK(inside(m, m->text.tok_emb) && inside(m, m->vision.patch_w) &&
              inside(m, m->text.blocks[0].fc1.w));
        CHECK(!inside(m, m->vision.blocks[0].qkv.w));   /* fused: an own buffer */
        check_all_weights(m, f32);
    }
    cdx_model_free(m);
}

/* -------------------------------------------------------- error cases */

static void expect_fail(const char *dir, const char *weights, cdx_result want, const char *needle1,
                        const char *needle2)
{
    cdx_model_params p = cdx_model_default_params();
    p.weights_file = weights;
    cdx_model *m = (cdx_model *)&p;   /* must be reset to NULL */
    cdx_result r = cdx_model_load(dir, &p, &m);
    const char *e = cdx_last_error();
    CHECKF(r == want, "%s: got %s want %s (%s)", dir, cdx_result_str(r), cdx_result_str(want), e);
    CHECK(m == NULL);
    CHECKF(strstr(e, needle1) != NULL, "message '%s' lacks '%s'", e, needle1);
    if (needle2) CHECKF(strstr(e, needle2) != NULL, "message '%s' lacks '%s'", e, needle2);
}

static void del_tensor(json_t *h, void *arg) { json_object_del(h, arg); }

static void reshape_fc1(json_t *h, void *arg)
{
    (void)arg;
    json_t *e = json_object_get(h, "vision_model.encoder.layers.1.mlp.fc1.weight");
    /* same byte count, different shape */
    json_object_set_new(e, "shape", json_pack("[ii]", 128, 512));
}

static void retype_fc2(json_t *h, void *arg)
{
    json_t *e = json_object_get(h, "text_model.encoder.layers.0.mlp.fc2.weight");
    json_object_set_new(e, "dtype", json_string(arg));
}

static void overlap(json_t *h, void *arg)
{
    (void)arg;
    json_t *e = json_object_get(h, "text_projection.weight");
    json_t *o = json_object_get(json_object_get(h, "visual_projection.weight"), "data_offsets");
    json_object_set(e, "data_offsets", o);   /* same bytes (64x64 vs 64x128 -> size differs) */
    json_object_set_new(e, "shape", json_pack("[ii]", 64, 128));
}

static void test_errors(const raw_st *f32)
{
    char buf[1024];

    /* missing config.json */
    const char *dir = make_dir("no_config", 0, 1);
    expect_fail(dir, NULL, CDX_ERR_NOT_FOUND, "config.json", NULL);

    /* missing tokenizer files */
    dir = make_dir("no_vocab", 1, 1);
    snprintf(buf, sizeof buf, "%s/vocab.json", dir);
    unlink(buf);
    expect_fail(dir, NULL, CDX_ERR_NOT_FOUND, "vocab.json", NULL);
    dir = make_dir("no_merges", 1, 1);
    snprintf(buf, sizeof buf, "%s/merges.txt", dir);
    unlink(buf);
    expect_fail(dir, NULL, CDX_ERR_NOT_FOUND, "merges.txt", NULL);

    /* missing weight file */
    dir = make_dir("no_weights", 1, 0);
    expect_fail(dir, NULL, CDX_ERR_NOT_FOUND, "model.safetensors", NULL);
    expect_fail(dir, "model.fp16.safetensors", CDX_ERR_NOT_FOUND, "model.fp16.safetensors", NULL);

    /* missing / mis-shaped / wrong-dtype tensors */
    dir = dir_with_edited_header("missing", f32, del_tensor, "vision_model.encoder.layers.1.self_attn.k_proj.bias");
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "model.safetensors: tensor 'vision_model.encoder.layers.1.self_attn.k_proj.bias' is missing", NULL);
    dir = dir_with_edited_header("missing_ls", f32, del_tensor, "logit_scale");
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "'logit_scale' is missing", NULL);
    dir = dir_with_edited_header("shape", f32, reshape_fc1, NULL);
    expect_fail(dir, NULL, CDX_ERR_FORMAT,
                "model.safetensors: tensor 'vision_model.encoder.layers.1.mlp.fc1.weight' has shape [128,512], expected [512,128]",
                NULL);
    dir = dir_with_edited_header("dtype", f32, retype_fc2, "I32");
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "'text_model.encoder.layers.0.mlp.fc2.weight' has dtype I32", NULL);
    dir = dir_with_edited_header("dtype_unknown", f32, retype_fc2, "Q4_K");
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "'text_model.encoder.layers.0.mlp.fc2.weight' has dtype unknown", NULL);
    dir = dir_with_edited_header("overlap", f32, overlap, NULL);
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "overlap", "visual_projection.weight");

    /* truncated weight file: data region shorter than the header claims */
    dir = make_dir("truncated", 1, 0);
    write_bytes(dir, "model.safetensors", f32->bytes, f32->len / 2);
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "model.safetensors: tensor '", "past the data region");
    write_bytes(dir, "model.safetensors", f32->bytes, 100);   /* inside the header */
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "model.safetensors", "header length 9120 exceeds the file size 100");
    write_bytes(dir, "model.safetensors", f32->bytes, 5);
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "model.safetensors", "too short");
    write_bytes(dir, "model.safetensors", "", 0);
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "model.safetensors", "too short");

    /* config: shapes follow config.json, so a different width must fail on
     * the first tensor; absurd values fail in the parser naming the field */
    size_t clen;
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/config.json", test_fixture_dir());
    char *cfg = test_read_file(cpath, &clen);
    json_t *cj = json_loadb(cfg, clen, 0, NULL);
    free(cfg);
    struct { const char *sec, *key; int val; cdx_result want; const char *msg; } cases[] = {
        {"vision_config", "hidden_size", 256, CDX_ERR_FORMAT,
         "tensor 'vision_model.embeddings.patch_embedding.weight' has shape [128,3,32,32], expected [256,3,32,32]"},
        {"text_config", "num_hidden_layers", 3, CDX_ERR_FORMAT, "tensor 'text_model.encoder.layers.2.layer_norm1.weight' is missing"},
        {"text_config", "hidden_size", 0, CDX_ERR_FORMAT, "config.json: field 'text_config.hidden_size' = 0 is out of range"},
        {"vision_config", "patch_size", -3, CDX_ERR_FORMAT, "config.json: field 'vision_config.patch_size' = -3 is out of range"},
        {"vision_config", "intermediate_size", 2000000000, CDX_ERR_FORMAT, "field 'vision_config.intermediate_size' = 2000000000 is out of range"},
        {"vision_config", "num_attention_heads", 3, CDX_ERR_FORMAT, "config.json: field 'vision_config.hidden_size' = 128 is not divisible by num_attention_heads = 3"},
        {"vision_config", "image_size", 200, CDX_ERR_FORMAT, "config.json: field 'vision_config.image_size' = 200 is not divisible by patch_size = 32"},
        {"vision_config", "image_size", 256, CDX_ERR_MISMATCH, "preprocessor_config.json: crop_size 224 differs from the model's vision_config.image_size 256"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *c = json_deep_copy(cj);
        json_object_set_new(json_object_get(c, cases[i].sec), cases[i].key, json_integer(cases[i].val));
        char *s = json_dumps(c, JSON_INDENT(2));
        snprintf(buf, sizeof buf, "config%zu", i);
        dir = make_dir(buf, 0, 1);
        write_bytes(dir, "config.json", s, strlen(s));
        expect_fail(dir, NULL, cases[i].want, cases[i].msg, NULL);
        free(s);
        json_decref(c);
    }
    json_decref(cj);

    dir = make_dir("config_bad_json", 0, 1);
    write_bytes(dir, "config.json", "{\"text_config\": {", 17);
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "config.json: invalid JSON", NULL);

    /* preprocessor_config.json present but broken */
    dir = make_dir("preproc_bad", 1, 1);
    char pp[600];
    snprintf(pp, sizeof pp, "%s/preprocessor_config.json", dir);
    unlink(pp);
    write_bytes(dir, "preprocessor_config.json", "{\"crop_size\": {\"height\": 224}}", 30);
    expect_fail(dir, NULL, CDX_ERR_FORMAT, "preprocessor_config.json: field 'crop_size' has no \"width\"", NULL);

    /* preprocessor_config.json absent: defaults */
    dir = make_dir("preproc_missing", 1, 1);
    snprintf(pp, sizeof pp, "%s/preprocessor_config.json", dir);
    unlink(pp);
    cdx_model *m = load(dir, NULL);
    if (m) CHECK(m->cfg.pre.crop == 224 && m->cfg.pre.resize_shortest == 224 && m->cfg.pre.std[0] == 0.26862954f);
    cdx_model_free(m);

    /* bad arguments */
    cdx_model *mm = NULL;
    CHECK(cdx_model_load(NULL, NULL, &mm) == CDX_ERR_INVALID_ARG && mm == NULL);
    CHECK(cdx_model_load(test_fixture_dir(), NULL, NULL) == CDX_ERR_INVALID_ARG);
    cdx_model_params p = cdx_model_default_params();
    p.weights_file = "";
    CHECK(cdx_model_load(test_fixture_dir(), &p, &mm) == CDX_ERR_INVALID_ARG && mm == NULL);
    cdx_model_free(NULL);
}

int main(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", test_fixture_dir());
    raw_st f32;
    if (!raw_open(&f32, path)) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/cdx_test_model_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    /* This test checks how tensors are bound (in place, upcast, fused): the
     * plain weights, built in memory (test_model_cache covers packing and
     * the prepared-weights cache). */
    char cache[700];
    snprintf(cache, sizeof cache, "%s/cache", g_tmp);
    setenv("CLIPDEX_CACHE_DIR", cache, 1);
    setenv("CLIPDEX_PACK", "0", 1);
    setenv("CLIPDEX_PREPARED", "0", 1);

    char fp32[65] = "";
    test_f32(&f32, fp32);
    test_f16(fp32);
    test_bf16(&f32);
    test_aligned_in_place(&f32);
    test_errors(&f32);

    raw_close(&f32);
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return test_finish();
}
