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

/* Logits of vocabulary rows [v0, v0 + cols) of lm_head for hidden [N, D],
 * capped (cap 0: none). */
static void chunk_logits(float *logits, const float *hidden, const Tensor *lm_head, int v0, int cols, int N, float cap) {
    matmul_forward_rows(logits, cols, hidden, lm_head, v0, v0 + cols, N, 0);
    softcap_forward(logits, (int64_t)N * cols, cap);
}

/* Log-sum-exp of every row with a target over the whole vocabulary (first
 * pass); the NLL sum when targets' logits matter (returned). */
static double head_lse(float *lse, const float *hidden, const Tensor *lm_head, const int32_t *targets, int N,
                       float cap, float *logits, int chunk, int64_t *n_counted) {
    int V = (int)lm_head->rows;
    CrossEntropy ce;
    crossentropy_init(&ce, N);
    for (int v0 = 0; v0 < V; v0 += chunk) {
        int cols = V - v0 < chunk ? V - v0 : chunk;
        chunk_logits(logits, hidden, lm_head, v0, cols, N, cap);
        crossentropy_update(&ce, N, logits, cols, v0, targets);
    }
    double nll = crossentropy_finish(&ce, N, targets, n_counted);
    for (int i = 0; i < N; i++) lse[i] = targets[i] < 0 ? 0.0f : (float)(log(ce.sum[i]) + ce.max[i]);
    crossentropy_free(&ce);
    return nll;
}

/* One row's chunk of logits z (raw, before the cap) -> dL/dz in place:
 * weight (softmax - (1 - alpha) onehot(target) - alpha p_t) at the capped
 * logits, times the cap's derivative 1 - tanh^2(z / cap) when capped (cap 0:
 * none). zt: the teacher's capped logits of the chunk (NULL: no teacher,
 * alpha 0), lse_t their log-sum-exp. Returns the row's share of KL(p_t || p_s). */
static double row_logit_grad(float *z, const float *zt, int cols, int v0, int32_t target, float lse, float lse_t,
                             float weight, float cap, float alpha) {
    double kl = 0.0;
    for (int j = 0; j < cols; j++) {
        float t = cap > 0 ? tanhf(z[j] / cap) : 0.0f, zc = cap > 0 ? cap * t : z[j];
        float g = weight * expf(zc - lse);
        if (zt) {
            float lpt = zt[j] - lse_t, pt = expf(lpt);
            kl += (double)pt * (double)(lpt - (zc - lse));
            g -= weight * alpha * pt;
        }
        if (j == target - v0) g -= weight * (1.0f - alpha);
        z[j] = cap > 0 ? g * (1.0f - t * t) : g;
    }
    return kl;
}

/* Two passes over the vocabulary chunks: the first folds the log-sum-exp of
 * each row (student and teacher), the second recomputes each chunk's logits
 * and turns them into dlogits in place (row_logit_grad), which the head's
 * backward takes to dhidden and dlm_head. */
double head_loss_forward_backward(float *dhidden, float *dlm_head, const float *hidden, const Tensor *lm_head,
                                  const int32_t *targets, int N, float weight, float logit_cap, float *logits,
                                  int chunk, int64_t *n_counted, HeadTeacher *teacher) {
    int V = (int)lm_head->rows, D = (int)lm_head->cols;
    size_t esz = tm_dtype_size(lm_head->dtype);
    float *lse = mallocCheck((size_t)N * sizeof(float)), *lse_t = NULL, alpha = teacher ? teacher->alpha : 0.0f;
    double nll = head_lse(lse, hidden, lm_head, targets, N, logit_cap, logits, chunk, n_counted), kl = 0.0;
    if (teacher) {
        int64_t unused;
        lse_t = mallocCheck((size_t)N * sizeof(float));
        head_lse(lse_t, teacher->hidden, teacher->lm_head, targets, N, teacher->logit_cap, teacher->logits, chunk,
                 &unused);
    }
    for (int v0 = 0; v0 < V; v0 += chunk) {
        int cols = V - v0 < chunk ? V - v0 : chunk;
        matmul_forward_rows(logits, cols, hidden, lm_head, v0, v0 + cols, N, 0);
        if (teacher) chunk_logits(teacher->logits, teacher->hidden, teacher->lm_head, v0, cols, N, teacher->logit_cap);
#pragma omp parallel for schedule(static) reduction(+ : kl)
        for (int i = 0; i < N; i++) {
            float *z = logits + (int64_t)i * cols;
            if (targets[i] < 0) memset(z, 0, (size_t)cols * sizeof(float));
            else
                kl += row_logit_grad(z, teacher ? teacher->logits + (int64_t)i * cols : NULL, cols, v0, targets[i],
                                     lse[i], teacher ? lse_t[i] : 0.0f, weight, logit_cap, alpha);
        }
        /* the chunk's rows of lm_head as a tensor of their own */
        Tensor part = *lm_head;
        part.data = (const char *)lm_head->data + (size_t)v0 * D * esz;
        part.rows = cols;
        matmul_backward(dhidden, dlm_head ? dlm_head + (int64_t)v0 * D : NULL, NULL, logits, hidden, &part, N);
    }
    if (teacher) teacher->kl = kl;
    free(lse);
    free(lse_t);
    return nll;
}
