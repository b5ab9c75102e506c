#include "dist/solver.h"

#include "dist/linalg.h"
#include "dist/eigen.h"

static int stage_eigh(const EigenSolver *e, int n, double *A, double *w) {
    DistSolverCtx *c = e->ctx;
    if (n < c->min_n) {
        c->lapack_calls++;
        return eigh_descending(n, A, w);
    }
    c->scalapack_calls++;
    return dist_eigh_descending(c->comm, n, A, w);
}

static int stage_svd_left(const EigenSolver *e, int m, int n, const double *F, double *U, double *s) {
    DistSolverCtx *c = e->ctx;
    if (m < c->min_n) {
        c->lapack_calls++;
        return svd_left_descending(m, n, F, U, s);
    }
    c->scalapack_calls++;
    return dist_svd_left(c->comm, m, n, F, U, s);
}

void dist_solver_init(EigenSolver *e, DistSolverCtx *ctx, MPI_Comm comm, int min_n) {
    ctx->comm = comm;
    ctx->min_n = min_n;
    ctx->scalapack_calls = ctx->lapack_calls = 0;
    e->eigh = stage_eigh;
    e->svd_left = stage_svd_left;
    e->ctx = ctx;
}
