/* The elementwise and per-row kernels of a layer on the GPU
 * (model/cuda/kernels.cu), each the device twin of a CPU function named
 * beside it; all queued on `stream`, on device pointers, fp32 activations.
 * Errors surface at the next synchronisation (cuda_check). */
#ifndef TM_MODEL_CUDA_KERNELS_H
#define TM_MODEL_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* rmsnorm_forward over `rows` rows of width C (a per-head norm is rows =
 * N * heads, C = head_dim); out may be x; rstd[row] (NULL: not kept) gets
 * each row's 1/rms. */
void cuda_rmsnorm(float *out, float *rstd, const float *x, const float *weight, int64_t rows, int C, float eps,
                  cudaStream_t s);
/* rope_forward_pos: rows [0, N) of row_stride floats at positions pos[row],
 * n_heads spans of 2*half dims at h * head_stride + offset; cos/sin [max_pos, half]. */
void cuda_rope(float *x, int64_t row_stride, const float *cos_t, const float *sin_t, int half, int64_t N,
               const int32_t *pos, int n_heads, int head_stride, int offset, int interleave, cudaStream_t s);
/* rope_backward_pos: cuda_rope's arguments, dx rotated in place by the
 * transposed rotation (each angle negated). */
void cuda_rope_backward(float *dx, int64_t row_stride, const float *cos_t, const float *sin_t, int half, int64_t N,
                        const int32_t *pos, int n_heads, int head_stride, int offset, int interleave, cudaStream_t s);
/* gate[i] = act(gate[i]) * up[i]: silu (swiglu_forward) or gelu_tanh (geglu_forward). */
void cuda_glu(float *gate, const float *up, int64_t n, int gelu, cudaStream_t s);
/* out[r, c] += bias[c] over N rows of width C. */
void cuda_add_bias(float *out, const float *bias, int64_t N, int C, cudaStream_t s);
/* x[i] += y[i]. */
void cuda_add(float *x, const float *y, int64_t n, cudaStream_t s);
/* out[i] = bf16(in[i]), round to nearest even (tm_f32_to_bf16). */
void cuda_to_bf16(uint16_t *out, const float *in, int64_t n, cudaStream_t s);

/* dst[r, 0..cols) = src[r, 0..cols) over N rows of strides ld_dst, ld_src
 * (MLA: the latent's leading columns). */
void cuda_copy_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t N, int cols, cudaStream_t s);
/* MLA's per-head keys and values (mla_forward): k[i, h] = [kvb[i, h, :dn] ;
 * lat[i, R:R+dr]] (the shared rope part), v[i, h] = kvb[i, h, dn:dn+dv]. */
void cuda_mla_heads(float *k, float *v, const float *kvb, const float *lat, int64_t N, int H, int dn, int dr, int dv,
                    int R, cudaStream_t s);
/* cuda_mla_heads' backward (mla_backward's): dkvb[i, h] = [dk[i, h, :dn] ;
 * dv[i, h]] and dlat[i, R:R+dr] = the sum over heads of dk[i, h, dn:]
 * (overwritten; dlat's first R columns untouched). */
void cuda_mla_heads_backward(float *dkvb, float *dlat, const float *dk, const float *dv, int64_t N, int H, int dn,
                             int dr, int dv_dim, int R, cudaStream_t s);
/* MoE: dst[r] = src[rows[r]] (gather), and out[rows[r]] += w[r] * src[r]
 * (scatter-add; w NULL: 1), over n rows of width D. */
void cuda_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int D, cudaStream_t s);
void cuda_scatter_add_rows(float *out, const float *src, const int32_t *rows, const float *w, int n, int D,
                           cudaStream_t s);
/* crossentropy_update on the device: rows [0, N) of logits [N, cols]
 * (vocabulary columns [col0, col0 + cols)), soft-capped by cap (0: none),
 * folded into each row's running max, sum (double) and target logit. */
void cuda_crossentropy_update(float *max, double *sum, float *target_logit, const float *logits, int N, int cols,
                              int col0, const int32_t *targets, float cap, cudaStream_t s);
/* max = -inf, sum = 0, target_logit = 0 over N rows. */
void cuda_crossentropy_reset(float *max, double *sum, float *target_logit, int N, cudaStream_t s);

/* Calibration statistics (for stats_gpu.c): rows made
 * float64 for the SYRK that sums them. dst[r, 0..cols) = src[r, 0..cols)
 * over N rows of stride ld. */
void cuda_rows_to_f64(double *dst, const float *src, int64_t ld, int cols, int64_t N, cudaStream_t s);
/* calib_gather_hook's CAL_LATENT_NORMED rows: dst[r] = [c, c * latent_rms_inv(c)]
 * of each latent c = lat[r, 0..R) (stride ld), 2R float64 per row. */
void cuda_latent_pairs_f64(double *dst, const float *lat, int64_t ld, int R, int64_t N, cudaStream_t s);
/* QK-norm's 1/rms summed over N rows, in row order as the CPU adds them:
 * acc[j] += rq[r, j] for the H query heads, acc[H + j] += rk[r, j] for the G key heads. */
void cuda_rinv_sums(double *acc, const float *rq, const float *rk, int64_t N, int H, int G, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
