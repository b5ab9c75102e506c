#ifndef TM_MODEL_SWIGLU_H
#define TM_MODEL_SWIGLU_H

#include <stdint.h>

/* gate[i] = silu(gate[i]) * up[i], in place over n elements. */
void swiglu_forward(float *gate, const float *up, int64_t n);

#endif
