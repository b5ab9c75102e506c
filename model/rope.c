#include "model/rope.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/base/checked.h"

#define TM_PI 3.14159265358979323846

void rope_inv_freq(const TmRopeScalingCfg *rs, double theta, int rotary_dim, double *inv_freq) {
    int half = rotary_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = pow(theta, -(2.0 * i) / rotary_dim);
        if (rs->type == TM_ROPE_LINEAR) f /= rs->factor; /* positions divided by factor */
        if (rs->type == TM_ROPE_LLAMA3) {
            /* Llama-3.1: slow frequencies are divided by factor, fast ones kept,
             * the band between blended smoothly by wavelength. */
            double old = (double)rs->original_max_position_embeddings;
            double wavelen = 2.0 * TM_PI / f;
            double low_wl = old / rs->low_freq_factor, high_wl = old / rs->high_freq_factor;
            if (wavelen > low_wl) {
                f = f / rs->factor;
            } else if (wavelen >= high_wl) {
                double smooth = (old / wavelen - rs->low_freq_factor) / (rs->high_freq_factor - rs->low_freq_factor);
                f = (1.0 - smooth) * f / rs->factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void rope_table_init(RopeTable *rt, const TmRopeScalingCfg *rs, double theta, int rotary_dim, int max_pos) {
    rt->max_pos = max_pos;
    rt->half = rotary_dim / 2;
    double *inv = mallocCheck((size_t)rt->half * sizeof *inv);
    rope_inv_freq(rs, theta, rotary_dim, inv);
    rt->cos = mallocCheck((size_t)max_pos * rt->half * sizeof(float));
    rt->sin = mallocCheck((size_t)max_pos * rt->half * sizeof(float));
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < rt->half; i++) {
            double a = p * inv[i];
            rt->cos[(int64_t)p * rt->half + i] = (float)cos(a);
            rt->sin[(int64_t)p * rt->half + i] = (float)sin(a);
        }
    free(inv);
}

void rope_table_free(RopeTable *rt) {
    free(rt->cos);
    free(rt->sin);
    rt->cos = rt->sin = NULL;
}

/* Rotate one row's spans by the angles of one position; inverse: by minus
 * those angles (the transpose, for the backward pass). */
static inline void rope_row(float *row, const float *c, const float *s, int half, const RopeLayout *lay, int inverse) {
    /* pair i: elements at lo + i*step_pair and that + step_mate */
    int step_pair = lay->interleave ? 2 : 1, step_mate = lay->interleave ? 1 : half;
    for (int h = 0; h < lay->n_heads; h++) {
        float *v = row + (int64_t)h * lay->head_stride + lay->offset;
        for (int i = 0; i < half; i++) {
            float *pa = v + i * step_pair, *pb = pa + step_mate;
            float a = *pa, b = *pb;
            if (!inverse) {
                *pa = a * c[i] - b * s[i];
                *pb = b * c[i] + a * s[i];
            } else {
                *pa = a * c[i] + b * s[i];
                *pb = b * c[i] - a * s[i];
            }
        }
    }
}

void rope_forward(float *x, int64_t row_stride, const RopeTable *rt, int B, int T, int pos0, const RopeLayout *lay) {
    int half = rt->half;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)B * T; row++) {
        int pos = pos0 + (int)(row % T);
        rope_row(x + row * row_stride, rt->cos + (int64_t)pos * half, rt->sin + (int64_t)pos * half, half, lay, 0);
    }
}

static void rope_pos(float *x, int64_t row_stride, const RopeTable *rt, int64_t N, const int32_t *pos,
                     const RopeLayout *lay, int inverse) {
    int half = rt->half;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < N; row++) {
        int64_t p = pos[row];
        if (p < 0 || p >= rt->max_pos) tm_die("rope: position %lld outside the table [0, %d)", (long long)p, rt->max_pos);
        rope_row(x + row * row_stride, rt->cos + p * half, rt->sin + p * half, half, lay, inverse);
    }
}

void rope_forward_pos(float *x, int64_t row_stride, const RopeTable *rt, int64_t N, const int32_t *pos,
                      const RopeLayout *lay) {
    rope_pos(x, row_stride, rt, N, pos, lay, 0);
}

void rope_backward_pos(float *dx, int64_t row_stride, const RopeTable *rt, int64_t N, const int32_t *pos,
                       const RopeLayout *lay) {
    rope_pos(dx, row_stride, rt, N, pos, lay, 1);
}
