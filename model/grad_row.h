/* The per-row and per-column arithmetic of the GPU's backward kernels
 * (model/cuda/grad_kernels.cu), in plain C that nvcc also compiles for the
 * device, so tests/test_grad_row.c checks on the CPU, against the CPU
 * engine, what the GPU runs: RMSNorm's backward (rmsnorm.c's
 * norm_rows_backward), column sums (its dweight, matmul_backward's dbias)
 * and the head's cross-entropy gradient (crossentropy.c's row_logit_grad
 * without a teacher). */
#ifndef TM_MODEL_GRAD_ROW_H
#define TM_MODEL_GRAD_ROW_H

#include <math.h>
#include <stdint.h>

#include "model/hd.h"

/* RMSNorm y_j = x_j r w_j: dx_j = r w_j dy_j - x_j k, k = r^3 / C sum_k w_k dy_k x_k.
 * The sum is split so a block of threads can share it: each adds the
 * columns j0, j0 + step, ... in double (as the CPU adds them all), the
 * partial sums are added, and rms_grad_coef turns the total into k. */
TM_HD static inline double rms_dot_part(const float *w, const float *dy, const float *x, int C, int j0, int step) {
    double dot = 0.0;
    for (int j = j0; j < C; j += step) dot += (double)w[j] * dy[j] * x[j];
    return dot;
}

TM_HD static inline float rms_grad_coef(double dot, float r, int C) { return (float)(dot * r * r * r / C); }

/* What column j adds to dx_j. */
TM_HD static inline float rms_grad_elem(float x, float dy, float w, float r, float k) { return r * w * dy - x * k; }

/* sum over rows i in order of dout[i, j] inp[i, j] rstd[i] in float, the
 * CPU's dweight[j] (rstd one per row: a per-head norm's rows are (token, head)). */
TM_HD static inline float rms_weight_grad_col(const float *dout, const float *inp, const float *rstd, int64_t rows,
                                              int C, int j) {
    float s = 0.0f;
    for (int64_t i = 0; i < rows; i++) s += dout[i * C + j] * inp[i * C + j] * rstd[i];
    return s;
}

/* sum over rows i in order of a[i, j] in float (matmul_backward's dbias). */
TM_HD static inline float column_sum(const float *a, int64_t rows, int C, int j) {
    float s = 0.0f;
    for (int64_t i = 0; i < rows; i++) s += a[i * C + j];
    return s;
}

/* A row's log-sum-exp from crossentropy_update's running max and sum, as
 * head_lse makes it. */
TM_HD static inline float ce_lse(float max, double sum) { return (float)(log(sum) + max); }

/* dL/dz of one raw logit z (before the cap) at vocabulary column col of a
 * row whose target is target, for L = weight * -log softmax(cap(z))[target]:
 * weight (softmax - onehot) at the capped logit, times the cap's derivative
 * 1 - tanh^2(z / cap) (cap 0: none); 0 when target < 0 (the row has no
 * loss; lse is then not read). lse: the capped logits' log-sum-exp. */
TM_HD static inline float ce_logit_grad(float z, float lse, int32_t target, int64_t col, float weight, float cap) {
    if (target < 0) return 0.0f;
    float t = cap > 0 ? tanhf(z / cap) : 0.0f, zc = cap > 0 ? cap * t : z;
    float g = weight * expf(zc - lse);
    if (col == target) g -= weight;
    return cap > 0 ? g * (1.0f - t * t) : g;
}

#endif
