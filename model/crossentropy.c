#include "model/crossentropy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"
#include "model/simd.h"

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
