#include "model/swiglu.h"

#include <math.h>

void swiglu_forward(float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

/* Element by element, so out may be gate (geglu_forward): training and
 * inference share the expression and agree bitwise. */
void geglu_forward_out(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = 0.5f * g * (1.0f + tanhf(GELU_K * (g + GELU_C * g * g * g))) * up[i];
    }
}

void geglu_forward(float *gate, const float *up, int64_t n) { geglu_forward_out(gate, gate, up, n); }

/* gelu(g) = g/2 (1 + t), t = tanh(u), u = k (g + c g^3):
 * gelu'(g) = (1 + t)/2 + g/2 (1 - t^2) k (1 + 3 c g^2). */
void geglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], t = tanhf(GELU_K * (g + GELU_C * g * g * g));
        float dgelu = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * g * g);
        dgate[i] = dout[i] * up[i] * dgelu;
        dup[i] = dout[i] * 0.5f * g * (1.0f + t);
    }
}

void swiglu_forward_out(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* silu(g) = g s with s = sigmoid(g); silu'(g) = s (1 + g (1 - s)). */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g));
        dgate[i] = dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = dout[i] * g * s;
    }
}
