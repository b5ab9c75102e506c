/* A fine-tuning step's layers and head on the rank's GPU (finetune
 * --device cuda): train/step.c keeps the order of the micro-batches, the
 * messages between stages, the embedding (on the host) and the optimizer;
 * each micro-batch's residual stream crosses to the device once, the
 * layers' inputs stay there (recompute order: each layer recomputed from
 * its input before its backward pass), and the gradients are summed on the
 * device and added to the host's once per step. Every layer type
 * (gpu_layer_backward's: GQA, MLA, MoE); no distillation teacher.
 * Built, not yet run on a GPU: gpu_finetune (label gpu). */
#ifndef TM_TRAIN_STEP_GPU_H
#define TM_TRAIN_STEP_GPU_H

#include "train/step.h"

/* The stage's part uploaded from the fp32 masters to GPU (local rank mod
 * count), fp32 GEMMs with fp32 (else bf16 GEMM inputs). 0, or -1 with
 * tm_error(): no CUDA built in, no GPU, a teacher or --recompute off. */
int step_gpu_init(StepGpu **d, const TrainStep *s, int fp32);
void step_gpu_free(StepGpu *d);
/* The step's K micro-batches' positions, document starts and targets to the device. */
int step_gpu_rows(StepGpu *d, const TrainStep *s);
/* Micro-batch k's forward through the stage's layers from x0 (host, [N,
 * D]); the last layer's output into x_out (host) when not NULL. */
int step_gpu_forward(StepGpu *d, const TrainStep *s, int k, const float *x0, float *x_out);
/* Micro-batch k's backward: on the last stage the head and loss (weight
 * per target; *nll += its NLL sum), else dx (host) holds the gradient at
 * the stage's output; dx gets the gradient at the stage's input. */
int step_gpu_backward(StepGpu *d, const TrainStep *s, int k, float weight, float *dx, double *nll);
/* The device's gradients of the step added to the host's (s->ps). */
int step_gpu_add_grads(StepGpu *d, const TrainStep *s);
/* After the optimizer changed the masters: the device's weights again. */
int step_gpu_weights(StepGpu *d, const TrainStep *s);
/* The device memory the step's activations take (each micro-batch's layer
 * inputs, one layer's training activations, the head's rows). */
size_t step_gpu_activation_bytes(const StepGpu *d);

#endif
