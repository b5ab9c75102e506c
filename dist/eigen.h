/* Symmetric eigendecomposition and SVD spread over the ranks of a
 * communicator with ScaLAPACK, for problems too big for one rank's LAPACK.
 * Input and output are replicated: every rank passes the full matrix and gets
 * the full result, so callers never see the block-cyclic distribution. The
 * results follow the conventions of dist/linalg.h (order, sign rule), so
 * either solver can stand in for the other. */
#ifndef TM_DIST_EIGEN_H
#define TM_DIST_EIGEN_H

#include <mpi.h>

/* A BLACS process grid over comm's ranks, as square as possible (2 ranks:
 * 1 x 2, 3: 1 x 3, 4: 2 x 2): made once (collective over comm) and used for
 * every problem solved on comm, with the descriptors of the last problem
 * shape kept. Close it (collectively) before comm goes. */
typedef struct DistGrid DistGrid;
DistGrid *dist_grid_open(MPI_Comm comm);
void dist_grid_close(DistGrid *g);

/* Collective over the grid's comm. Every rank passes the same symmetric A[n, n]
 * (row-major, both triangles). On return, on every rank, row j of A is the
 * j-th eigenvector and w[j] the eigenvalues in descending order, with the sign
 * rule of eigh_descending (each vector's largest-magnitude entry, first on
 * ties, is positive). Results are bitwise identical on all ranks. ScaLAPACK
 * pdsyevd on the grid; a 1-rank comm runs it on a 1 x 1 grid.
 * Returns 0, or -1 with tm_fail() set naming the routine and its info; the
 * return value is the same on all ranks. */
int dist_eigh_descending(DistGrid *g, int n, double *A, double *w);

/* Collective over the grid's comm. Every rank passes the same F[m, n] (row-major);
 * k = min(m, n). On return, on every rank, row j of U[k, m] is the j-th left
 * singular vector, s[k] the singular values descending, same sign rule,
 * bitwise identical on all ranks. ScaLAPACK pdgesvd (JOBU='V', JOBVT='N') on
 * the same kind of grid. Returns 0 or -1 as above. */
int dist_svd_left(DistGrid *g, int m, int n, const double *F, double *U, double *s);

#endif
