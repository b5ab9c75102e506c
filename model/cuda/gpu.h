/* The GPU a rank works on: its stream, cuBLAS handle and bf16 scratch, the
 * weights it holds (GpuMat) and the one GEMM every linear layer on the GPU
 * goes through (issue 24). Plain C over the CUDA runtime and cuBLAS; the
 * kernels live in model/cuda/kernels.cu. Functions returning int give 0, or
 * -1 with tm_error() naming the CUDA or cuBLAS call and its error. */
#ifndef TM_MODEL_CUDA_GPU_H
#define TM_MODEL_CUDA_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "model/tensor.h"

/* How the GEMMs multiply: fp32 weights and inputs with fp32 arithmetic (no
 * TF32; the CPU engine's results to rounding), or bf16 weights and inputs
 * (the inputs rounded on the fly) with fp32 accumulation: the fast path. */
typedef enum { GPU_FP32, GPU_BF16 } GpuPrecision;

typedef struct {
    int device;
    GpuPrecision precision;
    void *stream; /* cudaStream_t */
    void *blas;   /* cublasHandle_t */
    uint16_t *scratch16[2]; /* bf16 copies of a GEMM's inputs (the backward's dW GEMM rounds two) */
    size_t scratch16_n[2];
} GpuCtx;

/* Number of GPUs visible (0 when none or no driver). */
int gpu_count(void);
/* One line naming the GPUs visible, for `transmla version`. */
void gpu_describe(char *buf, size_t n);
int gpu_ctx_init(GpuCtx *g, int device, GpuPrecision precision);
void gpu_ctx_free(GpuCtx *g);
/* Waits for the stream; reports any error a kernel left. */
int gpu_sync(GpuCtx *g);

/* Device memory; gpu_alloc dies (one line naming the size) when it fails,
 * as mallocCheck does. */
void *gpu_alloc(size_t bytes);
/* gpu_alloc, the bytes added to *total: activation buffers whose sum a
 * caller reports (GpuActs.bytes, the fine-tuning step's). */
void *gpu_alloc_counted(size_t *total, size_t bytes);
void gpu_free(void *p);
void gpu_upload(void *dst, const void *src, size_t bytes);
/* Page-locked host memory (cudaHostAlloc), for copies that overlap the
 * kernels; dies (one line naming the size) when it fails. */
void *gpu_host_alloc(size_t bytes);
void gpu_host_free(void *p);
void gpu_download(void *dst, const void *src, size_t bytes);
/* n floats on the device zeroed, or copied device to device, queued on g's stream. */
void gpu_zero(GpuCtx *g, float *x, size_t n);
void gpu_copy(GpuCtx *g, float *dst, const float *src, size_t n);
/* fp32 vector of n on the device; NULL for NULL. */
float *gpu_upload_f32(const float *src, int64_t n);

/* A weight [rows, cols] on the device in the context's precision. */
typedef struct {
    void *data;
    int bf16;
    int64_t rows, cols;
} GpuMat;

/* Copies (and converts) t, panel by panel so the host never holds a full
 * fp32 copy; a tensor without data gives an empty GpuMat. */
void gpu_mat_upload(GpuMat *m, const GpuCtx *g, const Tensor *t);
void gpu_mat_free(GpuMat *m);
size_t gpu_mat_bytes(const GpuMat *m);
/* Rows [r0, r0 + n) of m as a weight of their own (the head's vocabulary
 * chunks), sharing m's memory. */
GpuMat gpu_mat_rows(const GpuMat *m, int64_t r0, int64_t n);

/* matmul_forward on the device: out[N, rows] (=|+=) inp[N, cols] W^T (+ bias). */
int gpu_linear(GpuCtx *g, float *out, const float *inp, const GpuMat *W, const float *bias, int N, int accumulate);

/* out[i] = inp W[i]^T + bias[i] for n weights reading the same input (q, k,
 * v; gate, up): on the bf16 path the input is rounded to bf16 once. */
int gpu_linear_many(GpuCtx *g, int n, float *const *out, const float *inp, const GpuMat *const *W,
                    const float *const *bias, int N);

/* matmul_backward on the device, every result accumulated: dinp[N, cols]
 * += dout W (NULL: not wanted), dW[rows, cols] += dout^T inp (fp32; NULL:
 * frozen), dbias[rows] += the column sums of dout (NULL: none or frozen).
 * On the bf16 path the GEMMs' inputs (dout, and inp for dW) are rounded to
 * bf16 as the forward rounds its input, accumulating in fp32. */
int gpu_linear_backward(GpuCtx *g, float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                        const GpuMat *W, int N);

/* Row-major C[m, n] = alpha op(A) op(B) + beta C on fp32 device arrays with
 * fp32 arithmetic (no TF32) whatever the context's precision; ta, tb: 1 for
 * the transpose; lda, ldb, ldc as cblas_sgemm's (CblasRowMajor). For the
 * rotation fit's GEMMs, which mirror its CPU cblas calls one for one. */
int gpu_gemm_rm(GpuCtx *g, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc);

/* S[dim, dim] += X^T X for row-major X [m, dim] (float64 throughout):
 * the upper triangle of row-major S, as cov_accumulate (dist/linalg.h). */
int gpu_syrk_f64(GpuCtx *g, double *S, const double *X, int dim, int m);

#endif