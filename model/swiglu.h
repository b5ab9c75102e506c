#ifndef TM_MODEL_SWIGLU_H
#define TM_MODEL_SWIGLU_H

#include <stdint.h>

/* gate[i] = silu(gate[i]) * up[i], in place over n elements. */
void swiglu_forward(float *gate, const float *up, int64_t n);

/* GeGLU (gemma2): gate[i] = gelu_tanh(gate[i]) * up[i], in place, with
 * gelu_tanh(g) = g/2 (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) (PyTorch's
 * gelu(approximate="tanh"), transformers' gelu_pytorch_tanh). */
void geglu_forward(float *gate, const float *up, int64_t n);

/* Training: out = silu(gate) * up, inputs kept for the backward pass. */
void swiglu_forward_out(float *out, const float *gate, const float *up, int64_t n);
/* dgate, dup overwritten with dL/dgate, dL/dup given dout. */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
/* The same for GeGLU: out = gelu_tanh(gate) * up; its backward. */
void geglu_forward_out(float *out, const float *gate, const float *up, int64_t n);
void geglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);

#endif
