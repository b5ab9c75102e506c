/* A weight as the engine sees it: a view of stored data (F32, F16 or BF16,
 * usually inside a safetensors mapping) plus its shape. Weights stay in their
 * stored dtype; kernels convert panels to fp32 as they use them. */
#ifndef TM_MODEL_TENSOR_H
#define TM_MODEL_TENSOR_H

#include <stdint.h>

#include "io/dtype.h"

typedef struct {
    const void *data;   /* NULL: tensor absent (optional weights such as biases) */
    TmDType dtype;
    int64_t rows, cols; /* a vector has rows == 1 */
    const char *name;
} Tensor;

float tm_bf16_to_f32(uint16_t h);
uint16_t tm_f32_to_bf16(float f); /* round to nearest even */
float tm_f16_to_f32(uint16_t h);
uint16_t tm_f32_to_f16(float f);  /* round to nearest even */

/* A gradient tensor's fp32 data, to accumulate into (gradients share the
 * Tensor type, whose data pointer is const for weights). */
static inline float *tensor_grad_data(const Tensor *g) { return (float *)g->data; }

/* out[0..n) = elements [offset, offset + n) of t, as fp32. */
void tensor_to_f32(const Tensor *t, int64_t offset, int64_t n, float *out);
/* x[0..n) rounded (to nearest even) to dtype TM_BF16 or TM_F16, in a new
 * malloc'd buffer. */
uint16_t *tensor_f32_to_16bit(const float *x, int64_t n, TmDType dtype);

#endif
