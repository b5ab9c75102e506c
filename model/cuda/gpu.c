/* GPU context, device memory, weights and the GEMM (gpu.h). */
#include "model/cuda/gpu.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/cublas_load.h"
#include "model/cuda/gemm_rm.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"

static int cuda_fail(const char *what, cudaError_t e) {
    return tm_fail("CUDA: %s: %s", what, cudaGetErrorString(e));
}

int gpu_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

void gpu_describe(char *buf, size_t n) {
    int runtime = 0, count = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaError_t e = cudaGetDeviceCount(&count);
    int k = snprintf(buf, n, "runtime %d.%d, ", runtime / 1000, runtime % 1000 / 10);
    if (e != cudaSuccess) {
        snprintf(buf + k, n - (size_t)k, "no GPU visible (%s)", cudaGetErrorString(e));
        return;
    }
    k += snprintf(buf + k, n - (size_t)k, "%d GPU(s)", count);
    for (int d = 0; d < count && (size_t)k < n; d++) {
        struct cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess) break;
        k += snprintf(buf + k, n - (size_t)k, "%s %s (sm_%d%d, %.0f GiB)", d ? "," : ":", p.name, p.major, p.minor,
                      (double)p.totalGlobalMem / (1 << 30));
    }
}

int gpu_ctx_init(GpuCtx *g, int device, GpuPrecision precision) {
    memset(g, 0, sizeof *g);
    g->device = device;
    g->precision = precision;
    int count = gpu_count();
    if (count == 0) return tm_fail("--device cuda: no GPU is visible to this process");
    if (device < 0 || device >= count) return tm_fail("--device cuda: GPU %d asked for, %d visible", device, count);
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return cuda_fail("cudaSetDevice", e);
    cudaStream_t s;
    if ((e = cudaStreamCreate(&s)) != cudaSuccess)
        return cuda_fail("cudaStreamCreate", e);
    g->stream = s;
    const CublasApi *blas = cublas_api();
    if (!blas) return -1;
    cublasHandle_t h;
    cublasStatus_t st = blas->create(&h);
    if (st != CUBLAS_STATUS_SUCCESS) return tm_fail("cuBLAS: cublasCreate: %s", blas->status_string(st));
    blas->set_stream(h, s);
    g->blas = h;
    return 0;
}

void gpu_ctx_free(GpuCtx *g) {
    if (g->blas) cublas_api()->destroy((cublasHandle_t)g->blas);
    if (g->stream) cudaStreamDestroy((cudaStream_t)g->stream);
    for (int i = 0; i < 2; i++) gpu_free(g->scratch16[i]);
    memset(g, 0, sizeof *g);
}

int gpu_sync(GpuCtx *g) {
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)g->stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cuda_fail("a kernel on the stream", e);
}

void *gpu_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) tm_die("CUDA: cudaMalloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
    return p;
}

void *gpu_alloc_counted(size_t *total, size_t bytes) {
    *total += bytes;
    return gpu_alloc(bytes);
}

void gpu_free(void *p) {
    if (p) cudaFree(p);
}

void *gpu_host_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess)
        tm_die("CUDA: cudaHostAlloc of %zu bytes (pinned host memory): %s", bytes, cudaGetErrorString(e));
    return p;
}

void gpu_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

void gpu_upload(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) tm_die("CUDA: copy of %zu bytes to the GPU: %s", bytes, cudaGetErrorString(e));
}

void gpu_download(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) tm_die("CUDA: copy of %zu bytes from the GPU: %s", bytes, cudaGetErrorString(e));
}

void gpu_zero(GpuCtx *g, float *x, size_t n) { cudaMemsetAsync(x, 0, n * sizeof(float), (cudaStream_t)g->stream); }

void gpu_copy(GpuCtx *g, float *dst, const float *src, size_t n) {
    cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, (cudaStream_t)g->stream);
}

float *gpu_upload_f32(const float *src, int64_t n) {
    if (!src) return NULL;
    float *d = gpu_alloc((size_t)n * sizeof(float));
    gpu_upload(d, src, (size_t)n * sizeof(float));
    return d;
}

enum { PANEL = 1 << 22 }; /* elements converted on the host at a time */

void gpu_mat_upload(GpuMat *m, const GpuCtx *g, const Tensor *t) {
    memset(m, 0, sizeof *m);
    if (!t->data) return;
    m->rows = t->rows;
    m->cols = t->cols;
    m->bf16 = g->precision == GPU_BF16;
    int64_t n = t->rows * t->cols;
    size_t es = m->bf16 ? 2 : 4;
    m->data = gpu_alloc((size_t)n * es);
    float *panel = mallocCheck((size_t)(n < PANEL ? n : PANEL) * sizeof(float));
    for (int64_t at = 0; at < n; at += PANEL) {
        int64_t k = n - at < PANEL ? n - at : PANEL;
        tensor_to_f32(t, at, k, panel);
        if (m->bf16) {
            uint16_t *h = tensor_f32_to_16bit(panel, k, TM_BF16);
            gpu_upload((char *)m->data + at * 2, h, (size_t)k * 2);
            free(h);
        } else {
            gpu_upload((char *)m->data + at * 4, panel, (size_t)k * 4);
        }
    }
    free(panel);
}

void gpu_mat_free(GpuMat *m) {
    gpu_free(m->data);
    memset(m, 0, sizeof *m);
}

size_t gpu_mat_bytes(const GpuMat *m) { return m->data ? (size_t)(m->rows * m->cols) * (m->bf16 ? 2 : 4) : 0; }

GpuMat gpu_mat_rows(const GpuMat *m, int64_t r0, int64_t n) {
    GpuMat r = *m;
    r.data = (char *)r.data + (size_t)(r0 * r.cols) * (r.bf16 ? 2 : 4);
    r.rows = n;
    return r;
}

/* The bf16 copy of inp[N, k] in the context's scratch `slot` (0 or 1). */
static const uint16_t *bf16_copy(GpuCtx *g, int slot, const float *inp, int N, int k) {
    size_t need = (size_t)N * k;
    if (need > g->scratch16_n[slot]) {
        gpu_free(g->scratch16[slot]);
        g->scratch16[slot] = gpu_alloc(need * 2);
        g->scratch16_n[slot] = need;
    }
    cuda_to_bf16(g->scratch16[slot], inp, (int64_t)need, (cudaStream_t)g->stream);
    return g->scratch16[slot];
}

static const uint16_t *input_bf16(GpuCtx *g, const float *inp, int N, int k) { return bf16_copy(g, 0, inp, N, k); }

/* Row-major out[N, rows] = inp[N, cols] W^T is, column-major,
 * out^T [rows, N] = W^T^T (W read as [cols, rows], transposed) x inp^T [cols, N].
 * b: inp as the GEMM reads it (its bf16 copy on the bf16 path). */
static int gemm(GpuCtx *g, float *out, const void *b, const GpuMat *W, const float *bias, int N, int accumulate) {
    int m = (int)W->rows, k = (int)W->cols;
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cudaDataType bt = W->bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const CublasApi *blas = cublas_api(); /* opened by gpu_ctx_init */
    cublasStatus_t st = blas->gemm_ex((cublasHandle_t)g->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, N, k, &one, W->data, bt, k,
                                      b, bt, k, &beta, out, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return tm_fail("cuBLAS: cublasGemmEx [%d x %d] x [%d x %d]^T: %s", N, k, m, k, blas->status_string(st));
    if (bias) cuda_add_bias(out, bias, N, m, (cudaStream_t)g->stream);
    return 0;
}

int gpu_linear(GpuCtx *g, float *out, const float *inp, const GpuMat *W, const float *bias, int N, int accumulate) {
    if (N == 0) return 0;
    const void *b = W->bf16 ? (const void *)input_bf16(g, inp, N, (int)W->cols) : inp;
    return gemm(g, out, b, W, bias, N, accumulate);
}

int gpu_linear_many(GpuCtx *g, int n, float *const *out, const float *inp, const GpuMat *const *W,
                    const float *const *bias, int N) {
    if (N == 0) return 0;
    const void *b = W[0]->bf16 ? (const void *)input_bf16(g, inp, N, (int)W[0]->cols) : inp;
    for (int i = 0; i < n; i++)
        if (gemm(g, out[i], b, W[i], bias[i], N, 0)) return -1;
    return 0;
}

/* Column-major C[m, n] (+)= op(A) op(B), A and B of type t, C fp32. */
static int gemm_cm(GpuCtx *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda,
                   const void *B, int ldb, float *C, int ldc, cudaDataType t, const char *what) {
    float one = 1.0f;
    const CublasApi *blas = cublas_api();
    cublasStatus_t st = blas->gemm_ex((cublasHandle_t)g->blas, ta, tb, m, n, k, &one, A, t, lda, B, t, ldb, &one, C,
                                      CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return tm_fail("cuBLAS: cublasGemmEx (%s, %d x %d x %d): %s", what, m, n, k, blas->status_string(st));
    return 0;
}

/* Row-major dinp[N, k] += dout[N, m] W[m, k] is, column-major, dinp^T =
 * W^T (W read as [k, m]) x dout^T; dW[m, k] += dout^T inp is dW^T [k, m] =
 * inp^T [k, N] x dout [N, m] (dout read as [m, N], transposed). */
int gpu_linear_backward(GpuCtx *g, float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                        const GpuMat *W, int N) {
    if (N == 0) return 0;
    int m = (int)W->rows, k = (int)W->cols;
    cudaDataType t = W->bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const void *dout_g = W->bf16 ? (const void *)bf16_copy(g, 0, dout, N, m) : dout;
    if (dinp && gemm_cm(g, CUBLAS_OP_N, CUBLAS_OP_N, k, N, m, W->data, k, dout_g, m, dinp, k, t, "dx = dy W"))
        return -1;
    if (dW) {
        const void *inp_g = W->bf16 ? (const void *)bf16_copy(g, 1, inp, N, k) : inp;
        if (gemm_cm(g, CUBLAS_OP_N, CUBLAS_OP_T, k, m, N, inp_g, k, dout_g, m, dW, k, t, "dW = dy^T x")) return -1;
    }
    if (dbias) cuda_bias_grad(dbias, dout, N, m, (cudaStream_t)g->stream);
    return 0;
}

int gpu_gemm_rm(GpuCtx *g, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
    if (m == 0 || n == 0) return 0;
    ColMajorGemm cm = gemm_rm_as_cm(ta, tb, m, n, k, A, lda, B, ldb);
    const CublasApi *blas = cublas_api();
    cublasStatus_t st = blas->gemm_ex((cublasHandle_t)g->blas, cm.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      cm.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N, cm.m, cm.n, cm.k, &alpha, cm.first,
                                      CUDA_R_32F, cm.ld_first, cm.second, CUDA_R_32F, cm.ld_second, &beta, C,
                                      CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return tm_fail("cuBLAS: cublasGemmEx (row-major %d x %d x %d): %s", m, n, k, blas->status_string(st));
    return 0;
}

/* Row-major X [m, dim] is column-major X^T [dim, m], so S += X^T X is op N
 * there; its lower triangle is row-major's upper one. */
int gpu_syrk_f64(GpuCtx *g, double *S, const double *X, int dim, int m) {
    if (m == 0 || dim == 0) return 0;
    double one = 1.0;
    const CublasApi *blas = cublas_api();
    cublasStatus_t st =
        blas->dsyrk((cublasHandle_t)g->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, dim, m, &one, X, dim, &one, S, dim);
    if (st != CUBLAS_STATUS_SUCCESS)
        return tm_fail("cuBLAS: cublasDsyrk of %d rows of %d: %s", m, dim, blas->status_string(st));
    return 0;
}
