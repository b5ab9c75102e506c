/* The EigenSolver (dist/eigen_solver.h) of a pipeline stage: problems of at
 * least min_n rows go to ScaLAPACK over comm (every rank of comm must make
 * the same call), smaller ones to LAPACK in the calling rank. */
#ifndef TM_DIST_SOLVER_H
#define TM_DIST_SOLVER_H

#include <mpi.h>

#include "dist/eigen.h"
#include "dist/eigen_solver.h"

typedef struct {
    MPI_Comm comm;
    DistGrid *grid;    /* made at the first ScaLAPACK problem, kept */
    int min_n;
    int scalapack_calls, lapack_calls; /* what actually ran, for the report */
} DistSolverCtx;

/* e->ctx = ctx; ctx must outlive e. */
void dist_solver_init(EigenSolver *e, DistSolverCtx *ctx, MPI_Comm comm, int min_n);
/* Collective over comm when a grid was made: closes it. */
void dist_solver_free(DistSolverCtx *ctx);

#endif
