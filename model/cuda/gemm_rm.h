/* A row-major GEMM as the column-major call that computes it (cuBLAS is
 * column-major). Row-major C[m, n] = op(A) op(B) is, read column-major,
 * C^T [n, m] = op(B)^T op(A)^T, and a row-major matrix of leading dimension
 * ld read column-major is its transpose with the same ld: so the operands
 * swap, each keeps its own transpose flag, m and n swap, and C's ld stays.
 * Plain C: gpu_gemm_rm (gpu.c) calls it; test_gemm_rm checks it on the CPU
 * with a column-major BLAS call against a plain row-major loop. */
#ifndef TM_MODEL_CUDA_GEMM_RM_H
#define TM_MODEL_CUDA_GEMM_RM_H

typedef struct {
    int trans_first, trans_second; /* 1: op is the transpose */
    int m, n, k;
    const float *first, *second;
    int ld_first, ld_second;
} ColMajorGemm;

static inline ColMajorGemm gemm_rm_as_cm(int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B,
                                         int ldb) {
    return (ColMajorGemm){.trans_first = tb, .trans_second = ta, .m = n, .n = m, .k = k,
                          .first = B, .ld_first = ldb, .second = A, .ld_second = lda};
}

#endif
