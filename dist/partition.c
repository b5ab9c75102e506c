#include "dist/partition.h"

#include <math.h>
#include <stdlib.h>

#include "io/base/checked.h"

void partition_min_max(const double *cost, int n, int k, int *cut) {
    double *prefix = mallocCheck((size_t)(n + 1) * sizeof *prefix);
    prefix[0] = 0;
    for (int i = 0; i < n; i++) prefix[i + 1] = prefix[i] + cost[i];
    /* best[s][i]: the smallest max over splitting items [0, i) into s blocks */
    double *best = mallocCheck((size_t)(k + 1) * (n + 1) * sizeof *best);
    int *arg = callocCheck((size_t)(k + 1) * (n + 1), sizeof *arg);
#define B(s, i) best[(size_t)(s) * (n + 1) + (i)]
#define A(s, i) arg[(size_t)(s) * (n + 1) + (i)]
    for (int i = 0; i <= n; i++) B(1, i) = prefix[i];
    for (int s = 2; s <= k; s++)
        for (int i = s; i <= n; i++) {
            B(s, i) = INFINITY;
            for (int j = s - 1; j < i; j++) { /* the last block is [j, i) */
                double v = fmax(B(s - 1, j), prefix[i] - prefix[j]);
                if (v < B(s, i)) {
                    B(s, i) = v;
                    A(s, i) = j;
                }
            }
        }
    cut[k] = n;
    for (int s = k; s >= 2; s--) cut[s - 1] = A(s, cut[s]);
    cut[0] = 0;
#undef B
#undef A
    free(prefix);
    free(best);
    free(arg);
}
