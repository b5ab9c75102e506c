/* MPI collectives on arrays longer than an int counts (2^31 elements): the
 * one place that cuts them into pieces. Same order of pieces on every rank,
 * so the results are those of one big call. */
#ifndef TM_DIST_CHUNKED_H
#define TM_DIST_CHUNKED_H

#include <mpi.h>
#include <stdint.h>

/* x = the sum of x over comm, in place. */
void chunked_sum_f64(double *x, int64_t n, MPI_Comm comm);
/* x = root's x on every rank of comm. */
void chunked_bcast_f64(double *x, int64_t n, int root, MPI_Comm comm);
void chunked_bcast_f32(float *x, int64_t n, int root, MPI_Comm comm);
/* Blocking send / receive of n floats to / from peer with tag. */
void chunked_send_f32(const float *x, int64_t n, int peer, int tag, MPI_Comm comm);
void chunked_recv_f32(float *x, int64_t n, int peer, int tag, MPI_Comm comm);

#endif
