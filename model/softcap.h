/* Soft-capping (gemma2): x -> cap * tanh(x / cap), of attention scores
 * (model/attention.c) and of the head's logits (model/forward.c). */
#ifndef TM_MODEL_SOFTCAP_H
#define TM_MODEL_SOFTCAP_H

#include <math.h>
#include <stdint.h>

#include "model/hd.h"

TM_HD static inline float softcap(float x, float cap) { return cap * tanhf(x / cap); }

/* x[i] = softcap(x[i], cap) over n elements; cap 0: none (x unchanged). */
static inline void softcap_forward(float *x, int64_t n, float cap) {
    if (cap <= 0) return;
#ifdef _OPENMP /* not under nvcc, which includes this header for softcap() alone */
#pragma omp parallel for simd schedule(static)
#endif
    for (int64_t i = 0; i < n; i++) x[i] = softcap(x[i], cap);
}

#endif
