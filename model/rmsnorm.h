#ifndef TM_MODEL_RMSNORM_H
#define TM_MODEL_RMSNORM_H

#include <stdint.h>

/* out[i] = inp[i] / sqrt(mean(inp[i]^2) + eps) * weight, for N rows of width C.
 * The mean square is accumulated in double (it feeds every later layer). */
void rmsnorm_forward(float *out, const float *inp, const float *weight, int N, int C, double eps);

/* Training: as rmsnorm_forward, also saving rstd[N] (1/rms of each row) for
 * the backward pass. */
void rmsnorm_forward_train(float *out, float *rstd, const float *inp, const float *weight, int N, int C, double eps);
/* dinp += dL/dinp; dweight += dL/dweight (NULL: frozen, skipped). */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);

/* Per-head RMSNorm (qwen3's q_norm/k_norm, before RoPE): each of the H heads
 * of width d of each of N rows ([N, H*d]) normalised on its own and scaled by
 * the same weight[d]; out may be inp (in place). rinv (NULL: not kept) gets
 * each head's 1/rms at rinv[n * rinv_stride + h]. */
/* head_rmsnorm_forward with each head h's 1/rms replaced by rinv[h]
 * (the same for every row), in place. */
void head_scale_forward(float *x, const float *weight, const float *rinv, int N, int H, int d);
void head_rmsnorm_forward(float *out, float *rinv, int64_t rinv_stride, const float *inp, const float *weight, int N,
                          int H, int d, double eps);
/* Training: dinp += dL/dinp (inp: the values before the norm); dweight +=
 * dL/dweight (NULL: frozen). */
void head_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           const float *rinv, int64_t rinv_stride, int N, int H, int d);

#endif
