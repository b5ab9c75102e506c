#ifndef TM_MODEL_SWIGLU_H
#define TM_MODEL_SWIGLU_H

#include <stdint.h>

/* gate[i] = silu(gate[i]) * up[i], in place over n elements. */
void swiglu_forward(float *gate, const float *up, int64_t n);

/* Training: out = silu(gate) * up, inputs kept for the backward pass. */
void swiglu_forward_out(float *out, const float *gate, const float *up, int64_t n);
/* dgate, dup overwritten with dL/dgate, dL/dup given dout. */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);

#endif
