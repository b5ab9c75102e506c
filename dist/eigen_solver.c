#include "dist/eigen_solver.h"

#include "dist/linalg.h"

static int lapack_eigh(const EigenSolver *e, int n, double *A, double *w) {
    (void)e;
    return eigh_descending(n, A, w);
}

static int lapack_svd_left(const EigenSolver *e, int m, int n, const double *F, double *U, double *s) {
    (void)e;
    return svd_left_descending(m, n, F, U, s);
}

const EigenSolver eigen_lapack = {lapack_eigh, lapack_svd_left, 0};
