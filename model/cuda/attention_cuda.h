/* Causal attention on the GPU (model/cuda/attention.cu): attention_forward's
 * contract (model/attention.h) on device pointers, queued on `stream`. */
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

#ifdef __cplusplus
}
#endif

#endif
