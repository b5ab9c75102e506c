/* Linear layers: out[N, n_out] (=|+=) inp[N, n_in] @ W^T + bias, W stored
 * [n_out, n_in] in F32, F16 or BF16. F32 weights go to sgemm in place; other
 * dtypes are widened one panel of rows at a time, so memory never holds an
 * fp32 copy of the whole weight. */
#ifndef TM_MODEL_MATMUL_H
#define TM_MODEL_MATMUL_H

#include "model/tensor.h"

/* accumulate = 0: out = inp W^T + bias; 1: out += inp W^T + bias. bias may be NULL. */
void matmul_forward(float *out, const float *inp, const Tensor *W, const float *bias, int N, int accumulate);
/* Rows [r0, r1) of W only: output column j - r0 of `out` (row stride ld_out)
 * gets W row j. */
void matmul_forward_rows(float *out, int ld_out, const float *inp, const Tensor *W, int64_t r0, int64_t r1, int N,
                         int accumulate);

/* Backward of out = inp W^T + bias over N rows, every result accumulated:
 * dinp[N, n_in] += dout W (NULL: not wanted), dW[n_out, n_in] += dout^T inp
 * (fp32; NULL: frozen), dbias[n_out] += column sums of dout (NULL: none or
 * frozen). W may be stored F32, F16 or BF16 (widened in panels). */
void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const Tensor *W, int N);

/* OpenBLAS's threads pay for the GEMMs of real models, but on tiny ones
 * they only contend with the OpenMP threads of the attention kernels
 * (measured on 2 cores: the RoRoPE fit 1.45x slower at bytelm-dev's
 * 384 x 384 o_proj with them, 1.46x faster at Llama-3.2-1B shapes; the
 * attention fit 1.24x slower at bytelm-dev's). Returns the thread count to
 * give matmul_threads_restore: BLAS runs single-threaded while the layer's
 * largest weight has fewer than 2^20 elements. */
int matmul_threads_for(int64_t largest_weight);
void matmul_threads_restore(int threads);

#endif
