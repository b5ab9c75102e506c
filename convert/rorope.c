#include "convert/rorope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convert/linalg.h"
#include "io/checked.h"
#include "io/error.h"

int rorope_check(const RoropeShape *s) {
    int d = s->d;
    if (s->r <= 0 || s->r % 2 || s->r > d || d % s->r)
        return tm_fail("--qk-mqa-dim %d must be even, positive and divide head_dim %d", s->r, d);
    if (s->collapse * s->r != d)
        return tm_fail("--collapse %d must equal head_dim / qk_mqa_dim = %d / %d", s->collapse, d, s->r);
    if (s->freqfold <= 0 || s->freqfold % s->collapse || (d / 2) % s->freqfold)
        return tm_fail("--freqfold %d must be a multiple of collapse %d that divides head_dim/2 = %d", s->freqfold,
                       s->collapse, d / 2);
    return 0;
}

int rorope_rotation(const double *key_cov, const RoropeShape *s, double *P) {
    int G = s->G, d = s->d, f = s->freqfold, c = s->collapse, r = s->r;
    int L = G * d, nb = d / 2 / f, n = G * f, keep = f / c;
    memset(P, 0, (size_t)L * L * sizeof *P);
    int *dim = mallocCheck((size_t)2 * n * sizeof *dim); /* original latent dim of feature a, part p */
    double *C = mallocCheck((size_t)n * n * sizeof *C), *w = mallocCheck((size_t)n * sizeof *w);
    int next_nope = r, rc = 0;
    for (int b = 0; b < nb && !rc; b++) {
        for (int g = 0; g < G; g++)
            for (int k = 0; k < f; k++)
                for (int p = 0; p < 2; p++) dim[2 * (g * f + k) + p] = g * d + p * (d / 2) + b * f + k;
        /* bucket covariance: both parts of each plane are samples of the same features */
        for (int a1 = 0; a1 < n; a1++)
            for (int a2 = 0; a2 < n; a2++) {
                double sum = 0;
                for (int p = 0; p < 2; p++) sum += key_cov[(int64_t)dim[2 * a1 + p] * L + dim[2 * a2 + p]];
                C[a1 * n + a2] = sum;
            }
        rc = eigh_descending(n, C, w);
        for (int j = 0; j < n && !rc; j++) {
            const double *u = C + (int64_t)j * n;
            /* component j < f/c joins the rope head as pair q, at the frequency
             * of bucket member j*c (the reference's cos[::c]) */
            int q = b * keep + j;
            int row_re = j < keep ? q : next_nope, row_im = j < keep ? q + r / 2 : next_nope + 1;
            if (j >= keep) next_nope += 2;
            for (int a = 0; a < n; a++) {
                P[(int64_t)row_re * L + dim[2 * a]] = u[a];
                P[(int64_t)row_im * L + dim[2 * a + 1]] = u[a];
            }
        }
    }
    free(dim);
    free(C);
    free(w);
    return rc;
}
