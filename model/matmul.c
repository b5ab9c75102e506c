#include "model/matmul.h"

#include <cblas.h>
#include <stdlib.h>

#include "io/checked.h"

/* Widened panel size in floats (8 MiB): large enough that sgemm runs at full
 * speed, small beside any real weight. */
#define PANEL_FLOATS (2 << 20)

static void sgemm_nt(float *out, int ld_out, const float *inp, const float *w, int N, int n_out, int n_in, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, n_out, n_in, 1.0f, inp, n_in, w, n_in, beta, out, ld_out);
}

void matmul_forward_rows(float *out, int ld_out, const float *inp, const Tensor *W, int64_t r0, int64_t r1, int N,
                         int accumulate) {
    int n_in = (int)W->cols;
    float beta = accumulate ? 1.0f : 0.0f;
    if (W->dtype == TM_F32) {
        sgemm_nt(out, ld_out, inp, (const float *)W->data + r0 * n_in, N, (int)(r1 - r0), n_in, beta);
        return;
    }
    int64_t panel_rows = PANEL_FLOATS / n_in;
    if (panel_rows < 16) panel_rows = 16;
    if (panel_rows > r1 - r0) panel_rows = r1 - r0;
    float *panel = mallocCheck((size_t)(panel_rows * n_in) * sizeof(float));
    for (int64_t p = r0; p < r1; p += panel_rows) {
        int64_t rows = r1 - p < panel_rows ? r1 - p : panel_rows;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) tensor_to_f32(W, (p + r) * n_in, n_in, panel + r * n_in);
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
