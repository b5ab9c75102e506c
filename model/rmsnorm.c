#include "model/rmsnorm.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, double eps) {
    rmsnorm_forward_train(out, NULL, inp, weight, N, C, eps);
}

/* Mean square in double, rstd in fp32; rstd (NULL: not kept) saved for the backward pass. */
void rmsnorm_forward_train(float *out, float *rstd, const float *inp, const float *weight, int N, int C, double eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C;
        float *y = out + (int64_t)i * C;
        double ss = 0.0;
        for (int j = 0; j < C; j++) ss += (double)x[j] * x[j];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (rstd) rstd[i] = r;
        for (int j = 0; j < C; j++) y[j] = x[j] * r * weight[j];
    }
}

/* y_j = x_j r w_j with r = (mean(x^2) + eps)^-1/2, so
 * dx_j = r w_j dy_j - x_j r^3 / C * sum_k w_k dy_k x_k. */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C, *dy = dout + (int64_t)i * C;
        float *dx = dinp + (int64_t)i * C;
        float r = rstd[i];
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
        for (int i = 0; i < N; i++) s += dout[(int64_t)i * C + j] * inp[(int64_t)i * C + j] * rstd[i];
        dweight[j] += s;
    }
}
