#include "dist/linalg.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

/* LAPACK's Fortran entry point (OpenBLAS ships it; Debian has no lapacke.h
 * for it). The trailing size_t is the hidden length of the string arguments. */
extern void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b, const int *ldb,
                   int *info);
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t, size_t);
extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *lda,
                    double *s, double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
                    int *info, size_t, size_t);

int64_t cov_accumulate(double *S, int dim, const float *X, int64_t ld, int col0, int n, const uint8_t *keep,
                       double *stage) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        const float *x = X + (int64_t)i * ld + col0;
        double *y = stage + (int64_t)m * dim;
        for (int j = 0; j < dim; j++) y[j] = x[j];
        m++;
    }
    if (m) cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, m, 1.0, stage, dim, 1.0, S, dim);
    return m;
}

void sym_fill_lower(double *S, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) S[(int64_t)i * n + j] = S[(int64_t)j * n + i];
}

int eigh_descending(int n, double *A, double *w) {
    if (n == 0) return 0;
    int lwork = -1, liwork = -1, info = 0, iw_query;
    double w_query;
    /* row-major symmetric == column-major symmetric; eigenvectors come back as
     * columns in column-major, i.e. as rows here */
    dsyevd_("V", "U", &n, A, &n, w, &w_query, &lwork, &iw_query, &liwork, &info, 1, 1);
    lwork = (int)w_query;
    liwork = iw_query;
    double *work = mallocCheck((size_t)lwork * sizeof *work);
    int *iwork = mallocCheck((size_t)liwork * sizeof *iwork);
    dsyevd_("V", "U", &n, A, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info) return tm_fail("eigendecomposition of a %d x %d matrix failed (LAPACK dsyevd info %d)", n, n, info);
    /* ascending -> descending */
    double *row = mallocCheck((size_t)n * sizeof *row);
    for (int i = 0, j = n - 1; i < j; i++, j--) {
        double t = w[i];
        w[i] = w[j];
        w[j] = t;
        memcpy(row, A + (int64_t)i * n, (size_t)n * sizeof *row);
        memcpy(A + (int64_t)i * n, A + (int64_t)j * n, (size_t)n * sizeof *row);
        memcpy(A + (int64_t)j * n, row, (size_t)n * sizeof *row);
    }
    free(row);
    rows_fix_sign(A, n, n);
    return 0;
}

int svd_left_descending(int m, int n, const double *F, double *U, double *s) {
    int k = m < n ? m : n, lwork = -1, info = 0;
    if (k == 0) return 0;
    /* dgesvd destroys its input, so copy F anyway, and copy it transposed:
     * column-major F then yields U[m, k] column-major, i.e. the vectors as
     * rows of U[k, m] here, with no transpose afterwards */
    double *a = mallocCheck((size_t)m * n * sizeof *a);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) a[(int64_t)j * m + i] = F[(int64_t)i * n + j];
    double w_query, vt_unused = 0;
    int one = 1;
    dgesvd_("S", "N", &m, &n, a, &m, s, U, &m, &vt_unused, &one, &w_query, &lwork, &info, 1, 1);
    lwork = (int)w_query;
    double *work = mallocCheck((size_t)lwork * sizeof *work);
    dgesvd_("S", "N", &m, &n, a, &m, s, U, &m, &vt_unused, &one, work, &lwork, &info, 1, 1);
    free(work);
    free(a);
    if (info) return tm_fail("SVD of a %d x %d matrix failed (LAPACK dgesvd info %d)", m, n, info);
    rows_fix_sign(U, k, m);
    return 0;
}

void rows_fix_sign(double *V, int k, int n) {
    for (int i = 0; i < k; i++) {
        double *v = V + (int64_t)i * n;
        int big = 0;
        for (int j = 1; j < n; j++)
            if (fabs(v[j]) > fabs(v[big])) big = j;
        if (v[big] < 0)
            for (int j = 0; j < n; j++) v[j] = -v[j];
    }
}

void dgemm_rm(int trans_a, int trans_b, int m, int n, int k, const double *A, const double *B, double *C) {
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0,
                A, trans_a ? m : k, B, trans_b ? k : n, 0.0, C, n);
}

int dsolve(int n, int nrhs, const double *A, double *B) {
    double *a = mallocCheck((size_t)n * n * sizeof *a), *b = mallocCheck((size_t)n * nrhs * sizeof *b);
    int *ipiv = mallocCheck((size_t)n * sizeof *ipiv), info;
    for (int i = 0; i < n; i++) /* column-major copies */
        for (int j = 0; j < n; j++) a[(int64_t)j * n + i] = A[(int64_t)i * n + j];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nrhs; j++) b[(int64_t)j * n + i] = B[(int64_t)i * nrhs + j];
    dgesv_(&n, &nrhs, a, &n, ipiv, b, &n, &info);
    for (int i = 0; i < n && !info; i++)
        for (int j = 0; j < nrhs; j++) B[(int64_t)i * nrhs + j] = b[(int64_t)j * n + i];
    free(a);
    free(b);
    free(ipiv);
    return info ? tm_fail("dgesv: singular system (info %d)", info) : 0;
}
