/* Blocked causal attention on the GPU with the online softmax of
 * model/attn_tile.h, the same helpers the CPU unit test (test_attn_tile)
 * runs against the CPU engine. One thread block per (query tile, head,
 * sequence), one thread per query row; the block stages each key/value tile
 * in shared memory and every thread folds it into its running softmax, so
 * nothing of size T x T exists anywhere. Written for correctness first: the
 * GPU tests (ctest label gpu) compare it with attention_forward (passed on
 * a lent H200); the bf16 path's tensor-core kernel is attention_bf16.cu. */
#include <cuda_runtime.h>

#include "model/attn_tile.h"
#include "model/cuda/attention_cuda.h"

enum { QTILE = 64, KTILE = 16, MAX_HEAD_DIM = 256 };

__global__ static void attention_tiles(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                                       int H, int G, int dqk, int dv, const int32_t *doc_start, int window, float scale,
                                       float cap) {
    __shared__ float ks_tile[KTILE * MAX_HEAD_DIM], vs_tile[KTILE * MAX_HEAD_DIM];
    int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * QTILE, i = i0 + threadIdx.x;
    int i1 = i0 + QTILE < T ? i0 + QTILE : T, g = h / (H / G);
    const int32_t *doc_row = doc_start ? doc_start + (int64_t)b * T : NULL;
    int64_t qs = (int64_t)H * dqk, ks = (int64_t)G * dqk, vs = (int64_t)G * dv, row = (int64_t)b * T + i;
    const float *kb = k + (int64_t)b * T * ks + g * dqk, *vb = v + (int64_t)b * T * vs + g * dv;
    const float *qi = q + row * qs + h * dqk;
    int live = i < T, row_lo = live ? tile_row_lo(doc_row, window, i) : 0;
    float acc[MAX_HEAD_DIM];
    for (int c = 0; c < dv; c++) acc[c] = 0.0f;
    TileSoftmax t = tile_softmax_start();
    for (int j0 = tile_block_lo(doc_row, window, i0, i1); j0 < i1; j0 += KTILE) {
        int j1 = j0 + KTILE < i1 ? j0 + KTILE : i1;
        __syncthreads();
        for (int e = threadIdx.x; e < (j1 - j0) * dqk; e += blockDim.x) ks_tile[e] = kb[(j0 + e / dqk) * ks + e % dqk];
        for (int e = threadIdx.x; e < (j1 - j0) * dv; e += blockDim.x) vs_tile[e] = vb[(j0 + e / dv) * vs + e % dv];
        __syncthreads();
        if (!live) continue;
        int a = j0 > row_lo ? j0 : row_lo, z = j1 - 1 < i ? j1 - 1 : i;
        float sc[KTILE], mx = -INFINITY;
        for (int j = a; j <= z; j++) {
            float d = 0.0f;
            for (int c = 0; c < dqk; c++) d += qi[c] * ks_tile[(j - j0) * dqk + c];
            sc[j - j0] = tile_score(d, scale, cap);
            mx = fmaxf(mx, sc[j - j0]);
        }
        float f = tile_softmax_rescale(&t, mx);
        for (int c = 0; c < dv; c++) acc[c] *= f;
        for (int j = a; j <= z; j++) {
            float p = tile_softmax_add(&t, sc[j - j0]);
            for (int c = 0; c < dv; c++) acc[c] += p * vs_tile[(j - j0) * dv + c];
        }
    }
    if (!live) return;
    for (int c = 0; c < dv; c++) out[row * H * dv + h * dv + c] = acc[c] / t.l;
    if (lse) lse[row * H + h] = tile_softmax_lse(&t);
}

int cuda_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                           int G, int dqk, int dv, const int32_t *doc_start, int window, float scale, float softcap,
                           cudaStream_t stream) {
    if (dqk > MAX_HEAD_DIM || dv > MAX_HEAD_DIM || H % G) return -1;
    dim3 grid((unsigned)((T + QTILE - 1) / QTILE), (unsigned)H, (unsigned)B);
    attention_tiles<<<grid, QTILE, 0, stream>>>(out, lse, q, k, v, T, H, G, dqk, dv, doc_start, window, scale, softcap);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
