/* The backward pass of causal attention on the GPU: attention_backward's
 * contract (model/attention.h) on device pointers, queued on `stream`.
 * Three kernels, each a thin wrapper over the row functions of
 * model/attn_grad_tile.h that the CPU unit test (test_attn_tile) runs
 * against the CPU engine: D = dout . out per (row, head), then dq with one
 * thread per (query row, head), then dk and dv with one thread per (key
 * row, kv head) summing over its group's query heads and rows in a fixed
 * order, so there are no atomics and the result is deterministic. Written
 * for correctness first (keys and queries are read from global memory, no
 * shared-memory tiles); it has not run on a GPU yet: test_attn_tile --gpu
 * (ctest gpu_attention) checks it where one is lent. */
#include <cuda_runtime.h>

#include "model/attn_grad_tile.h"
#include "model/cuda/attention_cuda.h"

enum { ROWS_PER_BLOCK = 64, MAX_HEAD_DIM = 256 };

/* delta[row * H + h] for the B*T*H (row, head) pairs */
__global__ static void attention_grad_delta(float *delta, const float *dout, const float *out, int64_t pairs, int dv) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= pairs) return;
    delta[e] = attn_grad_delta(dout + e * dv, out + e * dv, dv); /* [B*T, H*dv] rows: pair e starts at e*dv */
}

/* grid (row tiles, H, B): query row i, head h */
__global__ static void attention_grad_dq(float *dq, const float *delta, const float *dout, const float *lse,
                                         const float *q, const float *k, const float *v, int T, int H, int G, int dqk,
                                         int dv, const int32_t *doc_start, int window, float scale, float cap) {
    int b = blockIdx.z, h = blockIdx.y, i = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x, g = h / (H / G);
    if (i >= T) return;
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv, os = (int64_t)H * dv;
    int64_t row = (int64_t)b * T + i;
    const int32_t *doc_row = doc_start ? doc_start + (int64_t)b * T : NULL;
    float acc[MAX_HEAD_DIM];
    attn_grad_dq_row(acc, q + row * qs + h * dqk, dout + row * os + h * dv, lse[row * H + h], delta[row * H + h],
                     k + (int64_t)b * T * ks + g * dqk, v + (int64_t)b * T * vs + g * dv, ks, vs, doc_row, window, i,
                     dqk, dv, scale, cap);
    for (int c = 0; c < dqk; c++) dq[row * qs + h * dqk + c] = acc[c];
}

/* grid (row tiles, G, B): key row j, kv head g */
__global__ static void attention_grad_dkv(float *dk, float *dv_out, const float *delta, const float *dout,
                                          const float *lse, const float *q, const float *k, const float *v, int T,
                                          int H, int G, int dqk, int dv, const int32_t *doc_start, int window,
                                          float scale, float cap) {
    int b = blockIdx.z, g = blockIdx.y, j = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x, rep = H / G;
    if (j >= T) return;
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv, os = (int64_t)H * dv;
    int64_t row = (int64_t)b * T + j, row0 = (int64_t)b * T;
    const int32_t *doc_row = doc_start ? doc_start + row0 : NULL;
    float dk_acc[MAX_HEAD_DIM], dv_acc[MAX_HEAD_DIM];
    attn_grad_dkv_row(dk_acc, dv_acc, k + row * ks + g * dqk, v + row * vs + g * dv, q + row0 * qs, dout + row0 * os,
                      lse + row0 * H, delta + row0 * H, qs, os, H, g * rep, rep, doc_row, window, j, T, dqk, dv, scale,
                      cap);
    for (int c = 0; c < dqk; c++) dk[row * ks + g * dqk + c] = dk_acc[c];
    for (int c = 0; c < dv; c++) dv_out[row * vs + g * dv + c] = dv_acc[c];
}

int cuda_attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                            int G, int dqk, int dv_dim, const int32_t *doc_start, int window, float scale,
                            float softcap, cudaStream_t stream) {
    if (dqk > MAX_HEAD_DIM || dv_dim > MAX_HEAD_DIM || G <= 0 || H % G) return -1;
    if (B <= 0 || T <= 0 || H <= 0) return 0; /* nothing to write; an empty grid would not launch */
    int64_t pairs = (int64_t)B * T * H;
    attention_grad_delta<<<(unsigned)((pairs + 255) / 256), 256, 0, stream>>>(delta, dout, out, pairs, dv_dim);
    if (cudaGetLastError() != cudaSuccess) return -1;
    unsigned tiles = (unsigned)((T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    attention_grad_dq<<<dim3(tiles, (unsigned)H, (unsigned)B), ROWS_PER_BLOCK, 0, stream>>>(
        dq, delta, dout, lse, q, k, v, T, H, G, dqk, dv_dim, doc_start, window, scale, softcap);
    if (cudaGetLastError() != cudaSuccess) return -1;
    attention_grad_dkv<<<dim3(tiles, (unsigned)G, (unsigned)B), ROWS_PER_BLOCK, 0, stream>>>(
        dk, dv, delta, dout, lse, q, k, v, T, H, G, dqk, dv_dim, doc_start, window, scale, softcap);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
