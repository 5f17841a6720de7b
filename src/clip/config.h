/*
 * config.h - parsing of a Hugging Face CLIP config.json and
 * preprocessor_config.json into plain structs.
 *
 * Both files are untrusted: every field is type- and range-checked (positive
 * sizes, width divisible by heads, image_size divisible by patch_size, sane
 * upper bounds so later size arithmetic cannot overflow) and errors name the
 * file and the field.  Missing optional fields take the HF CLIPConfig
 * defaults.
 */
#ifndef CDX_CLIP_CONFIG_H
#define CDX_CLIP_CONFIG_H

#include "clipdex.h"
#include <stddef.h>

typedef enum cdx_act {
    CDX_ACT_QUICK_GELU = 0,   /* x * sigmoid(1.702 x) */
    CDX_ACT_GELU              /* exact erf GELU */
} cdx_act;

typedef struct cdx_tower_config {
    int width;       /* hidden_size */
    int heads;       /* num_attention_heads */
    int layers;      /* num_hidden_layers */
    int mlp;         /* intermediate_size */
    float eps;       /* layer_norm_eps */
    cdx_act act;     /* hidden_act */
} cdx_tower_config;

typedef struct cdx_preproc_config {
    int resize_shortest;   /* size.shortest_edge (or plain int size) */
    int crop;              /* crop_size (height == width required) */
    float mean[3], std[3];
} cdx_preproc_config;

typedef struct cdx_clip_config {
    cdx_tower_config vision, text;
    int projection_dim;
    int image_size, patch_size;
    int vocab_size, context_length;   /* max_position_embeddings */
    cdx_preproc_config pre;
} cdx_clip_config;

/* Parse config.json text (len bytes; need not be NUL-terminated).  `name` is
 * used in error messages. */
cdx_result cdx_config_parse(const char *json, size_t len, const char *name,
                            cdx_clip_config *cfg);

/* Parse preprocessor_config.json into cfg->pre; defaults (CLIP's mean/std,
 * shortest side = crop = image_size) are applied first, so a missing file
 * (json == NULL) yields the defaults. */
cdx_result cdx_preproc_config_parse(const char *json, size_t len, const char *name,
                                    cdx_clip_config *cfg);

#endif
