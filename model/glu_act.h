/* The gated MLP's activation and its derivative, element by element, as the
 * CPU's swiglu.c writes them (SwiGLU: silu; GeGLU, gemma2: gelu_tanh), in
 * plain C that nvcc also compiles for the device (model/cuda/kernels.cu,
 * grad_kernels.cu), so tests/test_grad_row.c checks on the CPU what the GPU
 * runs. The expressions keep swiglu.c's operation order: the two agree
 * bitwise where both compilers round alike. */
#ifndef TM_MODEL_GLU_ACT_H
#define TM_MODEL_GLU_ACT_H

#include <math.h>

#include "model/hd.h"

#define TM_GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define TM_GELU_C 0.044715f

/* silu(g) = g sigmoid(g) (gelu 0) or gelu_tanh(g) = g/2 (1 + tanh(k (g + c g^3))) (gelu 1). */
TM_HD static inline float glu_act(float g, int gelu) {
    if (gelu) return 0.5f * g * (1.0f + tanhf(TM_GELU_K * (g + TM_GELU_C * g * g * g)));
    return g / (1.0f + expf(-g));
}

/* out = act(gate) * up: *dgate, *dup = dL/dgate, dL/dup given dout = dL/dout.
 * silu' = s (1 + g (1 - s)), s = sigmoid(g); gelu_tanh' = (1 + t)/2 + g/2 (1 - t^2) k (1 + 3 c g^2),
 * t = tanh(k (g + c g^3)). dup uses the activation as written here (g s, g/2 (1 + t)), as swiglu.c does. */
TM_HD static inline void glu_grad(float *dgate, float *dup, float dout, float g, float up, int gelu) {
    if (gelu) {
        float t = tanhf(TM_GELU_K * (g + TM_GELU_C * g * g * g));
        float dgelu = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * TM_GELU_K * (1.0f + 3.0f * TM_GELU_C * g * g);
        *dgate = dout * up * dgelu;
        *dup = dout * 0.5f * g * (1.0f + t);
        return;
    }
    float s = 1.0f / (1.0f + expf(-g));
    *dgate = dout * up * s * (1.0f + g * (1.0f - s));
    *dup = dout * g * s;
}

#endif
