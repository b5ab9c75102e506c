#include "model/attention.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/simd.h"
#include "model/softcap.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* attend_row, returning the log-sum-exp of the scaled scores (for the backward pass). */
TM_MULTIVERSION static float attend_row_lse(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs, int lo,
                            int i, int dqk, int dv, float scale, float cap, float *p) {
    float mx = -INFINITY;
    for (int j = lo; j <= i; j++) {
        p[j] = dot(qi, k + j * ks, dqk) * scale;
        if (cap > 0) p[j] = softcap(p[j], cap);
        if (p[j] > mx) mx = p[j];
    }
    double sum = 0.0;
    for (int j = lo; j <= i; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    memset(o, 0, (size_t)dv * sizeof(float));
    for (int j = lo; j <= i; j++) {
        const float *vj = v + j * vs;
        float w = p[j] * inv;
#pragma omp simd
        for (int c = 0; c < dv; c++) o[c] += w * vj[c];
    }
    return mx + (float)log(sum);
}

TM_MULTIVERSION void attend_row(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs, int lo,
                                int i, int dqk, int dv, float scale, float cap, float *p) {
    attend_row_lse(o, qi, k, v, ks, vs, lo, i, dqk, dv, scale, cap, p);
}

void attention_forward(float *out, const float *q, const float *k, const float *v, int B, int T, int H, int G,
                       int dqk, int dv, int window, float scale, float cap) {
    int rep = H / G;
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv, os = (int64_t)H * dv;
#pragma omp parallel
    {
        float *p = mallocCheck((size_t)T * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / rep;
                const float *kb = k + (int64_t)b * T * ks + (int64_t)g * dqk;
                const float *vb = v + (int64_t)b * T * vs + (int64_t)g * dv;
                for (int i = 0; i < T; i++) {
                    int lo = (window > 0 && i - window + 1 > 0) ? i - window + 1 : 0;
                    int64_t row = (int64_t)b * T + i;
                    attend_row(out + row * os + (int64_t)h * dv, q + row * qs + (int64_t)h * dqk, kb, vb, ks, vs, lo,
                               i, dqk, dv, scale, cap, p);
                }
            }
        free(p);
    }
}
