/*
 * captions.h - `clipdex eval captions`: COCO/Flickr-style caption retrieval
 * (text-to-image and image-to-text Recall@K), computed as OpenCLIP's
 * retrieval benchmark does:
 *   text->image R@K: the fraction of captions whose image is among the K
 *                    images of highest cosine to the caption;
 *   image->text R@K: the fraction of images with ANY of their captions among
 *                    the K captions of highest cosine to the image.
 * The gallery is the captioned images found in the library (other library
 * images are not candidates).  Ties rank the lower index first (images in
 * library-id order, captions in file order).
 *
 * Captions file: a JSON object {"image": ["caption", ...], ...}.  An image
 * key is found in the library as: a path under --images-root (when given),
 * else under the captions file's directory or its images/ subfolder, else
 * the unique library path ending in "/<key>".
 */
#ifndef CDX_EVAL_CAPTIONS_H
#define CDX_EVAL_CAPTIONS_H

#include "clipdex.h"
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

#define EV_MAX_CAPTION_BYTES 65536

typedef struct ev_caption_image {
    char *key;
    char **caps;
    size_t n_caps;
} ev_caption_image;

typedef struct ev_captions {
    ev_caption_image *im;
    size_t n;
    size_t n_caps;          /* total */
    char *base;             /* directory of the captions file */
} ev_captions;

cdx_result ev_captions_parse(const char *name, const char *data, size_t len, ev_captions *out);
cdx_result ev_captions_load(const char *path, ev_captions *out);
void ev_captions_free(ev_captions *c);

typedef struct ev_captions_params {
    const char *images_root;   /* or NULL */
    size_t ks[EV_MAX_KS];
    int n_k;
} ev_captions_params;

ev_captions_params ev_captions_default_params(void);   /* K = 1, 5, 10 */

typedef struct ev_captions_report {
    size_t n_images, n_captions;   /* evaluated (found in the library) */
    size_t missing;                /* caption images not in the library */
    char first_missing[512];
    size_t ks[EV_MAX_KS];
    int n_k;
    double t2i[EV_MAX_KS], i2t[EV_MAX_KS];
    double chance_t2i[EV_MAX_KS], chance_i2t[EV_MAX_KS];   /* random ranking */
} ev_captions_report;

cdx_result ev_captions_run(cdx_library *lib, const ev_captions *caps,
                           const ev_captions_params *params, ev_captions_report *out);

/* Expected R@K of a random ranking: t2i min(K,N)/N; i2t the mean over
 * images of 1 - prod_{j<K} (M-c-j)/(M-j) (c captions of the image among M). */
void ev_captions_chance(const size_t *caps_per_image, size_t n_img, size_t k, double *t2i,
                        double *i2t);

#endif
