/* Causal attention on the GPU's tensor cores (attention_cuda.h,
 * cuda_attention_forward_bf16): the blocked online softmax of
 * model/attn_tile.h with Q K^T and P V as bf16 x bf16 -> fp32 warp matrix
 * products (wmma 16x16x16). A block of 4 warps takes 64 query rows of one
 * head of one sequence, 16 rows a warp; per key tile of 64 it stages K and V
 * in shared memory as bf16, each warp makes its 16 x 64 scores, masks and
 * folds them into its rows' running softmax (two lanes a row), and adds
 * P V into its 16 x dv output kept in shared memory. Nothing of size T x T
 * exists anywhere. For the bf16 path (GPU_BF16), whose GEMMs round their
 * inputs the same way. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "model/attn_tile.h"
#include "model/cuda/attention_cuda.h"

using namespace nvcuda;

enum { QT = 64, KT = 64, WARPS = 4, MAXD = 256, PAD16 = 8, PADF = 4 };

typedef __nv_bfloat16 bf16;

/* The shared-memory layout of one block for query/key width dqk and value
 * width dv: row strides padded (wmma wants multiples of 8 bf16 / 4 floats;
 * the pad also spreads banks). */
struct Smem {
    int ldq, ldv, ldf, lds, ldp;
    size_t q, k, v, s, p, o, total;
};

__host__ __device__ static Smem smem_layout(int dqk, int dv) {
    Smem m;
    m.ldq = dqk + PAD16;
    m.ldv = dv + PAD16;
    m.ldf = dv + PADF;
    m.lds = KT + PADF;
    m.ldp = KT + PAD16;
    m.q = 0;
    m.k = m.q + (size_t)QT * m.ldq * 2;
    m.v = m.k + (size_t)KT * m.ldq * 2;
    m.s = m.v + (size_t)KT * m.ldv * 2;
    m.p = m.s + (size_t)WARPS * 16 * m.lds * 4;
    m.o = m.p + (size_t)WARPS * 16 * m.ldp * 2;
    m.total = m.o + (size_t)WARPS * 16 * m.ldf * 4;
    return m;
}

/* rows [r0, r0 + n) of a [*, stride] bf16 matrix, columns [0, d), into
 * shared rows of ld, 8 values (16 bytes) a load; rows at or past `valid`
 * are zero. */
__device__ static void stage(bf16 *dst, int ld, const bf16 *src, int64_t stride, int r0, int n, int valid, int d) {
    int per_row = d / 8;
    for (int e = threadIdx.x; e < n * per_row; e += blockDim.x) {
        int r = e / per_row, c = (e % per_row) * 8;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (r0 + r < valid) x = *(const uint4 *)(src + (int64_t)(r0 + r) * stride + c);
        *(uint4 *)(dst + r * ld + c) = x;
    }
}

__global__ static void attention_bf16(float *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T,
                                      int H, int G, int dqk, int dv, const int32_t *doc_start, int window,
                                      float scale, float cap) {
    extern __shared__ __align__(128) unsigned char smem[];
    Smem L = smem_layout(dqk, dv);
    bf16 *qs = (bf16 *)(smem + L.q), *ks = (bf16 *)(smem + L.k), *vs = (bf16 *)(smem + L.v);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float *sw = (float *)(smem + L.s) + warp * 16 * L.lds, *ow = (float *)(smem + L.o) + warp * 16 * L.ldf;
    bf16 *pw = (bf16 *)(smem + L.p) + warp * 16 * L.ldp;
    int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * QT, i1 = min(i0 + QT, T), g = h / (H / G);
    const int32_t *doc_row = doc_start ? doc_start + (int64_t)b * T : NULL;
    int64_t qstride = (int64_t)H * dqk, kstride = (int64_t)G * dqk, vstride = (int64_t)G * dv;
    const bf16 *qb = q + (int64_t)b * T * qstride + h * dqk;
    const bf16 *kb = k + (int64_t)b * T * kstride + g * dqk, *vb = v + (int64_t)b * T * vstride + g * dv;
    stage(qs, L.ldq, qb, qstride, i0, QT, T, dqk);
    for (int e = lane; e < 16 * dv; e += 32) ow[(e / dv) * L.ldf + e % dv] = 0.0f;
    /* this lane's row and its half of the tile's 64 key columns */
    int rr = lane / 2, half = lane % 2, i = i0 + warp * 16 + rr, live = i < T;
    int row_lo = live ? tile_row_lo(doc_row, window, i) : 0;
    TileSoftmax t = tile_softmax_start();
    for (int j0 = tile_block_lo(doc_row, window, i0, i1); j0 < i1; j0 += KT) {
        __syncthreads();
        stage(ks, L.ldq, kb, kstride, j0, KT, i1, dqk);
        stage(vs, L.ldv, vb, vstride, j0, KT, i1, dv);
        __syncthreads();
        /* S = Q_w K^T: 16 x 64 */
        for (int n = 0; n < KT / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < dqk / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
                wmma::load_matrix_sync(fa, qs + warp * 16 * L.ldq + kk * 16, L.ldq);
                wmma::load_matrix_sync(fb, ks + n * 16 * L.ldq + kk * 16, L.ldq);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(sw + n * 16, acc, L.lds, wmma::mem_row_major);
        }
        __syncwarp();
        /* the online softmax of this lane's row over its 32 columns, the pair's max and sum shared */
        float mx = -INFINITY;
        for (int c = half * 32; c < half * 32 + 32; c++) {
            int j = j0 + c;
            float s = live && j >= row_lo && j <= i ? tile_score(sw[rr * L.lds + c], scale, cap) : -INFINITY;
            sw[rr * L.lds + c] = s;
            mx = fmaxf(mx, s);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float f = tile_softmax_rescale(&t, mx), sum = 0.0f;
        for (int c = half * 32; c < half * 32 + 32; c++) {
            float s = sw[rr * L.lds + c], p = s > -INFINITY ? expf(s - t.m) : 0.0f;
            sum += p;
            pw[rr * L.ldp + c] = __float2bfloat16_rn(p);
        }
        t.l += sum + __shfl_xor_sync(0xffffffffu, sum, 1);
        for (int c = half * (dv / 2); c < (half + 1) * (dv / 2); c++) ow[rr * L.ldf + c] *= f;
        __syncwarp();
        /* O_w += P_w V: 16 x dv */
        for (int n = 0; n < dv / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, ow + n * 16, L.ldf, wmma::mem_row_major);
            for (int kk = 0; kk < KT / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
                wmma::load_matrix_sync(fa, pw + kk * 16, L.ldp);
                wmma::load_matrix_sync(fb, vs + kk * 16 * L.ldv + n * 16, L.ldv);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(ow + n * 16, acc, L.ldf, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (!live) return;
    float *orow = out + ((int64_t)b * T + i) * H * dv + h * dv;
    for (int c = half * (dv / 2); c < (half + 1) * (dv / 2); c++) orow[c] = ow[rr * L.ldf + c] / t.l;
    if (lse && half == 0) lse[((int64_t)b * T + i) * H + h] = tile_softmax_lse(&t);
}

int cuda_attention_bf16_fits(int dqk, int dv) { return dqk % 16 == 0 && dv % 16 == 0 && dqk <= MAXD && dv <= MAXD; }

int cuda_attention_forward_bf16(float *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v, int B,
                                int T,
                                int H, int G, int dqk, int dv, const int32_t *doc_start, int window, float scale,
                                float softcap,
                                cudaStream_t stream) {
    if (!cuda_attention_bf16_fits(dqk, dv) || H % G) return -1;
    size_t bytes = smem_layout(dqk, dv).total;
    if (cudaFuncSetAttribute(attention_bf16, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) != cudaSuccess)
        return -1;
    dim3 grid((unsigned)((T + QT - 1) / QT), (unsigned)H, (unsigned)B);
    attention_bf16<<<grid, WARPS * 32, bytes, stream>>>(out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
                                                        T, H, G, dqk, dv, doc_start, window, scale, softcap);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
