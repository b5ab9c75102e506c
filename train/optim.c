#include "train/optim.h"

#include <math.h>
#include <string.h>

#include "io/base/error.h"

int lr_schedule_parse(const char *s, LrSchedule *out) {
    if (!strcmp(s, "cosine")) *out = LR_COSINE;
    else if (!strcmp(s, "linear")) *out = LR_LINEAR;
    else if (!strcmp(s, "constant") || !strcmp(s, "constant_with_warmup")) *out = LR_CONSTANT;
    else return tm_fail("--lr-scheduler-type: '%s' is not cosine, linear or constant_with_warmup", s);
    return 0;
}

const char *lr_schedule_name(LrSchedule s) {
    return s == LR_COSINE ? "cosine" : s == LR_LINEAR ? "linear" : "constant_with_warmup";
}

int64_t warmup_steps_of(double ratio, int64_t total_steps) { return (int64_t)ceil(ratio * (double)total_steps); }

double lr_at(const OptimConfig *o, int64_t step) {
    int64_t w = o->warmup_steps, total = o->total_steps;
    if (step < w) return o->lr * (double)step / (double)(w > 1 ? w : 1);
    double progress = (double)(step - w) / (double)(total - w > 1 ? total - w : 1);
    switch (o->schedule) {
    case LR_COSINE: return o->lr * fmax(0.0, 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
    case LR_LINEAR: return o->lr * fmax(0.0, 1.0 - progress);
    default: return o->lr;
    }
}

float clip_scale(double grad_norm, double max_norm) {
    if (max_norm <= 0 || !(grad_norm > max_norm)) return 1.0f;
    return (float)(max_norm / (grad_norm + 1e-6)); /* torch's clip_grad_norm_ */
}

void adamw_step(ParamSet *ps, const OptimConfig *o, int64_t step, double lr, float grad_scale) {
    double t = (double)(step + 1);
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    float c1 = (float)(1.0 - pow(o->beta1, t)), c2 = (float)sqrt(1.0 - pow(o->beta2, t));
    float step_size = (float)lr / c1;
    for (int i = 0; i < ps->n; i++) {
        Param *p = &ps->p[i];
        float decay = p->decay ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
#pragma omp parallel for simd schedule(static)
        for (int64_t j = 0; j < p->n; j++) {
            float g = p->g[j] * grad_scale;
            float m = b1 * p->m[j] + (1.0f - b1) * g;
            float v = b2 * p->v[j] + (1.0f - b2) * g * g;
            p->m[j] = m;
            p->v[j] = v;
            /* torch.optim.AdamW: decay first, then w -= lr/c1 * m / (sqrt(v)/c2 + eps) */
            p->w[j] = p->w[j] * decay - step_size * m / (sqrtf(v) / c2 + eps);
        }
    }
}
