/* Float64 helpers the conversion needs: covariance sums and symmetric
 * eigendecomposition with a deterministic order and sign. */
#ifndef TM_DIST_LINALG_H
#define TM_DIST_LINALG_H

#include <stdint.h>

/* S[dim, dim] (upper triangle) += X^T X over the rows of X[n, ld] whose
 * keep[i] is nonzero (keep NULL: all rows), columns col0 .. col0+dim-1.
 * `stage` is caller scratch of n * dim doubles. Returns the rows added. */
int64_t cov_accumulate(double *S, int dim, const float *X, int64_t ld, int col0, int n, const uint8_t *keep,
                       double *stage);
/* Copy the upper triangle of S[n, n] into the lower one. */
void sym_fill_lower(double *S, int n);

/* Eigendecomposition of the symmetric A[n, n] (row-major, both triangles).
 * On return row j of A is the j-th eigenvector, eigenvalues w[j] descending;
 * each vector's largest-magnitude entry (first on ties) is positive, so the
 * result depends on the matrix only. Returns 0, or -1 when LAPACK fails. */
int eigh_descending(int n, double *A, double *w);

/* Left singular vectors of F[m, n] (row-major): rows of U[k, m], k = min(m, n),
 * singular values s[k] descending, same sign rule as eigh_descending.
 * LAPACK dgesvd. Returns 0, or -1 (tm_fail) when LAPACK fails. */
int svd_left_descending(int m, int n, const double *F, double *U, double *s);

/* The sign rule of the functions above, for k vectors stored as the rows of
 * V[k, n]: flip each row so its largest-magnitude entry (first on ties) is
 * positive. Shared so that every solver, LAPACK or ScaLAPACK, gives vectors
 * that can be compared entry by entry. */
void rows_fix_sign(double *V, int k, int n);

/* Solve A X = B for X (A[n, n], B[n, nrhs], row-major; X overwrites B).
 * LAPACK dgesv. Returns 0, or -1 (tm_fail) when A is singular. */
int dsolve(int n, int nrhs, const double *A, double *B);

/* C[m, n] = A[m, k] B[k, n] (trans_a: A stored [k, m]; trans_b: B stored [n, k]). */
void dgemm_rm(int trans_a, int trans_b, int m, int n, int k, const double *A, const double *B, double *C);

#endif
