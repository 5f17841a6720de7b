/*
 * test_config.c - config.json / preprocessor_config.json parsing: HF
 * defaults, the layouts real checkpoints use (openai with *_config_dict,
 * laion with gelu, ViT-L/14-336, the clip-tiny fixture), and one failing
 * case per check, each required to name the file and the field.
 */
#include "testutil.h"

#include "clip/config.h"

static cdx_result parse(const char *json, cdx_clip_config *c)
{
    return cdx_config_parse(json, strlen(json), "config.json", c);
}

static void bad_cfg(const char *json, cdx_result want, const char *needle)
{
    cdx_clip_config c;
    cdx_result r = parse(json, &c);
    CHECKF(r == want, "%s: got %s want %s (%s)", json, cdx_result_str(r), cdx_result_str(want), cdx_last_error());
    CHECKF(strstr(cdx_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", json, cdx_last_error(), needle);
    CHECKF(strncmp(cdx_last_error(), "config.json: ", 13) == 0, "message '%s' does not name the file",
           cdx_last_error());
}

static void test_defaults(void)
{
    cdx_clip_config c;
    CHECK(parse("{}", &c) == CDX_OK);
    CHECK(c.text.width == 512 && c.text.heads == 8 && c.text.layers == 12 && c.text.mlp == 2048);
    CHECK(c.vision.width == 768 && c.vision.heads == 12 && c.vision.layers == 12 && c.vision.mlp == 3072);
    CHECK(c.text.eps == 1e-5f && c.vision.eps == 1e-5f);
    CHECK(c.text.act == CDX_ACT_QUICK_GELU && c.vision.act == CDX_ACT_QUICK_GELU);
    CHECK(c.projection_dim == 512 && c.image_size == 224 && c.patch_size == 32);
    CHECK(c.vocab_size == 49408 && c.context_length == 77);
    CHECK(c.pre.crop == 224 && c.pre.resize_shortest == 224 && c.pre.mean[1] == 0.4578275f);
    /* null counts as missing */
    CHECK(parse("{\"text_config\":null,\"vision_config\":{\"hidden_size\":null},\"projection_dim\":null}", &c) == CDX_OK);
    CHECK(c.text.width == 512 && c.vision.width == 768 && c.projection_dim == 512);
}

static void test_real_layouts(void)
{
    cdx_clip_config c;
    /* openai/clip-vit-base-patch32 style: *_config_dict overrides *_config */
    const char *openai =
        "{\"model_type\":\"clip\",\"projection_dim\":512,"
        "\"text_config\":{\"hidden_size\":999,\"num_attention_heads\":8,\"vocab_size\":49408,\"bos_token_id\":0},"
        "\"text_config_dict\":{\"hidden_size\":512,\"intermediate_size\":2048,\"num_hidden_layers\":12},"
        "\"vision_config\":{\"hidden_size\":768,\"patch_size\":32,\"image_size\":224},"
        "\"vision_config_dict\":{\"hidden_size\":768,\"intermediate_size\":3072,\"num_attention_heads\":12,"
        "\"num_hidden_layers\":12,\"patch_size\":32}}";
    CHECKF(parse(openai, &c) == CDX_OK, "%s", cdx_last_error());
    CHECK(c.text.width == 512 && c.vision.width == 768 && c.vision.mlp == 3072);

    /* laion: gelu, eps 1e-5 */
    const char *laion =
        "{\"projection_dim\":512,\"text_config\":{\"hidden_act\":\"gelu\",\"hidden_size\":512,"
        "\"intermediate_size\":2048,\"num_attention_heads\":8,\"num_hidden_layers\":12,\"layer_norm_eps\":1e-05},"
        "\"vision_config\":{\"hidden_act\":\"gelu\",\"hidden_size\":768,\"intermediate_size\":3072,"
        "\"num_attention_heads\":12,\"num_hidden_layers\":12,\"patch_size\":32,\"image_size\":224}}";
    CHECKF(parse(laion, &c) == CDX_OK, "%s", cdx_last_error());
    CHECK(c.text.act == CDX_ACT_GELU && c.vision.act == CDX_ACT_GELU);

    /* ViT-L/14-336 */
    const char *l14 =
        "{\"projection_dim\":768,\"text_config\":{\"hidden_size\":768,\"intermediate_size\":3072,"
        "\"num_attention_heads\":12,\"num_hidden_layers\":12},\"vision_config\":{\"hidden_size\":1024,"
        "\"intermediate_size\":4096,\"num_attention_heads\":16,\"num_hidden_layers\":24,\"patch_size\":14,"
        "\"image_size\":336,\"layer_norm_eps\":1e-6}}";
    CHECKF(parse(l14, &c) == CDX_OK, "%s", cdx_last_error());
    CHECK(c.vision.width == 1024 && c.vision.layers == 24 && c.patch_size == 14 && c.image_size == 336);
    CHECK(c.vision.eps == 1e-6f && c.projection_dim == 768);
    CHECK(c.pre.crop == 336 && c.pre.resize_shortest == 336);   /* defaults follow image_size */
    CHECK(cdx_preproc_config_parse("{\"size\":336,\"crop_size\":336}", 28, "pp.json", &c) == CDX_OK);

    /* the fixture itself (only when ../shared is present) */
    const char *shared = getenv("CLIPDEX_SHARED");
    struct stat st;
    if (!shared || stat(shared, &st) != 0) {
        printf("note: ../shared absent, fixture config not checked\n");
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", test_fixture_dir());
    size_t len;
    char *js = test_read_file(path, &len);
    CHECK(js && cdx_config_parse(js, len, path, &c) == CDX_OK);
    CHECK(c.vision.width == 128 && c.vision.heads == 2 && c.vision.layers == 2 && c.vision.mlp == 512);
    CHECK(c.text.width == 64 && c.text.heads == 2 && c.text.layers == 2 && c.text.mlp == 256);
    CHECK(c.projection_dim == 64 && c.vocab_size == 49408 && c.context_length == 77);
    free(js);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", test_fixture_dir());
    js = test_read_file(path, &len);
    CHECK(js && cdx_preproc_config_parse(js, len, path, &c) == CDX_OK);
    CHECK(c.pre.crop == 224 && c.pre.resize_shortest == 224);
    CHECK(c.pre.mean[0] == 0.48145466f && c.pre.std[2] == 0.27577711f);
    free(js);
}

static void test_bad_config(void)
{
    bad_cfg("", CDX_ERR_FORMAT, "invalid JSON");
    bad_cfg("{\"text_config\": {\"hidden_size\": 5", CDX_ERR_FORMAT, "invalid JSON");
    bad_cfg("{\"a\":1,\"a\":2}", CDX_ERR_FORMAT, "invalid JSON");
    bad_cfg("[1,2]", CDX_ERR_FORMAT, "not a JSON object");
    bad_cfg("{\"model_type\":\"siglip\"}", CDX_ERR_UNSUPPORTED, "'model_type' = \"siglip\"");
    bad_cfg("{\"text_config\":3}", CDX_ERR_FORMAT, "field 'text_config' is not an object");
    bad_cfg("{\"vision_config_dict\":[]}", CDX_ERR_FORMAT, "field 'vision_config_dict' is not an object");
    bad_cfg("{\"text_config\":{\"hidden_size\":0}}", CDX_ERR_FORMAT, "'text_config.hidden_size' = 0 is out of range");
    bad_cfg("{\"text_config\":{\"hidden_size\":-512}}", CDX_ERR_FORMAT, "'text_config.hidden_size' = -512 is out of range");
    bad_cfg("{\"text_config\":{\"hidden_size\":1000000000000}}", CDX_ERR_FORMAT, "'text_config.hidden_size' = 1000000000000");
    bad_cfg("{\"text_config\":{\"hidden_size\":\"512\"}}", CDX_ERR_FORMAT, "'text_config.hidden_size' is not an integer");
    bad_cfg("{\"text_config\":{\"hidden_size\":512.0}}", CDX_ERR_FORMAT, "'text_config.hidden_size' is not an integer");
    bad_cfg("{\"text_config_dict\":{\"num_hidden_layers\":0}}", CDX_ERR_FORMAT, "'text_config_dict.num_hidden_layers' = 0");
    bad_cfg("{\"vision_config\":{\"num_attention_heads\":5000}}", CDX_ERR_FORMAT, "'vision_config.num_attention_heads' = 5000");
    bad_cfg("{\"vision_config\":{\"intermediate_size\":-1}}", CDX_ERR_FORMAT, "'vision_config.intermediate_size' = -1");
    bad_cfg("{\"vision_config\":{\"num_hidden_layers\":100000}}", CDX_ERR_FORMAT, "'vision_config.num_hidden_layers' = 100000");
    bad_cfg("{\"vision_config\":{\"num_attention_heads\":7}}", CDX_ERR_FORMAT,
            "'vision_config.hidden_size' = 768 is not divisible by num_attention_heads = 7");
    bad_cfg("{\"text_config\":{\"hidden_size\":500}}", CDX_ERR_FORMAT,
            "'text_config.hidden_size' = 500 is not divisible by num_attention_heads = 8");
    bad_cfg("{\"vision_config\":{\"image_size\":225}}", CDX_ERR_FORMAT,
            "'vision_config.image_size' = 225 is not divisible by patch_size = 32");
    bad_cfg("{\"vision_config\":{\"image_size\":0}}", CDX_ERR_FORMAT, "'vision_config.image_size' = 0");
    bad_cfg("{\"vision_config\":{\"image_size\":99999}}", CDX_ERR_FORMAT, "'vision_config.image_size' = 99999");
    bad_cfg("{\"vision_config\":{\"patch_size\":0}}", CDX_ERR_FORMAT, "'vision_config.patch_size' = 0");
    bad_cfg("{\"vision_config\":{\"image_size\":4096,\"patch_size\":8}}", CDX_ERR_FORMAT, "512 exceeds the limit");
    bad_cfg("{\"vision_config\":{\"num_channels\":1}}", CDX_ERR_UNSUPPORTED, "'vision_config.num_channels' = 1");
    bad_cfg("{\"vision_config\":{\"hidden_act\":\"relu\"}}", CDX_ERR_UNSUPPORTED,
            "'vision_config.hidden_act' = \"relu\" is not supported");
    bad_cfg("{\"text_config\":{\"hidden_act\":1}}", CDX_ERR_FORMAT, "'text_config.hidden_act' is not a string");
    bad_cfg("{\"text_config\":{\"layer_norm_eps\":0}}", CDX_ERR_FORMAT, "'text_config.layer_norm_eps' = 0 is out of range");
    bad_cfg("{\"text_config\":{\"layer_norm_eps\":-1e-5}}", CDX_ERR_FORMAT, "'text_config.layer_norm_eps'");
    bad_cfg("{\"text_config\":{\"layer_norm_eps\":1e-50}}", CDX_ERR_FORMAT, "'text_config.layer_norm_eps' = 1e-50");
    bad_cfg("{\"text_config\":{\"layer_norm_eps\":2}}", CDX_ERR_FORMAT, "'text_config.layer_norm_eps' = 2");
    bad_cfg("{\"text_config\":{\"layer_norm_eps\":\"1e-5\"}}", CDX_ERR_FORMAT, "'text_config.layer_norm_eps' is not a number");
    bad_cfg("{\"text_config\":{\"vocab_size\":0}}", CDX_ERR_FORMAT, "'text_config.vocab_size' = 0");
    bad_cfg("{\"text_config\":{\"vocab_size\":100000000}}", CDX_ERR_FORMAT, "'text_config.vocab_size' = 100000000");
    bad_cfg("{\"text_config\":{\"max_position_embeddings\":1}}", CDX_ERR_FORMAT, "'text_config.max_position_embeddings' = 1");
    bad_cfg("{\"text_config\":{\"max_position_embeddings\":1000000}}", CDX_ERR_FORMAT, "'text_config.max_position_embeddings'");
    bad_cfg("{\"projection_dim\":0}", CDX_ERR_FORMAT, "field 'projection_dim' = 0 is out of range");
    bad_cfg("{\"projection_dim\":true}", CDX_ERR_FORMAT, "field 'projection_dim' is not an integer");

    cdx_clip_config c;
    CHECK(cdx_config_parse(NULL, 0, "config.json", &c) == CDX_ERR_INVALID_ARG);
    /* not NUL-terminated: only len bytes are read */
    char buf[3] = {'{', '}', 'x'};
    CHECK(cdx_config_parse(buf, 2, "config.json", &c) == CDX_OK);
}

static void pp_ok(const char *json, cdx_clip_config *c)
{
    cdx_result r = cdx_preproc_config_parse(json, strlen(json), "preprocessor_config.json", c);
    CHECKF(r == CDX_OK, "%s: %s", json, cdx_last_error());
}

static void bad_pp(const char *json, cdx_result want, const char *needle)
{
    cdx_clip_config c;
    CHECK(parse("{}", &c) == CDX_OK);   /* image_size 224 */
    cdx_result r = cdx_preproc_config_parse(json, strlen(json), "preprocessor_config.json", &c);
    CHECKF(r == want, "%s: got %s want %s (%s)", json, cdx_result_str(r), cdx_result_str(want), cdx_last_error());
    CHECKF(strstr(cdx_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", json, cdx_last_error(), needle);
    CHECKF(strncmp(cdx_last_error(), "preprocessor_config.json: ", 26) == 0, "message '%s' does not name the file",
           cdx_last_error());
}

static void test_preproc(void)
{
    cdx_clip_config c;
    CHECK(parse("{}", &c) == CDX_OK);
    CHECK(cdx_preproc_config_parse(NULL, 0, "preprocessor_config.json", &c) == CDX_OK);   /* file missing */
    CHECK(c.pre.resize_shortest == 224 && c.pre.crop == 224 && c.pre.std[1] == 0.26130258f);

    pp_ok("{\"size\":256,\"crop_size\":224,\"image_mean\":[0.5,0.5,0.5],\"image_std\":[0.25,0.5,1]}", &c);
    CHECK(c.pre.resize_shortest == 256 && c.pre.crop == 224);
    CHECK(c.pre.mean[2] == 0.5f && c.pre.std[0] == 0.25f && c.pre.std[2] == 1.0f);
    pp_ok("{\"size\":{\"shortest_edge\":224},\"crop_size\":{\"height\":224,\"width\":224},\"image_mean\":0.5,"
          "\"do_resize\":true,\"resample\":3}", &c);
    CHECK(c.pre.resize_shortest == 224 && c.pre.mean[0] == 0.5f && c.pre.mean[2] == 0.5f);
    CHECK(c.pre.std[0] == 0.26862954f);   /* defaults re-applied: previous call does not leak */

    bad_pp("{", CDX_ERR_FORMAT, "invalid JSON");
    bad_pp("7", CDX_ERR_FORMAT, "invalid JSON");
    bad_pp("[]", CDX_ERR_FORMAT, "not a JSON object");
    bad_pp("{\"size\":\"224\"}", CDX_ERR_FORMAT, "field 'size' is neither an integer nor an object");
    bad_pp("{\"size\":-5}", CDX_ERR_FORMAT, "field 'size' = -5 is out of range");
    bad_pp("{\"size\":{\"height\":224,\"width\":224}}", CDX_ERR_UNSUPPORTED, "field 'size' has no \"shortest_edge\"");
    bad_pp("{\"size\":{\"shortest_edge\":0}}", CDX_ERR_FORMAT, "field 'size.shortest_edge' = 0");
    bad_pp("{\"size\":{\"shortest_edge\":\"x\"}}", CDX_ERR_FORMAT, "field 'size.shortest_edge' is not an integer");
    bad_pp("{\"crop_size\":{\"height\":224,\"width\":200}}", CDX_ERR_UNSUPPORTED, "height 224 != width 200");
    bad_pp("{\"crop_size\":{\"height\":224}}", CDX_ERR_FORMAT, "field 'crop_size' has no \"width\"");
    bad_pp("{\"crop_size\":{\"height\":224,\"width\":1e9}}", CDX_ERR_FORMAT, "field 'crop_size.width' is not an integer");
    bad_pp("{\"crop_size\":256,\"size\":300}", CDX_ERR_MISMATCH, "crop_size 256 differs from the model's vision_config.image_size 224");
    bad_pp("{\"size\":200}", CDX_ERR_UNSUPPORTED, "resize size 200 is smaller than crop_size 224");
    bad_pp("{\"image_mean\":[0.5,0.5]}", CDX_ERR_FORMAT, "field 'image_mean' has 2 values, expected 3");
    bad_pp("{\"image_mean\":[0.5,\"a\",0.5]}", CDX_ERR_FORMAT, "field 'image_mean' must hold numbers");
    bad_pp("{\"image_mean\":{}}", CDX_ERR_FORMAT, "field 'image_mean' must hold numbers");
    bad_pp("{\"image_std\":[0.5,0,0.5]}", CDX_ERR_FORMAT, "field 'image_std' value 0 is out of range");
    bad_pp("{\"image_std\":[0.5,-1,0.5]}", CDX_ERR_FORMAT, "field 'image_std' value -1");
    bad_pp("{\"image_std\":[0.5,2.6e-46,0.5]}", CDX_ERR_FORMAT, "field 'image_std' value 2.6e-46");   /* float 0 */
    bad_pp("{\"image_mean\":[1e39,0,0]}", CDX_ERR_FORMAT, "field 'image_mean' value 1e+39");      /* float inf */
    bad_pp("{\"image_mean\":[1e300,0,0]}", CDX_ERR_FORMAT, "field 'image_mean' value 1e+300");
    bad_pp("{\"do_center_crop\":false}", CDX_ERR_UNSUPPORTED, "field 'do_center_crop' = false is not supported");
    bad_pp("{\"do_normalize\":0}", CDX_ERR_FORMAT, "field 'do_normalize' is not a boolean");
    bad_pp("{\"resample\":2}", CDX_ERR_UNSUPPORTED, "field 'resample' = 2 is not supported");
}

int main(void)
{
    test_defaults();
    test_bad_config();
    test_preproc();
    test_real_layouts();
    return test_finish();
}
