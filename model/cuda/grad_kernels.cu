/* Elementwise and per-row kernels of a layer's backward pass
 * (grad_kernels.h). The arithmetic is model/grad_row.h's and
 * model/glu_act.h's, shared with tests/test_grad_row.c; sums over rows run
 * one thread per column, rows in order, so a gradient is the same on every
 * run. */
#include <cuda_runtime.h>

#include "model/cuda/grad_kernels.h"
#include "model/cuda/grid.h"
#include "model/glu_act.h"
#include "model/grad_row.h"


/* A block's sum of v, every thread getting it; the warps' sums added in
 * warp order, so each thread adds the same numbers the same way. Called
 * once per kernel (part is not guarded against reuse). */
__device__ static double block_sum(double v, double *part) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++) v += part[w];
    return v;
}

/* One block per row: the row's sum of w dy x (double, as the CPU), then dx. */
__global__ static void rmsnorm_grad_rows(float *dinp, const float *dout, const float *inp, const float *w,
                                         const float *rstd, int C) {
    __shared__ double part[THREADS / 32];
    int64_t off = (int64_t)blockIdx.x * C;
    const float *x = inp + off, *dy = dout + off;
    float *dx = dinp + off;
    float r = rstd[blockIdx.x];
    float k = rms_grad_coef(block_sum(rms_dot_part(w, dy, x, C, threadIdx.x, blockDim.x), part), r, C);
    for (int j = threadIdx.x; j < C; j += blockDim.x) dx[j] += rms_grad_elem(x[j], dy[j], w[j], r, k);
}

/* One thread per column: neighbours read neighbouring floats of each row. */
__global__ static void rmsnorm_weight_grad(float *dweight, const float *dout, const float *inp, const float *rstd,
                                           int64_t rows, int C) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < C) dweight[j] += rms_weight_grad_col(dout, inp, rstd, rows, C, j);
}

void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           const float *rstd, int64_t rows, int C, cudaStream_t s) {
    if (rows <= 0 || C <= 0) return;
    rmsnorm_grad_rows<<<(unsigned)rows, THREADS, 0, s>>>(dinp, dout, inp, weight, rstd, C);
    if (dweight)
        rmsnorm_weight_grad<<<(unsigned)((C + THREADS - 1) / THREADS), THREADS, 0, s>>>(dweight, dout, inp, rstd, rows,
                                                                                         C);
}

__global__ static void glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                    int64_t n, int gelu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        glu_grad(&dgate[i], &dup[i], dout[i], gate[i], up[i], gelu);
}

void cuda_glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n,
                       int gelu, cudaStream_t s) {
    if (n > 0) glu_backward<<<blocks_for(n), THREADS, 0, s>>>(dgate, dup, dout, gate, up, n, gelu);
}

__global__ static void glu_out(float *out, const float *gate, const float *up, int64_t n, int gelu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = glu_act(gate[i], gelu) * up[i];
}

void cuda_glu_out(float *out, const float *gate, const float *up, int64_t n, int gelu, cudaStream_t s) {
    if (n > 0) glu_out<<<blocks_for(n), THREADS, 0, s>>>(out, gate, up, n, gelu);
}

__global__ static void bias_grad(float *dbias, const float *dout, int64_t N, int C) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < C) dbias[j] += column_sum(dout, N, C, j);
}

void cuda_bias_grad(float *dbias, const float *dout, int64_t N, int C, cudaStream_t s) {
    if (N > 0 && C > 0) bias_grad<<<(unsigned)((C + THREADS - 1) / THREADS), THREADS, 0, s>>>(dbias, dout, N, C);
}

__global__ static void ce_lse_rows(float *lse, const float *max, const double *sum, int N) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x)
        lse[i] = ce_lse(max[i], sum[i]);
}

void cuda_crossentropy_lse(float *lse, const float *max, const double *sum, int N, cudaStream_t s) {
    if (N > 0) ce_lse_rows<<<blocks_for(N), THREADS, 0, s>>>(lse, max, sum, N);
}

/* One thread per logit. */
__global__ static void ce_grad(float *logits, const float *lse, const int32_t *targets, int64_t n, int cols, int col0,
                               float weight, float cap) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = e / cols;
        logits[e] = ce_logit_grad(logits[e], lse[row], targets[row], col0 + e % cols, weight, cap);
    }
}

void cuda_crossentropy_grad(float *logits, const float *lse, const int32_t *targets, int N, int cols, int col0,
                            float weight, float cap, cudaStream_t s) {
    int64_t n = (int64_t)N * cols;
    if (n > 0) ce_grad<<<blocks_for(n), THREADS, 0, s>>>(logits, lse, targets, n, cols, col0, weight, cap);
}

/* One thread per row, the dot in column order as moe_backward sums it. */
__global__ static void moe_expert_grad(float *dw, float *ye, const float *dout, const int32_t *rows, const float *w,
                                       int n, int D) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    const float *o = dout + (int64_t)rows[r] * D;
    float *y = ye + (int64_t)r * D, d = 0.0f;
    for (int c = 0; c < D; c++) {
        d += o[c] * y[c];
        y[c] = w[r] * o[c];
    }
    dw[r] = d;
}

void cuda_moe_expert_grad(float *dw, float *ye, const float *dout, const int32_t *rows, const float *w, int n, int D,
                          cudaStream_t s) {
    if (n > 0) moe_expert_grad<<<blocks_for(n), THREADS, 0, s>>>(dw, ye, dout, rows, w, n, D);
}

__global__ static void scale(float *x, int64_t n, float f) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= f;
}

void cuda_scale(float *x, int64_t n, float f, cudaStream_t s) {
    if (n > 0) scale<<<blocks_for(n), THREADS, 0, s>>>(x, n, f);
}

/* One block: each thread sums its stride in double, then a tree in shared
 * memory, always the same pairs. */
__global__ static void sum_squares(double *out, const float *x, int64_t n) {
    __shared__ double part[THREADS];
    double v = 0;
    for (int64_t i = threadIdx.x; i < n; i += THREADS) v += (double)x[i] * x[i];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = part[0];
}

void cuda_sum_squares(double *out, const float *x, int64_t n, cudaStream_t s) {
    sum_squares<<<1, THREADS, 0, s>>>(out, x, n);
}
