#include "model/attention.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"
#include "model/simd.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* attend_row, returning the log-sum-exp of the scaled scores (for the backward pass). */
TM_MULTIVERSION static float attend_row_lse(float *o, const float *qi, const float *k, const float *v, int64_t ks, int64_t vs, int lo,
                            int i, int dqk, int dv, float scale, float *p) {
    float mx = -INFINITY;
    for (int j = lo; j <= i; j++) {
        p[j] = dot(qi, k + j * ks, dqk) * scale;
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
                                int i, int dqk, int dv, float scale, float *p) {
    attend_row_lse(o, qi, k, v, ks, vs, lo, i, dqk, dv, scale, p);
}

void attention_forward(float *out, const float *q, const float *k, const float *v, int B, int T, int H, int G,
                       int dqk, int dv, int window, float scale) {
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
                               i, dqk, dv, scale, p);
                }
            }
        free(p);
    }
}

/* First key row query row i of sequence b may see. */
static inline int doc_lo(const int32_t *doc_start, int b, int T, int i) {
    if (!doc_start) return 0;
    int lo = doc_start[(int64_t)b * T + i];
    if (lo < 0 || lo > i) tm_die("attention: doc_start %d of row %d is not in [0, %d]", lo, i, i);
    return lo;
}

void attention_forward_train(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                             int H, int G, int dqk, int dv, const int32_t *doc_start, float scale) {
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
                    int64_t row = (int64_t)b * T + i;
                    lse[row * H + h] = attend_row_lse(out + row * os + (int64_t)h * dv, q + row * qs + (int64_t)h * dqk,
                                                      kb, vb, ks, vs, doc_lo(doc_start, b, T, i), i, dqk, dv, scale, p);
                }
            }
        free(p);
    }
}

/* Flash-attention backward: per query row i, p_j = exp(scale q.k_j - lse_i)
 * recomputed, D_i = dout_i . out_i, ds_j = p_j (dout_i . v_j - D_i); then
 * dq_i += scale ds_j k_j, dk_j += scale ds_j q_i, dv_j += p_j dout_i. One
 * thread owns a (sequence, kv group): all writes to that group's dk/dv come
 * from it, in a fixed order, so the result does not depend on threads. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, int B, int T, int H, int G, int dqk,
                        int dv_dim, const int32_t *doc_start, float scale) {
    int rep = H / G;
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv_dim, os = (int64_t)H * dv_dim;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            float *dkb = dk + (int64_t)b * T * ks + (int64_t)g * dqk;
            float *dvb = dv + (int64_t)b * T * vs + (int64_t)g * dv_dim;
            const float *kb = k + (int64_t)b * T * ks + (int64_t)g * dqk;
            const float *vb = v + (int64_t)b * T * vs + (int64_t)g * dv_dim;
            for (int j = 0; j < T; j++) {
                memset(dkb + j * ks, 0, (size_t)dqk * sizeof(float));
                memset(dvb + j * vs, 0, (size_t)dv_dim * sizeof(float));
            }
            for (int h = g * rep; h < (g + 1) * rep; h++)
                for (int i = 0; i < T; i++) {
                    int64_t row = (int64_t)b * T + i;
                    const float *qi = q + row * qs + (int64_t)h * dqk;
                    const float *doi = dout + row * os + (int64_t)h * dv_dim;
                    float *dqi = dq + row * qs + (int64_t)h * dqk;
                    float l = lse[row * H + h], Di = dot(doi, out + row * os + (int64_t)h * dv_dim, dv_dim);
                    int lo = doc_lo(doc_start, b, T, i);
                    memset(dqi, 0, (size_t)dqk * sizeof(float));
                    for (int j = lo; j <= i; j++) {
                        float pj = expf(dot(qi, kb + j * ks, dqk) * scale - l);
                        float ds = pj * (dot(doi, vb + j * vs, dv_dim) - Di) * scale;
                        const float *kj = kb + j * ks;
                        float *dkj = dkb + j * ks, *dvj = dvb + j * vs;
#pragma omp simd
                        for (int c = 0; c < dqk; c++) {
                            dqi[c] += ds * kj[c];
                            dkj[c] += ds * qi[c];
                        }
#pragma omp simd
                        for (int c = 0; c < dv_dim; c++) dvj[c] += pj * doi[c];
                    }
                }
        }
}
