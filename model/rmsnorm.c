#include "model/rmsnorm.h"

#include <math.h>
#include <stdint.h>

void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, double eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C;
        float *y = out + (int64_t)i * C;
        double ss = 0.0;
        for (int j = 0; j < C; j++) ss += (double)x[j] * x[j];
        float rstd = (float)(1.0 / sqrt(ss / C + eps));
        for (int j = 0; j < C; j++) y[j] = x[j] * rstd * weight[j];
    }
}
