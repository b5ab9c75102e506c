/* AdamW with the Hugging Face Trainer's defaults and schedules: decoupled
 * weight decay (none on norms and biases), bias-corrected moments, gradient
 * clipping by global norm, learning rate warmed up linearly then decayed
 * (cosine, linear or constant) as transformers' get_scheduler computes it. */
#ifndef TM_TRAIN_OPTIM_H
#define TM_TRAIN_OPTIM_H

#include <stdint.h>

#include "train/params.h"

typedef enum { LR_COSINE, LR_LINEAR, LR_CONSTANT } LrSchedule;

typedef struct {
    double lr, weight_decay, beta1, beta2, eps, max_grad_norm;
    LrSchedule schedule;
    int64_t warmup_steps, total_steps;
} OptimConfig;

int lr_schedule_parse(const char *s, LrSchedule *out);
const char *lr_schedule_name(LrSchedule s);
/* ceil(ratio * total), as TrainingArguments.get_warmup_steps. */
int64_t warmup_steps_of(double ratio, int64_t total_steps);
/* The learning rate of the update after `step` updates were made. */
double lr_at(const OptimConfig *o, int64_t step);

/* One AdamW update (the step-th, counted from 0) of every parameter of ps
 * with gradients scaled by grad_scale (clipping), at learning rate lr. */
void adamw_step(ParamSet *ps, const OptimConfig *o, int64_t step, double lr, float grad_scale);
/* grad_scale for clipping a global norm to max_norm (1 when within). */
float clip_scale(double grad_norm, double max_norm);

#endif
