/* cuBLAS, opened with dlopen when the first GPU context is made instead of
 * linked: a process linked to it pays ~200 MB of resident memory at start
 * (libcublasLt's relocations), every CPU-only run included (measured: eval
 * --help 231 MB linked, 14 MB without). The few entry points gpu.c uses. */
#ifndef TM_MODEL_CUDA_CUBLAS_LOAD_H
#define TM_MODEL_CUDA_CUBLAS_LOAD_H

#include <cublas_v2.h>

typedef struct {
    cublasStatus_t (*create)(cublasHandle_t *handle);
    cublasStatus_t (*destroy)(cublasHandle_t handle);
    cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream);
    cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                              int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                              cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                              cublasComputeType_t computeType, cublasGemmAlgo_t algo);
    cublasStatus_t (*dsyrk)(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                            const double *alpha, const double *A, int lda, const double *beta, double *C, int ldc);
    const char *(*status_string)(cublasStatus_t status);
} CublasApi;

/* The library's entry points, opened once; NULL with tm_error() naming the
 * library and what to do when it cannot be opened. */
const CublasApi *cublas_api(void);

#endif
