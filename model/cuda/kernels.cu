/* Elementwise and per-row kernels of a layer (kernels.h). Each mirrors the
 * CPU function kernels.h names; tests/test_gpu_layer.c holds the layer they
 * make against the CPU engine. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/cuda/kernels.h"

enum { THREADS = 256 };

static unsigned blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 65535 * 16 ? b : 65535 * 16);
}

/* One block per row: the mean square summed by the block, then the scale. */
__global__ static void rmsnorm_rows(float *out, const float *x, const float *w, int C, float eps) {
    __shared__ float part[THREADS / 32];
    const float *xr = x + (int64_t)blockIdx.x * C;
    float *yr = out + (int64_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < C; j += blockDim.x) ss += xr[j] * xr[j];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (threadIdx.x == 0) part[0] = ss;
    }
    __syncthreads();
    float r = rsqrtf(part[0] / C + eps);
    for (int j = threadIdx.x; j < C; j += blockDim.x) yr[j] = xr[j] * r * w[j];
}

void cuda_rmsnorm(float *out, const float *x, const float *weight, int64_t rows, int C, float eps, cudaStream_t s) {
    if (rows > 0) rmsnorm_rows<<<(unsigned)rows, THREADS, 0, s>>>(out, x, weight, C, eps);
}

/* One thread per (row, head, pair). */
__global__ static void rope_pairs(float *x, int64_t row_stride, const float *cos_t, const float *sin_t, int half,
                                  int64_t N, const int32_t *pos, int n_heads, int head_stride, int offset,
                                  int interleave) {
    int64_t n = N * n_heads * half;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(e % half);
        int64_t rh = e / half, row = rh / n_heads;
        int h = (int)(rh % n_heads);
        float *v = x + row * row_stride + (int64_t)h * head_stride + offset;
        float *pa = v + (interleave ? 2 * i : i), *pb = pa + (interleave ? 1 : half);
        int64_t p = (int64_t)pos[row] * half + i;
        float a = *pa, b = *pb, c = cos_t[p], sn = sin_t[p];
        *pa = a * c - b * sn;
        *pb = b * c + a * sn;
    }
}

void cuda_rope(float *x, int64_t row_stride, const float *cos_t, const float *sin_t, int half, int64_t N,
               const int32_t *pos, int n_heads, int head_stride, int offset, int interleave, cudaStream_t s) {
    int64_t n = N * n_heads * half;
    if (n > 0)
        rope_pairs<<<blocks_for(n), THREADS, 0, s>>>(x, row_stride, cos_t, sin_t, half, N, pos, n_heads, head_stride,
                                                     offset, interleave);
}

__global__ static void glu(float *gate, const float *up, int64_t n, int gelu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i], a;
        if (gelu) a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
        else a = g / (1.0f + expf(-g));
        gate[i] = a * up[i];
    }
}

void cuda_glu(float *gate, const float *up, int64_t n, int gelu, cudaStream_t s) {
    if (n > 0) glu<<<blocks_for(n), THREADS, 0, s>>>(gate, up, n, gelu);
}

__global__ static void add_bias(float *out, const float *bias, int64_t n, int C) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] += bias[i % C];
}

void cuda_add_bias(float *out, const float *bias, int64_t N, int C, cudaStream_t s) {
    if (N * C > 0) add_bias<<<blocks_for(N * C), THREADS, 0, s>>>(out, bias, N * C, C);
}

__global__ static void add(float *x, const float *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

void cuda_add(float *x, const float *y, int64_t n, cudaStream_t s) {
    if (n > 0) add<<<blocks_for(n), THREADS, 0, s>>>(x, y, n);
}

__global__ static void to_bf16(__nv_bfloat16 *out, const float *in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(in[i]);
}

void cuda_to_bf16(uint16_t *out, const float *in, int64_t n, cudaStream_t s) {
    if (n > 0) to_bf16<<<blocks_for(n), THREADS, 0, s>>>((__nv_bfloat16 *)out, in, n);
}
