#include "model/matmul.h"

#include <cblas.h>
#include <stdlib.h>

#include "io/base/checked.h"
#include "model/simd.h"

/* Widened panel size in floats (8 MiB): large enough that sgemm runs at full
 * speed, small beside any real weight. */
#define PANEL_FLOATS (2 << 20)

static void sgemm_nt(float *out, int ld_out, const float *inp, const float *w, int N, int n_out, int n_in, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, n_out, n_in, 1.0f, inp, n_in, w, n_in, beta, out, ld_out);
}

/* Rows of W (n_in columns) per widened panel, for a span of `rows` rows. */
static int64_t panel_rows_of(int64_t n_in, int64_t rows) {
    int64_t n = PANEL_FLOATS / n_in;
    if (n < 16) n = 16;
    return n > rows ? rows : n;
}

/* panel[rows, n_in] = W's rows [p, p + rows) as fp32. */
static void widen_rows(float *panel, const Tensor *W, int64_t p, int64_t rows) {
    int64_t n_in = W->cols;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) tensor_to_f32(W, (p + r) * n_in, n_in, panel + r * n_in);
}

/* A few input rows (decoding: one per sequence) against bf16 weights: each
 * weight row is widened once, a block at a time in a stack buffer, and dotted
 * with every input row, where widening whole panels for sgemm would write and
 * read every weight again as fp32 (bench/bench_decode.sh at Llama-2-7B
 * shapes, batch 16: 16 tokens/s with panels, 29 with this). */
#define GEMV_MAX_ROWS 32
#define GEMV_BLOCK 512

TM_MULTIVERSION static float dot_f32(const float *x, const float *w, int n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int k = 0; k < n; k++) acc += x[k] * w[k];
    return acc;
}

static void gemv_bf16(float *out, int ld_out, const float *inp, const Tensor *W, int64_t r0, int64_t r1, int N,
                      int accumulate) {
    int n_in = (int)W->cols;
#pragma omp parallel for schedule(static)
    for (int64_t r = r0; r < r1; r++) {
        float acc[GEMV_MAX_ROWS] = {0}, block[GEMV_BLOCK];
        for (int k0 = 0; k0 < n_in; k0 += GEMV_BLOCK) {
            int n = n_in - k0 < GEMV_BLOCK ? n_in - k0 : GEMV_BLOCK;
            tensor_to_f32(W, r * n_in + k0, n, block);
            for (int i = 0; i < N; i++) acc[i] += dot_f32(inp + (int64_t)i * n_in + k0, block, n);
        }
        for (int i = 0; i < N; i++) {
            float *o = out + (int64_t)i * ld_out + (r - r0);
            *o = accumulate ? *o + acc[i] : acc[i];
        }
    }
}

void matmul_forward_rows(float *out, int ld_out, const float *inp, const Tensor *W, int64_t r0, int64_t r1, int N,
                         int accumulate) {
    int n_in = (int)W->cols;
    float beta = accumulate ? 1.0f : 0.0f;
    if (W->dtype == TM_BF16 && N <= GEMV_MAX_ROWS) {
        gemv_bf16(out, ld_out, inp, W, r0, r1, N, accumulate);
        return;
    }
    if (W->dtype == TM_F32) {
        sgemm_nt(out, ld_out, inp, (const float *)W->data + r0 * n_in, N, (int)(r1 - r0), n_in, beta);
        return;
    }
    int64_t panel_rows = panel_rows_of(n_in, r1 - r0);
    float *panel = mallocCheck((size_t)(panel_rows * n_in) * sizeof(float));
    for (int64_t p = r0; p < r1; p += panel_rows) {
        int64_t rows = r1 - p < panel_rows ? r1 - p : panel_rows;
        widen_rows(panel, W, p, rows);
        sgemm_nt(out + (p - r0), ld_out, inp, panel, N, (int)rows, n_in, beta);
    }
    free(panel);
}

void matmul_forward(float *out, const float *inp, const Tensor *W, const float *bias, int N, int accumulate) {
    int n_out = (int)W->rows;
    matmul_forward_rows(out, n_out, inp, W, 0, n_out, N, accumulate);
    if (!bias) return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n_out; j++) out[(int64_t)i * n_out + j] += bias[j];
}

/* dinp[N, n_in] += dout[:, rows p..p+n) W[p..p+n, :], one widened panel at a time. */
static void matmul_backward_inp(float *dinp, const float *dout, const Tensor *W, int N) {
    int n_out = (int)W->rows, n_in = (int)W->cols;
    if (W->dtype == TM_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n_in, n_out, 1.0f, dout, n_out,
                    (const float *)W->data, n_in, 1.0f, dinp, n_in);
        return;
    }
    int64_t panel_rows = panel_rows_of(n_in, n_out);
    float *panel = mallocCheck((size_t)(panel_rows * n_in) * sizeof(float));
    for (int64_t p = 0; p < n_out; p += panel_rows) {
        int64_t rows = n_out - p < panel_rows ? n_out - p : panel_rows;
        widen_rows(panel, W, p, rows);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, n_in, (int)rows, 1.0f, dout + p, n_out, panel, n_in,
                    1.0f, dinp, n_in);
    }
    free(panel);
}

void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const Tensor *W, int N) {
    int n_out = (int)W->rows, n_in = (int)W->cols;
    if (N <= 0) return;
    if (dinp) matmul_backward_inp(dinp, dout, W, N);
    if (dW) /* dW[n_out, n_in] += dout^T inp */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, N, 1.0f, dout, n_out, inp, n_in, 1.0f, dW,
                    n_in);
    if (!dbias) return;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n_out; j++) {
        float s = 0.0f;
        for (int i = 0; i < N; i++) s += dout[(int64_t)i * n_out + j];
        dbias[j] += s;
    }
}

int matmul_threads_for(int64_t largest_weight) {
    int threads = openblas_get_num_threads();
    if (largest_weight < (1 << 20)) openblas_set_num_threads(1);
    return threads;
}

void matmul_threads_restore(int threads) { openblas_set_num_threads(threads); }
