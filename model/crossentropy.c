#include "model/crossentropy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/matmul.h"
#include "model/simd.h"
#include "model/softcap.h"

void crossentropy_init(CrossEntropy *ce, int n) {
    ce->max = mallocCheck((size_t)n * sizeof *ce->max);
    ce->sum = mallocCheck((size_t)n * sizeof *ce->sum);
    ce->target_logit = mallocCheck((size_t)n * sizeof *ce->target_logit);
    crossentropy_reset(ce, n);
}

void crossentropy_free(CrossEntropy *ce) {
    free(ce->max);
    free(ce->sum);
    free(ce->target_logit);
    memset(ce, 0, sizeof *ce);
}

void crossentropy_reset(CrossEntropy *ce, int n) {
    for (int i = 0; i < n; i++) {
        ce->max[i] = -INFINITY;
        ce->sum[i] = 0.0;
        ce->target_logit[i] = 0.0f;
    }
}

/* Fold one row's chunk into its running max and sum: exponentials in float
 * (1 ulp each), their sum in double. */
TM_MULTIVERSION static void update_row(const float *z, int cols, float *max, double *sum) {
    float mx = *max;
    for (int j = 0; j < cols; j++) mx = z[j] > mx ? z[j] : mx;
    double s = 0.0;
    for (int j = 0; j < cols; j++) s += (double)expf(z[j] - mx);
    *sum = *sum * exp((double)*max - mx) + s; /* exp(-inf) = 0 on the first chunk */
    *max = mx;
}

void crossentropy_update(CrossEntropy *ce, int n, const float *logits, int cols, int col0, const int32_t *targets) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        if (targets[i] < 0) continue;
        const float *z = logits + (int64_t)i * cols;
        update_row(z, cols, &ce->max[i], &ce->sum[i]);
        if (targets[i] >= col0 && targets[i] < col0 + cols) ce->target_logit[i] = z[targets[i] - col0];
    }
}

double crossentropy_finish(const CrossEntropy *ce, int n, const int32_t *targets, int64_t *count) {
    double total = 0.0;
    int64_t counted = 0;
    for (int i = 0; i < n; i++) {
        if (targets[i] < 0) continue;
        total += log(ce->sum[i]) + ce->max[i] - ce->target_logit[i];
        counted++;
    }
    *count = counted;
    return total;
}

/* One row's chunk of logits z (raw, before the cap) -> dL/dz in place:
 * weight (softmax - onehot(target)) at the capped logits, times the cap's
 * derivative 1 - tanh^2(z / cap) when capped (cap 0: none). */
static void row_logit_grad(float *z, int cols, int v0, int32_t target, float lse, float weight, float cap) {
    if (cap <= 0) {
        for (int j = 0; j < cols; j++) z[j] = weight * expf(z[j] - lse);
        if (target >= v0 && target < v0 + cols) z[target - v0] -= weight;
        return;
    }
    for (int j = 0; j < cols; j++) {
        float t = tanhf(z[j] / cap), g = weight * expf(cap * t - lse);
        if (j == target - v0) g -= weight;
        z[j] = g * (1.0f - t * t);
    }
}

/* Two passes over the vocabulary chunks: the first folds the log-sum-exp of
 * each row, the second recomputes each chunk's logits and turns them into
 * dlogits in place (row_logit_grad), which the head's backward takes to
 * dhidden and dlm_head. */
double head_loss_forward_backward(float *dhidden, float *dlm_head, const float *hidden, const Tensor *lm_head,
                                  const int32_t *targets, int N, float weight, float logit_cap, float *logits,
                                  int chunk, int64_t *n_counted) {
    int V = (int)lm_head->rows, D = (int)lm_head->cols;
    size_t esz = tm_dtype_size(lm_head->dtype);
    CrossEntropy ce;
    crossentropy_init(&ce, N);
    for (int v0 = 0; v0 < V; v0 += chunk) {
        int cols = V - v0 < chunk ? V - v0 : chunk;
        matmul_forward_rows(logits, cols, hidden, lm_head, v0, v0 + cols, N, 0);
        softcap_forward(logits, (int64_t)N * cols, logit_cap);
        crossentropy_update(&ce, N, logits, cols, v0, targets);
    }
    double nll = crossentropy_finish(&ce, N, targets, n_counted);
    float *lse = mallocCheck((size_t)N * sizeof(float));
    for (int i = 0; i < N; i++) lse[i] = targets[i] < 0 ? 0.0f : (float)(log(ce.sum[i]) + ce.max[i]);
    for (int v0 = 0; v0 < V; v0 += chunk) {
        int cols = V - v0 < chunk ? V - v0 : chunk;
        matmul_forward_rows(logits, cols, hidden, lm_head, v0, v0 + cols, N, 0);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++) {
            float *z = logits + (int64_t)i * cols;
            if (targets[i] < 0) memset(z, 0, (size_t)cols * sizeof(float));
            else row_logit_grad(z, cols, v0, targets[i], lse[i], weight, logit_cap);
        }
        /* the chunk's rows of lm_head as a tensor of their own */
        Tensor part = *lm_head;
        part.data = (const char *)lm_head->data + (size_t)v0 * D * esz;
        part.rows = cols;
        matmul_backward(dhidden, dlm_head ? dlm_head + (int64_t)v0 * D : NULL, NULL, logits, hidden, &part, N);
    }
    free(lse);
    crossentropy_free(&ce);
    return nll;
}
