/* Causal attention on the GPU (model/cuda/attention.cu): attention_forward's
 * contract (model/attention.h) on device pointers, queued on `stream`; and
 * its backward pass (model/cuda/attention_backward.cu). */
#ifndef TM_MODEL_CUDA_ATTENTION_CUDA_H
#define TM_MODEL_CUDA_ATTENTION_CUDA_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns 0, or -1 when a head is wider than 256 or the launch fails
 * (cudaGetLastError says why). */
int cuda_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                           int G, int dqk, int dv, const int32_t *doc_start, int window, float scale, float softcap,
                           cudaStream_t stream);

/* The same on tensor cores from q, k, v in bf16 (cuda_to_bf16 of the
 * fp32 ones), the softmax weights rounded to bf16 too, fp32 accumulation and
 * softmax: for the bf16 path. Head widths that cuda_attention_bf16_fits
 * (multiples of 16 up to 256); -1 otherwise or when the launch fails. */
int cuda_attention_bf16_fits(int dqk, int dv);
int cuda_attention_forward_bf16(float *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v, int B,
                                int T, int H, int G, int dqk, int dv, const int32_t *doc_start, int window,
                                float scale, float softcap, cudaStream_t stream);

/* attention_backward on the GPU (model/cuda/attention_backward.cu): dq, dk,
 * dv overwritten from dout and the forward's out and lse; delta: scratch of
 * B*T*H floats the caller supplies (D = dout . out per row and head).
 * Deterministic (no atomics). Returns 0, or -1 when a head is wider than
 * 256, H % G, or a launch fails (cudaGetLastError says why). */
int cuda_attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                            int G, int dqk, int dv_dim, const int32_t *doc_start, int window, float scale,
                            float softcap, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
