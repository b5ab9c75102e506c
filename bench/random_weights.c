/* Random weights for the benchmarks (random_weights.h). */
#include "random_weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

float urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 2685821657736338717ull) >> 40) / (float)(1 << 23) - 1.0f;
}

StTensor *random_tensors(const ModelConfig *c, TmDType dt, int *n_out) {
    WeightShape *ws;
    int n = weights_expected(c, &ws);
    StTensor *t = callocCheck((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        int64_t numel = ws[i].cols ? ws[i].rows * ws[i].cols : ws[i].rows;
        int is_vec = ws[i].cols == 0;
        TmDType tdt = is_vec ? TM_F32 : dt;
        size_t es = tm_dtype_size(tdt);
        void *data = mallocCheck((size_t)numel * es);
        float scale = is_vec ? 0.0f : 1.0f / sqrtf((float)ws[i].cols);
        for (int64_t j = 0; j < numel; j++) {
            float v = is_vec ? 1.0f : urand() * scale;
            if (tdt == TM_F32) ((float *)data)[j] = v;
            else if (tdt == TM_BF16) ((uint16_t *)data)[j] = tm_f32_to_bf16(v);
            else ((uint16_t *)data)[j] = tm_f32_to_f16(v);
        }
        t[i].name = strdup(ws[i].name);
        t[i].dtype = tdt;
        t[i].ndim = is_vec ? 1 : 2;
        t[i].shape[0] = ws[i].rows;
        t[i].shape[1] = ws[i].cols;
        t[i].end = (uint64_t)numel * es;
        t[i].data = data;
        t[i].file = "(random weights)";
    }
    free(ws);
    *n_out = n;
    return t;
}

void random_tensors_free(StTensor *t, int n) {
    for (int i = 0; i < n; i++) {
        free(t[i].name);
        free((void *)t[i].data);
    }
    free(t);
}
