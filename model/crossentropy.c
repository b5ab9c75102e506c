#include "model/crossentropy.h"

#include <math.h>

double crossentropy_forward(const float *logits, const int32_t *targets, int n, int V, int64_t *count) {
    double total = 0.0;
    int64_t counted = 0;
#pragma omp parallel for reduction(+ : total, counted) schedule(static)
    for (int i = 0; i < n; i++) {
        if (targets[i] < 0) continue;
        const float *z = logits + (int64_t)i * V;
        float mx = z[0];
        for (int j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
        double s = 0.0;
        for (int j = 0; j < V; j++) s += exp((double)(z[j] - mx));
        total += log(s) + mx - z[targets[i]];
        counted++;
    }
    *count = counted;
    return total;
}
