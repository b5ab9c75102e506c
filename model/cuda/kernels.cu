/* Elementwise and per-row kernels of a layer (kernels.h). Each mirrors the
 * CPU function kernels.h names; tests/test_gpu_layer.c holds the layer they
 * make against the CPU engine. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/cuda/kernels.h"
#include "model/cuda/grid.h"
#include "model/glu_act.h"
#include "model/latent_norm.h"
#include "model/softcap.h"


/* One block per row: the mean square summed by the block, then the scale. */
__global__ static void rmsnorm_rows(float *out, float *rstd, const float *x, const float *w, int C, float eps) {
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
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int j = threadIdx.x; j < C; j += blockDim.x) yr[j] = xr[j] * r * w[j];
}

void cuda_rmsnorm(float *out, float *rstd, const float *x, const float *weight, int64_t rows, int C, float eps,
                  cudaStream_t s) {
    if (rows > 0) rmsnorm_rows<<<(unsigned)rows, THREADS, 0, s>>>(out, rstd, x, weight, C, eps);
}

/* One thread per (row, head, pair), each pair turned by its angle, or by
 * minus it (dir -1: the backward pass, RoPE being orthogonal). */
__global__ static void rope_pairs(float *x, int64_t row_stride, const float *cos_t, const float *sin_t, int half,
                                  int64_t N, const int32_t *pos, int n_heads, int head_stride, int offset,
                                  int interleave, float dir) {
    int64_t n = N * n_heads * half;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(e % half);
        int64_t rh = e / half, row = rh / n_heads;
        int h = (int)(rh % n_heads);
        float *v = x + row * row_stride + (int64_t)h * head_stride + offset;
        float *pa = v + (interleave ? 2 * i : i), *pb = pa + (interleave ? 1 : half);
        int64_t p = (int64_t)pos[row] * half + i;
        float a = *pa, b = *pb, c = cos_t[p], sn = dir * sin_t[p];
        *pa = a * c - b * sn;
        *pb = b * c + a * sn;
    }
}

void cuda_rope(float *x, int64_t row_stride, const float *cos_t, const float *sin_t, int half, int64_t N,
               const int32_t *pos, int n_heads, int head_stride, int offset, int interleave, cudaStream_t s) {
    int64_t n = N * n_heads * half;
    if (n > 0)
        rope_pairs<<<blocks_for(n), THREADS, 0, s>>>(x, row_stride, cos_t, sin_t, half, N, pos, n_heads, head_stride,
                                                     offset, interleave, 1.0f);
}

void cuda_rope_backward(float *dx, int64_t row_stride, const float *cos_t, const float *sin_t, int half, int64_t N,
                        const int32_t *pos, int n_heads, int head_stride, int offset, int interleave, cudaStream_t s) {
    int64_t n = N * n_heads * half;
    if (n > 0)
        rope_pairs<<<blocks_for(n), THREADS, 0, s>>>(dx, row_stride, cos_t, sin_t, half, N, pos, n_heads, head_stride,
                                                     offset, interleave, -1.0f);
}

__global__ static void glu(float *gate, const float *up, int64_t n, int gelu) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        gate[i] = glu_act(gate[i], gelu) * up[i];
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

struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};

__global__ static void copy_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t n, int cols) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        dst[e / cols * ld_dst + e % cols] = src[e / cols * ld_src + e % cols];
}

void cuda_copy_rows(float *dst, int64_t ld_dst, const float *src, int64_t ld_src, int64_t N, int cols, cudaStream_t s) {
    if (N * cols > 0) copy_rows<<<blocks_for(N * cols), THREADS, 0, s>>>(dst, ld_dst, src, ld_src, N * cols, cols);
}

/* One thread per (row, head, key column); the value columns ride along. */
__global__ static void mla_heads(float *k, float *v, const float *kvb, const float *lat, int64_t n, int H, int dn,
                                 int dr, int dv, int R) {
    int qk = dn + dr, w = dn + dv;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        int c = (int)(e % qk);
        int64_t ih = e / qk, i = ih / H; /* ih = i * H + h */
        k[e] = c < dn ? kvb[ih * w + c] : lat[i * (R + dr) + R + c - dn];
        if (c < dv) v[ih * dv + c] = kvb[ih * w + dn + c];
    }
}

void cuda_mla_heads(float *k, float *v, const float *kvb, const float *lat, int64_t N, int H, int dn, int dr, int dv,
                    int R, cudaStream_t s) {
    int64_t n = N * H * (dn + dr);
    if (dv > dn + dr) return; /* not an MLA shape the converter makes; mla_gpu.c refuses it */
    if (n > 0) mla_heads<<<blocks_for(n), THREADS, 0, s>>>(k, v, kvb, lat, n, H, dn, dr, dv, R);
}

/* mla_heads transposed: one thread per element of dkvb [N*H, dn+dv] (the
 * keys' nope part and the values) and per element of the shared rope key
 * [N, dr], which sums its H heads in head order (the CPU's). */
__global__ static void mla_heads_grad(float *dkvb, float *dlat, const float *dk, const float *dv_, int64_t N, int H,
                                      int dn, int dr, int dv, int R) {
    int qk = dn + dr, w = dn + dv;
    int64_t n_kvb = N * H * w, n = n_kvb + N * dr;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        if (e < n_kvb) {
            int c = (int)(e % w);
            int64_t ih = e / w;
            dkvb[e] = c < dn ? dk[ih * qk + c] : dv_[ih * dv + c - dn];
        } else {
            int64_t f = e - n_kvb, i = f / dr;
            int c = (int)(f % dr);
            float sum = 0.0f;
            for (int h = 0; h < H; h++) sum += dk[(i * H + h) * qk + dn + c];
            dlat[i * (R + dr) + R + c] = sum;
        }
    }
}

void cuda_mla_heads_backward(float *dkvb, float *dlat, const float *dk, const float *dv, int64_t N, int H, int dn,
                             int dr, int dv_dim, int R, cudaStream_t s) {
    int64_t n = N * H * (dn + dv_dim) + N * dr;
    if (n > 0) mla_heads_grad<<<blocks_for(n), THREADS, 0, s>>>(dkvb, dlat, dk, dv, N, H, dn, dr, dv_dim, R);
}

__global__ static void gather_rows(float *dst, const float *src, const int32_t *rows, int64_t n, int D) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        dst[e] = src[(int64_t)rows[e / D] * D + e % D];
}

void cuda_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int D, cudaStream_t s) {
    int64_t m = (int64_t)n * D;
    if (m > 0) gather_rows<<<blocks_for(m), THREADS, 0, s>>>(dst, src, rows, m, D);
}

/* An expert's rows are distinct: no two threads add into one element. */
__global__ static void scatter_add_rows(float *out, const float *src, const int32_t *rows, const float *w, int64_t n,
                                        int D) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        out[(int64_t)rows[e / D] * D + e % D] += (w ? w[e / D] : 1.0f) * src[e];
}

void cuda_scatter_add_rows(float *out, const float *src, const int32_t *rows, const float *w, int n, int D,
                           cudaStream_t s) {
    int64_t m = (int64_t)n * D;
    if (m > 0) scatter_add_rows<<<blocks_for(m), THREADS, 0, s>>>(out, src, rows, w, m, D);
}

/* A block's reduction of v by op (max or sum), every thread getting the result. */
template <typename F> __device__ static float block_reduce(float v, F op, float *part) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads(); /* part may still be read from the last call */
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++) v = op(v, part[w]);
    return v;
}

/* One block per row: the chunk's max, the sum of exp(z - new max), the
 * running sum rescaled (in double, as the CPU does). */
__global__ static void ce_update(float *max, double *sum, float *tgt, const float *logits, int cols, int col0,
                                 const int32_t *targets, float cap) {
    __shared__ float part[THREADS / 32];
    int row = blockIdx.x;
    const float *z = logits + (int64_t)row * cols;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, cap > 0 ? softcap(z[j], cap) : z[j]);
    mx = block_reduce(mx, MaxOp(), part);
    float m_old = max[row], m_new = fmaxf(m_old, mx), s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf((cap > 0 ? softcap(z[j], cap) : z[j]) - m_new);
    s = block_reduce(s, SumOp(), part);
    if (threadIdx.x) return;
    sum[row] = sum[row] * exp((double)m_old - m_new) + s; /* exp(-inf) = 0 on the first chunk */
    max[row] = m_new;
    int t = targets[row] - col0;
    if (t >= 0 && t < cols) tgt[row] = cap > 0 ? softcap(z[t], cap) : z[t];
}

void cuda_crossentropy_update(float *max, double *sum, float *target_logit, const float *logits, int N, int cols,
                              int col0, const int32_t *targets, float cap, cudaStream_t s) {
    if (N > 0) ce_update<<<(unsigned)N, THREADS, 0, s>>>(max, sum, target_logit, logits, cols, col0, targets, cap);
}

__global__ static void ce_reset(float *max, double *sum, float *tgt, int N) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) {
        max[i] = -INFINITY;
        sum[i] = 0.0;
        tgt[i] = 0.0f;
    }
}

void cuda_crossentropy_reset(float *max, double *sum, float *target_logit, int N, cudaStream_t s) {
    if (N > 0) ce_reset<<<blocks_for(N), THREADS, 0, s>>>(max, sum, target_logit, N);
}

/* ---- calibration statistics' rows (the sums are cuBLAS SYRKs, stats_gpu.c) ---- */

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
