#include "dist/chunked.h"

#define PIECE ((int64_t)1 << 28)

static int piece_len(int64_t n, int64_t o) { return (int)(n - o < PIECE ? n - o : PIECE); }

void chunked_sum_f64(double *x, int64_t n, MPI_Comm comm) {
    for (int64_t o = 0; o < n; o += PIECE) MPI_Allreduce(MPI_IN_PLACE, x + o, piece_len(n, o), MPI_DOUBLE, MPI_SUM, comm);
}

void chunked_bcast_f64(double *x, int64_t n, int root, MPI_Comm comm) {
    for (int64_t o = 0; o < n; o += PIECE) MPI_Bcast(x + o, piece_len(n, o), MPI_DOUBLE, root, comm);
}

void chunked_bcast_f32(float *x, int64_t n, int root, MPI_Comm comm) {
    for (int64_t o = 0; o < n; o += PIECE) MPI_Bcast(x + o, piece_len(n, o), MPI_FLOAT, root, comm);
}

void chunked_send_f32(const float *x, int64_t n, int peer, int tag, MPI_Comm comm) {
    for (int64_t o = 0; o < n; o += PIECE) MPI_Send(x + o, piece_len(n, o), MPI_FLOAT, peer, tag, comm);
}

void chunked_recv_f32(float *x, int64_t n, int peer, int tag, MPI_Comm comm) {
    for (int64_t o = 0; o < n; o += PIECE)
        MPI_Recv(x + o, piece_len(n, o), MPI_FLOAT, peer, tag, comm, MPI_STATUS_IGNORE);
}
