/* The calibration statistics' row kernels (kernels.h); the sums themselves
 * are cuBLAS SYRKs (model/cuda/stats_gpu.c). */
#include <cuda_runtime.h>

#include "model/cuda/kernels.h"
#include "model/latent_norm.h"

enum { THREADS = 256 };

static unsigned blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 65535 * 16 ? b : 65535 * 16);
}

__global__ static void rows_to_f64(double *dst, const float *src, int64_t ld, int cols, int64_t N) {
    int64_t n = N * cols;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        dst[e] = src[e / cols * ld + e % cols];
}

void cuda_rows_to_f64(double *dst, const float *src, int64_t ld, int cols, int64_t N, cudaStream_t s) {
    if (N > 0 && cols > 0) rows_to_f64<<<blocks_for(N * cols), THREADS, 0, s>>>(dst, src, ld, cols, N);
}

/* One thread per row: the row's mean square summed in order, as on the CPU. */
__global__ static void latent_pairs(double *dst, const float *lat, int64_t ld, int R, int64_t N) {
    for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < N; r += (int64_t)gridDim.x * blockDim.x) {
        const float *c = lat + r * ld;
        float inv = latent_rms_inv(c, R);
        double *row = dst + r * 2 * R;
        for (int j = 0; j < R; j++) {
            row[j] = c[j];
            row[R + j] = c[j] * inv;
        }
    }
}

void cuda_latent_pairs_f64(double *dst, const float *lat, int64_t ld, int R, int64_t N, cudaStream_t s) {
    if (N > 0) latent_pairs<<<blocks_for(N), THREADS, 0, s>>>(dst, lat, ld, R, N);
}

/* One thread per head: its rows added one after the other. */
__global__ static void rinv_sums(double *acc, const float *rq, const float *rk, int64_t N, int H, int G) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= H + G) return;
    const float *col = j < H ? rq + j : rk + (j - H);
    int64_t stride = j < H ? H : G;
    double sum = acc[j];
    for (int64_t r = 0; r < N; r++) sum += col[r * stride];
    acc[j] = sum;
}

void cuda_rinv_sums(double *acc, const float *rq, const float *rk, int64_t N, int H, int G, cudaStream_t s) {
    unsigned blocks = (unsigned)((H + G + THREADS - 1) / THREADS);
    if (N > 0 && H + G > 0) rinv_sums<<<blocks, THREADS, 0, s>>>(acc, rq, rk, N, H, G);
}
