/*
 * config.c - Hugging Face CLIP config.json / preprocessor_config.json parsing
 * (see config.h).
 *
 * Semantics follow transformers' CLIPConfig: missing fields take the
 * CLIPTextConfig / CLIPVisionConfig defaults (ViT-B/32), JSON null counts as
 * missing, and the legacy "text_config_dict" / "vision_config_dict" objects
 * (found in older openai checkpoints) override "text_config" /
 * "vision_config" field by field.  Every value is type- and range-checked
 * here so that later size arithmetic (shapes, scratch buffers) cannot
 * overflow; the bounds are far above any published CLIP.
 *
 * Workload: a few KB of JSON once per model load.
 */
#include "clip/config.h"
#include "common/error.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* Upper bounds for sizes (inclusive).  ViT-bigG is width 1664 / mlp 8192 /
 * 48 layers; these leave ample head-room while keeping products in range. */
#define MAX_WIDTH 16384
#define MAX_HEADS 1024
#define MAX_LAYERS 512
#define MAX_MLP 131072
#define MAX_IMAGE 4096
#define MAX_GRID 256           /* image_size / patch_size */
#define MAX_VOCAB (1 << 21)
#define MAX_CONTEXT 4096
#define MAX_PREPROC_SIZE 16384

typedef struct jctx {
    const char *file;     /* file name for messages */
    const char *section;  /* "text_config.", "vision_config.", or "" */
} jctx;

static cdx_result field_error(const jctx *c, const char *key, const char *what)
{
    return cdx_error(CDX_ERR_FORMAT, "%s: field '%s%s' %s", c->file, c->section, key, what);
}

/* If obj has `key` (and it is not null) it must be an integer in [lo, hi]. */
static cdx_result get_int(const jctx *c, const json_t *obj, const char *key,
                          long long lo, long long hi, int *val)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return CDX_OK;
    if (!json_is_integer(v)) return field_error(c, key, "is not an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return cdx_error(CDX_ERR_FORMAT, "%s: field '%s%s' = %lld is out of range [%lld, %lld]",
                         c->file, c->section, key, x, lo, hi);
    *val = (int)x;
    return CDX_OK;
}

/* If obj has `key` it must be a finite number in (lo, hi). */
static cdx_result get_num(const jctx *c, const json_t *obj, const char *key,
                          double lo, double hi, float *val)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return CDX_OK;
    if (!json_is_number(v)) return field_error(c, key, "is not a number");
    double x = json_number_value(v);
    if (!isfinite(x) || !(x > lo && x < hi))
        return cdx_error(CDX_ERR_FORMAT, "%s: field '%s%s' = %g is out of range (%g, %g)",
                         c->file, c->section, key, x, lo, hi);
    *val = (float)x;
    return CDX_OK;
}

/* If obj has boolean `key` set to false, the feature it disables is not
 * supported (clipdex always resizes, crops and normalises). */
static cdx_result require_not_false(const jctx *c, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (v && !json_is_null(v) && !json_is_boolean(v)) return field_error(c, key, "is not a boolean");
    if (json_is_false(v))
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: field '%s' = false is not supported", c->file, key);
    return CDX_OK;
}

static cdx_result parse_act(const jctx *c, const json_t *obj, cdx_act *act)
{
    const json_t *v = json_object_get(obj, "hidden_act");
    if (!v || json_is_null(v)) return CDX_OK;
    if (!json_is_string(v)) return field_error(c, "hidden_act", "is not a string");
    const char *s = json_string_value(v);
    if (strcmp(s, "quick_gelu") == 0) *act = CDX_ACT_QUICK_GELU;
    else if (strcmp(s, "gelu") == 0) *act = CDX_ACT_GELU;
    else
        return cdx_error(CDX_ERR_UNSUPPORTED,
                         "%s: field '%shidden_act' = \"%.40s\" is not supported (expected quick_gelu or gelu)",
                         c->file, c->section, s);
    return CDX_OK;
}

/* Apply the fields present in `obj` (a tower section) to t. */
static cdx_result parse_tower(const jctx *c, const json_t *obj, cdx_tower_config *t)
{
    cdx_result r;
    if ((r = get_int(c, obj, "hidden_size", 1, MAX_WIDTH, &t->width)) ||
        (r = get_int(c, obj, "num_attention_heads", 1, MAX_HEADS, &t->heads)) ||
        (r = get_int(c, obj, "num_hidden_layers", 1, MAX_LAYERS, &t->layers)) ||
        (r = get_int(c, obj, "intermediate_size", 1, MAX_MLP, &t->mlp)) ||
        (r = get_num(c, obj, "layer_norm_eps", 0.0, 1.0, &t->eps)) ||
        (r = parse_act(c, obj, &t->act)))
        return r;
    return CDX_OK;
}

static cdx_result parse_vision_extra(const jctx *c, const json_t *obj, cdx_clip_config *cfg)
{
    int channels = 3;
    cdx_result r;
    if ((r = get_int(c, obj, "image_size", 1, MAX_IMAGE, &cfg->image_size)) ||
        (r = get_int(c, obj, "patch_size", 1, MAX_IMAGE, &cfg->patch_size)) ||
        (r = get_int(c, obj, "num_channels", 1, 1 << 20, &channels)))
        return r;
    if (channels != 3)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: field 'vision_config.num_channels' = %d is not supported (expected 3)",
                         c->file, channels);
    return CDX_OK;
}

static cdx_result parse_text_extra(const jctx *c, const json_t *obj, cdx_clip_config *cfg)
{
    cdx_result r;
    if ((r = get_int(c, obj, "vocab_size", 1, MAX_VOCAB, &cfg->vocab_size)) ||
        (r = get_int(c, obj, "max_position_embeddings", 2, MAX_CONTEXT, &cfg->context_length)))
        return r;
    return CDX_OK;
}

/* The section object `key` (or NULL when absent/null); error when it is some
 * other type. */
static cdx_result get_section(const char *file, const json_t *root, const char *key,
                              const json_t **out)
{
    const json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v || json_is_null(v)) return CDX_OK;
    if (!json_is_object(v))
        return cdx_error(CDX_ERR_FORMAT, "%s: field '%s' is not an object", file, key);
    *out = v;
    return CDX_OK;
}

static cdx_result check_tower(const char *file, const char *section, const cdx_tower_config *t)
{
    if (t->width % t->heads != 0)
        return cdx_error(CDX_ERR_FORMAT,
                         "%s: field '%s.hidden_size' = %d is not divisible by num_attention_heads = %d",
                         file, section, t->width, t->heads);
    return CDX_OK;
}

static void set_defaults(cdx_clip_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    /* transformers CLIPTextConfig / CLIPVisionConfig / CLIPConfig defaults */
    cfg->text = (cdx_tower_config){.width = 512, .heads = 8, .layers = 12, .mlp = 2048,
                                   .eps = 1e-5f, .act = CDX_ACT_QUICK_GELU};
    cfg->vision = (cdx_tower_config){.width = 768, .heads = 12, .layers = 12, .mlp = 3072,
                                     .eps = 1e-5f, .act = CDX_ACT_QUICK_GELU};
    cfg->projection_dim = 512;
    cfg->image_size = 224;
    cfg->patch_size = 32;
    cfg->vocab_size = 49408;
    cfg->context_length = 77;
}

static void set_preproc_defaults(cdx_clip_config *cfg)
{
    cdx_preproc_config *p = &cfg->pre;
    p->resize_shortest = cfg->image_size;
    p->crop = cfg->image_size;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(p->mean, mean, sizeof mean);
    memcpy(p->std, std, sizeof std);
}

static cdx_result parse_root(const char *name, const json_t *root, cdx_clip_config *cfg)
{
    jctx c = {name, ""};
    if (!json_is_object(root))
        return cdx_error(CDX_ERR_FORMAT, "%s: not a JSON object", name);
    const json_t *mt = json_object_get(root, "model_type");
    if (json_is_string(mt) && strcmp(json_string_value(mt), "clip") != 0)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: field 'model_type' = \"%.40s\" is not supported (expected \"clip\")",
                         name, json_string_value(mt));
    cdx_result r = get_int(&c, root, "projection_dim", 1, MAX_WIDTH, &cfg->projection_dim);
    if (r) return r;

    static const char *const sections[2][2] = {{"text_config", "text_config_dict"},
                                               {"vision_config", "vision_config_dict"}};
    for (int tower = 0; tower < 2; tower++) {
        for (int k = 0; k < 2; k++) {   /* *_config, then the legacy *_dict override */
            const json_t *sec;
            if ((r = get_section(name, root, sections[tower][k], &sec))) return r;
            if (!sec) continue;
            char prefix[32];
            snprintf(prefix, sizeof prefix, "%s.", sections[tower][k]);
            c.section = prefix;
            if (tower == 0) {
                if ((r = parse_tower(&c, sec, &cfg->text)) || (r = parse_text_extra(&c, sec, cfg))) return r;
            } else {
                if ((r = parse_tower(&c, sec, &cfg->vision)) || (r = parse_vision_extra(&c, sec, cfg))) return r;
            }
        }
    }

    if ((r = check_tower(name, "text_config", &cfg->text)) ||
        (r = check_tower(name, "vision_config", &cfg->vision)))
        return r;
    if (cfg->image_size % cfg->patch_size != 0)
        return cdx_error(CDX_ERR_FORMAT,
                         "%s: field 'vision_config.image_size' = %d is not divisible by patch_size = %d",
                         name, cfg->image_size, cfg->patch_size);
    if (cfg->image_size / cfg->patch_size > MAX_GRID)
        return cdx_error(CDX_ERR_FORMAT,
                         "%s: vision_config image_size / patch_size = %d exceeds the limit of %d patches per side",
                         name, cfg->image_size / cfg->patch_size, MAX_GRID);
    return CDX_OK;
}

static json_t *load_json(const char *json, size_t len, const char *name, cdx_result *r)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    *r = root ? CDX_OK
              : cdx_error(CDX_ERR_FORMAT, "%s: invalid JSON (line %d, column %d: %s)", name,
                          jerr.line, jerr.column, jerr.text);
    return root;
}

cdx_result cdx_config_parse(const char *json, size_t len, const char *name, cdx_clip_config *cfg)
{
    if (!name) name = "config.json";
    if (!json || !cfg) return cdx_error(CDX_ERR_INVALID_ARG, "%s: no JSON text given", name);
    set_defaults(cfg);
    cdx_result r;
    json_t *root = load_json(json, len, name, &r);
    if (!root) return r;
    r = parse_root(name, root, cfg);
    json_decref(root);
    set_preproc_defaults(cfg);
    return r;
}

/* "size" / "crop_size": a plain int, or an object with `key1` (and `key2`,
 * which must then be equal). */
static cdx_result get_size(const jctx *c, const json_t *root, const char *field,
                           const char *key1, const char *key2, int *val)
{
    const json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v)) return CDX_OK;
    if (json_is_integer(v)) return get_int(c, root, field, 1, MAX_PREPROC_SIZE, val);
    if (!json_is_object(v)) return field_error(c, field, "is neither an integer nor an object");
    jctx sub = {c->file, field};
    char sec[32];
    snprintf(sec, sizeof sec, "%s.", field);
    sub.section = sec;
    if (!json_object_get(v, key1))
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: field '%s' has no \"%s\" (only %s%s%s is supported)",
                         c->file, field, key1, key1, key2 ? " + " : "", key2 ? key2 : "");
    int a = -1, b = -1;
    cdx_result r = get_int(&sub, v, key1, 1, MAX_PREPROC_SIZE, &a);
    if (r) return r;
    if (key2) {
        if (!json_object_get(v, key2))
            return cdx_error(CDX_ERR_FORMAT, "%s: field '%s' has no \"%s\"", c->file, field, key2);
        if ((r = get_int(&sub, v, key2, 1, MAX_PREPROC_SIZE, &b))) return r;
        if (a != b)
            return cdx_error(CDX_ERR_UNSUPPORTED, "%s: field '%s' has height %d != width %d; only square crops are supported",
                             c->file, field, a, b);
    }
    *val = a;
    return CDX_OK;
}

/* "image_mean" / "image_std": 3 numbers (or one, applied to every channel). */
static cdx_result get_triple(const jctx *c, const json_t *root, const char *field,
                             double lo, double hi, float out[3])
{
    const json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v)) return CDX_OK;
    const json_t *item[3] = {v, v, v};
    if (json_is_array(v)) {
        if (json_array_size(v) != 3)
            return cdx_error(CDX_ERR_FORMAT, "%s: field '%s' has %zu values, expected 3", c->file, field,
                             json_array_size(v));
        for (int i = 0; i < 3; i++) item[i] = json_array_get(v, i);
    }
    for (int i = 0; i < 3; i++) {
        if (!json_is_number(item[i])) return field_error(c, field, "must hold numbers");
        double x = json_number_value(item[i]);
        if (!isfinite(x) || !(x > lo && x < hi))
            return cdx_error(CDX_ERR_FORMAT, "%s: field '%s' value %g is out of range (%g, %g)",
                             c->file, field, x, lo, hi);
        out[i] = (float)x;
    }
    return CDX_OK;
}

static cdx_result parse_preproc(const char *name, const json_t *root, cdx_clip_config *cfg)
{
    jctx c = {name, ""};
    if (!json_is_object(root)) return cdx_error(CDX_ERR_FORMAT, "%s: not a JSON object", name);
    cdx_preproc_config *p = &cfg->pre;
    int resample = 3;
    cdx_result r;
    if ((r = get_size(&c, root, "size", "shortest_edge", NULL, &p->resize_shortest)) ||
        (r = get_size(&c, root, "crop_size", "height", "width", &p->crop)) ||
        (r = get_triple(&c, root, "image_mean", -1e3, 1e3, p->mean)) ||
        (r = get_triple(&c, root, "image_std", 0.0, 1e3, p->std)) ||
        (r = get_int(&c, root, "resample", 0, 100, &resample)) ||
        (r = require_not_false(&c, root, "do_resize")) ||
        (r = require_not_false(&c, root, "do_center_crop")) ||
        (r = require_not_false(&c, root, "do_normalize")))
        return r;
    if (resample != 3)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: field 'resample' = %d is not supported (only 3 = bicubic)",
                         name, resample);
    return CDX_OK;
}

cdx_result cdx_preproc_config_parse(const char *json, size_t len, const char *name, cdx_clip_config *cfg)
{
    if (!name) name = "preprocessor_config.json";
    set_preproc_defaults(cfg);
    cdx_preproc_config *p = &cfg->pre;
    if (json) {
        cdx_result r;
        json_t *root = load_json(json, len, name, &r);
        if (!root) return r;
        r = parse_preproc(name, root, cfg);
        json_decref(root);
        if (r) return r;
    }
    if (p->crop != cfg->image_size)
        return cdx_error(CDX_ERR_MISMATCH,
                         "%s: crop_size %d differs from the model's vision_config.image_size %d",
                         name, p->crop, cfg->image_size);
    if (p->resize_shortest < p->crop)
        return cdx_error(CDX_ERR_UNSUPPORTED, "%s: resize size %d is smaller than crop_size %d",
                         name, p->resize_shortest, p->crop);
    return CDX_OK;
}
