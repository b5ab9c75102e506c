/* 1/rms of an MLA latent row as kv_a_layernorm computes it for the
 * kv-norm fit's statistics (pipeline/calibrate.c on the CPU, the GPU's
 * model/cuda/kernels.cu): one function, so both sum the same rows. */
#ifndef TM_MODEL_LATENT_NORM_H
#define TM_MODEL_LATENT_NORM_H

#include <math.h>

#include "model/hd.h"

/* transformers' DeepseekV3RMSNorm default, which q_a/kv_a_layernorm keep */
#define TM_MLA_LATENT_NORM_EPS 1e-6

/* The mean square in double, as the calibration has always summed it. */
TM_HD static inline float latent_rms_inv(const float *c, int R) {
    double ss = 0;
    for (int j = 0; j < R; j++) ss += (double)c[j] * c[j];
    return (float)(1.0 / sqrt(ss / R + TM_MLA_LATENT_NORM_EPS));
}

#endif
