/* The rotation fit's micro-batches on a GPU (convert --device cuda): each
 * micro-batch's forward (the keys and queries built from P's rope rows,
 * RoPE, attention, the error after o_proj) and, for a gradient, its backward
 * to P's rope rows run there, the same steps as pipeline/rorope_fit.c's
 * mb_forward and mb_backward, whose cblas calls gpu_gemm_rm mirrors one for
 * one. Everything else (the Cayley bases, the micro-batch sum in order,
 * Adam) stays on the host, shared with the CPU path. fp32 throughout (the
 * fit follows error changes of a few percent, which bf16's rounding of the
 * keys would blur). q, k, v and o stay on the GPU for the whole layer when
 * they fit in half its free memory, else go up per micro-batch. Built, not
 * yet run on a GPU: gpu_rorope_fit (label gpu) holds it to
 * rorope_fit_check.py's float64 oracle. */
#ifndef TM_PIPELINE_ROROPE_FIT_GPU_H
#define TM_PIPELINE_ROROPE_FIT_GPU_H

#include "model/rope.h"
#include "pipeline/rorope_fit.h"

typedef struct RoropeFitGpu RoropeFitGpu;

/* For x's micro-batches, the rope head's table `rope` at positions pos
 * ([batch*T]). 0, or -1 with tm_error() (no CUDA built in, no GPU). */
int rorope_fit_gpu_init(RoropeFitGpu **f, const FitProblem *p, const FitData *x, const RopeTable *rope,
                        const int32_t *pos);
void rorope_fit_gpu_free(RoropeFitGpu *f);
/* P's rope rows pr [r, L] (host) to the device: before each evaluation. */
void rorope_fit_gpu_rotation(RoropeFitGpu *f, const float *pr);
/* Rows [row0, row0 + B*T) of x: *sum = the summed squared error after
 * o_proj; dpr (host [r, L], NULL: no gradient) = its gradient w.r.t. P's
 * rope rows; out (host [B*T, H*d], optional) = the converted attention
 * output. 0, or -1 with tm_error(). */
int rorope_fit_gpu_mb(RoropeFitGpu *f, const FitProblem *p, const FitData *x, int64_t row0, int B, double *sum,
                      float *dpr, float *out);

#endif
