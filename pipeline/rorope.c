#include "pipeline/rorope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist/linalg.h"
#include "io/base/checked.h"
#include "io/base/error.h"

int rorope_check(const RoropeShape *s) {
    int d = s->rd;
    const char *what = s->rd == s->d ? "head_dim" : "the rotary dims";
    if (s->rd <= 0 || s->rd % 2 || s->rd > s->d)
        return tm_fail("rotary dims %d must be even and within head_dim %d", s->rd, s->d);
    if (s->r <= 0 || s->r % 2 || s->r > d || d % s->r)
        return tm_fail("--qk-mqa-dim %d must be even, positive and divide %s %d", s->r, what, d);
    if (s->collapse * s->r != d)
        return tm_fail("--collapse %d must equal %s / qk_mqa_dim = %d / %d", s->collapse, what, d, s->r);
    if (s->freqfold <= 0 || s->freqfold % s->collapse || (d / 2) % s->freqfold)
        return tm_fail("--freqfold %d must be a multiple of collapse %d that divides %s/2 = %d", s->freqfold,
                       s->collapse, what, d / 2);
    return 0;
}

/* Latent dim of bucket b's feature a = (head g, member k), real (p 0) or imaginary (p 1) part. */
static int feature_dim(const RoropeShape *s, int b, int a, int p) {
    int g = a / s->freqfold, k = a % s->freqfold;
    return g * s->d + p * (s->rd / 2) + b * s->freqfold + k;
}

/* P's row for bucket b's mix j, part p: the rope head's pair q = b*keep + j
 * (rows q, q + r/2) for j < keep, else the nope rows after r in order. */
static int mix_row(const RoropeShape *s, int b, int j, int p) {
    int keep = s->freqfold / s->collapse, n = rorope_bucket_size(s);
    if (j < keep) return b * keep + j + p * (s->r / 2);
    return s->r + 2 * (b * (n - keep) + (j - keep)) + p;
}

int rorope_bases(const double *key_cov, const RoropeShape *s, double *V) {
    int L = s->G * s->d, nb = rorope_buckets(s), n = rorope_bucket_size(s), rc = 0;
    double *w = mallocCheck((size_t)n * sizeof *w);
    for (int b = 0; b < nb && !rc; b++) {
        double *C = V + (int64_t)b * n * n;
        /* bucket covariance: both parts of each plane are samples of the same features */
        for (int a1 = 0; a1 < n; a1++)
            for (int a2 = 0; a2 < n; a2++) {
                double sum = 0;
                for (int p = 0; p < 2; p++)
                    sum += key_cov[(int64_t)feature_dim(s, b, a1, p) * L + feature_dim(s, b, a2, p)];
                C[a1 * n + a2] = sum;
            }
        rc = eigh_descending(n, C, w);
    }
    free(w);
    return rc;
}

/* Component j < f/c of a bucket joins the rope head at the frequency of
 * bucket member j*c (the reference's cos[::c]); the rest lose RoPE. */
void rorope_assemble(const double *V, const RoropeShape *s, double *P) {
    int L = s->G * s->d, nb = rorope_buckets(s), n = rorope_bucket_size(s);
    memset(P, 0, (size_t)L * L * sizeof *P);
    int pass = s->d - s->rd; /* non-rotary dims of head g: the last rows, as they are */
    for (int g = 0; g < s->G; g++)
        for (int t = 0; t < pass; t++) P[(int64_t)(s->G * s->rd + g * pass + t) * L + g * s->d + s->rd + t] = 1.0;
    for (int b = 0; b < nb; b++)
        for (int j = 0; j < n; j++)
            for (int a = 0; a < n; a++)
                for (int p = 0; p < 2; p++)
                    P[(int64_t)mix_row(s, b, j, p) * L + feature_dim(s, b, a, p)] = V[((int64_t)b * n + j) * n + a];
}

void rorope_extract(const double *P, const RoropeShape *s, double *V) {
    int L = s->G * s->d, nb = rorope_buckets(s), n = rorope_bucket_size(s);
    for (int b = 0; b < nb; b++)
        for (int j = 0; j < n; j++)
            for (int a = 0; a < n; a++)
                V[((int64_t)b * n + j) * n + a] = P[(int64_t)mix_row(s, b, j, 0) * L + feature_dim(s, b, a, 0)];
}

void rorope_assemble_adjoint(const double *dP, const RoropeShape *s, double *dV) {
    int L = s->G * s->d, nb = rorope_buckets(s), n = rorope_bucket_size(s);
    for (int b = 0; b < nb; b++)
        for (int j = 0; j < n; j++)
            for (int a = 0; a < n; a++) {
                double sum = 0;
                for (int p = 0; p < 2; p++) sum += dP[(int64_t)mix_row(s, b, j, p) * L + feature_dim(s, b, a, p)];
                dV[((int64_t)b * n + j) * n + a] = sum;
            }
}

int rorope_rotation(const double *key_cov, const RoropeShape *s, double *P) {
    int n = rorope_bucket_size(s);
    double *V = mallocCheck((size_t)rorope_buckets(s) * n * n * sizeof *V);
    int rc = rorope_bases(key_cov, s, V);
    if (!rc) rorope_assemble(V, s, P);
    free(V);
    return rc;
}
