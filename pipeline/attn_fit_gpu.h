/* The attention fit's micro-batches on a GPU (convert --device cuda): the
 * converted layer's MLA block forward on the micro-batch's normed inputs,
 * its error against the target and, for a training pass, the error's
 * gradient back through the block (model/cuda/mla_gpu.c, the kernels
 * fine-tuning runs), the gradient copied back into the fit's parameters on
 * the host, where the micro-batches' gradients are summed in order and Adam
 * steps as on the CPU (pipeline/attn_fit.c). The weights go up once per
 * pass. Built, not yet run on a GPU: gpu_attn_fit (label gpu) holds it to
 * attn_fit_check.py's float64 oracle. */
#ifndef TM_PIPELINE_ATTN_FIT_GPU_H
#define TM_PIPELINE_ATTN_FIT_GPU_H

#include "model/rope.h"
#include "pipeline/attn_fit.h"

typedef struct AttnFitGpu AttnFitGpu;

/* For micro-batches of up to `batch` windows of T rows at positions pos
 * ([batch*T], rope covering them). 0, or -1 with tm_error() (no CUDA built
 * in, no GPU). */
int attn_fit_gpu_init(AttnFitGpu **d, const AttnFitProblem *p, int batch, int T, const RopeTable *rope,
                      const int32_t *pos);
void attn_fit_gpu_free(AttnFitGpu *d);
/* P's weights to the device: before a pass, after Adam changed them. */
int attn_fit_gpu_weights(AttnFitGpu *d, const AttnFitProblem *p, const AttnParams *P);
/* One micro-batch of B windows (xn, y: [B*T, D] on the host): *sum = its
 * summed squared error; with grad, the gradient of sum / norm added into P's
 * g; y_fit (optional) = the block's output on those rows. 0, or -1. */
int attn_fit_gpu_mb(AttnFitGpu *d, const AttnFitProblem *p, const float *xn, const float *y, int B, double norm,
                    int grad, AttnParams *P, float *y_fit, double *sum);

#endif
