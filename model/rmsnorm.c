#include "model/rmsnorm.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Both norms are one loop over `rows` rows of width C: a plain RMSNorm has
 * one row per token (heads 1, rstd contiguous); a per-head norm has `heads`
 * rows per token, whose rstd lie at token * rstd_stride + head. */
static inline int64_t rstd_at(int64_t row, int heads, int64_t rstd_stride) {
    return heads == 1 && rstd_stride == 1 ? row : (row / heads) * rstd_stride + row % heads;
}

/* Mean square in double, rstd in fp32; rstd (NULL: not kept) saved for the backward pass. */
static void norm_rows_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int C,
                              double eps, int heads, int64_t rstd_stride) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *x = inp + i * C;
        float *y = out + i * C;
        double ss = 0.0;
        for (int j = 0; j < C; j++) ss += (double)x[j] * x[j];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (rstd) rstd[rstd_at(i, heads, rstd_stride)] = r;
        for (int j = 0; j < C; j++) y[j] = x[j] * r * weight[j];
    }
}

/* y_j = x_j r w_j with r = (mean(x^2) + eps)^-1/2, so
 * dx_j = r w_j dy_j - x_j r^3 / C * sum_k w_k dy_k x_k. */
static void norm_rows_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                               const float *rstd, int64_t rows, int C, int heads, int64_t rstd_stride) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *x = inp + i * C, *dy = dout + i * C;
        float *dx = dinp + i * C;
        float r = rstd[rstd_at(i, heads, rstd_stride)];
        double dot = 0.0;
        for (int j = 0; j < C; j++) dot += (double)weight[j] * dy[j] * x[j];
        float k = (float)(dot * r * r * r / C);
        for (int j = 0; j < C; j++) dx[j] += r * weight[j] * dy[j] - x[j] * k;
    }
    if (!dweight) return;
    /* by column, rows in order: deterministic whatever the thread count */
#pragma omp parallel for schedule(static)
    for (int j = 0; j < C; j++) {
        float s = 0.0f;
        for (int64_t i = 0; i < rows; i++) s += dout[i * C + j] * inp[i * C + j] * rstd[rstd_at(i, heads, rstd_stride)];
        dweight[j] += s;
    }
}

void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, double eps) {
    norm_rows_forward(out, NULL, inp, weight, N, C, eps, 1, 1);
}

void rmsnorm_forward_train(float *out, float *rstd, const float *inp, const float *weight, int N, int C, double eps) {
    norm_rows_forward(out, rstd, inp, weight, N, C, eps, 1, 1);
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C) {
    norm_rows_backward(dinp, dweight, dout, inp, weight, rstd, N, C, 1, 1);
}

void head_rmsnorm_forward(float *out, float *rinv, int64_t rinv_stride, const float *inp, const float *weight, int N,
                          int H, int d, double eps) {
    norm_rows_forward(out, rinv, inp, weight, (int64_t)N * H, d, eps, H, rinv_stride);
}

void head_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           const float *rinv, int64_t rinv_stride, int N, int H, int d) {
    norm_rows_backward(dinp, dweight, dout, inp, weight, rinv, (int64_t)N * H, d, H, rinv_stride);
}

void head_scale_forward(float *x, const float *weight, const float *rinv, int N, int H, int d) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)N * H; i++) {
        float *y = x + i * d, r = rinv[i % H];
        for (int j = 0; j < d; j++) y[j] *= r * weight[j];
    }
}
