/* Who solves a conversion step's eigenproblems and SVDs: LAPACK in this
 * process, or ScaLAPACK over a stage's ranks (dist/solver.c). The steps in
 * pipeline/ call through this and never see MPI. */
#ifndef TM_DIST_EIGEN_SOLVER_H
#define TM_DIST_EIGEN_SOLVER_H

typedef struct EigenSolver EigenSolver;
struct EigenSolver {
    /* As eigh_descending (dist/linalg.h): rows of A become eigenvectors, w descending. */
    int (*eigh)(const EigenSolver *e, int n, double *A, double *w);
    /* As svd_left_descending: rows of U[min(m,n), m] are left singular vectors of F[m, n]. */
    int (*svd_left)(const EigenSolver *e, int m, int n, const double *F, double *U, double *s);
    void *ctx;
};

/* LAPACK (dsyevd, dgesvd) in the calling process. */
extern const EigenSolver eigen_lapack;

#endif
