/*
 * trainer.h - internal view of a cdx_trainer's parameter table, for tests
 * (finite-difference checks of the whole model) and benchmarks.  The public
 * API is the cdx_trainer_* section of clipdex.h.
 */
#ifndef CDX_TRAIN_TRAINER_H
#define CDX_TRAIN_TRAINER_H

#include "clipdex.h"
#include <stddef.h>

typedef struct cdx_trainer_tensor {
    const char *name;        /* Hugging Face name */
    float *w;                /* master weights (writable) */
    const float *g;          /* gradient of the last step; NULL when frozen */
    size_t numel;
    int trainable, decay;
} cdx_trainer_tensor;

int cdx_trainer_n_tensors(const cdx_trainer *t);
/* Tensor i (0 <= i < cdx_trainer_n_tensors); returns -1 when out of range. */
int cdx_trainer_tensor_at(cdx_trainer *t, int i, cdx_trainer_tensor *out);
/* Forward + backward only (gradients filled, no optimizer update). */
cdx_result cdx_trainer_gradients(cdx_trainer *t, const float *pixels, const int32_t *tokens, int n,
                                 double *loss);

#endif
