/* The elementwise and per-row kernels of a layer's backward pass on the GPU
 * (model/cuda/grad_kernels.cu), each the device twin of a CPU function named
 * beside it; all queued on `s`, on device pointers, fp32. Sums over rows
 * are one thread per column adding rows in order: deterministic, no atomics.
 * The arithmetic per row and per element is model/grad_row.h's and
 * model/glu_act.h's, which tests/test_grad_row.c checks against the CPU
 * engine. Zeroing is cudaMemsetAsync's job. Errors surface at the next
 * synchronisation (cuda_check). */
#ifndef TM_MODEL_CUDA_GRAD_KERNELS_H
#define TM_MODEL_CUDA_GRAD_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* rmsnorm_backward over `rows` rows of width C: dinp += dL/dinp; dweight
 * (NULL: frozen, skipped) += sum over rows of dout * inp * rstd. rstd[row]:
 * 1/rms as cuda_rmsnorm saves it. Also head_rmsnorm_backward with rows =
 * N * heads, C = head_dim and rstd one per (token, head) row, laid out
 * [rows] (the GPU forward keeps QK-norm's 1/rms as [N*H] then [N*G], not
 * the CPU's [N, H+G]). */
void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           const float *rstd, int64_t rows, int C, cudaStream_t s);

/* swiglu_backward (gelu 0) or geglu_backward (gelu 1): dgate, dup
 * overwritten with dL/dgate, dL/dup of out = act(gate) * up given dout. */
void cuda_glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n,
                       int gelu, cudaStream_t s);
/* swiglu_forward_out / geglu_forward_out: out = act(gate) * up, gate and up
 * kept for the backward pass (cuda_glu's formula). */
void cuda_glu_out(float *out, const float *gate, const float *up, int64_t n, int gelu, cudaStream_t s);

/* matmul_backward's bias gradient: dbias[c] += sum over the N rows of dout[r, c]. */
void cuda_bias_grad(float *dbias, const float *dout, int64_t N, int C, cudaStream_t s);

/* head_lse's log-sum-exp of each row, lse[i] = max[i] + log(sum[i]), from
 * cuda_crossentropy_update's running state over the whole vocabulary. */
void cuda_crossentropy_lse(float *lse, const float *max, const double *sum, int N, cudaStream_t s);
/* head_loss_forward_backward's logit gradient without a teacher
 * (row_logit_grad, alpha 0), in place: logits [N, cols], raw (before any
 * cap), holding vocabulary columns [col0, col0 + cols), become dL/dlogits of
 * L = weight * sum over rows with target >= 0 of -log softmax(cap(z))[target],
 * i.e. weight (softmax - onehot(target)) cap'(z); rows with target < 0
 * become 0. lse from cuda_crossentropy_lse with the same cap (0: none). */
void cuda_crossentropy_grad(float *logits, const float *lse, const int32_t *targets, int N, int cols, int col0,
                            float weight, float cap, cudaStream_t s);

/* moe_backward's per-expert step: for each of an expert's n rows (token
 * rows[r], routing weight w[r], expert output ye[r]), dw[r] = dout[rows[r]]
 * . ye[r], then ye[r] = w[r] dout[rows[r]] (the gradient at the expert's
 * output). */
void cuda_moe_expert_grad(float *dw, float *ye, const float *dout, const int32_t *rows, const float *w, int n, int D,
                          cudaStream_t s);

/* x[i] *= f over n elements. */
void cuda_scale(float *x, int64_t n, float f, cudaStream_t s);
/* *out (device) = the sum of x[i]^2 over n elements in double, the same
 * order every run (one block: a loss, not a hot path). */
void cuda_sum_squares(double *out, const float *x, int64_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
