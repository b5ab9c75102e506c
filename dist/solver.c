#include "dist/solver.h"

#include "dist/eigen.h"
#include "dist/linalg.h"

/* The stage's BLACS grid, made at its first ScaLAPACK problem (a call every
 * rank of comm makes together) and kept until dist_solver_free. */
static DistGrid *grid_of(DistSolverCtx *c) {
    if (!c->grid) c->grid = dist_grid_open(c->comm);
    return c->grid;
}

static int stage_eigh(const EigenSolver *e, int n, double *A, double *w) {
    DistSolverCtx *c = e->ctx;
    if (n < c->min_n) {
        c->lapack_calls++;
        return eigh_descending(n, A, w);
    }
    c->scalapack_calls++;
    return dist_eigh_descending(grid_of(c), n, A, w);
}

static int stage_svd_left(const EigenSolver *e, int m, int n, const double *F, double *U, double *s) {
    DistSolverCtx *c = e->ctx;
    if (m < c->min_n) {
        c->lapack_calls++;
        return svd_left_descending(m, n, F, U, s);
    }
    c->scalapack_calls++;
    return dist_svd_left(grid_of(c), m, n, F, U, s);
}

void dist_solver_init(EigenSolver *e, DistSolverCtx *ctx, MPI_Comm comm, int min_n) {
    ctx->comm = comm;
    ctx->min_n = min_n;
    ctx->scalapack_calls = ctx->lapack_calls = 0;
    ctx->grid = NULL;
    e->eigh = stage_eigh;
    e->svd_left = stage_svd_left;
    e->ctx = ctx;
}

void dist_solver_free(DistSolverCtx *ctx) {
    dist_grid_close(ctx->grid);
    ctx->grid = NULL;
}
