#include "model/rope.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/checked.h"

#define TM_PI 3.14159265358979323846

void rope_inv_freq(const TmRopeScalingCfg *rs, double theta, int head_dim, double *inv_freq) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = pow(theta, -(2.0 * i) / head_dim);
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

void rope_table_init(RopeTable *rt, const TmRopeScalingCfg *rs, double theta, int head_dim, int max_pos) {
    rt->max_pos = max_pos;
    rt->half = head_dim / 2;
    double *inv = mallocCheck((size_t)rt->half * sizeof *inv);
    rope_inv_freq(rs, theta, head_dim, inv);
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

void rope_forward(float *x, const RopeTable *rt, int B, int T, int n_heads, int head_dim) {
    int half = head_dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)B * T; row++) {
        int t = (int)(row % T);
        const float *c = rt->cos + (int64_t)t * half, *s = rt->sin + (int64_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + row * n_heads * head_dim + (int64_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}
